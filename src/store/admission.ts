/**
 * Admission control: a cap on unfinished jobs (array tasks included, those
 * not created yet too), so a backlog is refused with RESOURCE_EXHAUSTED long
 * before the replica's memory runs out, as Slurm's MaxJobCount and HTCondor's
 * MAX_JOBS_SUBMITTED do. The count follows the job cache's events; submits in
 * flight on this replica are reserved until their record shows up, so
 * concurrent submits to one replica cannot pass the cap together. Replicas do
 * not share reservations: with several replicas taking submits at once the
 * count may pass the cap by the submits in flight on the others.
 */
import { getHeapStatistics } from "node:v8";
import type { Job } from "../../gen/crms/v1/job_pb.js";
import { CrmsError } from "../errors.js";
import { OWNER_LABEL } from "../rpc/names.js";
import { arraySize, isArrayParent, isFinal } from "../rpc/states.js";
import type { Entry, PrefixCache } from "./cache.js";

/** Replica memory budgeted per unfinished job when the cap is derived from the heap limit. */
export const BYTES_PER_JOB_BUDGET = 4096;
/** Share of the heap limit the derived cap leaves to unfinished jobs (the rest: finished ones, streams, buffers). */
const HEAP_SHARE = 0.5;

/** The default cap: half of V8's heap limit at BYTES_PER_JOB_BUDGET bytes a job, in whole thousands. */
export function defaultMaxJobs(heapLimit = getHeapStatistics().heap_size_limit): number {
  return Math.max(1000, Math.floor((heapLimit * HEAP_SHARE) / BYTES_PER_JOB_BUDGET / 1000) * 1000);
}

/** How many unfinished jobs a record stands for: 0 once final; an array parent stands for its tasks not yet created. */
export function unfinishedWeight(job: Job): number {
  if (isFinal(job.state)) return 0;
  if (isArrayParent(job)) return Math.max(0, arraySize(job) - job.arrayCreated);
  return 1;
}

export const ownerOf = (job: Job): string => job.spec?.labels[OWNER_LABEL] ?? "";

export interface AdmissionLimits {
  /** Unfinished jobs allowed in the cluster (0: no cap). */
  maxJobs: number;
  /** Unfinished jobs allowed per owner (0: no cap). Jobs without an owner (authentication off) count as one owner, "". */
  maxJobsPerUser: number;
}

export class Admission {
  /** Unfinished jobs, array tasks included (created or not). */
  count = 0;
  private readonly byOwner = new Map<string, number>();
  private reserved = 0;
  private readonly reservedByOwner = new Map<string, number>();
  /** Submits refused since start (counted by the caller, which may still find the job a retry asks for). */
  refused = 0;

  constructor(
    cache: PrefixCache<Job>,
    readonly limits: AdmissionLimits,
  ) {
    for (const e of cache.entries.values()) this.apply(e.value, 1);
    cache.on("put", (_id, e: Entry<Job>, prev: Entry<Job> | undefined) => {
      if (prev) this.apply(prev.value, -1);
      this.apply(e.value, 1);
    });
    // A relist reports what changed as puts and deletes too, so these two keep the count.
    cache.on("delete", (_id, prev: Entry<Job>) => this.apply(prev.value, -1));
  }

  private apply(job: Job, sign: 1 | -1): void {
    const w = unfinishedWeight(job);
    if (w === 0) return;
    this.count += sign * w;
    const owner = ownerOf(job);
    const n = (this.byOwner.get(owner) ?? 0) + sign * w;
    if (n === 0) this.byOwner.delete(owner);
    else this.byOwner.set(owner, n);
  }

  /** Unfinished jobs of one owner. */
  countOf(owner: string): number {
    return this.byOwner.get(owner) ?? 0;
  }

  /**
   * Reserves room for `n` new unfinished jobs of `owner` or throws
   * RESOURCE_EXHAUSTED naming the limit and the current count. Call the
   * returned function once the submit has finished (its record is then in
   * the cache, or it failed).
   */
  admit(n: number, owner: string, what: string): () => void {
    const { maxJobs, maxJobsPerUser } = this.limits;
    const now = this.count + this.reserved;
    if (maxJobs > 0 && now + n > maxJobs) {
      throw new CrmsError(
        "RESOURCE_EXHAUSTED",
        `${what} refused: the cluster holds ${now} unfinished jobs (array tasks included) and its limit is ${maxJobs} (--max-jobs); ${n === 1 ? "one more" : `${n} more`} would pass it. Wait for jobs to finish, or kill some.`,
      );
    }
    const mine = this.countOf(owner) + (this.reservedByOwner.get(owner) ?? 0);
    if (maxJobsPerUser > 0 && mine + n > maxJobsPerUser) {
      throw new CrmsError(
        "RESOURCE_EXHAUSTED",
        `${what} refused: ${owner || "the anonymous user"} holds ${mine} unfinished jobs (array tasks included) and the limit per user is ${maxJobsPerUser} (--max-jobs-per-user); ${n === 1 ? "one more" : `${n} more`} would pass it.`,
      );
    }
    this.reserved += n;
    this.reservedByOwner.set(owner, (this.reservedByOwner.get(owner) ?? 0) + n);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.reserved -= n;
      const left = (this.reservedByOwner.get(owner) ?? 0) - n;
      if (left <= 0) this.reservedByOwner.delete(owner);
      else this.reservedByOwner.set(owner, left);
    };
  }
}
