/**
 * Fair share's bookkeeping, kept on every replica from the job cache's
 * events: per queue and per user, the jobs pending and running and the
 * resources the running ones reserve; the cluster's totals over UP workers
 * (for each job's dominant-share cost); and the users' decayed usage (the
 * leader accrues it and saves it now and then; other replicas read the saved
 * record). The formula is in proto/crms/v1/queue.proto (message Queue).
 */
import { create } from "@bufbuild/protobuf";
import { type Job, JobState } from "../../gen/crms/v1/job_pb.js";
import { type QueueStatus, QueueStatusSchema, UserShareSchema } from "../../gen/crms/v1/queue_pb.js";
import { type Worker, WorkerState } from "../../gen/crms/v1/worker_pb.js";
import { OWNER_LABEL } from "../rpc/names.js";
import { isArrayParent } from "../rpc/states.js";
import { DEFAULT_QUEUE, type FairShareRecord } from "../store/queues.js";
import type { Store } from "../store/store.js";
import { FairQueue } from "./pending-queue.js";
import { type Amounts, amountText, shortfall } from "./placement.js";

/** A job's request with defaults applied (1 cpu). */
export type Request = Amounts;

export function requestOf(job: Job): Request {
  const r = job.spec?.resources;
  const named: { [k: string]: number } = {};
  for (const [k, v] of Object.entries(r?.named ?? {})) named[k] = Number(v);
  return { cpus: r?.cpus || 1, memory: Number(r?.memoryBytes ?? 0n), gpus: r?.gpus ?? 0, named };
}

/** The queue a job is in. */
export function queueOf(job: Job): string {
  return job.queue || job.spec?.queue || DEFAULT_QUEUE;
}

/** The user fair share counts a job against. */
export function userOf(job: Job): string {
  return job.user || job.spec?.labels[OWNER_LABEL] || "";
}

/** Cluster totals over UP workers, for dominant-share costs. */
export interface Totals {
  cpus: number;
  memory: number;
  gpus: number;
  slots: number;
}

/** A job's dominant share of the cluster: the largest of its fractions of cpus, memory, gpus and slots. */
export function cost(r: Request, t: Totals): number {
  let c = t.slots > 0 ? 1 / t.slots : 1;
  if (t.cpus > 0) c = Math.max(c, r.cpus / t.cpus);
  if (t.memory > 0) c = Math.max(c, r.memory / t.memory);
  if (t.gpus > 0) c = Math.max(c, r.gpus / t.gpus);
  return c;
}

interface Load {
  running: number;
  pending: number;
  cpus: number;
  gpus: number;
  /** Sum of the running jobs' requests' raw figures, for costs against current totals. */
  memory: number;
}

/** The key of a queue's own totals among its users' loads (no user name can be it). */
const TOTAL = "\u0000";

const newLoad = (): Load => ({ running: 0, pending: 0, cpus: 0, gpus: 0, memory: 0 });

/** What the active jobs of one worker have reserved. */
export interface WorkerAllocation extends Amounts {
  /** GPU index -> how many active jobs hold it (one, unless records disagree). */
  gpuIndices: Map<number, number>;
}

/** What a worker offers: its Hello's resources, else as many cpus as slots, unlimited memory, no GPU. */
export function capacityOf(w: Worker): Amounts {
  const c = w.capacity;
  const named: { [k: string]: number } = {};
  for (const [k, v] of Object.entries(c?.named ?? {})) named[k] = Number(v);
  return {
    cpus: c?.cpus || w.slots,
    memory: c?.memoryBytes ? Number(c.memoryBytes) : Number.POSITIVE_INFINITY,
    gpus: c?.gpus ?? 0,
    named,
  };
}

export class FairShare {
  /** Per queue, then per user (TOTAL for a queue's own totals). */
  private readonly loads = new Map<string, Map<string, Load>>();
  /** Decayed usage per queue and user, as of `usageAt`. */
  usage = new Map<string, Map<string, number>>();
  usageAt = Date.now();
  /** Per worker, what its ASSIGNED and RUNNING jobs reserve. */
  readonly allocated = new Map<string, WorkerAllocation>();
  /** Pending jobs in the order fair share takes them (kept on every replica, placed from by the leader). */
  readonly pending = new FairQueue();
  /** Per queue, its ASSIGNED and RUNNING jobs (preemption picks the preemptible ones among them). */
  readonly running = new Map<string, Set<string>>();

