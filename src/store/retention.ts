/**
 * Retention of finished jobs: records past an age or beyond a count are
 * deleted, oldest first, in batches. A job's own retention_seconds can keep
 * it longer. Unfinished jobs are never touched.
 */
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Job } from "../../gen/crms/v1/job_pb.js";
import { WorkerState } from "../../gen/crms/v1/worker_pb.js";
import { compareIds } from "../ids.js";
import type { Logger } from "../log.js";
import { isFinal } from "../rpc/states.js";
import { byEnd, endMs } from "./job-index.js";
import type { Store } from "./store.js";

export interface RetentionOptions {
  /** Seconds a finished job is kept (default 24 h). 0 disables the age rule. */
  maxAgeSeconds: number;
  /** Finished jobs kept at most (default 100,000). 0 disables the count rule. */
  maxCount: number;
  /** Overrides maxCount, where 0 keeps no finished job (`crms admin recover --keep-finished`). */
  keepFinished?: number;
  /** Seconds a DOWN worker's record is kept (default 7 days). 0 disables the age rule. */
  downWorkerAgeSeconds?: number;
  /** DOWN worker records kept at most, newest down first (default 1,000). 0 disables the count rule. */
  downWorkerCount?: number;
  /**
   * When set (a history database is configured), jobs are deleted only once
   * this returns their ids: the history holds them. It throws while the
   * history is unreachable, and retention then deletes nothing.
   */
  confirm?: (jobs: Job[]) => Promise<Set<string>>;
}

/** Retention is holding back: the history could not confirm the jobs it would delete. */
export class HistoryWait extends Error {}

/** Default age and count of kept DOWN worker records. */
export const DEFAULT_DOWN_WORKER_RETENTION = { ageSeconds: 7 * 24 * 3600, count: 1000 };

/** Names of DOWN worker records to delete now: past the age, or beyond the count (oldest down first). */
export function expiredDownWorkers(
  store: Store,
  options: RetentionOptions,
  nowMs: number,
): { name: string; mod: number }[] {
  const age = options.downWorkerAgeSeconds ?? DEFAULT_DOWN_WORKER_RETENTION.ageSeconds;
  const count = options.downWorkerCount ?? DEFAULT_DOWN_WORKER_RETENTION.count;
  const down: { name: string; mod: number; at: number }[] = [];
  for (const [name, e] of store.workers.entries) {
    if (e.value.state !== WorkerState.DOWN) continue;
    down.push({ name, mod: e.mod, at: e.value.downTime ? timestampMs(e.value.downTime) : 0 });
  }
  down.sort((a, b) => a.at - b.at || (a.name < b.name ? -1 : 1));
  const excess = count > 0 ? down.length - count : 0;
  return down.filter((d, i) => i < excess || (age > 0 && d.at + age * 1000 <= nowMs));
}

/** Deletes expired DOWN worker records (each only if unchanged); returns how many were deleted. */
export async function runWorkerRetention(store: Store, options: RetentionOptions, now = Date.now()): Promise<number> {
  const results = await Promise.allSettled(
    expiredDownWorkers(store, options, now).map((d) => store.deleteWorker(d.name, d.mod)),
  );
  return results.filter((r) => r.status === "fulfilled" && r.value).length;
}

const BATCH = 128;
/** Delete batches in flight at once (the store groups them into Txns). */
const IN_FLIGHT = 4;
/** After a run that deleted at least a batch, the next runs this soon, not a whole interval later. */
const BACKLOG_RERUN_MS = 1000;

/**
 * Ids of finished jobs to delete now, from `finished` (finished jobs, oldest
 * end first; `count` of them in all). Stops at the first job that neither
 * rule removes, so a run costs what it deletes, not what is kept.
 */
function selectExpired(finished: Iterable<Job>, count: number, options: RetentionOptions, nowMs: number): string[] {
  const heldByOwnRetention = (j: Job) =>
    (j.spec?.retentionSeconds ?? 0) > 0 && endMs(j) + (j.spec?.retentionSeconds ?? 0) * 1000 > nowMs;
  const out: string[] = [];
  const keep = options.keepFinished ?? (options.maxCount > 0 ? options.maxCount : count);
  let excess = count - keep;
  for (const j of finished) {
    const tooOld = options.maxAgeSeconds > 0 && endMs(j) + options.maxAgeSeconds * 1000 <= nowMs;
    if (!tooOld && excess <= 0) break;
    if (heldByOwnRetention(j)) continue;
    out.push(j.id);
    excess--;
  }
  return out;
}

