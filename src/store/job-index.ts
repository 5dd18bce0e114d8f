/**
 * Indexes over the job cache, kept current from its events: ids in order,
 * counts by state, the active (ASSIGNED or RUNNING) jobs of each worker, and
 * the finished jobs in the order they finished (for retention).
 */
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Job, JobState } from "../../gen/crms/v1/job_pb.js";
import { compareIds } from "../ids.js";
import { isActive, isFinal } from "../rpc/states.js";
import type { Entry, PrefixCache } from "./cache.js";

/** When a job ended (ms since the epoch); 0 if it has no end time. */
export const endMs = (j: Job): number => (j.endTime ? timestampMs(j.endTime) : 0);

/** Orders jobs by end time, then by id: the order retention deletes them in. */
export const byEnd = (a: Job, b: Job): number => endMs(a) - endMs(b) || compareIds(a.id, b.id);

export class JobIndex {
  private ids: string[] = [];
  private sorted = true;
  private removed = 0;
  readonly counts = new Map<JobState, number>();
  /** How many jobs are tasks of an array (ListJobs leaves them out unless asked), by state. */
  readonly taskCounts = new Map<JobState, number>();
  tasks = 0;
  /** How many array parents there are (their listed state is computed from their tasks). */
  arrays = 0;
  /** Worker name -> ids of its ASSIGNED or RUNNING jobs. */
  readonly active = new Map<string, Set<string>>();
  /**
   * Ids of finished jobs, oldest end first: sorted by end time when the index
   * is built, then in the order this replica sees jobs finish (so oldest
   * first up to clock skew between replicas and report batching).
   */
  readonly finished = new Set<string>();

  /** Ids in (name, id) order, merged lazily with `namesAdded` (see byName()). */
  private names: string[] = [];
  private namesAdded: string[] = [];
  private namesRemoved = 0;

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
      this.namesAdded.push(id);
    }
    this.count(e.value);
  }

  private remove(id: string, prev: Entry<Job>): void {
    this.finished.delete(id);
    this.uncount(prev.value);
    this.removed++;
    this.namesRemoved++;
  }

  private count(job: Job): void {
    this.counts.set(job.state, (this.counts.get(job.state) ?? 0) + 1);
    if (job.arrayParent) {
      this.tasks++;
      this.taskCounts.set(job.state, (this.taskCounts.get(job.state) ?? 0) + 1);
    }
    if (job.spec?.array) this.arrays++;
    if (isActive(job.state) && job.worker) {
      let set = this.active.get(job.worker);
      if (!set) this.active.set(job.worker, (set = new Set()));
      set.add(job.id);
    }
  }

  private uncount(job: Job): void {
    this.counts.set(job.state, (this.counts.get(job.state) ?? 1) - 1);
    if (job.arrayParent) {
      this.tasks--;
      this.taskCounts.set(job.state, (this.taskCounts.get(job.state) ?? 1) - 1);
    }
    if (job.spec?.array) this.arrays--;
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

  /**
   * Job ids in (name, id) order. Names never change, so only the jobs added
   * since the last call are sorted and merged in: a call costs a merge, not a
   * sort of every job.
   */
  byName(): string[] {
    const entries = this.cache.entries;
    const name = (id: string) => entries.get(id)?.value.spec?.name ?? "";
    const cmp = (a: string, b: string) => {
      const na = name(a);
      const nb = name(b);
      return na < nb ? -1 : na > nb ? 1 : compareIds(a, b);
    };
    if (this.namesRemoved > 0) {
      this.names = this.names.filter((id) => entries.has(id));
      this.namesRemoved = 0;
    }
    if (this.namesAdded.length > 0) {
      const added = this.namesAdded.filter((id) => entries.has(id)).sort(cmp);
      this.namesAdded = [];
      const merged: string[] = new Array(this.names.length + added.length);
      let i = 0;
      let j = 0;
      let k = 0;
      while (i < this.names.length && j < added.length)
        merged[k++] =
          cmp(this.names[i] as string, added[j] as string) <= 0 ? (this.names[i++] as string) : (added[j++] as string);
      while (i < this.names.length) merged[k++] = this.names[i++] as string;
      while (j < added.length) merged[k++] = added[j++] as string;
      this.names = merged;
    }
    return this.names;
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
