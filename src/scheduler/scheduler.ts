/**
 * The scheduler: runs only in the elected leader. It places pending jobs on
 * workers with free slots and marks the jobs of workers gone past their grace
 * period LOST. Every write carries the leader's fencing compare.
 */

import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type Job, JobState } from "../../gen/crms/v1/job_pb.js";
import { type Worker, WorkerState } from "../../gen/crms/v1/worker_pb.js";
import { Emitter, type Events } from "../events.js";
import { type Logger, silentLogger } from "../log.js";
import { isArrayParent, isFinal } from "../rpc/states.js";
import type { Compare } from "../store/batcher.js";
import type { Entry } from "../store/cache.js";
import type { Election } from "../store/election.js";
import type { Store } from "../store/store.js";
import { type ArrayIndex, arrayIndex, materializeBatch } from "./arrays.js";
import { evaluate } from "./dependencies.js";
import { FairShare } from "./fair-share.js";
import { transition } from "./job-machine.js";
import { PendingQueue } from "./pending-queue.js";
import { type Candidate, place, type WorkerSlots } from "./placement.js";

/** The worker a job must run on: RunJob's choice, else the spec's target, else "" (any). */
export function targetOf(job: Job): string {
  return job.runOn || job.spec?.targetWorker || "";
}

/**
 * How long a worker's fencing may take past the grace (SIGTERM, then SIGKILL
 * after at most 10 s, the worker's kill bound), plus 1 s for the disconnect
 * time, which the worker record keeps in whole seconds.
 */
export const FENCE_KILL_BOUND_MS = 11_000;

export interface SchedulerOptions {
  /** Seconds a worker may stay detached before its jobs are LOST (default 10). */
  graceSeconds?: number;
  /** Most jobs looked at in one pass. */
  passSize?: number;
  /** Events at info (a worker lost), failures at error (a write that failed); default: none. */
  log?: Logger;
  /** Half-life of users' decayed usage in fair share, seconds (default 1 day). */
  fairShareHalfLifeSeconds?: number;
}

/** Counters for benchmarks and /metrics. */
export interface SchedulerStats {
  passes: number;
  placed: number;
  lost: number;
  conflicts: number;
}

/** What the scheduler announces: `placed` with the seconds from submit to assignment of each job it placed. */
export interface SchedulerEvents {
  placed: [seconds: number];
}

export class Scheduler {
  private readonly pending = new PendingQueue();
  private readonly inflight = new Map<string, number>();
  private readonly goneSince = new Map<string, number>();
  /** The last record of workers whose record vanished with their replica's lease (for their DOWN record). */
  private readonly lastKnown = new Map<string, Worker>();
  private running = false;
  private scheduled = false;
  private again = false;
  private timer?: NodeJS.Timeout;
  private readonly graceMs: number;
  private readonly arrays: ArrayIndex;
  /** Array parents whose tasks are being created now. */
  private readonly materializing = new Set<string>();
  private readonly arrayAgain = new Set<string>();
  readonly stats: SchedulerStats = { passes: 0, placed: 0, lost: 0, conflicts: 0 };
  private readonly emitter = new Emitter<SchedulerEvents>();
  readonly events: Events<SchedulerEvents> = this.emitter;

  private readonly log: Logger;
  /** Queues' and users' loads, shares and decayed usage (kept on every replica). */
  readonly fairShare: FairShare;

  constructor(
    private readonly store: Store,
    private readonly election: Election,
    private readonly options: SchedulerOptions = {},
  ) {
    this.log = options.log ?? silentLogger;
    this.graceMs = (options.graceSeconds ?? 10) * 1000;
    this.arrays = arrayIndex(store);
    this.fairShare = new FairShare(store, options.fairShareHalfLifeSeconds);
    store.jobs.on("put", (id, e, prev) => this.onJob(id, e, prev));
    store.jobs.on("delete", (id) => this.pending.delete(id));
    store.workers.on("put", (name, e) => this.onWorker(name, e.value));
    store.workers.on("delete", (name, prev) => this.onWorkerGone(name, prev.value));
    store.health.on("restored", () => {
      this.freshGrace();
      this.kick();
    });
    election.on("elected", () => this.start());
    election.on("deposed", () => this.stop());
  }

