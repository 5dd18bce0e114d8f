/**
 * The job state machine: one event type and one transition function. Every
 * change to a job record goes through `transition`; it returns the new record,
 * `undefined` when the event changes nothing (a repeated report), or throws a
 * FAILED_PRECONDITION CrmsError when the event is not allowed in this state.
 * It never modifies its input: the new record is a copy-on-write of it (the
 * top level and the changed attempt are new objects, the rest is shared), so
 * the store can hand it cached records without cloning them.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type Attempt, AttemptSchema, type Job, JobState, type Usage, UsageSchema } from "../../gen/crms/v1/job_pb.js";
import type { JobFinished } from "../../gen/crms/v1/worker_pb.js";
import { precondition } from "../errors.js";
import { isActive, isFinal } from "../rpc/states.js";

/** Default number of LOST runs requeued when the spec says 0. */
export const DEFAULT_MAX_LOST_RETRIES = 3;

export type JobEvent =
  | { type: "assign"; worker: string; now: Date; gpus?: number[] }
  | { type: "started"; worker: string; attempt: number; pid: number; now: Date }
  | { type: "finished"; worker: string; report: JobFinished; now: Date }
  | { type: "lost"; worker: string; attempt: number; reason: string; now: Date }
  | { type: "kill"; now: Date }
  /** The scheduler stops the run for another queue's share: SIGTERM, the grace, SIGKILL; then PENDING again. */
  | { type: "preempt"; graceSeconds: number }
  | { type: "hold" }
  | { type: "release" }
  /** RunJob: a HELD or PENDING job is to run on this worker (released if HELD). */
  | { type: "run-on"; worker: string }
  /** RequeueJob: a finished job runs again as a new attempt, its attempts kept. */
  | { type: "requeue" }
  | { type: "reason"; reason: string }
  /** A dependency can no longer be met: the pending job fails without running. */
  | { type: "unmet"; reason: string; now: Date }
  /** Every task of an array parent ended: the parent takes its summary state. */
  | { type: "array-done"; state: JobState; now: Date };

export const stateName = (s: JobState): string => JobState[s] ?? String(s);

/** Replaces the draft's current attempt by a copy it may change, and returns that copy. */
function ownAttempt(draft: Job): Attempt | undefined {
  const last = draft.attempts.at(-1);
  if (!last) return undefined;
  const copy = { ...last };
  draft.attempts = [...draft.attempts.slice(0, -1), copy];
  return copy;
}

function sameRun(job: Job, worker: string, attempt: number): boolean {
  return isActive(job.state) && job.worker === worker && job.attempt === attempt;
}

/** Adds a run's usage to the job's total. */
function addUsage(total: Usage | undefined, run: Usage): Usage {
  return create(UsageSchema, {
    cpuSeconds: (total?.cpuSeconds ?? 0) + run.cpuSeconds,
    maxRssBytes: (total?.maxRssBytes ?? 0n) > run.maxRssBytes ? total?.maxRssBytes : run.maxRssBytes,
    wallSeconds: (total?.wallSeconds ?? 0) + run.wallSeconds,
    gpuSeconds: (total?.gpuSeconds ?? 0) + run.gpuSeconds,
  });
}

/** Clears what a kill request left on a job that goes back to PENDING. */
function clearKill(job: Job): void {
  job.killRequested = false;
  job.killForce = false;
  job.killGraceSeconds = 0;
  job.preemptRequested = false;
}

