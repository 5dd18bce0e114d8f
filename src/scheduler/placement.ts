/**
 * Placement: pure functions from pending jobs and workers' free slots and
 * resources to assignments. The caller decides the order (fair share, then
 * priority, then submit order); a job that cannot be placed (constraints,
 * target, resources) does not block the ones behind it.
 */

/** Amounts of each resource; memory in bytes. */
export interface Amounts {
  cpus: number;
  memory: number;
  gpus: number;
  named: { [k: string]: number };
}

/** A worker as placement sees it. */
export interface WorkerSlots {
  name: string;
  /** Free slots now (may be 0: the worker still counts for reasons). */
  free: number;
  labels: { [k: string]: string };
  /** Free resources now; unset: unlimited (only slots count). */
  resources?: Amounts;
  /** Free GPU indices (as many as resources.gpus). */
  gpuIndices?: number[];
}

/** A pending job as placement sees it. */
export interface Candidate {
  id: string;
  targetWorker: string;
  constraints: { [k: string]: string };
  /** What it asks for; unset: one slot and nothing else. */
  request?: Amounts;
}

export interface PlacementResult {
  placed: Array<{ jobId: string; worker: string; gpus?: number[] }>;
  /** Jobs that cannot run on any attached worker as things are, with why. */
  unplaced: Array<{ jobId: string; reason: string }>;
}

/** Reason left for a job that only waits for a slot (not written to etcd). */
export const WAITING_FOR_SLOT = "waiting for a free slot";

function matches(labels: { [k: string]: string }, constraints: { [k: string]: string }): boolean {
  for (const k in constraints) if (labels[k] !== constraints[k]) return false;
  return true;
}

function describe(constraints: { [k: string]: string }): string {
  return Object.entries(constraints)
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
}

/** The first resource `have` lacks for `want`, or undefined when everything fits. */
export function shortfall(want: Amounts, have: Amounts): keyof Amounts | `named:${string}` | undefined {
  if (want.cpus > have.cpus) return "cpus";
  if (want.memory > have.memory) return "memory";
  if (want.gpus > have.gpus) return "gpus";
  for (const k in want.named) if ((want.named[k] as number) > (have.named[k] ?? 0)) return `named:${k}`;
  return undefined;
}

/** "2 cpus", "4 GiB of memory", "1 gpus", "license=2". */
export function amountText(what: keyof Amounts | `named:${string}`, a: Amounts): string {
  if (what === "memory") return `${(a.memory / 2 ** 30).toFixed(a.memory % 2 ** 30 === 0 ? 0 : 2)} GiB of memory`;
  if (what === "cpus") return `${a.cpus} cpus`;
  if (what === "gpus") return `${a.gpus} gpus`;
  const k = what.slice("named:".length);
  return `${k}=${a.named[k] ?? 0}`;
}

/**
 * Places jobs one at a time as the caller offers them, taking slots and
 * resources from its copy of the workers. Unconstrained jobs are spread
 * round-robin over workers with free slots.
 */
export class Placer {
  private readonly byName: Map<string, WorkerSlots>;
  private readonly open: WorkerSlots[];
  private cursor = 0;
  /** Free slots over all workers. */
  totalFree: number;

  constructor(workers: WorkerSlots[]) {
    this.byName = new Map(
      workers.map((w) => [
        w.name,
        {
          ...w,
          resources: w.resources && { ...w.resources, named: { ...w.resources.named } },
          gpuIndices: w.gpuIndices && [...w.gpuIndices],
        },
      ]),
    );
    this.open = [...this.byName.values()].filter((w) => w.free > 0);
    this.totalFree = this.open.reduce((n, w) => n + w.free, 0);
  }

  private fits(w: WorkerSlots, c: Candidate): boolean {
    if (w.free <= 0) return false;
    if (!c.request || !w.resources) return true;
    return shortfall(c.request, w.resources) === undefined;
  }

  private take(w: WorkerSlots, c: Candidate): { worker: string; gpus?: number[] } {
    w.free--;
    this.totalFree--;
    let gpus: number[] | undefined;
    if (c.request && w.resources) {
      const r = w.resources;
      r.cpus -= c.request.cpus;
      r.memory -= c.request.memory;
      r.gpus -= c.request.gpus;
      for (const k in c.request.named) r.named[k] = (r.named[k] ?? 0) - (c.request.named[k] as number);
      if (c.request.gpus > 0) gpus = (w.gpuIndices ?? []).splice(0, c.request.gpus);
    }
    return gpus ? { worker: w.name, gpus } : { worker: w.name };
  }

  /**
   * Places one job: the worker it goes to, a reason it cannot run on any
   * attached worker as things are (written to the job), or "wait" when it
   * only waits for slots or resources to free up.
   */
  try(c: Candidate): { worker: string; gpus?: number[] } | { reason: string } | "wait" {
    if (c.targetWorker) {
      const w = this.byName.get(c.targetWorker);
      if (!w) return { reason: `target worker ${c.targetWorker} is not attached` };
      if (!matches(w.labels, c.constraints))
        return { reason: `target worker ${w.name} lacks labels ${describe(c.constraints)}` };
      return this.fits(w, c) ? this.take(w, c) : "wait";
    }
    if (Object.keys(c.constraints).length === 0) {
      if (this.totalFree <= 0) return "wait";
      // Round-robin over workers with free slots, skipping exhausted ones.
      const n = this.open.length;
      for (let k = 0; k < n; k++) {
        const w = this.open[(this.cursor + k) % n] as WorkerSlots;
        if (this.fits(w, c)) {
          this.cursor = (this.cursor + k + 1) % n;
          return this.take(w, c);
        }
      }
      return "wait";
    }
    let best: WorkerSlots | undefined;
    let any = false;
    for (const w of this.byName.values()) {
      if (!matches(w.labels, c.constraints)) continue;
      any = true;
      if (this.fits(w, c) && (!best || w.free > best.free)) best = w;
    }
    if (best) return this.take(best, c);
    return any ? "wait" : { reason: `no attached worker has labels ${describe(c.constraints)}` };
  }
}

/** Places jobs in the order given (see Placer). */
export function place(jobs: Candidate[], workers: WorkerSlots[]): PlacementResult {
  const placer = new Placer(workers);
  const placed: PlacementResult["placed"] = [];
  const unplaced: PlacementResult["unplaced"] = [];
  for (const c of jobs) {
    const r = placer.try(c);
    if (r === "wait") continue;
    if ("reason" in r) unplaced.push({ jobId: c.id, reason: r.reason });
    else placed.push(r.gpus ? { jobId: c.id, worker: r.worker, gpus: r.gpus } : { jobId: c.id, worker: r.worker });
  }
  return { placed, unplaced };
}