  /**
   * Build it before the store's caches fill (Store.open's beforeLoad), so it
   * counts the jobs already there from the load's events.
   */
  constructor(
    private readonly store: Store,
    readonly halfLifeSeconds = 86_400,
  ) {
    // Built late (a store already loaded): count what is there first.
    for (const [id, e] of store.jobs.entries) this.put(id, e.value);
    store.jobs.on("put", (id, e, prev) => {
      if (prev) this.count(prev.value, -1);
      this.put(id, e.value);
    });
    store.jobs.on("delete", (id, prev) => {
      this.count(prev.value, -1);
      this.pending.delete(id);
    });
  }

  private put(id: string, job: Job): void {
    this.count(job, 1);
    // Queued from the load's events too: a new leader finds the queue built, nothing to decode.
    if (job.state === JobState.PENDING && !isArrayParent(job)) this.queue(job);
    else this.pending.delete(id);
  }

  /** Puts a pending job in its place in the queue (again, if it was taken out). */
  queue(job: Job): void {
    this.pending.add(job.id, job.spec?.priority ?? 0, queueOf(job), userOf(job));
  }

  private count(job: Job, sign: 1 | -1): void {
    if (isArrayParent(job)) return;
    const running = job.state === JobState.ASSIGNED || job.state === JobState.RUNNING;
    const pending = job.state === JobState.PENDING;
    if (!running && !pending) return;
    const q = queueOf(job);
    const r = requestOf(job);
    if (running) {
      this.allocate(job, r, sign);
      let set = this.running.get(q);
      if (!set) {
        set = new Set();
        this.running.set(q, set);
      }
      if (sign > 0) set.add(job.id);
      else set.delete(job.id);
    }
    let users = this.loads.get(q);
    if (!users) {
      users = new Map();
      this.loads.set(q, users);
    }
    for (const key of [TOTAL, userOf(job)]) {
      let l = users.get(key);
      if (!l) {
        l = newLoad();
        users.set(key, l);
      }
      if (pending) l.pending += sign;
      else {
        l.running += sign;
        l.cpus += sign * r.cpus;
        l.gpus += sign * r.gpus;
        l.memory += sign * r.memory;
      }
      if (key === TOTAL) continue;
      if (l.pending === 0 && l.running === 0) users.delete(key);
    }
  }

  private allocate(job: Job, r: Request, sign: 1 | -1): void {
    if (!job.worker) return;
    let a = this.allocated.get(job.worker);
    if (!a) {
      a = { cpus: 0, memory: 0, gpus: 0, named: {}, gpuIndices: new Map() };
      this.allocated.set(job.worker, a);
    }
    a.cpus += sign * r.cpus;
    a.memory += sign * r.memory;
    a.gpus += sign * r.gpus;
    for (const k in r.named) a.named[k] = (a.named[k] ?? 0) + sign * (r.named[k] as number);
    for (const g of job.attempts.at(-1)?.gpuIndices ?? []) {
      const n = (a.gpuIndices.get(g) ?? 0) + sign;
      if (n > 0) a.gpuIndices.set(g, n);
      else a.gpuIndices.delete(g);
    }
  }

  /** A worker's free resources and free GPU indices now. */
  free(w: Worker): { resources: Amounts; gpuIndices: number[] } {
    const cap = capacityOf(w);
    const a = this.allocated.get(w.name);
    const named: { [k: string]: number } = {};
    for (const k in cap.named) named[k] = (cap.named[k] as number) - (a?.named[k] ?? 0);
    const gpuIndices: number[] = [];
    for (let g = 0; g < cap.gpus; g++) if (!a?.gpuIndices.has(g)) gpuIndices.push(g);
    return {
      resources: {
        cpus: cap.cpus - (a?.cpus ?? 0),
        memory: cap.memory - (a?.memory ?? 0),
        gpus: Math.min(cap.gpus - (a?.gpus ?? 0), gpuIndices.length),
        named,
      },
      gpuIndices,
    };
  }

