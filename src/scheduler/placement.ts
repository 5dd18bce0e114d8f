/**
 * Placement: a pure function from ordered pending jobs and workers' free slots
 * to assignments. FIFO within priority is the caller's order; a job that
 * cannot be placed (constraints, target) does not block the ones behind it.
 */

/** A worker as placement sees it. */
export interface WorkerSlots {
  name: string;
  /** Free slots now (may be 0: the worker still counts for reasons). */
  free: number;
  labels: { [k: string]: string };
}

/** A pending job as placement sees it. */
export interface Candidate {
  id: string;
  targetWorker: string;
  constraints: { [k: string]: string };
}

export interface PlacementResult {
  placed: Array<{ jobId: string; worker: string }>;
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

/** Places jobs in the order given. Unconstrained jobs are spread round-robin. */
export function place(jobs: Candidate[], workers: WorkerSlots[]): PlacementResult {
  const byName = new Map(workers.map((w) => [w.name, { ...w }]));
  const free = [...byName.values()].filter((w) => w.free > 0);
  let cursor = 0;
  let totalFree = free.reduce((n, w) => n + w.free, 0);
  const placed: PlacementResult["placed"] = [];
  const unplaced: PlacementResult["unplaced"] = [];
  const take = (w: WorkerSlots, jobId: string) => {
    w.free--;
    totalFree--;
    placed.push({ jobId, worker: w.name });
  };
  for (const job of jobs) {
    if (job.targetWorker) {
      const w = byName.get(job.targetWorker);
      if (!w) unplaced.push({ jobId: job.id, reason: `target worker ${job.targetWorker} is not attached` });
      else if (!matches(w.labels, job.constraints))
        unplaced.push({ jobId: job.id, reason: `target worker ${w.name} lacks labels ${describe(job.constraints)}` });
      else if (w.free > 0) take(w, job.id);
      continue;
    }
    const constrained = Object.keys(job.constraints).length > 0;
    if (!constrained) {
      if (totalFree === 0) continue;
      // Round-robin over workers with free slots, skipping exhausted ones.
      for (let n = 0; n < free.length; n++) {
        const w = free[(cursor + n) % free.length] as WorkerSlots;
        if (w.free > 0) {
          take(w, job.id);
          cursor = (cursor + n + 1) % free.length;
          break;
        }
      }
      continue;
    }
    let best: WorkerSlots | undefined;
    let any = false;
    for (const w of byName.values()) {
      if (!matches(w.labels, job.constraints)) continue;
      any = true;
      if (w.free > 0 && (!best || w.free > best.free)) best = w;
    }
    if (best) take(best, job.id);
    else if (!any)
      unplaced.push({ jobId: job.id, reason: `no attached worker has labels ${describe(job.constraints)}` });
  }
  return { placed, unplaced };
}