/** Ends the current attempt of a draft (a copy) and decides where the job goes next. */
function endAttempt(
  job: Job,
  outcome: JobState,
  fields: { exitCode?: number; signal?: string; error?: string },
  now: Date,
): Job {
  const attempt = ownAttempt(job);
  const end = timestampFromDate(now);
  if (attempt) {
    attempt.outcome = outcome;
    attempt.endTime = end;
    attempt.exitCode = fields.exitCode;
    attempt.signal = fields.signal ?? "";
    attempt.error = fields.error ?? "";
  }
  job.exitCode = fields.exitCode;
  job.signal = fields.signal ?? "";
  job.error = fields.error ?? "";
  if (outcome === JobState.PREEMPTED) {
    // Charged to neither retry budget.
    job.preemptions++;
    clearKill(job);
    job.state = JobState.PENDING;
    job.pendingReason = `preempted ${job.preemptions} time(s) for another queue's fair share; waiting to run again`;
    return job;
  }
  if (outcome === JobState.FAILED) {
    job.failures++;
    if (job.failures <= (job.spec?.maxRetries ?? 0) && !job.killRequested) {
      job.state = JobState.PENDING;
      job.pendingReason = `retry ${job.failures} of ${job.spec?.maxRetries}: ${job.error || "run failed"}`;
      return job;
    }
  }
  if (outcome === JobState.LOST) {
    job.lostCount++;
    const limit = job.spec?.maxLostRetries || DEFAULT_MAX_LOST_RETRIES;
    if (job.killRequested) {
      job.state = JobState.KILLED;
      job.endTime = end;
      return job;
    }
    if (job.lostCount <= limit) {
      job.state = JobState.PENDING;
      job.pendingReason = `requeued after lost run ${job.lostCount} of ${limit}: ${job.error}`;
      return job;
    }
  }
  job.state = outcome;
  job.endTime = end;
  return job;
}