/** Ids of finished jobs to delete now, oldest first, from jobs in any order. Pure: exported for tests. */
export function expiredJobs(jobs: Iterable<Job>, options: RetentionOptions, nowMs: number): string[] {
  const finished: Job[] = [];
  for (const j of jobs) if (isFinal(j.state)) finished.push(j);
  finished.sort(byEnd);
  return selectExpired(finished, finished.length, options, nowMs);
}

/** Deletes expired finished jobs, IN_FLIGHT batches at a time; returns how many were deleted. */
export async function runRetention(store: Store, options: RetentionOptions, now = Date.now()): Promise<number> {
  const { finished } = store.jobIndex;
  function* inEndOrder(): Generator<Job> {
    for (const id of finished) {
      const job = store.job(id);
      if (job) yield job;
    }
  }
  let ids = selectExpired(inEndOrder(), finished.size, options, now);
  if (options.confirm && ids.length) {
    const jobs = ids.map((id) => store.job(id)).filter((j): j is Job => !!j);
    let held: Set<string>;
    try {
      held = await options.confirm(jobs);
    } catch (err) {
      throw new HistoryWait(`history database unavailable: ${(err as Error).message || String(err)}`);
    }
    ids = ids.filter((id) => held.has(id));
  }
  let deleted = 0;
  let next = 0;
  const lane = async () => {
    for (let i = next; i < ids.length; i = next) {
      next += BATCH;
      const results = await Promise.allSettled(
        ids.slice(i, i + BATCH).map((id) =>
          store.deleteJob(id, (job) => {
            if (!isFinal(job.state)) throw new Error("not finished");
          }),
        ),
      );
      deleted += results.filter((r) => r.status === "fulfilled").length;
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
  if (deleted > 0) {
    const newest = ids.reduce((a, b) => (compareIds(a, b) >= 0 ? a : b));
    await store.noteExpired(newest).catch(() => undefined);
  }
  return deleted;
}

/** Runs retention every interval while started (on the leader). */
export class Retention {
  private timer?: NodeJS.Timeout;
  private started = false;
  private current?: Promise<number>;
  runs = 0;
  deleted = 0;
  /** Why retention holds back now ("" when it does not): the history database is down. */
  waiting = "";
  /** Since when it holds back (ms since epoch; 0 when it does not). */
  waitingSince = 0;

  constructor(
    private readonly store: Store,
    readonly options: RetentionOptions,
    private readonly intervalMs: number,
    private readonly log?: Logger,
  ) {}

  start(): void {
    if (this.started || this.intervalMs <= 0) return;
    this.started = true;
    this.schedule(this.intervalMs);
  }

  stop(): void {
    this.started = false;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** The next run after `ms`; one that deleted a batch or more is followed at once (a backlog). */
  private schedule(ms: number): void {
    this.timer = setTimeout(async () => {
      let n = 0;
      // A tick while a run is in flight (a runNow() caller's) skips it and waits an interval.
      if (!this.current) n = await this.runNow().catch(() => 0);
      if (this.started) this.schedule(n >= BATCH ? Math.min(BACKLOG_RERUN_MS, this.intervalMs) : this.intervalMs);
    }, ms);
  }

  /** Runs retention now; if a run is in flight, waits for it and then runs again, so nothing expired is left. */
  async runNow(): Promise<number> {
    while (this.current) await this.current.catch(() => undefined);
    this.current = this.runOnce();
    try {
      return await this.current;
    } finally {
      this.current = undefined;
    }
  }

  private async runOnce(): Promise<number> {
    try {
      const n = await runRetention(this.store, this.options);
      const workers = await runWorkerRetention(this.store, this.options);
      if (workers) this.log?.info("retention deleted down worker records", { deleted: workers });
      if (this.waiting) this.log?.info("retention resumes: the history confirmed the jobs it deletes", { deleted: n });
      this.waiting = "";
      this.waitingSince = 0;
      this.runs++;
      this.deleted += n;
      if (n) this.log?.info("retention deleted finished jobs", { deleted: n });
      return n;
    } catch (err) {
      if (err instanceof HistoryWait) {
        if (!this.waiting)
          this.log?.info("retention waits: no finished job is deleted until the history has it", {
            error: err.message,
          });
        this.waiting = err.message;
        this.waitingSince ||= Date.now();
        this.runs++;
        return 0;
      }
      this.log?.info("retention failed", { error: String(err) });
      throw err;
    }
  }
}
