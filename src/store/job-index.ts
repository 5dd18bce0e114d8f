/**
 * Indexes over the job cache, kept current from its events: ids in order,
 * counts by state, and the active (ASSIGNED or RUNNING) jobs of each worker.
 */
import type { Job, JobState } from "../../gen/crms/v1/job_pb.js";
import { isActive } from "../rpc/states.js";
import type { Entry, PrefixCache } from "./cache.js";
import { compareIds } from "./keys.js";

export class JobIndex {
  private ids: string[] = [];
  private sorted = true;
  private removed = 0;
  readonly counts = new Map<JobState, number>();
  /** Worker name -> ids of its ASSIGNED or RUNNING jobs. */
  readonly active = new Map<string, Set<string>>();

  constructor(private readonly cache: PrefixCache<Job>) {
    for (const [id, e] of cache.entries) this.add(id, e, undefined);
    cache.on("put", (id, e, prev) => this.add(id, e, prev));
    cache.on("delete", (id, prev) => this.remove(id, prev));
  }

  private add(id: string, e: Entry<Job>, prev: Entry<Job> | undefined): void {
    if (prev) {
      this.uncount(prev.value);
    } else {
      const last = this.ids.at(-1);
      if (last !== undefined && compareIds(last, id) > 0) this.sorted = false;
      this.ids.push(id);
    }
    this.count(e.value);
  }

  private remove(_id: string, prev: Entry<Job>): void {
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
