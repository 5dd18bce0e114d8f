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
import { WorkerState } from "../../gen/crms/v1/worker_pb.js";
import { OWNER_LABEL } from "../rpc/names.js";
import { isArrayParent } from "../rpc/states.js";
import { DEFAULT_QUEUE } from "../store/queues.js";
import type { Store } from "../store/store.js";

/** A job's request with defaults applied (1 cpu). */
export interface Request {
  cpus: number;
  memory: number;
  gpus: number;
  named: { [k: string]: number };
}

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

const newLoad = (): Load => ({ running: 0, pending: 0, cpus: 0, gpus: 0, memory: 0 });

export class FairShare {
  /** Per queue, then per user ("" for a queue's own totals). */
  private readonly loads = new Map<string, Map<string, Load>>();
  /** Decayed usage per queue and user, as of `usageAt`. */
  usage = new Map<string, Map<string, number>>();
  usageAt = Date.now();

  constructor(
    private readonly store: Store,
    readonly halfLifeSeconds = 86_400,
  ) {
    store.jobs.on("put", (_id, e, prev) => {
      if (prev) this.count(prev.value, -1);
      this.count(e.value, 1);
    });
    store.jobs.on("delete", (_id, prev) => this.count(prev.value, -1));
  }

  private count(job: Job, sign: 1 | -1): void {
    if (isArrayParent(job)) return;
    const running = job.state === JobState.ASSIGNED || job.state === JobState.RUNNING;
    const pending = job.state === JobState.PENDING;
    if (!running && !pending) return;
    const q = queueOf(job);
    let users = this.loads.get(q);
    if (!users) {
      users = new Map();
      this.loads.set(q, users);
    }
    const r = requestOf(job);
    for (const key of ["", userOf(job)]) {
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
      if (key === "") continue;
      if (l.pending === 0 && l.running === 0) users.delete(key);
    }
  }

  /** Cluster totals over the UP workers now. */
  totals(): Totals {
    const t: Totals = { cpus: 0, memory: 0, gpus: 0, slots: 0 };
    for (const e of this.store.workers.entries.values()) {
      const w = e.value;
      if (w.state !== WorkerState.UP) continue;
      t.slots += w.slots;
      t.cpus += w.capacity?.cpus || w.slots;
      t.memory += Number(w.capacity?.memoryBytes ?? 0n);
      t.gpus += w.capacity?.gpus ?? 0;
    }
    return t;
  }

  /** Running and pending jobs of a queue (0 for an unknown one). */
  unfinished(queue: string): number {
    const l = this.loads.get(queue)?.get("");
    return l ? l.running + l.pending : 0;
  }

  /** A load's share of the cluster, as a sum of dominant shares (each job's request taken as the average). */
  private share(l: Load, t: Totals): number {
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
      const l = users.get("");
      if (!l || l.running + l.pending === 0) continue;
      sum += this.store.queues.get(name)?.weight || 1;
    }
    return sum;
  }

  /** What a queue runs and waits for now, and its share against its target. */
  status(queue: string): QueueStatus {
    const t = this.totals();
    const users = this.loads.get(queue);
    const own = users?.get("") ?? newLoad();
    const demand = this.demandWeight();
    const weight = this.store.queues.get(queue)?.weight || 1;
    const hasDemand = own.running + own.pending > 0;
    const target = demand > 0 ? (hasDemand ? weight / demand : weight / (demand + weight)) : 1;
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
        .filter(([u]) => u !== "")
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