  private onJob(id: string, e: Entry<Job>, prev: Entry<Job> | undefined): void {
    const job = e.value;
    if (isFinal(job.state) && prev && !isFinal(prev.value.state)) {
      // Dependants may be ready (or unmeetable) now; an array may have finished.
      if (job.arrayParent) this.arrayWork(job.arrayParent);
      this.kick();
    }
    if (isArrayParent(job)) {
      this.arrayWork(id);
      return;
    }
    if (job.state === JobState.PENDING) {
      this.pending.add(id, job.spec?.priority ?? 0);
      this.kick();
    } else {
      this.pending.delete(id);
      // A slot was freed.
      if (prev && (prev.value.state === JobState.ASSIGNED || prev.value.state === JobState.RUNNING)) this.kick();
    }
  }

  private onWorker(name: string, w: Worker): void {
    this.lastKnown.delete(name);
    if (w.state === WorkerState.DOWN) {
      this.goneSince.delete(name);
      return;
    }
    if (w.state === WorkerState.DISCONNECTED) {
      if (!this.goneSince.has(name)) {
        const at = w.disconnectTime ? Number(w.disconnectTime.seconds) * 1000 : Date.now();
        this.goneSince.set(name, at);
      }
    } else {
      this.goneSince.delete(name);
      this.kick();
    }
  }

  private onWorkerGone(name: string, prev: Worker): void {
    // A DOWN record removed (ForgetWorker, retention) is gone for good; any other
    // vanished (its replica's lease expired): it goes DOWN after the grace.
    if (prev.state === WorkerState.DOWN) return;
    this.lastKnown.set(name, prev);
    if (!this.goneSince.has(name)) this.goneSince.set(name, Date.now());
  }

  /** Starts scheduling (on election). */
  start(): void {
    if (this.running) return;
    this.running = true;
    const now = Date.now();
    for (const [id, e] of this.store.jobs.entries) {
      // Already queued from the cache's events (kept while not leading): no need to decode it again.
      if (this.pending.has(id)) continue;
      if (isArrayParent(e.value)) this.arrayWork(id);
      else if (e.value.state === JobState.PENDING) this.pending.add(id, e.value.spec?.priority ?? 0);
    }
    for (const name of this.store.jobIndex.active.keys()) {
      const w = this.store.worker(name);
      if (!w) this.goneSince.set(name, now);
      else this.onWorker(name, w);
    }
    // Disconnected workers with nothing running go DOWN too once their grace passed.
    for (const [name, e] of this.store.workers.entries) {
      if (e.value.state === WorkerState.DISCONNECTED) this.onWorker(name, e.value);
    }
    this.freshGrace();
    this.timer = setInterval(() => void this.reapLost(), 500);
    this.kick();
  }

  /**
   * Gives every worker not seen a full grace from now. After etcd or the
   * leadership comes back nobody can tell a gone worker from one whose record
   * could not be written meanwhile (as Nomad's failover heartbeat TTL).
   */
  private freshGrace(): void {
    const now = Date.now();
    for (const name of this.goneSince.keys()) this.goneSince.set(name, now);
  }

  stop(): void {
    this.running = false;
    clearInterval(this.timer);
  }

  /** Requests a scheduling pass soon (coalesced). */
  kick(): void {
    if (!this.running) return;
    if (this.scheduled) {
      this.again = true;
      return;
    }
    this.scheduled = true;
    setImmediate(() => void this.pass());
  }

  private workerSlots(): WorkerSlots[] {
    const out: WorkerSlots[] = [];
    for (const [name, e] of this.store.workers.entries) {
      const w = e.value;
      if (w.state !== WorkerState.UP) continue;
      const used = (this.store.jobIndex.active.get(name)?.size ?? 0) + (this.inflight.get(name) ?? 0);
      out.push({ name, free: Math.max(0, w.slots - used), labels: w.labels });
    }
    return out;
  }

