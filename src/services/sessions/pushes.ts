/**
 * What the caches' changes send to an attached worker: assignments and kills
 * as its jobs change, drain, resume and shutdown as its record does (whichever
 * replica wrote them).
 */
import { type Job, JobState } from "../../../gen/crms/v1/job_pb.js";
import { type Worker, WorkerState } from "../../../gen/crms/v1/worker_pb.js";
import { isActive } from "../../rpc/states.js";
import type { WorkerSession } from "../worker-session.js";

/** Sends a job's Assign or Kill to the session holding its worker, once per attempt (and grace). */
export function pushJob(session: WorkerSession, job: Job, defaultKillGraceSeconds: number): void {
  if (!isActive(job.state)) {
    // The run is over (ended or requeued): forget it, or a session grows by one entry per job it ever ran.
    session.assigned.delete(job.id);
    session.killed.delete(job.id);
    session.killGrace.delete(job.id);
    return;
  }
  if (!session.open) return;
  if (job.state === JobState.ASSIGNED && session.assigned.get(job.id) !== job.attempt && !job.killRequested) {
    session.assigned.set(job.id, job.attempt);
    const gpuIndices = job.attempts.at(-1)?.gpuIndices ?? [];
    session.send({ case: "assign", value: { jobId: job.id, attempt: job.attempt, spec: job.spec, gpuIndices } });
  }
  // A kill is sent again when a later KillJob shortened its grace or forced it (the worker keeps the sooner end).
  const grace = job.killForce ? 0 : job.killGraceSeconds || defaultKillGraceSeconds;
  if (job.killRequested && (session.killed.get(job.id) !== job.attempt || session.killGrace.get(job.id) !== grace)) {
    session.killed.set(job.id, job.attempt);
    session.killGrace.set(job.id, grace);
    session.send({
      case: "kill",
      value: {
        jobId: job.id,
        attempt: job.attempt,
        graceSeconds: grace,
        reason: job.preemptRequested ? "preempted for another queue's fair share" : "killed by request",
      },
    });
  }
}

/** Sends drain, resume or shutdown when the worker's record asks for it (the caller checked it is held here). */
export function pushWorker(session: WorkerSession, w: Worker): void {
  if (w.state === WorkerState.DRAINING && session.state === "ATTACHED") {
    session.to("drain");
    session.send({ case: "drain", value: {} });
  }
  if (w.state === WorkerState.UP && session.state === "DRAINING") {
    session.to("resume");
    session.send({ case: "resume", value: {} });
  }
  if (w.stopRequested) {
    session.send({ case: "shutdown", value: { reason: "stopped by request", keepRuns: w.stopKeepRuns } });
  }
}
