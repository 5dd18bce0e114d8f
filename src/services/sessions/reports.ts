/**
 * The report applier: writes a worker's start and finish reports to the store.
 * Under load a start waits START_DELAY_MS for its run's finish so that a short
 * job's two reports become one transition (when the store is idle, only for the
 * reports already received); a report etcd could not take is retried while
 * the session lasts; a report for a run that is no longer current is refused
 * and that run killed.
 */
import { JobState } from "../../../gen/crms/v1/job_pb.js";
import type { JobFinished, JobStarted } from "../../../gen/crms/v1/worker_pb.js";
import { transition } from "../../scheduler/job-machine.js";
import { toCrmsError } from "../../store/errors.js";
import type { ServiceDeps } from "../context.js";
import type { RunStart, WorkerSession } from "../worker-session.js";

/** How long a start report waits for its run's finish report, to write both at once (short jobs). */
const START_DELAY_MS = 5;

export class ReportApplier {
  /** `current`: whether a session still holds its worker here (else its retries stop). */
  constructor(
    private readonly deps: ServiceDeps,
    private readonly current: (session: WorkerSession) => boolean,
  ) {}

  // Reports are applied concurrently, not one after another: the store keeps the
  // writes of one job in order, and a worker's jobs are independent of each other.
  // Under load a start is written START_DELAY_MS later: if its run's finish arrives by then
  // (a short job), one transition records both (3 writes per job instead of 4). When no
  // Txn is in flight or queued it waits only for the reports already received (setImmediate:
  // a finish that came with it still joins): on the quiet path a longer wait would only make
  // RUNNING later, and a write more costs nothing that is scarce.

  /** A start report from the stream: written soon (see above), unless its finish came first. */
  started(session: WorkerSession, report: JobStarted): void {
    const { jobId, attempt, pid } = report;
    // The start time is when the report came, not when it is written (a little later, or a retry).
    const at = new Date();
    session.starting.set(jobId, { attempt, pid, at });
    const write = () => {
      if (session.starting.get(jobId)?.attempt !== attempt) return;
      session.starting.delete(jobId);
      void this.writeStart(session, jobId, { attempt, pid, at }).catch((err) => this.reportFailed(session, jobId, err));
    };
    if (this.deps.store.batcher.busy) setTimeout(write, START_DELAY_MS);
    else setImmediate(write);
  }

  /** A finish report from the stream: written with its run's start if that is still waiting. */
  finished(session: WorkerSession, report: JobFinished): void {
    const { jobId, attempt } = report;
    const start = session.starting.get(jobId);
    const started = start?.attempt === attempt ? start : undefined;
    if (started) session.starting.delete(jobId);
    void this.finish(session, report, started).catch((err) => this.reportFailed(session, jobId, err));
  }

  private reportFailed(session: WorkerSession, jobId: string, err: unknown): void {
    this.deps.log.error("applying a worker report failed", { worker: session.name, job: jobId, error: String(err) });
  }

  private async writeStart(session: WorkerSession, jobId: string, start: RunStart): Promise<void> {
    const { attempt, pid, at } = start;
    try {
      await this.deps.store.updateJob(jobId, (job) =>
        transition(job, { type: "started", worker: session.name, attempt, pid, now: at }),
      );
    } catch (err) {
      const e = toCrmsError(err);
      if (e.code === "FAILED_PRECONDITION" || e.code === "NOT_FOUND") return this.refuse(session, jobId, attempt, err);
      this.retryLater(session, "start", jobId, e.message, () => this.writeStart(session, jobId, start));
    }
  }

  /**
   * A report etcd could not take (NOSPACE, unavailable): try again in 2 s while
   * the session lasts (waiting quietly while etcd does not answer, then at once
   * when it does); a new session gets the report again in its hello.
   */
  private retryLater(
    session: WorkerSession,
    what: string,
    jobId: string,
    error: string,
    again: () => Promise<void>,
    quiet = false,
  ) {
    if (!quiet) this.deps.log.warn(`could not record ${what}; will retry`, { job: jobId, worker: session.name, error });
    const health = this.deps.store.health;
    const retry = () => {
      health.off("restored", retry);
      clearTimeout(timer);
      if (!this.current(session)) return;
      if (!health.reachable) return this.retryLater(session, what, jobId, error, again, true);
      void again().catch((err) => this.reportFailed(session, jobId, err));
    };
    const timer = setTimeout(retry, 2000);
    timer.unref();
    if (!health.reachable) health.once("restored", retry);
  }

  /** A report for a run that is no longer current: tell the worker to end that run (rethrows any other error). */
  refuse(session: WorkerSession, jobId: string, attempt: number, err: unknown): void {
    const e = toCrmsError(err);
    if (e.code !== "FAILED_PRECONDITION" && e.code !== "NOT_FOUND") throw err;
    this.deps.log.info("refused stale report; killing that run", {
      job: jobId,
      worker: session.name,
      attempt,
      error: e.message,
    });
    session.send({
      case: "kill",
      value: { jobId, attempt, graceSeconds: 1, reason: `attempt superseded: ${e.message}` },
    });
  }

  /** Records a finish report; with `start`, the run's start (not yet written) in the same transition. */
  async finish(session: WorkerSession, report: JobFinished, start?: RunStart): Promise<void> {
    const cap = this.deps.options.tailBytes;
    report.stdoutTail = report.stdoutTail.subarray(Math.max(0, report.stdoutTail.length - cap));
    report.stderrTail = report.stderrTail.subarray(Math.max(0, report.stderrTail.length - cap));
    try {
      const job = await this.deps.store.updateJob(report.jobId, (job) => {
        const now = new Date();
        const worker = session.name;
        const started =
          start === undefined
            ? job
            : (transition(job, { type: "started", worker, attempt: report.attempt, pid: start.pid, now: start.at }) ??
              job);
        if (report.fenced) {
          // Ended by its worker's fencing (cut off for the grace): the run was lost, not failed.
          const reason = report.error || `worker ${worker} was cut off for the grace period`;
          return transition(started, { type: "lost", worker, attempt: report.attempt, reason, now }) ?? started;
        }
        return transition(started, { type: "finished", worker, report, now });
      });
      this.deps.log.debug("job finished", { job: job.id, worker: session.name, state: JobState[job.state] });
    } catch (err) {
      const e = toCrmsError(err);
      if (e.code !== "FAILED_PRECONDITION" && e.code !== "NOT_FOUND") {
        // Not written and not refused for a reason (etcd away or full, contention): not
        // acknowledged, so the worker keeps the report, and tried again until it lands.
        return this.retryLater(session, "finish", report.jobId, e.message, () => this.finish(session, report, start));
      }
      this.deps.log.info("refused stale finish report", {
        job: report.jobId,
        worker: session.name,
        attempt: report.attempt,
        error: e.message,
      });
    }
    session.send({ case: "ack", value: { jobId: report.jobId, attempt: report.attempt } });
  }
}
