import { create } from "@bufbuild/protobuf";
import test from "ava";
import { type Job, JobSchema, JobState } from "../gen/crms/v1/job_pb.js";
import { JobFinishedSchema } from "../gen/crms/v1/worker_pb.js";
import { CrmsError } from "../src/errors.js";
import { transition } from "../src/scheduler/job-machine.js";

const now = new Date();
const fresh = (spec: { maxRetries?: number; maxLostRetries?: number } = {}) =>
  create(JobSchema, { id: "1", state: JobState.PENDING, spec: { command: ["x"], ...spec } });
const step = (job: Job, ev: Parameters<typeof transition>[1]) => transition(job, ev) as Job;
const finished = (attempt: number, init: Record<string, unknown>) =>
  create(JobFinishedSchema, { jobId: "1", attempt, ...init });

test("a job goes PENDING, ASSIGNED, RUNNING, SUCCEEDED with one attempt", (t) => {
  let j = step(fresh(), { type: "assign", worker: "w", now });
  t.is(j.state, JobState.ASSIGNED);
  t.is(j.attempt, 1);
  j = step(j, { type: "started", worker: "w", attempt: 1, pid: 42, now });
  t.is(j.state, JobState.RUNNING);
  t.is(transition(j, { type: "started", worker: "w", attempt: 1, pid: 42, now }), undefined);
  j = step(j, { type: "finished", worker: "w", report: finished(1, { exitCode: 0 }), now });
  t.is(j.state, JobState.SUCCEEDED);
  t.is(j.attempts[0]?.outcome, JobState.SUCCEEDED);
});

test("a report from an older attempt or another worker is refused (fencing)", (t) => {
  let j = step(fresh(), { type: "assign", worker: "w", now });
  j = step(j, { type: "lost", worker: "w", attempt: 1, reason: "gone", now });
  j = step(j, { type: "assign", worker: "v", now });
  t.is(j.attempt, 2);
  const err = t.throws(() =>
    transition(j, { type: "finished", worker: "w", report: finished(1, { exitCode: 0 }), now }),
  );
  t.true(err instanceof CrmsError && err.code === "FAILED_PRECONDITION");
  t.throws(() => transition(j, { type: "started", worker: "w", attempt: 2, pid: 1, now }));
});

test("a failing run is retried exactly max_retries times", (t) => {
  let j = fresh({ maxRetries: 2 });
  const runs: JobState[] = [];
  for (let i = 1; i <= 3; i++) {
    j = step(j, { type: "assign", worker: "w", now });
    j = step(j, { type: "finished", worker: "w", report: finished(i, { exitCode: 1 }), now });
    runs.push(j.state);
  }
  t.deepEqual(runs, [JobState.PENDING, JobState.PENDING, JobState.FAILED]);
  t.is(j.failures, 3);
});

test("lost runs use their own budget, not max_retries", (t) => {
  let j = fresh({ maxRetries: 0, maxLostRetries: 2 });
  for (let i = 1; i <= 2; i++) {
    j = step(j, { type: "assign", worker: "w", now });
    j = step(j, { type: "lost", worker: "w", attempt: i, reason: "gone", now });
    t.is(j.state, JobState.PENDING);
  }
  j = step(j, { type: "assign", worker: "w", now });
  j = step(j, { type: "lost", worker: "w", attempt: 3, reason: "gone", now });
  t.is(j.state, JobState.LOST);
  t.is(j.failures, 0);
});

test("kill: pending jobs end at once, running ones on the worker's report; finished ones refuse", (t) => {
  t.is(step(fresh(), { type: "kill", now }).state, JobState.KILLED);
  let j = step(fresh(), { type: "assign", worker: "w", now });
  j = step(j, { type: "kill", now });
  t.is(j.state, JobState.ASSIGNED);
  t.true(j.killRequested);
  j = step(j, { type: "finished", worker: "w", report: finished(1, { signal: "SIGTERM", killed: true }), now });
  t.is(j.state, JobState.KILLED);
  t.throws(() => transition(j, { type: "kill", now }));
});

test("hold only from PENDING, release only from HELD", (t) => {
  const held = step(fresh(), { type: "hold" });
  t.is(held.state, JobState.HELD);
  t.is(step(held, { type: "release" }).state, JobState.PENDING);
  t.throws(() => transition(fresh(), { type: "release" }));
  const assigned = step(fresh(), { type: "assign", worker: "w", now });
  t.throws(() => transition(assigned, { type: "hold" }));
});

