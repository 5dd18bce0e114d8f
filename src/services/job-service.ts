/** JobService handlers: plain functions over the store, free of transport details. */
import { create } from "@bufbuild/protobuf";
import {
  type DeleteJobRequest,
  DeleteJobResponseSchema,
  type GetJobRequest,
  type HoldJobRequest,
  type Job,
  JobState,
  type KillJobRequest,
  type ListJobsRequest,
  OutputStream,
  type ReleaseJobRequest,
  type RequeueJobRequest,
  type RunJobRequest,
  type StreamOutputRequest,
  type StreamOutputResponse,
  StreamOutputResponseSchema,
  type SubmitJobRequest,
  WatchEventType,
  type WatchJobsRequest,
  type WatchJobsResponse,
  WatchJobsResponseSchema,
} from "../../gen/crms/v1/job_pb.js";
import { checkOwner, stampOwner } from "../auth/ownership.js";
import { CrmsError, invalid, notFound, precondition } from "../errors.js";
import { compareIds } from "../ids.js";
import type { CallContext } from "../rpc/context.js";
import { OWNER_LABEL } from "../rpc/names.js";
import { isArrayParent, isFinal } from "../rpc/states.js";
import { arrayIndex } from "../scheduler/arrays.js";
import { evaluate } from "../scheduler/dependencies.js";
import { requestOf } from "../scheduler/fair-share.js";
import { type JobEvent, transition } from "../scheduler/job-machine.js";
import { WAITING_FOR_SLOT } from "../scheduler/placement.js";
import { DEFAULT_QUEUE } from "../store/queues.js";
import { AsyncQueue } from "./async-queue.js";
import type { ServiceDeps } from "./context.js";
import { createHistoryService, lookUp } from "./history-service.js";
import { byIdOrder, listed, listRequest, orderedJobIds } from "./job-order.js";
import { keptOutput } from "./log-service.js";
import type { Sessions } from "./sessions/index.js";
import {
  checkArray,
  checkDependencies,
  checkJobId,
  checkKillGrace,
  checkPageToken,
  checkRevision,
  checkSpec,
  checkWatchIds,
  checkWorkerName,
} from "./validate.js";

/**
 * Why live output is not served here: a run's output is read over its
 * worker's stream, which one replica holds; replicas do not call each other.
 */
function elsewhere(store: ServiceDeps["store"], job: { id: string; worker: string }): string {
  const replica = store.worker(job.worker)?.replica;
  return replica
    ? `job ${job.id} is running on worker ${job.worker}, whose stream is held by replica ${replica}, not this one; ask that replica (or read the stored tail once the job finishes)`
    : `job ${job.id} is running on worker ${job.worker}, which is not attached now; its output can be read when it reconnects or once the job finishes`;
}

/** Fills what a reader expects and the store does not keep (the default pending reason). */
export function present(job: Job): Job {
  if (job.state === JobState.PENDING && !job.pendingReason) return { ...job, pendingReason: WAITING_FOR_SLOT };
  return job;
}

