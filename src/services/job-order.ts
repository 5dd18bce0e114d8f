/**
 * ListJobs orders: each one walks an in-memory index of the job cache (ids in
 * id order, finished jobs in end order, ids by name), so a listing costs one
 * pass over the jobs, never a sort of all of them.
 */
import { type Job, JobState, JobStateSchema, type ListJobsRequest } from "../../gen/crms/v1/job_pb.js";
import { invalid } from "../errors.js";
import type { Store } from "../store/store.js";
import { checkEnum, checkJobId, checkWorkerName, pageSize } from "./validate.js";

/** The orders ListJobs takes (each also with a leading "-" for descending). */
export const JOB_ORDERS = ["id", "submit_time", "end_time", "state", "name"] as const;
export type JobOrderKey = (typeof JOB_ORDERS)[number];

export interface JobOrder {
  key: JobOrderKey;
  desc: boolean;
}

/** Parses ListJobsRequest.order_by; "" is "id" (oldest first). */
export function parseOrder(orderBy: string): JobOrder {
  const desc = orderBy.startsWith("-");
  const key = (desc ? orderBy.slice(1) : orderBy) || "id";
  if (!(JOB_ORDERS as readonly string[]).includes(key)) {
    throw invalid(
      `order_by: one of ${JOB_ORDERS.join(", ")}, each optionally with a leading "-" (got ${JSON.stringify(orderBy.slice(0, 64))}${orderBy.length > 64 ? "…" : ""})`,
    );
  }
  return { key: key as JobOrderKey, desc };
}

/** True for the orders whose page token is the last id returned (ids are assigned in submit order). */
export function byIdOrder(order: JobOrder): boolean {
  return order.key === "id" || order.key === "submit_time";
}

function* backwards<T>(items: readonly T[]): Generator<T> {
  for (let i = items.length - 1; i >= 0; i--) yield items[i] as T;
}

/**
 * Job ids in the given order, from the store's indexes. For the id orders,
 * `after` (a page token) starts the walk next to that id (a binary search),
 * not at the beginning.
 */
export function* orderedJobIds(store: Store, order: JobOrder, after = ""): Generator<string> {
  const index = store.jobIndex;
  const ids = index.orderedIds();
  switch (order.key) {
    case "id":
    case "submit_time": {
      const at = after ? index.firstAfter(after) : order.desc ? ids.length : 0;
      if (order.desc) for (let i = Math.min(ids.length, at) - 1; i >= 0; i--) yield ids[i] as string;
      else for (let i = at; i < ids.length; i++) yield ids[i] as string;
      return;
    }
    case "name": {
      const names = index.byName();
      yield* order.desc ? backwards(names) : names;
      return;
    }
    case "end_time": {
      // Unfinished jobs (no end time) first, then finished ones in the order they ended.
      const finished = [...index.finished];
      if (order.desc) {
        yield* backwards(finished);
        for (const id of backwards(ids)) if (!index.finished.has(id)) yield id;
      } else {
        for (const id of ids) if (!index.finished.has(id)) yield id;
        yield* finished;
      }
      return;
    }
    case "state": {
      // One pass into buckets by state (in JobState's order), each in id order.
      const buckets = new Map<JobState, string[]>();
      for (const id of order.desc ? backwards(ids) : ids) {
        const state = store.job(id)?.state ?? JobState.UNSPECIFIED;
        let b = buckets.get(state);
        if (!b) buckets.set(state, (b = []));
        b.push(id);
      }
      const states = [...buckets.keys()].sort((a, b) => (order.desc ? b - a : a - b));
      for (const s of states) yield* buckets.get(s) as string[];
      return;
    }
  }
}

/** A ListJobs request's page size, order and states, checked (INVALID_ARGUMENT for a bad field). */
export function listRequest(req: ListJobsRequest): { size: number; order: JobOrder; states: Set<JobState> } {
  const size = pageSize(req.pageSize);
  const order = parseOrder(req.orderBy);
  if (req.worker) checkWorkerName(req.worker);
  if (req.arrayParent) checkJobId(req.arrayParent, "array_parent");
  for (const s of req.states) checkEnum("states", s, JobStateSchema);
  return { size, order, states: new Set(req.states.filter((s) => s !== JobState.UNSPECIFIED)) };
}

/**
 * Whether a job passes a ListJobs filter. `stateOf` is the state it reads as
 * (an array parent's is computed from its tasks where they are at hand).
 */
export function listed(
  job: Job,
  req: ListJobsRequest,
  states: Set<JobState>,
  stateOf: (job: Job) => JobState = (j) => j.state,
): boolean {
  if (req.arrayParent) {
    if (job.arrayParent !== req.arrayParent) return false;
  } else if (job.arrayParent && !req.includeTasks && !req.worker) return false;
  if (states.size && !states.has(stateOf(job))) return false;
  if (req.worker && job.worker !== req.worker) return false;
  for (const k in req.labels) if (job.spec?.labels[k] !== req.labels[k]) return false;
  return true;
}
