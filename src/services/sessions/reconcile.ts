/**
 * Hello reconciliation, pure: what a worker reports in its Hello (the runs it
 * still has and the ends it could not report) against the store's view of its
 * jobs, turned into steps for the registry to carry out.
 */
import { type Job, JobState } from "../../../gen/crms/v1/job_pb.js";
import type { Hello, JobFinished } from "../../../gen/crms/v1/worker_pb.js";
import { isActive } from "../../rpc/states.js";

/** One step of a hello's reconciliation. */
export type HelloStep =
  /** Record a run's end the worker kept while it could not report it (the report applier decides). */
  | { do: "finish"; report: JobFinished }
  /** The worker runs the job's current attempt: keep it; `startPid` set: record its start (the job is still ASSIGNED). */
  | { do: "adopt"; jobId: string; attempt: number; startPid?: number }
  /** The worker runs an attempt that is no longer current (or a job the store does not know): end that run. */
  | { do: "refuse"; jobId: string; attempt: number; reason: string }
  /** The store has this attempt on the worker, which no longer has it: the run is lost. */
  | { do: "lose"; jobId: string; attempt: number; reason: string }
  /** The store has this attempt on the worker and it was not sent to this session yet: send what it lacks. */
  | { do: "push"; job: Job };

/** The store's view of the worker's jobs, read when a step needs it (so a step sees the ones before it). */
export interface HelloView {
  /** The store's record of a job, or undefined if it does not know it. */
  job(id: string): Job | undefined;
  /** The jobs the store has ASSIGNED or RUNNING on this worker. */
  active(): Iterable<string>;
  /** The attempt last sent to this session in an Assign, if any. */
  sent(id: string): number | undefined;
  /** Whether the hello comes from a new process under this name (a different incarnation). */
  restarted: boolean;
}

/** The reason a refused run's kill carries. */
export const NOT_CURRENT = "run is no longer current";

/**
 * The steps for one hello, in the order they must be carried out: the ends
 * reported while away, then each reported run, then the worker's other
 * active jobs. Lazy: the caller carries out each step before asking for the
 * next, and `view` is read only then.
 */
export function* reconcileHello(hello: Hello, view: HelloView): Generator<HelloStep, void, undefined> {
  for (const report of hello.finished) yield { do: "finish", report };
  // By attempt: a report of an older attempt says nothing about the current one.
  const reported = new Set<string>(hello.finished.map((f) => `${f.jobId}#${f.attempt}`));
  for (const run of hello.running) {
    reported.add(`${run.jobId}#${run.attempt}`);
    const job = view.job(run.jobId);
    if (job && isActive(job.state) && job.worker === hello.name && job.attempt === run.attempt) {
      yield {
        do: "adopt",
        jobId: job.id,
        attempt: job.attempt,
        ...(job.state === JobState.ASSIGNED ? { startPid: run.pid } : {}),
      };
    } else {
      yield { do: "refuse", jobId: run.jobId, attempt: run.attempt, reason: NOT_CURRENT };
    }
  }
  for (const id of [...view.active()]) {
    const job = view.job(id);
    // Sent to this session meanwhile (placed while the hello was handled): it is this process's own.
    if (!job || reported.has(`${id}#${job.attempt}`) || view.sent(id) === job.attempt) continue;
    if (job.state === JobState.RUNNING || (view.restarted && job.state === JobState.ASSIGNED)) {
      // The worker does not have it (it restarted): that run is lost. An ASSIGNED attempt is
      // never sent to a new process again: the old one may have started it (at most once).
      const reason =
        job.state === JobState.ASSIGNED
          ? `worker ${hello.name} restarted (new process) without reporting attempt ${job.attempt}`
          : `worker ${hello.name} restarted without it`;
      yield { do: "lose", jobId: id, attempt: job.attempt, reason };
    } else {
      yield { do: "push", job };
    }
  }
}