  private async pass(): Promise<void> {
    try {
      this.again = false;
      if (!this.running || this.pending.size === 0) return;
      // Every write would be refused: wait for etcd's return (it kicks) instead of spinning.
      if (!this.store.health.reachable) return;
      this.stats.passes++;
      const workers = this.workerSlots();
      const fence = this.election.fence();
      const writes: Promise<unknown>[] = [];
      // Jobs waiting for dependencies or for their array's running limit are passed
      // over without using the pass's budget (their reason is computed when read).
      const arrayRoom = new Map<string, number>();
      const eligible = (id: string): boolean => {
        const job = this.store.job(id);
        if (!job || job.state !== JobState.PENDING) return false;
        if (job.spec?.after.length) {
          const v = evaluate(job, (dep) => this.store.job(dep));
          if (v.kind === "fail") {
            this.pending.delete(id);
            writes.push(
              this.store
                .updateJob(id, (j) => transition(j, { type: "unmet", reason: v.reason, now: new Date() }), fence)
                .catch((err) => this.log.error("failing a job failed", { job: id, error: String(err) })),
            );
          }
          if (v.kind !== "ready") return false;
        }
        if (job.arrayParent) {
          const room = arrayRoom.get(job.arrayParent) ?? this.arrays.room(job.arrayParent, this.store);
          if (room <= 0) return false;
          arrayRoom.set(job.arrayParent, room - 1);
        }
        return true;
      };
      const passSize = this.options.passSize ?? 4096;
      // Look at as many jobs as the free slots could take (with room for jobs that fit no
      // free worker), not at a fixed share of the backlog: a pass costs the same with
      // 1,000 or 1,000,000 pending.
      let free = 0;
      for (const w of workers) free += w.free;
      const limit = Math.min(passSize, Math.max(1024, 64 * free));
      const ids = this.pending.head(limit, eligible, passSize * 25);
      const candidates: Candidate[] = [];
      for (const id of ids) {
        const job = this.store.job(id);
        if (!job) continue;
        candidates.push({ id, targetWorker: targetOf(job), constraints: job.spec?.constraints ?? {} });
      }
      const { placed, unplaced } = place(candidates, workers);
      for (const p of placed) {
        this.pending.delete(p.jobId);
        this.inflight.set(p.worker, (this.inflight.get(p.worker) ?? 0) + 1);
        writes.push(
          this.store
            .updateJob(
              p.jobId,
              // RunJob may have named another worker since the pass looked: then leave it pending.
              (job) =>
                targetOf(job) && targetOf(job) !== p.worker
                  ? undefined
                  : transition(job, { type: "assign", worker: p.worker, now: new Date() }),
              fence,
            )
            .then((job) => {
              if (job.state === JobState.PENDING) this.pending.add(job.id, job.spec?.priority ?? 0);
              if (job.state === JobState.ASSIGNED && job.worker === p.worker) {
                this.stats.placed++;
                if (job.submitTime && this.emitter.has("placed")) {
                  const seconds = Date.now() / 1000 - Number(job.submitTime.seconds) - job.submitTime.nanos / 1e9;
                  this.emitter.emit("placed", seconds);
                }
              }
            })
            .catch((err) => {
              this.stats.conflicts++;
              // etcd may be down or full: look again shortly even if nothing else happens.
              setTimeout(() => this.kick(), 1000).unref();
              const job = this.store.job(p.jobId);
              if (job?.state === JobState.PENDING) this.pending.add(p.jobId, job.spec?.priority ?? 0);
              this.log.error("assignment failed", { job: p.jobId, worker: p.worker, error: String(err) });
            })
            .finally(() => {
              const n = (this.inflight.get(p.worker) ?? 1) - 1;
              if (n <= 0) this.inflight.delete(p.worker);
              else this.inflight.set(p.worker, n);
            }),
        );
      }
      for (const u of unplaced) {
        writes.push(
          this.store
            .updateJob(u.jobId, (job) => transition(job, { type: "reason", reason: u.reason }), fence)
            .catch(() => undefined),
        );
      }
      await Promise.all(writes);
      if (placed.length > 0) this.again = true;
    } finally {
      this.scheduled = false;
      if (this.again) this.kick();
    }
  }

