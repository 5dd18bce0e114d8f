/**
 * How many job records a replica can hold, and the check made before it loads
 * them. Every replica keeps a copy of every job in etcd in memory (pending ones
 * compact, about 540 B of RSS each in a fresh replica over a million); one
 * started with a smaller heap than the set needs (`--max-old-space-size`, a
 * container's memory limit) used to run out of memory half-way through the
 * load, after tens of seconds, and start again only to fail the same way.
 * Counting the records first (one count-only read) lets it say so at once.
 */
import { getHeapStatistics } from "node:v8";

/**
 * Heap budgeted per job record loaded. Measured: a replica with a 450 MB heap
 * limit loaded a million pending jobs (about 400 B of heap each, kept
 * encoded); a finished job is kept decoded, about 2.5 KB, and retention keeps
 * at most 100,000 of them by default. 1 KiB covers a set of mostly pending jobs
 * with the finished ones retention keeps.
 */
export const LOADED_BYTES_PER_JOB = 1024;
/** Share of the heap limit the job records may take (the rest: streams, buffers, the load's garbage). */
const HEAP_SHARE = 0.75;

/** The job records a replica with this heap limit can load. */
export function holdableJobs(heapLimit = getHeapStatistics().heap_size_limit): number {
  return Math.max(1000, Math.floor((heapLimit * HEAP_SHARE) / LOADED_BYTES_PER_JOB));
}

/** etcd holds more job records than this replica can load. */
export class OverCapacity extends Error {
  constructor(
    readonly records: number,
    readonly holdable: number,
    readonly heapLimit = getHeapStatistics().heap_size_limit,
  ) {
    const mib = (n: number) => Math.round(n / 2 ** 20);
    const needed = mib((records * LOADED_BYTES_PER_JOB) / HEAP_SHARE);
    super(
      `this replica cannot load the cluster: etcd holds ${records} job records and a heap limit of ${mib(heapLimit)} MiB holds about ${holdable}. ` +
        `It serves only reads of jobs (GetJob, ListJobs by id) until restarted with a larger heap (NODE_OPTIONS=--max-old-space-size=${needed} or more), or until enough jobs ended and retention removed them (it counts again every 30 s); other replicas are not affected`,
    );
  }
}
