/**
 * Indexes over the job cache, kept current from its events: ids in order,
 * counts by state, the active (ASSIGNED or RUNNING) jobs of each worker, and
 * the finished jobs in the order they finished (for retention).
 */
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Job, JobState } from "../../gen/crms/v1/job_pb.js";
import { isActive, isFinal } from "../rpc/states.js";
import type { Entry, PrefixCache } from "./cache.js";
import { compareIds } from "./keys.js";

/** When a job ended (ms since the epoch); 0 if it has no end time. */
export const endMs = (j: Job): number => (j.endTime ? timestampMs(j.endTime) : 0);

/** Orders jobs by end time, then by id: the order retention deletes them in. */
export const byEnd = (a: Job, b: Job): number => endMs(a) - endMs(b) || compareIds(a.id, b.id);

export class JobIndex {
  private ids: string[] = [];
  private sorted = true;
  private removed = 0;
  readonly counts = new Map<JobState, number>();
  /** Worker name -> ids of its ASSIGNED or RUNNING jobs. */
  readonly active = new Map<string, Set<string>>();
  /**
   * Ids of finished jobs, oldest end first: sorted by end time when the index
   * is built, then in the order this replica sees jobs finish (so oldest
   * first up to clock skew between replicas and report batching).
   */
  readonly finished = new Set<string>();

  constructor(private readonly cache: PrefixCache<Job>) {
    for (const [id, e] of cache.entries) this.add(id, e, undefined);
    this.sortFinished();
    cache.on("put", (id, e, prev) => this.add(id, e, prev));
    cache.on("delete", (id, prev) => this.remove(id, prev));
    // A (re)list adds what it found in id order: put those in end order once it is done.
    cache.on("synced", () => this.sortFinished());
  }

  private sortFinished(): void {
    const ended: Job[] = [];
    for (const id of this.finished) {
      const job = this.cache.entries.get(id)?.value;
      if (job) ended.push(job);
    }
    ended.sort(byEnd);
    this.finished.clear();
    for (const j of ended) this.finished.add(j.id);
  }

  private add(id: string, e: Entry<Job>, prev: Entry<Job> | undefined): void {
    if (!isFinal(e.value.state)) this.finished.delete(id);
    else this.finished.add(id); // a Set keeps the first insertion's place
    if (prev) {
      this.uncount(prev.value);
    } else {
      const last = this.ids.at(-1);
      if (last !== undefined && compareIds(last, id) > 0) this.sorted = false;
      this.ids.push(id);
    }
    this.count(e.value);
  }

  private remove(id: string, prev: Entry<Job>): void {
    this.finished.delete(id);
    this.uncount(prev.value);
    this.removed++;
  }

  private count(job: Job): void {
    this.counts.set(job.state, (this.counts.get(job.state) ?? 0) + 1);
    if (isActive(job.state) && job.worker) {
      let set = this.active.get(job.worker);
      if (!set) this.active.set(job.worker, (set = new Set()));
      set.add(job.id);
    }
  }

  private uncount(job: Job): void {
    this.counts.set(job.state, (this.counts.get(job.state) ?? 1) - 1);
    if (isActive(job.state) && job.worker) {
      const set = this.active.get(job.worker);
      set?.delete(job.id);
      if (set?.size === 0) this.active.delete(job.worker);
    }
  }

  /** Job ids in id order (compacted lazily after deletions). */
  orderedIds(): string[] {
    if (this.removed > 0) {
      this.ids = this.ids.filter((id) => this.cache.entries.has(id));
      this.removed = 0;
    }
    if (!this.sorted) {
      this.ids.sort(compareIds);
      this.sorted = true;
    }
    return this.ids;
  }

  /** Index of the first id greater than `after` in orderedIds(). */
  firstAfter(after: string): number {
    const ids = this.orderedIds();
    let lo = 0;
    let hi = ids.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareIds(ids[mid] as string, after) <= 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