export function createJobService(deps: ServiceDeps, sessions: Sessions) {
  const { store } = deps;
  const arrays = arrayIndex(store);

  /** present() plus an array parent's task counts and what a pending job waits for, computed now. */
  function show(job: Job, withPosition = false): Job {
    let j = job;
    if (j.state === JobState.PENDING && j.spec?.after.length) {
      const v = evaluate(j, (id) => store.job(id));
      if (v.kind === "wait") j = { ...j, pendingReason: v.reason };
    } else if (j.state === JobState.PENDING && j.arrayParent) {
      const reason = arrays.limitReason(j, store);
      if (reason) j = { ...j, pendingReason: reason };
    }
    if (j.state === JobState.PENDING && deps.fairShare) {
      const fs = deps.fairShare;
      // Only for one job at a time (GetJob): counting is linear in the jobs ahead.
      const position = withPosition ? fs.position(j.id) : undefined;
      if (position !== undefined) j = { ...j, queuePosition: BigInt(position) };
      if (!j.pendingReason) {
        const reason = fs.waitReason(j);
        // One job read alone also says where its user stands (the queue's books, read whole).
        if (withPosition)
          j = {
            ...j,
            pendingReason: `${reason ?? `waiting for its turn in queue ${j.queue || "default"}`}; ${fs.standing(j)}`,
          };
        else if (reason) j = { ...j, pendingReason: reason };
      }
    }
    j = present(j);
    if (!isArrayParent(j)) return j;
    const arrayCounts = arrays.counts(j);
    const running = j.state === JobState.PENDING && arrayCounts.running > 0;
    return { ...j, arrayCounts, state: running ? JobState.RUNNING : j.state };
  }

  async function getJob(id: string): Promise<Job> {
    checkJobId(id);
    const job = store.job(id) ?? (await store.fetchJob(id))?.value;
    if (job) return job;
    const archived = await lookUp(deps, id);
    if (archived.job) return archived.job;
    if (archived.error) throw new CrmsError("UNAVAILABLE", `job ${id} is not in etcd, and ${archived.error}`);
    if (await store.mayHaveExpired(id).catch(() => false)) {
      throw notFound(
        `job ${id} not found: it finished and expired (retention deletes finished jobs past their age or count), or was deleted`,
      );
    }
    throw notFound(`job ${id} not found`);
  }

  async function change(id: string, event: JobEvent, ctx?: CallContext): Promise<Job> {
    checkJobId(id);
    const job = await store.updateJob(id, (job) => {
      checkOwner(job, ctx?.identity);
      return transition(job, event);
    });
    if (isArrayParent(job)) await eachTask(id, (task) => transition(task, event));
    return show(job);
  }

  /**
   * Applies a change to every created task of an array (tasks created later
   * follow the parent's state). Tasks the change does not apply to (already
   * ended, or not PENDING for a hold) are left as they are.
   */
  async function eachTask(parent: string, mutate: (task: Job) => Job | undefined): Promise<void> {
    await forTasks(parent, (tid) =>
      store.updateJob(tid, (task) => {
        try {
          return mutate(task);
        } catch (err) {
          if (err instanceof CrmsError && err.code === "FAILED_PRECONDITION") return undefined;
          throw err;
        }
      }),
    );
  }

  /** Runs `fn` on every created task of an array, 64 at a time; tasks gone meanwhile are skipped. */
  async function forTasks(parent: string, fn: (taskId: string) => Promise<unknown>): Promise<void> {
    const ids = arrays.ids(parent);
    for (let i = 0; i < ids.length; i += 64) {
      await Promise.all(
        ids.slice(i, i + 64).map((tid) =>
          fn(tid).catch((err) => {
            if (!(err instanceof CrmsError && err.code === "NOT_FOUND")) throw err;
          }),
        ),
      );
    }
  }

  function matches(job: Job, req: ListJobsRequest, states: Set<JobState>): boolean {
    // A parent matches by the state it reads as (RUNNING while tasks run).
    return listed(job, req, states, (j) => (isArrayParent(j) ? show(j).state : j.state));
  }

  /**
   * The number of jobs a listing matches, from the index's counts, when the
   * filter is at most a set of states (undefined otherwise: then it is counted).
   * Array parents read as a state computed from their tasks, so with any array
   * present a state filter is counted too.
   */
  function knownTotal(req: ListJobsRequest, states: Set<JobState>): number | undefined {
    if (req.worker || req.arrayParent || Object.keys(req.labels).length > 0) return undefined;
    const index = store.jobIndex;
    if (!states.size) return store.jobs.entries.size - (req.includeTasks ? 0 : index.tasks);
    if (index.arrays > 0) return undefined;
    let n = 0;
    for (const s of states) n += (index.counts.get(s) ?? 0) - (req.includeTasks ? 0 : (index.taskCounts.get(s) ?? 0));
    return n;
  }

  return {
    ...createHistoryService(deps),

    async submitJob(req: SubmitJobRequest, ctx?: CallContext) {
      const spec = stampOwner(checkSpec(req.spec, req.requestId), ctx?.identity);
      checkArray(spec);
      checkDependencies(spec.after);
      // Every dependency must exist before the job draws its id, so a job only
      // waits for records older than itself: no cycle can form, and a refused
      // submit uses no id.
      for (const d of spec.after) {
        if (!(store.job(d.jobId) ?? (await store.fetchJob(d.jobId)))) throw notFound(`after: job ${d.jobId} not found`);
      }
      const owner = spec.labels[OWNER_LABEL] ?? "";
      const queue = spec.queue || DEFAULT_QUEUE;
      if (!store.queues.get(queue)) throw notFound(`queue ${queue} does not exist (crms queue list shows the queues)`);
      // A request no known worker could ever hold is refused now rather than left waiting forever.
      const cannot = deps.fairShare?.impossible(requestOf({ spec } as Job), spec.targetWorker);
      if (cannot) throw invalid(cannot);
      let release: (() => void) | undefined;
      try {
        release = deps.admission?.admit(
          spec.array ? spec.array.last - spec.array.first + 1 : 1,
          owner,
          spec.array ? "array submit" : "submit",
        );
      } catch (err) {
        // A retry of a submit that was taken before the cap was reached gets its job back.
        const known = req.requestId ? await store.jobByRequestId(req.requestId) : undefined;
        if (known) return { job: show(known), existing: true };
        if (deps.admission) deps.admission.refused++;
        throw err;
      }
      let created: Awaited<ReturnType<typeof store.createJob>>;
      try {
        created = await store.createJob(spec, req.requestId, undefined, { user: owner, queue }, deps.place);
      } finally {
        release?.();
      }
      const { job, existing } = created;
      deps.log.debug("job submitted", { job: job.id, existing });
      return { job: show(job), existing };
    },

    async getJob(req: GetJobRequest) {
      return { job: show(await getJob(req.id), true) };
    },

    async listJobs(req: ListJobsRequest) {
      const { size, order, states } = listRequest(req);
      // Orders by id return the last id as their token; the others an offset ("p<N>"), which
      // every order takes (a page can jump to "p<N>", e.g. the last one from total_size).
      let after = "";
      let skip = 0;
      const offset = /^p(\d{1,9})$/.exec(req.pageToken);
      if (offset) skip = Number(offset[1]);
      else if (byIdOrder(order)) {
        checkPageToken(req.pageToken, "ListJobs");
        after = req.pageToken;
      } else if (req.pageToken) {
        throw invalid(
          `page_token ${JSON.stringify(req.pageToken.slice(0, 40))} is not a page token of a ${req.orderBy} listing: pass next_page_token as it was returned, or none for the first page`,
        );
      }
      const known = knownTotal(req, states);
      const jobs: Job[] = [];
      let total = 0;
      let more = false;
      // With the total known from the index the walk starts at the token's id and stops
      // after the page; otherwise every job is looked at to count them.
      for (const id of orderedJobIds(store, order, known === undefined ? "" : after)) {
        const job = store.job(id);
        if (!job || !matches(job, req, states)) continue;
        total++;
        if (after && (order.desc ? compareIds(id, after) >= 0 : compareIds(id, after) <= 0)) continue;
        if (skip > 0) {
          skip--;
          continue;
        }
        if (jobs.length < size) jobs.push(show(job));
        else {
          more = true;
          if (known !== undefined) break;
        }
      }
      const next = !more
        ? ""
        : byIdOrder(order) && !offset
          ? (jobs.at(-1)?.id ?? "")
          : `p${Number(offset?.[1] ?? 0) + jobs.length}`;
      return { jobs, nextPageToken: next, totalSize: known ?? total };
    },

    watchJobs(req: WatchJobsRequest, ctx: CallContext): AsyncIterable<WatchJobsResponse> {
      checkWatchIds(req.ids);
      checkRevision("after_revision", req.afterRevision, "the current jobs, then changes");
      const ids = new Set(req.ids);
      const wanted = (id: string) => ids.size === 0 || ids.has(id);
      const q = new AsyncQueue<WatchJobsResponse>();
      const send = (type: WatchEventType, job: Job, revision: number) =>
        q.push(create(WatchJobsResponseSchema, { type, job: show(job), revision: BigInt(revision) }));
      if (req.afterRevision > 0n) {
        const after = Number(req.afterRevision);
        // Resume: every record changed after that revision, in its current form. (Deletions
        // in between are not replayed; DELETED events only follow from here.)
        if (after > store.jobs.revision) throw invalid(`after_revision ${after} is in the future`);
        for (const [id, e] of store.jobs.entries)
          if (e.mod > after && wanted(id)) send(WatchEventType.PUT, e.value, e.mod);
      } else {
        for (const [id, e] of store.jobs.entries) if (wanted(id)) send(WatchEventType.EXISTING, e.value, e.mod);
        q.push(create(WatchJobsResponseSchema, { type: WatchEventType.SYNCED, revision: BigInt(store.jobs.revision) }));
      }
      const onPut = (id: string, e: { value: Job; mod: number }) =>
        wanted(id) && send(WatchEventType.PUT, e.value, e.mod);
      const onDelete = (id: string, prev: { value: Job }, revision: number) =>
        wanted(id) && send(WatchEventType.DELETED, prev.value, revision);
      store.jobs.on("put", onPut);
      store.jobs.on("delete", onDelete);
      ctx.signal.addEventListener(
        "abort",
        () => {
          store.jobs.off("put", onPut);
          store.jobs.off("delete", onDelete);
          q.end();
        },
        { once: true },
      );
      return q;
    },

    async killJob(req: KillJobRequest, ctx?: CallContext) {
      const id = req.id;
      checkJobId(id);
      checkKillGrace(req.graceSeconds);
      /** A kill already requested: a forced one, or one with a shorter grace, overrides it. */
      const sooner = (job: Job): Job | undefined => {
        if (job.killForce) return undefined;
        if (req.force) return { ...job, killForce: true };
        const current = job.killGraceSeconds || deps.options.killGraceSeconds;
        if (req.graceSeconds && req.graceSeconds < current) return { ...job, killGraceSeconds: req.graceSeconds };
        return undefined;
      };
      const kill = (job: Job) => {
        const next = transition(job, { type: "kill", now: new Date() });
        if (!next) return sooner(job);
        if (req.graceSeconds) next.killGraceSeconds = req.graceSeconds;
        if (req.force) next.killForce = true;
        return next;
      };
      const job = await store.updateJob(id, (job) => {
        checkOwner(job, ctx?.identity);
        if (!isArrayParent(job)) return kill(job);
        // A parent ends (KILLED) when its tasks have: stop creating tasks, kill the created ones.
        if (isFinal(job.state)) throw precondition(`array ${id} already ended (${JobState[job.state]})`);
        if (job.killRequested) return sooner(job);
        return {
          ...job,
          killRequested: true,
          killGraceSeconds: req.graceSeconds || job.killGraceSeconds,
          killForce: req.force,
        };
      });
      if (isArrayParent(job)) await eachTask(id, kill);
      deps.log.info("kill requested", { job: id, state: JobState[job.state] });
      return { job: show(job) };
    },

    async holdJob(req: HoldJobRequest, ctx?: CallContext) {
      return { job: await change(req.id, { type: "hold" }, ctx) };
    },

    async releaseJob(req: ReleaseJobRequest, ctx?: CallContext) {
      return { job: await change(req.id, { type: "release" }, ctx) };
    },

    async runJob(req: RunJobRequest, ctx?: CallContext) {
      checkJobId(req.id);
      checkWorkerName(req.worker);
      checkOwner(await getJob(req.id), ctx?.identity);
      if (!store.worker(req.worker)) throw notFound(`worker ${req.worker} is not known`);
      const job = await store.updateJob(req.id, (job) => {
        checkOwner(job, ctx?.identity);
        if (isArrayParent(job)) throw precondition(`job ${req.id} is an array; run its tasks one by one`);
        return transition(job, { type: "run-on", worker: req.worker });
      });
      deps.log.info("job to run on a named worker", { job: req.id, worker: req.worker });
      return { job: show(job) };
    },

    async requeueJob(req: RequeueJobRequest, ctx?: CallContext) {
      checkJobId(req.id);
      const requeue = (job: Job) => transition(job, { type: "requeue" });
      const current = await getJob(req.id);
      checkOwner(current, ctx?.identity);
      if (isArrayParent(current)) {
        if (!isFinal(current.state))
          throw precondition(`array ${req.id} is ${JobState[current.state]}; only a finished array can be requeued`);
        // Tasks first: a parent PENDING again over tasks that all still read final would end at once.
        await eachTask(req.id, (task) =>
          req.failedOnly && task.state === JobState.SUCCEEDED ? undefined : requeue(task),
        );
      }
      const job = await store.updateJob(req.id, (job) => {
        checkOwner(job, ctx?.identity);
        return requeue(job);
      });
      deps.log.info("job requeued", { job: req.id, failedOnly: req.failedOnly });
      return { job: show(job) };
    },

    async deleteJob(req: DeleteJobRequest) {
      checkJobId(req.id);
      const finished = (id: string) => (job: Job) => {
        if (!isFinal(job.state))
          throw precondition(`job ${id} is ${JobState[job.state]}; only a finished job can be deleted (kill it first)`);
      };
      await store.deleteJob(req.id, finished(req.id));
      // An array's tasks go with it (all ended, since the parent did).
      await forTasks(req.id, (tid) => store.deleteJob(tid, finished(tid)));
      return create(DeleteJobResponseSchema, {});
    },

    async *streamOutput(req: StreamOutputRequest, ctx: CallContext): AsyncIterable<StreamOutputResponse> {
      const job = await getJob(req.id);
      const live =
        job.attempt > 0 ? sessions.requestOutput(job.worker, job.id, job.attempt, req.follow, ctx.signal) : undefined;
      if (!live) {
        if (job.state === JobState.RUNNING || job.state === JobState.ASSIGNED)
          throw precondition(elsewhere(store, job));
        // The worker is gone or elsewhere: the full output kept at job end, else the stored tails.
        const kept = await keptOutput(deps, job);
        if (kept) {
          yield* kept;
          return;
        }
        if (job.stdoutTail.length)
          yield create(StreamOutputResponseSchema, {
            stream: OutputStream.STDOUT,
            data: job.stdoutTail,
            truncated: true,
          });
        if (job.stderrTail.length)
          yield create(StreamOutputResponseSchema, {
            stream: OutputStream.STDERR,
            data: job.stderrTail,
            truncated: true,
          });
        return;
      }
      for await (const chunk of live) {
        if (chunk.error) throw precondition(`output of job ${job.id} is not available: ${chunk.error}`);
        if (chunk.data.length)
          yield create(StreamOutputResponseSchema, { stream: chunk.stream, data: chunk.data, offset: chunk.offset });
        if (chunk.eof) return;
      }
    },
  };
}
