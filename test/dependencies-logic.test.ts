import { create } from "@bufbuild/protobuf";
import test from "ava";
import { DependencyCondition, type Job, JobSchema, JobState } from "../gen/crms/v1/job_pb.js";
import { parseArraySpec } from "../src/scheduler/arrays.js";
import { evaluate, parseAfter } from "../src/scheduler/dependencies.js";

const job = (id: string, state: JobState, after: Array<[string, DependencyCondition]> = []) =>
  create(JobSchema, {
    id,
    state,
    spec: { command: ["x"], after: after.map(([jobId, condition]) => ({ jobId, condition })) },
  });

test("--after and --array parse, and bad forms are refused with the expected shape", (t) => {
  t.deepEqual(parseAfter("12"), { jobId: "12", condition: DependencyCondition.SUCCEEDED });
  t.deepEqual(parseAfter("12:failed"), { jobId: "12", condition: DependencyCondition.FAILED });
  t.deepEqual(parseAfter("12:finished"), { jobId: "12", condition: DependencyCondition.FINISHED });
  for (const bad of ["", "x", "12:later", "12:failed:x", "012"]) t.throws(() => parseAfter(bad), undefined, bad);
  t.deepEqual(parseArraySpec("1-1000%50"), { first: 1, last: 1000, maxRunning: 50 });
  t.deepEqual(parseArraySpec("7"), { first: 7, last: 7, maxRunning: 0 });
  for (const bad of ["", "1-", "a-b", "1-2%", "-3"]) t.throws(() => parseArraySpec(bad), undefined, bad);
});

test("a dependency is ready, waits with a reason, or fails for good", (t) => {
  const jobs = new Map<string, Job>([
    ["1", job("1", JobState.SUCCEEDED)],
    ["2", job("2", JobState.FAILED)],
    ["3", job("3", JobState.RUNNING)],
    ["4", job("4", JobState.KILLED)],
  ]);
  const lookup = (id: string) => jobs.get(id);
  const S = DependencyCondition.SUCCEEDED;
  const F = DependencyCondition.FAILED;
  const D = DependencyCondition.FINISHED;
  t.deepEqual(
    evaluate(
      job("9", JobState.PENDING, [
        ["1", S],
        ["2", F],
        ["4", D],
      ]),
      lookup,
    ),
    { kind: "ready" },
  );
  t.deepEqual(evaluate(job("9", JobState.PENDING, [["4", F]]), lookup), { kind: "ready" }, "KILLED counts as failed");
  t.deepEqual(
    evaluate(
      job("9", JobState.PENDING, [
        ["3", S],
        ["1", S],
      ]),
      lookup,
    ),
    {
      kind: "wait",
      reason: "waiting for job 3 (succeeded)",
    },
  );
  t.deepEqual(
    evaluate(
      job("9", JobState.PENDING, [
        ["2", S],
        ["3", S],
      ]),
      lookup,
    ),
    {
      kind: "fail",
      reason: "dependency not met: job 2 ended FAILED, needed succeeded",
    },
  );
  t.deepEqual(evaluate(job("9", JobState.PENDING, [["1", F]]), lookup), {
    kind: "fail",
    reason: "dependency not met: job 1 ended SUCCEEDED, needed failed",
  });
  t.is(evaluate(job("9", JobState.PENDING, [["8", D]]), lookup).kind, "fail", "a dependency that no longer exists");
});
