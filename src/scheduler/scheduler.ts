/**
 * The scheduler: runs only in the elected leader. It places pending jobs on
 * workers with free slots and marks the jobs of workers gone past their grace
 * period LOST. Every write carries the leader's fencing compare.
 */

import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type Job, JobState } from "../../gen/crms/v1/job_pb.js";
import { type Worker, WorkerState } from "../../gen/crms/v1/worker_pb.js";
import { Emitter, type Events } from "../events.js";
import { compareIds } from "../ids.js";
import { type Logger, silentLogger } from "../log.js";
import { isArrayParent, isFinal } from "../rpc/states.js";
import type { Compare } from "../store/batcher.js";
import type { Entry } from "../store/cache.js";
import type { Election } from "../store/election.js";
import type { CreatePlacement, Store } from "../store/store.js";
import { type ArrayIndex, arrayIndex, materializeBatch } from "./arrays.js";
import { evaluate } from "./dependencies.js";
import { cost, FairShare, queueOf, type Request, requestOf } from "./fair-share.js";
import { transition } from "./job-machine.js";
import type { PendingQueue } from "./pending-queue.js";
import { Placer, type WorkerSlots } from "./placement.js";

/** The worker a job must run on: RunJob's choice, else the spec's target, else "" (any). */
export function targetOf(job: Job): string {
  return job.runOn || job.spec?.targetWorker || "";
}

/** Whether a queue's cpu and gpu limits leave room for one more request. */
function queueHolds(q: { cpus: number; gpus: number; maxCpus: number; maxGpus: number }, request: Request): boolean {
  return !(
    (q.maxCpus > 0 && q.cpus + request.cpus > q.maxCpus) ||
    (q.maxGpus > 0 && q.gpus + request.gpus > q.maxGpus)
  );
}

/** Orders jobs by when their current run started (assignment time as a fallback), then id. */
function compareStart(a: Job, b: Job): number {
  const t = (j: Job) => {
    const ts = j.startTime ?? j.attempts.at(-1)?.assignTime;
    return ts ? Number(ts.seconds) * 1e9 + ts.nanos : 0;
  };
  return t(a) - t(b) || compareIds(a.id, b.id);
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
  /** Seconds between SIGTERM and SIGKILL of a preempted run (default 10). */
  preemptGraceSeconds?: number;
  /** Fair share's books, built before the store loaded (else one is made here, counting only later changes). */
  fairShare?: FairShare;
}

/** Counters for benchmarks and /metrics. */
export interface SchedulerStats {
  passes: number;
  placed: number;
  lost: number;
  conflicts: number;
  preempted: number;
}

/** What the scheduler announces: `placed` with the seconds from submit to assignment of each job it placed. */
export interface SchedulerEvents {
  placed: [seconds: number];
}