  /**
   * Creates the next task records of an array parent (in bounded batches) and
   * gives it its final state once every task ended. Runs one loop per parent.
   */
  private arrayWork(parentId: string): void {
    if (!this.running) return;
    if (this.materializing.has(parentId)) {
      this.arrayAgain.add(parentId);
      return;
    }
    this.materializing.add(parentId);
    void (async () => {
      try {
        while (this.running && (await materializeBatch(this.store, parentId, this.election.fence()))) {}
        const parent = this.store.job(parentId);
        const final = parent && this.running ? this.arrays.finalState(parent) : undefined;
        if (final !== undefined) {
          await this.store.updateJob(
            parentId,
            (job) => transition(job, { type: "array-done", state: final, now: new Date() }),
            this.election.fence(),
          );
        }
      } catch (err) {
        this.log.error("array task creation failed", { job: parentId, error: String(err) });
        setTimeout(() => this.arrayWork(parentId), 1000).unref();
      } finally {
        this.materializing.delete(parentId);
        // A change arrived meanwhile (a task ended, the parent changed under a batch's compare).
        if (this.arrayAgain.delete(parentId)) this.arrayWork(parentId);
      }
    })();
  }

  /**
   * Keeps a gone worker's record as DOWN (bound to no lease), with when, why
   * and the jobs it had; a worker that reattached meanwhile is left UP.
   */
  private async markDown(name: string, jobs: string[], fence: Compare[]): Promise<void> {
    const known = this.lastKnown.get(name);
    await this.store.updateWorkerUnbound(
      name,
      (cur) => {
        if (cur && cur.state !== WorkerState.DISCONNECTED) return undefined;
        const base = cur ?? known;
        if (!base) return undefined;
        const now = timestampFromDate(new Date());
        return {
          ...base,
          state: WorkerState.DOWN,
          downTime: now,
          disconnectTime: base.disconnectTime ?? now,
          downReason: cur ? base.downReason || "stream ended" : "replica lost",
          lastJobs: jobs,
          replica: "",
        };
      },
      fence,
    );
    this.lastKnown.delete(name);
  }

  /** Marks LOST the jobs of workers detached for longer than the grace period. */
  private async reapLost(): Promise<void> {
    // Nobody is declared gone while etcd is away; its return gives everyone a fresh grace.
    if (!this.running || !this.store.health.reachable) return;
    const now = Date.now();
    for (const [name, since] of this.goneSince) {
      // Past the grace the worker (or its run shims) fences its runs, taking up to FENCE_KILL_BOUND_MS
      // to kill them: rerunning only after both means the two runs never overlap.
      if (now - since < this.graceMs + FENCE_KILL_BOUND_MS) continue;
      const w = this.store.workers.entries.get(name);
      if (w && w.value.state !== WorkerState.DISCONNECTED) {
        this.goneSince.delete(name);
        continue;
      }
      const fence = this.election.fence();
      const ids = [...(this.store.jobIndex.active.get(name) ?? [])];
      try {
        await Promise.all(
          ids.map((id) => {
            const attempt = this.store.job(id)?.attempt ?? 0;
            return this.store.updateJob(
              id,
              (job) =>
                transition(job, {
                  type: "lost",
                  worker: name,
                  attempt,
                  reason: `worker ${name} was gone for more than ${this.graceMs / 1000}s`,
                  now: new Date(),
                }),
              fence,
            );
          }),
        );
        this.stats.lost += ids.length;
        await this.markDown(name, ids, fence);
        this.goneSince.delete(name);
        if (ids.length) this.log.info("worker lost", { worker: name, jobs: ids.length });
      } catch (err) {
        this.log.error("marking jobs lost failed", { worker: name, error: String(err) });
      }
    }
  }
}