test("an unmet dependency fails a pending job without a run; an array parent takes its summary state once", (t) => {
  const j = step(fresh(), { type: "unmet", reason: "dependency not met: job 7 ended FAILED, needed succeeded", now });
  t.is(j.state, JobState.FAILED);
  t.is(j.error, "dependency not met: job 7 ended FAILED, needed succeeded");
  t.is(j.attempts.length, 0);
  t.truthy(j.endTime);
  const running = step(fresh(), { type: "assign", worker: "w", now });
  t.is(transition(running, { type: "unmet", reason: "x", now }), undefined, "only a PENDING job");
  const p = step(fresh(), { type: "array-done", state: JobState.FAILED, now });
  t.is(p.state, JobState.FAILED);
  t.is(p.error, "some tasks did not succeed");
  t.is(transition(p, { type: "array-done", state: JobState.SUCCEEDED, now }), undefined);
});

test("a timed-out run is a FAILED attempt marked as a timeout and uses the retry budget", (t) => {
  let j = step(fresh({ maxRetries: 1 }), { type: "assign", worker: "w", now });
  j = step(j, { type: "started", worker: "w", attempt: 1, pid: 9, now });
  j = step(j, { type: "finished", worker: "w", report: finished(1, { timedOut: true, signal: "SIGKILL" }), now });
  t.is(j.state, JobState.PENDING);
  t.is(j.failures, 1);
  t.true(j.attempts[0]?.timedOut);
  t.is(j.attempts[0]?.outcome, JobState.FAILED);
});

test("transition never modifies the record it is given (the store passes cached records uncloned)", (t) => {
  const steps: Parameters<typeof transition>[1][] = [
    { type: "assign", worker: "w", now },
    { type: "started", worker: "w", attempt: 1, pid: 7, now },
    { type: "finished", worker: "w", report: finished(1, { exitCode: 1 }), now },
    { type: "assign", worker: "v", now },
    { type: "lost", worker: "v", attempt: 2, reason: "gone", now },
    { type: "assign", worker: "u", now },
    { type: "started", worker: "u", attempt: 3, pid: 8, now },
    { type: "finished", worker: "u", report: finished(3, { timedOut: true, signal: "SIGKILL" }), now },
    { type: "kill", now },
  ];
  let j = fresh({ maxRetries: 2, maxLostRetries: 1 });
  for (const ev of steps) {
    const before = structuredClone(j);
    const next = transition(j, ev);
    t.deepEqual(j, before, `${ev.type} changed its input`);
    if (next) {
      t.not(next, j);
      j = next;
    }
  }
  t.is(j.state, JobState.KILLED);
  t.deepEqual(
    j.attempts.map((a) => a.outcome),
    [JobState.FAILED, JobState.LOST, JobState.FAILED],
  );
});

test("run-on: a HELD or PENDING job is PENDING with run_on; other states refuse", (t) => {
  const held = { ...fresh(), state: JobState.HELD };
  const j = step(held, { type: "run-on", worker: "w2" });
  t.is(j.state, JobState.PENDING);
  t.is(j.runOn, "w2");
  t.is(transition(j, { type: "run-on", worker: "w2" }), undefined, "the same worker again changes nothing");
  t.is(step(j, { type: "run-on", worker: "w3" }).runOn, "w3");
  const running = step(step(fresh(), { type: "assign", worker: "w", now }), {
    type: "started",
    worker: "w",
    attempt: 1,
    pid: 7,
    now,
  });
  const err = t.throws(() => transition(running, { type: "run-on", worker: "w2" }));
  t.true(err instanceof CrmsError && err.code === "FAILED_PRECONDITION");
});

test("requeue: a finished job is PENDING again, its attempts kept and its run's results cleared", (t) => {
  let j = step(fresh(), { type: "assign", worker: "w", now });
  j = step(j, {
    type: "finished",
    worker: "w",
    report: finished(1, { exitCode: 3, stdoutTail: new Uint8Array([65]) }),
    now,
  });
  t.is(j.state, JobState.FAILED);
  const again = step(j, { type: "requeue" });
  t.is(again.state, JobState.PENDING);
  t.is(again.requeues, 1);
  t.is(again.attempts.length, 1);
  t.is(again.exitCode, undefined);
  t.is(again.endTime, undefined);
  t.is(again.failures, 0);
  t.is(again.stdoutTail.length, 0);
  t.is(step(again, { type: "assign", worker: "v", now }).attempt, 2, "the next run is a new attempt");
  const err = t.throws(() => transition(again, { type: "requeue" }));
  t.true(err instanceof CrmsError && err.code === "FAILED_PRECONDITION");
});
