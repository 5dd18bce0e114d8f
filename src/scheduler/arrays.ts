/**
 * Job arrays. SubmitJob stores only the parent (one small, atomic, idempotent
 * write: a crash can never leave a half-created array behind a request id).
 * The elected scheduler then materialises the tasks lazily, in bounded Txns
 * (at most TASK_BATCH records and about 1 MiB each, below etcd's default 128
 * ops and 1.5 MiB request limits), each Txn also advancing the parent's
 * `array_created` under a compare on the parent's revision: a crash between
 * batches leaves a parent that says exactly how many tasks exist, and the next
 * leader continues from there. At most MATERIALIZE_AHEAD unfinished tasks of
 * one array exist at a time (more are created as tasks end), so a 100,000-task
 * array does not put 100,000 records in etcd and the pending queue at once.
 * Tasks are ordinary jobs with `array_parent`
 * set, so placement, retries and timeouts apply to them unchanged.
 *
 * The parent never runs itself: it stays PENDING (out of the pending queue)
 * until every created task ended and no more will be created, then takes a
 * final state. Its per-state counts are computed on read from ArrayIndex,
 * never written per task change (that would serialize every task's update
 * on one record).
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type ArrayCounts, ArrayCountsSchema, type Job, JobSchema, JobState } from "../../gen/crms/v1/job_pb.js";
import { perObject } from "../memo.js";
import { arraySize, isArrayParent, isFinal } from "../rpc/states.js";
import type { Compare } from "../store/batcher.js";
import type { Entry } from "../store/cache.js";
import type { Store } from "../store/store.js";

/** Most tasks created in one Txn (plus the parent and fencing compares: under 128 ops). */
export const TASK_BATCH = 100;
/** Bytes of task records per Txn, under etcd's 1.5 MiB request limit. */
const TASK_BATCH_BYTES = 1024 * 1024;
/** Largest array accepted at submit. */
export const MAX_ARRAY_TASKS = 100_000;
/** Unfinished task records kept ahead per array; more are created as tasks end. */
export const MATERIALIZE_AHEAD = 5_000;

interface Tasks {
  states: Map<string, JobState>;
  byState: Map<JobState, number>;
}

/** Live per-parent task sets and counts by state, kept from the job cache's events. */
export class ArrayIndex {
  private readonly tasks = new Map<string, Tasks>();
  /** Array parents that have not ended (the scheduler materialises and ends them). */
  readonly parents = new Set<string>();

  constructor(store: Store) {
    for (const [id, e] of store.jobs.entries) this.put(id, e.value);
    store.jobs.on("put", (id, e: Entry<Job>) => this.put(id, e.value));
    store.jobs.on("delete", (id, prev: Entry<Job>) => {
      this.parents.delete(id);
      this.remove(prev.value.arrayParent, id);
    });
  }

  private bump(t: Tasks, s: JobState, by: number): void {
    t.byState.set(s, (t.byState.get(s) ?? 0) + by);
  }

  private put(id: string, job: Job): void {
    if (isArrayParent(job)) {
      if (isFinal(job.state)) this.parents.delete(id);
      else this.parents.add(id);
    }
    if (!job.arrayParent) return;
    let t = this.tasks.get(job.arrayParent);
    if (!t) {
      t = { states: new Map(), byState: new Map() };
      this.tasks.set(job.arrayParent, t);
    }
    const prev = t.states.get(id);
    if (prev === job.state) return;
    if (prev !== undefined) this.bump(t, prev, -1);
    this.bump(t, job.state, 1);
    t.states.set(id, job.state);
  }

  private remove(parent: string, id: string): void {
    const t = this.tasks.get(parent);
    const prev = t?.states.get(id);
    if (!t || prev === undefined) return;
    this.bump(t, prev, -1);
    t.states.delete(id);
    if (t.states.size === 0) this.tasks.delete(parent);
  }

  /** Task ids of a parent (unordered). */
  ids(parent: string): string[] {
    return [...(this.tasks.get(parent)?.states.keys() ?? [])];
  }

  private n(parent: string, s: JobState): number {
    return this.tasks.get(parent)?.byState.get(s) ?? 0;
  }

  /** Tasks of a parent holding a slot now. */
  active(parent: string): number {
    return this.n(parent, JobState.ASSIGNED) + this.n(parent, JobState.RUNNING);
  }

  /** How many more tasks of a parent may take a slot now under its %K limit (Infinity: no limit). */
  room(parent: string, store: Store): number {
    const limit = store.job(parent)?.spec?.array?.maxRunning ?? 0;
    return limit > 0 ? limit - this.active(parent) : Number.POSITIVE_INFINITY;
  }

  /** Why a pending task waits for its array's limit, or "" when it does not. */
  limitReason(task: Job, store: Store): string {
    if (!task.arrayParent || this.room(task.arrayParent, store) > 0) return "";
    const limit = store.job(task.arrayParent)?.spec?.array?.maxRunning ?? 0;
    return `array ${task.arrayParent} has ${limit} tasks running (its limit)`;
  }