  /** A queue's load now (running jobs and what they reserve). */
  load(queue: string, user = TOTAL): Readonly<Load> | undefined {
    return this.loads.get(queue)?.get(user);
  }

  /** Queues with running or pending jobs. */
  active(): string[] {
    return [...this.loads.keys()].filter((q) => this.unfinished(q) > 0);
  }

  /** Accrues each user's usage for the time since the last call (the leader calls this now and then). */
  accrue(now = Date.now()): void {
    const dt = (now - this.usageAt) / 1000;
    if (dt <= 0) return;
    const decay = 0.5 ** (dt / this.halfLifeSeconds);
    const t = this.totals();
    for (const users of this.usage.values()) for (const [u, v] of users) users.set(u, v * decay);
    for (const [q, users] of this.loads) {
      for (const [user, l] of users) {
        if (user === TOTAL || l.running === 0) continue;
        let m = this.usage.get(q);
        if (!m) {
          m = new Map();
          this.usage.set(q, m);
        }
        m.set(user, (m.get(user) ?? 0) + this.share(l, t) * dt);
      }
    }
    this.usageAt = now;
  }

  /** The usage as a record to save. */
  record(): FairShareRecord {
    const usage: FairShareRecord["usage"] = {};
    for (const [q, users] of this.usage) {
      const o: { [user: string]: number } = {};
      for (const [u, v] of users) if (v > 1e-9) o[u] = v;
      usage[q] = o;
    }
    return { at: this.usageAt, usage };
  }

  /** Takes the usage of a saved record. */
  restore(r: FairShareRecord): void {
    this.usage = new Map(Object.entries(r.usage).map(([q, users]) => [q, new Map(Object.entries(users))]));
    this.usageAt = r.at;
  }

  /** Cluster totals over the UP workers now. */
  totals(): Totals {
    const t: Totals = { cpus: 0, memory: 0, gpus: 0, slots: 0 };
    for (const e of this.store.workers.entries.values()) {
      const w = e.value;
      if (w.state !== WorkerState.UP) continue;
      t.slots += w.slots;
      const c = capacityOf(w);
      t.cpus += c.cpus;
      if (Number.isFinite(c.memory)) t.memory += c.memory;
      t.gpus += c.gpus;
    }
    return t;
  }

  /** A pending job's place in its queue (1 = next), if queued here. */
  position(id: string): number | undefined {
    return this.pending.position(id);
  }

  /**
   * Why a request could never run: no known worker (attached, disconnected
   * or DOWN) offers all of it. Undefined when one does, or when no worker is
   * known at all (it waits for one).
   */
  impossible(r: Request, target = ""): string | undefined {
    let largest: { name: string; cap: Amounts } | undefined;
    for (const [name, e] of this.store.workers.entries) {
      if (target && name !== target) continue;
      const cap = capacityOf(e.value);
      if (shortfall(r, cap) === undefined) return undefined;
      if (!largest || cap.cpus + cap.gpus * 1000 > largest.cap.cpus + largest.cap.gpus * 1000) largest = { name, cap };
    }
    if (!largest) return undefined;
    const what = shortfall(r, largest.cap) as NonNullable<ReturnType<typeof shortfall>>;
    return `no worker can ever hold this job's ${amountText(what, r)}: the largest${target ? "" : " worker"}, ${largest.name}, offers ${amountText(what, largest.cap)}`;
  }

