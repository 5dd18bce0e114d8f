/**
 * Retention of finished jobs: records past an age or beyond a count are
 * deleted, oldest first, in batches. A job's own retention_seconds can keep
 * it longer. Unfinished jobs are never touched.
 */
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Job } from "../../gen/crms/v1/job_pb.js";
import { isFinal } from "../rpc/states.js";
import type { Store } from "./store.js";

export interface RetentionOptions {
  /** Seconds a finished job is kept (default 24 h). 0 disables the age rule. */
  maxAgeSeconds: number;
  /** Finished jobs kept at most (default 100,000). 0 disables the count rule. */
  maxCount: number;
  /** Overrides maxCount, where 0 keeps no finished job (`crms admin recover --keep-finished`). */
  keepFinished?: number;
}

export const DEFAULT_RETENTION: RetentionOptions = { maxAgeSeconds: 24 * 3600, maxCount: 100_000 };

const BATCH = 128;

/** Ids of finished jobs to delete now, oldest first. Pure: exported for tests. */
export function expiredJobs(jobs: Iterable<Job>, options: RetentionOptions, nowMs: number): string[] {
  const finished: Job[] = [];
  for (const j of jobs) if (isFinal(j.state)) finished.push(j);
  const ended = (j: Job) => (j.endTime ? timestampMs(j.endTime) : 0);
  const heldByOwnRetention = (j: Job) =>
    (j.spec?.retentionSeconds ?? 0) > 0 && ended(j) + (j.spec?.retentionSeconds ?? 0) * 1000 > nowMs;
  finished.sort((a, b) => ended(a) - ended(b) || a.id.length - b.id.length || (a.id < b.id ? -1 : 1));
  const out: string[] = [];
  const keep = options.keepFinished ?? (options.maxCount > 0 ? options.maxCount : finished.length);
  let excess = finished.length - keep;
  for (const j of finished) {
    if (heldByOwnRetention(j)) continue;
    const tooOld = options.maxAgeSeconds > 0 && ended(j) + options.maxAgeSeconds * 1000 <= nowMs;
    if (tooOld || excess > 0) {
      out.push(j.id);
      excess--;
    }
  }
  return out;
}

/** Deletes expired finished jobs; returns how many were deleted. */
export async function runRetention(store: Store, options: RetentionOptions, now = Date.now()): Promise<number> {
  const ids = expiredJobs(
    [...store.jobs.entries.values()].map((e) => e.value),
    options,
    now,
  );
  let deleted = 0;
  for (let i = 0; i < ids.length; i += BATCH) {
    const results = await Promise.allSettled(
      ids.slice(i, i + BATCH).map((id) =>
        store.deleteJob(id, (job) => {
          if (!isFinal(job.state)) throw new Error("not finished");
        }),
      ),
    );
    deleted += results.filter((r) => r.status === "fulfilled").length;
  }
  if (deleted > 0) await store.noteExpired(ids.at(-1) as string).catch(() => undefined);
  return deleted;
}

/** Runs retention every interval while started (on the leader). */
export class Retention {
  private timer?: NodeJS.Timeout;
  private current?: Promise<number>;
  runs = 0;
  deleted = 0;

  constructor(
    private readonly store: Store,
    readonly options: RetentionOptions,
    private readonly intervalMs: number,
    private readonly log?: (msg: string, fields?: Record<string, unknown>) => void,
  ) {}

  start(): void {
    if (this.timer || this.intervalMs <= 0) return;
    // The timer skips a tick while a run is in flight; runNow() callers wait for it instead.
    this.timer = setInterval(() => {
      if (!this.current) void this.runNow().catch(() => undefined);
    }, this.intervalMs);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
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
      this.runs++;
      this.deleted += n;
      if (n) this.log?.("retention deleted finished jobs", { deleted: n });
      return n;
    } catch (err) {
      this.log?.("retention failed", { error: String(err) });
      throw err;
    }
  }
}