/** Applies one event to a job; returns a new record and leaves `current` as it was. */
export function transition(current: Readonly<Job>, event: JobEvent): Job | undefined {
  const job: Job = { ...current };
  switch (event.type) {
    case "assign": {
      if (job.state !== JobState.PENDING) return undefined;
      job.state = JobState.ASSIGNED;
      job.attempt++;
      job.worker = event.worker;
      job.pid = 0;
      job.pendingReason = "";
      job.attempts = [
        ...job.attempts,
        create(AttemptSchema, {
          number: job.attempt,
          worker: event.worker,
          assignTime: timestampFromDate(event.now),
          gpuIndices: event.gpus ?? [],
        }),
      ];
      return job;
    }
    case "started": {
      if (job.state === JobState.RUNNING && sameRun(job, event.worker, event.attempt)) return undefined;
      if (job.state !== JobState.ASSIGNED || !sameRun(job, event.worker, event.attempt)) {
        throw precondition(
          `attempt ${event.attempt} of job ${job.id} on ${event.worker} is not current (job is ${stateName(job.state)}, attempt ${job.attempt} on ${job.worker || "no worker"})`,
        );
      }
      job.state = JobState.RUNNING;
      job.pid = event.pid;
      job.startTime = timestampFromDate(event.now);
      const attempt = ownAttempt(job);
      if (attempt) attempt.startTime = job.startTime;
      return job;
    }
    case "finished": {
      const r = event.report;
      if (!sameRun(job, event.worker, r.attempt)) {
        throw precondition(
          `attempt ${r.attempt} of job ${job.id} on ${event.worker} is not current (job is ${stateName(job.state)}, attempt ${job.attempt} on ${job.worker || "no worker"})`,
        );
      }
      if (r.pid) job.pid = r.pid;
      job.stdoutTail = r.stdoutTail;
      job.stderrTail = r.stderrTail;
      if (r.usage) {
        const attempt = ownAttempt(job);
        if (attempt) attempt.usage = r.usage;
        job.usage = addUsage(job.usage, r.usage);
      }
      const fields = { exitCode: r.exitCode, signal: r.signal, error: r.error };
      // Stopped for another queue's share (unless it ended well on its own first).
      if (job.preemptRequested && !(r.exitCode === 0 && !r.error && !r.signal)) {
        return endAttempt(
          job,
          JobState.PREEMPTED,
          { ...fields, error: "preempted for another queue's fair share" },
          event.now,
        );
      }
      if (r.killed || (job.killRequested && r.exitCode !== 0)) {
        return endAttempt(job, JobState.KILLED, { ...fields, error: r.error || "killed by request" }, event.now);
      }
      if (r.timedOut) {
        const attempt = ownAttempt(job);
        if (attempt) attempt.timedOut = true;
        return endAttempt(
          job,
          JobState.FAILED,
          { ...fields, error: `timed out after ${job.spec?.timeoutSeconds}s` },
          event.now,
        );
      }
      if (r.exitCode === 0 && !r.error && !r.signal) return endAttempt(job, JobState.SUCCEEDED, fields, event.now);
      const error = r.error || (r.signal ? `killed by ${r.signal}` : `exit code ${r.exitCode}`);
      return endAttempt(job, JobState.FAILED, { ...fields, error }, event.now);
    }
    case "lost": {
      if (!sameRun(job, event.worker, event.attempt)) return undefined;
      if (job.preemptRequested) return endAttempt(job, JobState.PREEMPTED, { error: event.reason }, event.now);
      return endAttempt(job, JobState.LOST, { error: event.reason }, event.now);
    }
    case "kill": {
      if (isFinal(job.state)) throw precondition(`job ${job.id} already ended (${stateName(job.state)})`);
      if (job.state === JobState.PENDING || job.state === JobState.HELD) {
        job.state = JobState.KILLED;
        job.error = "killed by request before it ran";
        job.endTime = timestampFromDate(event.now);
        job.killRequested = true;
        return job;
      }
      if (job.killRequested && !job.preemptRequested) return undefined;
      // A requested kill wins over a preemption in progress: the job ends KILLED.
      job.killRequested = true;
      job.preemptRequested = false;
      return job;
    }
    case "preempt": {
      if (!isActive(job.state) || job.killRequested) return undefined;
      job.killRequested = true;
      job.preemptRequested = true;
      job.killGraceSeconds = event.graceSeconds;
      return job;
    }
    case "hold": {
      if (job.state === JobState.HELD) return undefined;
      if (job.state !== JobState.PENDING)
        throw precondition(`job ${job.id} is ${stateName(job.state)}; only a PENDING job can be held`);
      job.state = JobState.HELD;
      return job;
    }
    case "release": {
      if (job.state !== JobState.HELD)
        throw precondition(`job ${job.id} is ${stateName(job.state)}; only a HELD job can be released`);
      job.state = JobState.PENDING;
      return job;
    }
    case "run-on": {
      if (job.state !== JobState.HELD && job.state !== JobState.PENDING)
        throw precondition(
          `job ${job.id} is ${stateName(job.state)}; only a HELD or PENDING job can be run on a named worker`,
        );
      if (job.state === JobState.PENDING && job.runOn === event.worker) return undefined;
      job.state = JobState.PENDING;
      job.runOn = event.worker;
      job.pendingReason = "";
      return job;
    }
    case "requeue": {
      if (!isFinal(job.state))
        throw precondition(`job ${job.id} is ${stateName(job.state)}; only a finished job can be requeued`);
      job.state = JobState.PENDING;
      job.requeues++;
      job.failures = 0;
      job.lostCount = 0;
      job.pid = 0;
      job.exitCode = undefined;
      job.signal = "";
      job.error = "";
      job.pendingReason = "";
      job.endTime = undefined;
      clearKill(job);
      job.stdoutTail = new Uint8Array();
      job.stderrTail = new Uint8Array();
      return job;
    }
    case "reason": {
      if (job.state !== JobState.PENDING || job.pendingReason === event.reason) return undefined;
      job.pendingReason = event.reason;
      return job;
    }
    case "unmet": {
      if (job.state !== JobState.PENDING) return undefined;
      job.state = JobState.FAILED;
      job.error = event.reason;
      job.pendingReason = "";
      job.endTime = timestampFromDate(event.now);
      return job;
    }
    case "array-done": {
      if (isFinal(job.state)) return undefined;
      job.state = event.state;
      job.pendingReason = "";
      if (event.state !== JobState.SUCCEEDED && !job.error) job.error = "some tasks did not succeed";
      if (event.state === JobState.KILLED) job.error = "killed by request";
      job.endTime = timestampFromDate(event.now);
      return job;
    }
  }
}