  /**
   * What a pending job waits for now, as placement sees it: its queue's
   * limit, or resources no UP worker has free. Undefined when it only waits
   * for its turn (or a slot).
   */
  waitReason(job: Job): string | undefined {
    const q = queueOf(job);
    const settings = this.store.queues.get(q);
    const load = this.load(q);
    const r = requestOf(job);
    if (settings && load) {
      if (settings.maxRunning > 0 && load.running >= settings.maxRunning)
        return `queue ${q} is at its limit of ${settings.maxRunning} running jobs`;
      if (settings.maxCpus > 0 && load.cpus + r.cpus > settings.maxCpus)
        return `queue ${q} is at its limit of ${settings.maxCpus} cpus (${load.cpus} in use)`;
      if (settings.maxGpus > 0 && load.gpus + r.gpus > settings.maxGpus)
        return `queue ${q} is at its limit of ${settings.maxGpus} gpus (${load.gpus} in use)`;
    }
    let best: Amounts | undefined;
    let lacking: NonNullable<ReturnType<typeof shortfall>> | undefined;
    for (const e of this.store.workers.entries.values()) {
      const w = e.value;
      if (w.state !== WorkerState.UP) continue;
      const { resources } = this.free(w);
      const miss = shortfall(r, resources);
      if (miss === undefined) return undefined;
      if (!lacking) lacking = miss;
      if (lacking === miss) {
        const k = miss.startsWith("named:") ? miss.slice(6) : "";
        const v = (a: Amounts) => (k ? (a.named[k] ?? 0) : (a[miss as "cpus" | "memory" | "gpus"] as number));
        if (!best || v(resources) > v(best)) best = resources;
      }
    }
    if (!lacking || !best) return undefined;
    return `waiting for ${amountText(lacking, r)}; most free on one worker: ${amountText(lacking, best)}`;
  }

  /** Where a pending job's user stands in its queue: "user ann holds 30 % of the cluster, target 25 %". */
  standing(job: Job): string {
    const q = queueOf(job);
    const user = userOf(job);
    const t = this.totals();
    const users = this.loads.get(q);
    const mine = users?.get(user);
    const count = users ? Math.max(1, users.size - 1) : 1;
    const pct = (x: number) => `${Math.round(x * 100)} %`;
    return `user ${user || "(anonymous)"} holds ${pct(mine ? this.share(mine, t) : 0)} of the cluster, target ${pct(this.target(q) / count)}`;
  }

  /** A queue's target share now: its weight over the weights of the queues with demand (itself included). */
  target(queue: string): number {
    const weight = this.store.queues.get(queue)?.weight || 1;
    const demand = this.demandWeight() + (this.unfinished(queue) > 0 ? 0 : weight);
    return demand > 0 ? weight / demand : 1;
  }

  /** Running and pending jobs of a queue (0 for an unknown one). */
  unfinished(queue: string): number {
    const l = this.loads.get(queue)?.get(TOTAL);
    return l ? l.running + l.pending : 0;
  }

  /** A load's share of the cluster, as a sum of dominant shares (each job's request taken as the average). */
  share(l: Load, t: Totals): number {
    if (l.running === 0) return 0;
    const avg: Request = {
      cpus: l.cpus / l.running,
      memory: l.memory / l.running,
      gpus: l.gpus / l.running,
      named: {},
    };
    return l.running * cost(avg, t);
  }

  /** Decayed usage of a user in a queue, now. */
  decayed(queue: string, user: string, now = Date.now()): number {
    const u = this.usage.get(queue)?.get(user) ?? 0;
    return u * 0.5 ** ((now - this.usageAt) / 1000 / this.halfLifeSeconds);
  }

  /** Weights of the queues with running or pending jobs. */
  private demandWeight(): number {
    let sum = 0;
    for (const [name, users] of this.loads) {
      const l = users.get(TOTAL);
      if (!l || l.running + l.pending === 0) continue;
      sum += this.store.queues.get(name)?.weight || 1;
    }
    return sum;
  }

  /** What a queue runs and waits for now, and its share against its target. */
  status(queue: string): QueueStatus {
    const t = this.totals();
    const users = this.loads.get(queue);
    const own = users?.get(TOTAL) ?? newLoad();
    const target = this.target(queue);
    const userCount = users ? users.size - 1 : 0;
    const now = Date.now();
    return create(QueueStatusSchema, {
      running: own.running,
      pending: BigInt(own.pending),
      cpus: own.cpus,
      gpus: own.gpus,
      share: this.share(own, t),
      targetShare: target,
      users: [...(users ?? [])]
        .filter(([u]) => u !== TOTAL)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([user, l]) =>
          create(UserShareSchema, {
            user,
            running: l.running,
            pending: BigInt(l.pending),
            share: this.share(l, t),
            targetShare: userCount > 0 ? target / userCount : 0,
            decayedUsage: this.decayed(queue, user, now),
          }),
        ),
    });
  }
}