export class Scheduler {
  private get pending() {
    return this.fairShare.pending;
  }
  private usageTimer?: NodeJS.Timeout;
  /** Per worker, the requests of placed jobs not yet seen assigned in the cache. */
  private readonly inflightRequests = new Map<string, Request[]>();
  private readonly inflightGpus = new Map<string, Set<number>>();
  private readonly inflight = new Map<string, number>();
  /** Per queue, the jobs placed (by a pass or a submit) whose assignment is not in the cache yet. */
  private readonly inflightQueues = new Map<string, { running: number; cpus: number; gpus: number }>();
  private readonly goneSince = new Map<string, number>();
  /** The last record of workers whose record vanished with their replica's lease (for their DOWN record). */
  private readonly lastKnown = new Map<string, Worker>();
  private running = false;
  private scheduled = false;
  private again = false;
  private timer?: NodeJS.Timeout;
  private readonly graceMs: number;
  private readonly arrays: ArrayIndex;
  /**
   * The waiting reason this leader last wrote (or found written) per pending
   * job: a pass writes only reasons that changed, without reading the job's
   * record for each unplaced job again (a backlog aimed at an absent worker
   * cost a decode per job per pass).
   */
  private readonly reasons = new Map<string, string>();
  /** Array parents whose tasks are being created now. */
  private readonly materializing = new Set<string>();
  private readonly arrayAgain = new Set<string>();
  readonly stats: SchedulerStats = { passes: 0, placed: 0, lost: 0, conflicts: 0, preempted: 0 };
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
    this.fairShare = options.fairShare ?? new FairShare(store, options.fairShareHalfLifeSeconds);
    store.jobs.on("put", (id, e, prev) => this.onJob(id, e, prev));
    store.jobs.on("delete", (id) => this.reasons.delete(id));
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
    const reason = this.reasons.get(id);
    if (reason !== undefined && (job.state !== JobState.PENDING || job.pendingReason !== reason))
      this.reasons.delete(id);
    if (isFinal(job.state) && prev && !isFinal(prev.value.state)) {
      // Dependants may be ready (or unmeetable) now; an array may have finished.
      if (job.arrayParent) this.arrayWork(job.arrayParent);
      this.kick();
    }
    if (isArrayParent(job)) {
      this.arrayWork(id);
      return;
    }
    // Fair share keeps the pending queue from the same events (registered first).
    if (job.state === JobState.PENDING) this.kick();
    // A slot was freed.
    else if (prev && (prev.value.state === JobState.ASSIGNED || prev.value.state === JobState.RUNNING)) this.kick();
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
    // Pending jobs are queued already (fair share keeps the queue from the cache's events on
    // every replica, from the first load on): nothing to decode here.
    for (const id of this.arrays.parents) this.arrayWork(id);
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
    this.startUsage();
    this.kick();
  }

  /** Accrues fair-share usage every 5 s and saves it every 30 s, from the usage the last leader saved. */
  private startUsage(): void {
    const fs = this.fairShare;
    void this.store.queues
      .loadUsage()
      .then((r) => {
        if (r) fs.restore(r);
      })
      .catch(() => undefined);
    let ticks = 0;
    this.usageTimer = setInterval(() => {
      fs.accrue();
      if (++ticks % 6 === 0 && this.store.health.reachable)
        void this.store.queues.saveUsage(fs.record()).catch(() => undefined);
    }, 5000);
    this.usageTimer.unref();
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
    clearInterval(this.usageTimer);
    this.reasons.clear();
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

  /**
   * The free slots and resources of every worker UP (or of `only`): what is
   * not taken by its active jobs or by placements still being written.
   */
  private workerSlots(only?: string): WorkerSlots[] {
    const out: WorkerSlots[] = [];
    const fs = this.fairShare;
    const entries =
      only === undefined ? this.store.workers.entries : [[only, this.store.workers.entries.get(only)] as const];
    for (const [name, e] of entries) {
      if (!e) continue;
      const w = e.value;
      if (w.state !== WorkerState.UP) continue;
      const used = (this.store.jobIndex.active.get(name)?.size ?? 0) + (this.inflight.get(name) ?? 0);
      const { resources, gpuIndices } = fs.free(w);
      // Placed but not yet seen in the cache: their reservations are not in fs.allocated yet.
      for (const r of this.inflightRequests.get(name) ?? []) {
        resources.cpus -= r.cpus;
        resources.memory -= r.memory;
        resources.gpus -= r.gpus;
        for (const k in r.named) resources.named[k] = (resources.named[k] ?? 0) - (r.named[k] as number);
      }
      const taken = this.inflightGpus.get(name);
      const free = taken ? gpuIndices.filter((g) => !taken.has(g)) : gpuIndices;
      resources.gpus = Math.min(resources.gpus, free.length);
      out.push({ name, free: Math.max(0, w.slots - used), labels: w.labels, resources, gpuIndices: free });
    }
    return out;
  }

  /**
   * Places a job as it is submitted, in its create Txn (one etcd round trip on
   * the way to its worker instead of two), when this replica leads, nothing
   * waits in the pending queue (so no job is passed over: the next pass would
   * place this one the same way), and a worker has room for it now. Jobs with
   * dependencies and arrays go through the queue. Returns undefined when the
   * job should be created pending.
   */
  placeAtSubmit(job: Job): CreatePlacement | undefined {
    if (!this.running || this.pending.size > 0 || !this.store.health.reachable) return undefined;
    if (job.state !== JobState.PENDING || job.spec?.after.length || job.spec?.array || job.arrayParent)
      return undefined;
    const request = requestOf(job);
    const queueName = queueOf(job);
    const queue = this.queueLoad(queueName);
    if (queue.maxRunning > 0 && queue.running >= queue.maxRunning) return undefined;
    if (!queueHolds(queue, request)) return undefined;
    const target = targetOf(job);
    const r = new Placer(this.workerSlots(target || undefined)).try({
      id: job.id,
      targetWorker: target,
      constraints: job.spec?.constraints ?? {},
      request,
    });
    if (r === "wait" || "reason" in r) return undefined;
    const assigned = transition(job, { type: "assign", worker: r.worker, gpus: r.gpus, now: new Date() });
    if (!assigned) return undefined;
    this.holdPlacement(r.worker, queueName, request, r.gpus, 1);
    return {
      job: assigned,
      compares: this.election.fence(),
      settle: (written) => {
        this.holdPlacement(r.worker, queueName, request, r.gpus, -1);
        if (!written) return;
        this.stats.placed++;
        if (this.emitter.has("placed")) this.emitter.emit("placed", 0);
      },
    };
  }

  /** A queue's weight, its limits and what its running jobs hold now, placements being written included. */
  private queueLoad(name: string) {
    const settings = this.store.queues.get(name);
    const load = this.fairShare.load(name);
    const held = this.inflightQueues.get(name);
    return {
      weight: settings?.weight || 1,
      running: (load?.running ?? 0) + (held?.running ?? 0),
      cpus: (load?.cpus ?? 0) + (held?.cpus ?? 0),
      gpus: (load?.gpus ?? 0) + (held?.gpus ?? 0),
      maxRunning: settings?.maxRunning ?? 0,
      maxCpus: settings?.maxCpus ?? 0,
      maxGpus: settings?.maxGpus ?? 0,
    };
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
      const eligible = (id: string, job: Job | undefined): job is Job => {
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
      // With no free slot anywhere, a few jobs per queue are enough to see who waits
      // (for preemption) and to give unplaceable jobs their reasons.
      const limit = free > 0 ? Math.min(passSize, Math.max(1024, 64 * free)) : 128;
      const { placed, unplaced, waiting } = this.choose(workers, limit, passSize * 25, eligible);
      for (const p of placed) {
        this.pending.delete(p.jobId);
        this.holdPlacement(p.worker, p.queue, p.request, p.gpus, 1);
        writes.push(
          this.store
            .updateJob(
              p.jobId,
              // RunJob may have named another worker since the pass looked: then leave it pending.
              (job) =>
                targetOf(job) && targetOf(job) !== p.worker
                  ? undefined
                  : transition(job, { type: "assign", worker: p.worker, gpus: p.gpus, now: new Date() }),
              fence,
            )
            .then((job) => {
              if (job.state === JobState.PENDING) this.fairShare.queue(job);
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
              if (job?.state === JobState.PENDING) this.fairShare.queue(job);
              this.log.error("assignment failed", { job: p.jobId, worker: p.worker, error: String(err) });
            })
            .finally(() => {
              this.holdPlacement(p.worker, p.queue, p.request, p.gpus, -1);
            }),
        );
      }
      for (const u of unplaced) {
        if (this.reasons.get(u.jobId) === u.reason) continue;
        this.reasons.set(u.jobId, u.reason);
        writes.push(
          this.store
            .updateJob(u.jobId, (job) => transition(job, { type: "reason", reason: u.reason }), fence)
            .catch(() => {
              this.reasons.delete(u.jobId);
            }),
        );
      }
      if (waiting.size > 0) writes.push(...this.preempt(waiting, fence));
      await Promise.all(writes);
      if (placed.length > 0) this.again = true;
    } finally {
      this.scheduled = false;
      if (this.again) this.kick();
    }
  }

  /**
   * Counts a placement whose assignment is not in the cache yet against its
   * worker's slots and resources and its queue's limits (sign 1), or stops (-1).
   */
  private holdPlacement(worker: string, queue: string, r: Request, gpus: number[] | undefined, sign: 1 | -1): void {
    const n = (this.inflight.get(worker) ?? 0) + sign;
    if (n <= 0) this.inflight.delete(worker);
    else this.inflight.set(worker, n);
    this.reserve(worker, r, gpus, sign);
    this.holdQueue(queue, r, sign);
  }

  /** A queue's share of placed jobs whose assignment is not in the cache yet (sign 1: add, -1: remove). */
  private holdQueue(name: string, r: Request, sign: 1 | -1): void {
    const held = this.inflightQueues.get(name) ?? { running: 0, cpus: 0, gpus: 0 };
    held.running += sign;
    held.cpus += sign * r.cpus;
    held.gpus += sign * r.gpus;
    if (held.running > 0) this.inflightQueues.set(name, held);
    else this.inflightQueues.delete(name);
  }

  /** Reservations of placed jobs whose assignment is not in the cache yet (sign 1: add, -1: remove). */
  private reserve(worker: string, r: Request, gpus: number[] | undefined, sign: 1 | -1): void {
    const list = this.inflightRequests.get(worker) ?? [];
    if (sign > 0) list.push(r);
    else list.splice(list.indexOf(r), 1);
    if (list.length) this.inflightRequests.set(worker, list);
    else this.inflightRequests.delete(worker);
    if (!gpus?.length) return;
    const set = this.inflightGpus.get(worker) ?? new Set<number>();
    for (const g of gpus)
      if (sign > 0) set.add(g);
      else set.delete(g);
    if (set.size) this.inflightGpus.set(worker, set);
    else this.inflightGpus.delete(worker);
  }

  /**
   * Chooses the jobs of one pass in fair-share order (see queue.proto): the
   * queue with the smallest allocation / weight first, within it the user
   * with the smallest decayed usage + allocation, within the user priority
   * then submit order; each placed job's cost is charged to both at once, so
   * one pass interleaves them. Returns what was placed, what cannot run as
   * things are (with why), and the queues that had a job that could run but
   * found no free slot or resources.
   */
  private choose(
    workers: WorkerSlots[],
    limit: number,
    maxScan: number,
    eligible: (id: string, job: Job | undefined) => boolean,
  ) {
    const fs = this.fairShare;
    const totals = fs.totals();
    const placer = new Placer(workers);
    const placed: Array<{ jobId: string; worker: string; gpus?: number[]; request: Request; queue: string }> = [];
    const unplaced: Array<{ jobId: string; reason: string }> = [];
    const waiting = new Set<string>();
    const now = Date.now();
    interface UserCursor {
      it: Iterator<string>;
      charge: number;
      done: boolean;
    }
    interface QueueCursor extends ReturnType<Scheduler["queueLoad"]> {
      name: string;
      alloc: number;
      users: UserCursor[];
      done: boolean;
    }
    const queues: QueueCursor[] = [];
    for (const [name, users] of this.pending.queues) {
      const load = fs.load(name);
      queues.push({
        name,
        ...this.queueLoad(name),
        alloc: load ? fs.share(load, totals) : 0,
        users: [...users].map(([user, q]: [string, PendingQueue]) => {
          const l = fs.load(name, user);
          return { it: q.iterate(), charge: fs.decayed(name, user, now) + (l ? fs.share(l, totals) : 0), done: false };
        }),
        done: false,
      });
    }
    let scanned = 0;
    let taken = 0;
    while (taken < limit && scanned < maxScan) {
      let q: QueueCursor | undefined;
      for (const c of queues) if (!c.done && (!q || c.alloc / c.weight < q.alloc / q.weight)) q = c;
      if (!q) break;
      if (q.maxRunning > 0 && q.running >= q.maxRunning) {
        q.done = true;
        continue;
      }
      let u: UserCursor | undefined;
      for (const c of q.users) if (!c.done && (!u || c.charge < u.charge)) u = c;
      if (!u) {
        q.done = true;
        continue;
      }
      const next = u.it.next();
      if (next.done) {
        u.done = true;
        continue;
      }
      const id = next.value;
      scanned++;
      const job = this.store.job(id);
      if (!eligible(id, job)) continue;
      const request = requestOf(job as Job);
      if (!queueHolds(q, request)) continue;
      const r = placer.try({
        id,
        targetWorker: targetOf(job as Job),
        constraints: job?.spec?.constraints ?? {},
        request,
      });
      taken++;
      const c = cost(request, totals);
      if (r === "wait") {
        waiting.add(q.name);
        // Charged as if placed, so the pass goes on to the other queues and users
        // instead of reading one queue's waiting backlog to the end.
        q.alloc += c;
        u.charge += c;
        continue;
      }
      if ("reason" in r) {
        unplaced.push({ jobId: id, reason: r.reason });
        continue;
      }
      placed.push({ jobId: id, worker: r.worker, gpus: r.gpus, request, queue: q.name });
      q.alloc += c;
      q.running++;
      q.cpus += request.cpus;
      q.gpus += request.gpus;
      u.charge += c;
    }
    return { placed, unplaced, waiting };
  }

  /**
   * Preemption: for each queue below its target share whose jobs wait for
   * room, asks preemptible runs of queues above their target to stop (newest
   * first), never taking a queue below its target, until the waiting queue's
   * shortfall is covered (runs already asked to stop count as covered).
   */
  private preempt(waiting: Set<string>, fence: Compare[]): Promise<unknown>[] {
    const fs = this.fairShare;
    const totals = fs.totals();
    const writes: Promise<unknown>[] = [];
    const share = (q: string) => {
      const l = fs.load(q);
      return l ? fs.share(l, totals) : 0;
    };
    const stopping = new Map<string, number>();
    const victims = new Map<string, Job[]>();
    for (const [q, ids] of fs.running) {
      const jobs: Job[] = [];
      let c = 0;
      const queuePreemptible = this.store.queues.get(q)?.preemptible ?? false;
      for (const id of ids) {
        const job = this.store.job(id);
        if (!job || !(queuePreemptible || job.spec?.preemptible)) continue;
        if (job.preemptRequested) c += cost(requestOf(job), totals);
        else if (!job.killRequested) jobs.push(job);
      }
      stopping.set(q, c);
      // Newest first: the least work lost.
      jobs.sort((a, b) => compareStart(b, a));
      victims.set(q, jobs);
    }
    const grace = this.options.preemptGraceSeconds ?? 10;
    for (const q of waiting) {
      let need = fs.target(q) - share(q);
      if (need <= 1e-9) continue;
      for (const [r, jobs] of victims) {
        if (r === q) continue;
        // Runs of r already stopping cover part of the need and no longer count for r.
        const already = stopping.get(r) ?? 0;
        need -= already;
        stopping.set(r, 0);
        let over = share(r) - already - fs.target(r);
        while (need > 1e-9 && over > 1e-9 && jobs.length > 0) {
          const job = jobs.shift() as Job;
          const c = cost(requestOf(job), totals);
          if (over - c < -1e-9) continue;
          over -= c;
          need -= c;
          this.stats.preempted++;
          this.log.info("preempting a run for another queue's share", { job: job.id, from: r, for: q });
          writes.push(
            this.store
              .updateJob(job.id, (j) => transition(j, { type: "preempt", graceSeconds: grace }), fence)
              .catch((err) => this.log.error("preemption failed", { job: job.id, error: String(err) })),
          );
        }
      }
    }
    return writes;
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