  /** Created tasks of a parent that have not ended. */
  unfinished(parent: string): number {
    const c = this.tasks.get(parent)?.states.size ?? 0;
    return c - this.ended(parent);
  }

  private ended(parent: string): number {
    return (
      this.n(parent, JobState.SUCCEEDED) +
      this.n(parent, JobState.FAILED) +
      this.n(parent, JobState.KILLED) +
      this.n(parent, JobState.LOST)
    );
  }

  counts(parent: Job): ArrayCounts {
    const id = parent.id;
    return create(ArrayCountsSchema, {
      total: arraySize(parent),
      created: parent.arrayCreated,
      // Not created yet counts as pending (unless the array was killed: those never will be).
      pending:
        this.n(id, JobState.PENDING) +
        (parent.killRequested ? 0 : Math.max(0, arraySize(parent) - parent.arrayCreated)),
      held: this.n(id, JobState.HELD),
      running: this.active(id),
      succeeded: this.n(id, JobState.SUCCEEDED),
      failed: this.n(id, JobState.FAILED),
      killed: this.n(id, JobState.KILLED),
      lost: this.n(id, JobState.LOST),
    });
  }

  /** The final state the parent should take now, or undefined while tasks remain. */
  finalState(parent: Job): JobState | undefined {
    if (isFinal(parent.state)) return undefined;
    const done = parent.killRequested || parent.arrayCreated >= arraySize(parent);
    if (!done || this.unfinished(parent.id) > 0) return undefined;
    const id = parent.id;
    if (parent.killRequested || this.n(id, JobState.KILLED) > 0) return JobState.KILLED;
    return this.n(id, JobState.FAILED) + this.n(id, JobState.LOST) > 0 ? JobState.FAILED : JobState.SUCCEEDED;
  }
}

/** The store's ArrayIndex (one per store, made on first use). */
export const arrayIndex = perObject((store: Store) => new ArrayIndex(store));

/** The record of task `index` of `parent`. */
function taskOf(parent: Job, id: string, index: number, now: Date): Job {
  const spec = structuredClone(parent.spec);
  if (!spec) throw new Error("array parent without spec");
  spec.array = undefined;
  spec.env = { ...spec.env, CRMS_ARRAY_INDEX: String(index), CRMS_ARRAY_ID: parent.id };
  spec.name = `${spec.name || parent.id}[${index}]`;
  return create(JobSchema, {
    id,
    spec,
    state: parent.state === JobState.HELD ? JobState.HELD : JobState.PENDING,
    submitTime: timestampFromDate(now),
    arrayParent: parent.id,
    arrayIndex: index,
    user: parent.user,
    queue: parent.queue,
  });
}

/**
 * Creates the next batch of tasks of a parent, if any remain. Returns true
 * when a batch was written (call again for the next one).
 */
export async function materializeBatch(store: Store, parentId: string, fence: Compare[]): Promise<boolean> {
  const entry = store.jobs.entries.get(parentId);
  const parent = entry?.value;
  const a = parent?.spec?.array;
  if (!entry || !parent || !a || parent.killRequested || isFinal(parent.state)) return false;
  const total = arraySize(parent);
  if (parent.arrayCreated >= total) return false;
  if (arrayIndex(store).unfinished(parentId) >= MATERIALIZE_AHEAD) return false;
  const sample = taskOf(parent, "0", a.last, new Date());
  const perTask = Buffer.byteLength(JSON.stringify(sample.spec)) + 256;
  const batch = Math.max(1, Math.min(TASK_BATCH, Math.floor(TASK_BATCH_BYTES / perTask), total - parent.arrayCreated));
  const now = new Date();
  const tasks: Job[] = [];
  for (let i = 0; i < batch; i++) {
    tasks.push(taskOf(parent, await store.nextId(), a.first + parent.arrayCreated + i, now));
  }
  const next = structuredClone(parent);
  next.arrayCreated += batch;
  return store.createJobsWith(next, entry.mod, tasks, fence);
}

/** Parses "FIRST-LAST[%MAX]" or "N" (the CLI's --array); throws a message on bad input. */
export function parseArraySpec(text: string): { first: number; last: number; maxRunning: number } {
  const m = /^(\d+)(?:-(\d+))?(?:%(\d+))?$/.exec(text);
  if (!m) throw new Error(`--array ${JSON.stringify(text)}: expected FIRST-LAST or FIRST-LAST%MAX, e.g. 1-1000%50`);
  const first = Number(m[1]);
  const last = m[2] === undefined ? first : Number(m[2]);
  return { first, last, maxRunning: m[3] === undefined ? 0 : Number(m[3]) };
}

/** "1-1000%50" for a spec. */
export function formatArraySpec(a: { first: number; last: number; maxRunning: number }): string {
  return `${a.first}-${a.last}${a.maxRunning ? `%${a.maxRunning}` : ""}`;
}
