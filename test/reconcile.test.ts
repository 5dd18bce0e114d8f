/**
 * Hello reconciliation on its own: a worker's Hello against a static view of
 * the store, and the steps the registry is told to carry out.
 */
import { create } from "@bufbuild/protobuf";
import test from "ava";
import { type Job, JobSchema, JobState } from "../gen/crms/v1/job_pb.js";
import { type Hello, HelloSchema, JobFinishedSchema, RunningJobSchema } from "../gen/crms/v1/worker_pb.js";
import { type HelloStep, type HelloView, NOT_CURRENT, reconcileHello } from "../src/services/sessions/reconcile.js";

const job = (id: string, state: JobState, attempt: number, worker = "w1"): Job =>
  create(JobSchema, { id, state, attempt, worker });

function hello(init: {
  running?: { jobId: string; attempt: number; pid?: number }[];
  finished?: { jobId: string; attempt: number; fenced?: boolean }[];
}): Hello {
  return create(HelloSchema, {
    name: "w1",
    slots: 4,
    running: (init.running ?? []).map((r) => create(RunningJobSchema, { pid: 100, ...r })),
    finished: (init.finished ?? []).map((f) => create(JobFinishedSchema, f)),
  });
}

/** A store holding `jobs`, with those ASSIGNED or RUNNING on w1 as its active set. */
function view(jobs: Job[] | Map<string, Job>, opts: { restarted?: boolean; sent?: Record<string, number> } = {}) {
  const byId = jobs instanceof Map ? jobs : new Map(jobs.map((j) => [j.id, j]));
  return {
    job: (id: string) => byId.get(id),
    active: () =>
      [...byId.values()]
        .filter((j) => j.worker === "w1" && (j.state === JobState.ASSIGNED || j.state === JobState.RUNNING))
        .map((j) => j.id),
    sent: (id: string) => opts.sent?.[id],
    restarted: opts.restarted ?? false,
  } satisfies HelloView;
}

const steps = (h: Hello, v: HelloView): HelloStep[] => [...reconcileHello(h, v)];

test("a reported run the store has RUNNING on this worker at that attempt is adopted", (t) => {
  const h = hello({ running: [{ jobId: "1", attempt: 2 }] });
  t.deepEqual(steps(h, view([job("1", JobState.RUNNING, 2)])), [{ do: "adopt", jobId: "1", attempt: 2 }]);
});

test("a reported run the store still has ASSIGNED is adopted and its start recorded with the reported pid", (t) => {
  const h = hello({ running: [{ jobId: "1", attempt: 1, pid: 4242 }] });
  t.deepEqual(steps(h, view([job("1", JobState.ASSIGNED, 1)])), [
    { do: "adopt", jobId: "1", attempt: 1, startPid: 4242 },
  ]);
});

test("ends reported in the hello are applied first, before any run", (t) => {
  const h = hello({ running: [{ jobId: "2", attempt: 1 }], finished: [{ jobId: "1", attempt: 1 }] });
  const s = steps(h, view([job("1", JobState.RUNNING, 1), job("2", JobState.RUNNING, 1)]));
  t.deepEqual(
    s.map((x) => x.do),
    ["finish", "adopt"],
  );
  t.is(s[0]?.do === "finish" ? s[0].report.jobId : "", "1");
});

test("a run ended by the worker's fencing is handed to the applier like any end (it records it LOST)", (t) => {
  const h = hello({ finished: [{ jobId: "1", attempt: 1, fenced: true }] });
  const s = steps(h, view([job("1", JobState.RUNNING, 1)]));
  t.is(s.length, 1);
  t.true(s[0]?.do === "finish" && s[0].report.fenced);
});

test("a reported run of a job that ended while the worker was away is refused", (t) => {
  for (const state of [JobState.SUCCEEDED, JobState.LOST, JobState.KILLED, JobState.PENDING]) {
    const h = hello({ running: [{ jobId: "1", attempt: 1 }] });
    t.deepEqual(steps(h, view([job("1", state, 1)])), [{ do: "refuse", jobId: "1", attempt: 1, reason: NOT_CURRENT }]);
  }
});

test("a reported run of a job the store does not know is refused", (t) => {
  const h = hello({ running: [{ jobId: "9", attempt: 3 }] });
  t.deepEqual(steps(h, view([])), [{ do: "refuse", jobId: "9", attempt: 3, reason: NOT_CURRENT }]);
});

test("a reported run of a job reassigned to another worker is refused", (t) => {
  const h = hello({ running: [{ jobId: "1", attempt: 1 }] });
  t.deepEqual(steps(h, view([job("1", JobState.RUNNING, 1, "w2")])), [
    { do: "refuse", jobId: "1", attempt: 1, reason: NOT_CURRENT },
  ]);
});

test("a reported run of an older attempt is refused, and the current attempt it does not have is lost", (t) => {
  const h = hello({ running: [{ jobId: "1", attempt: 1 }] });
  t.deepEqual(steps(h, view([job("1", JobState.RUNNING, 2)])), [
    { do: "refuse", jobId: "1", attempt: 1, reason: NOT_CURRENT },
    { do: "lose", jobId: "1", attempt: 2, reason: "worker w1 restarted without it" },
  ]);
});

test("a RUNNING job the worker does not report is lost", (t) => {
  t.deepEqual(steps(hello({}), view([job("1", JobState.RUNNING, 1)])), [
    { do: "lose", jobId: "1", attempt: 1, reason: "worker w1 restarted without it" },
  ]);
});

test("an ASSIGNED job the worker does not report is sent again to the same process", (t) => {
  const j = job("1", JobState.ASSIGNED, 1);
  t.deepEqual(steps(hello({}), view([j])), [{ do: "push", job: j }]);
});

test("an ASSIGNED job a new process does not report is lost, never sent again", (t) => {
  t.deepEqual(steps(hello({}), view([job("1", JobState.ASSIGNED, 3)], { restarted: true })), [
    {
      do: "lose",
      jobId: "1",
      attempt: 3,
      reason: "worker w1 restarted (new process) without reporting attempt 3",
    },
  ]);
});

test("a job already sent to this session while the hello was handled is left alone", (t) => {
  const jobs = [job("1", JobState.ASSIGNED, 2), job("2", JobState.RUNNING, 1)];
  t.deepEqual(steps(hello({}), view(jobs, { restarted: true, sent: { "1": 2, "2": 1 } })), []);
});

test("a job sent at an older attempt counts as not sent", (t) => {
  const j = job("1", JobState.ASSIGNED, 2);
  t.deepEqual(steps(hello({}), view([j], { sent: { "1": 1 } })), [{ do: "push", job: j }]);
});

test("a job whose current attempt the hello reported as ended is not lost again", (t) => {
  const h = hello({ finished: [{ jobId: "1", attempt: 1 }] });
  t.deepEqual(
    steps(h, view([job("1", JobState.RUNNING, 1)])).map((s) => s.do),
    ["finish"],
  );
});

test("an end reported for an older attempt does not cover the current one", (t) => {
  const h = hello({ finished: [{ jobId: "1", attempt: 1 }] });
  t.deepEqual(
    steps(h, view([job("1", JobState.RUNNING, 2)])).map((s) => s.do),
    ["finish", "lose"],
  );
});

test("an active job the cache no longer has is skipped", (t) => {
  const v = view([job("1", JobState.RUNNING, 1)]);
  t.deepEqual(steps(hello({}), { ...v, job: () => undefined }), []);
});

test("the view is read lazily: each step sees what the steps before it changed", (t) => {
  const jobs = new Map([
    ["1", job("1", JobState.RUNNING, 1)],
    ["2", job("2", JobState.RUNNING, 1)],
    ["3", job("3", JobState.ASSIGNED, 1)],
  ]);
  const sent = new Map<string, number>();
  const v: HelloView = { ...view(jobs), sent: (id) => sent.get(id) };
  const gen = reconcileHello(hello({ running: [{ jobId: "1", attempt: 1 }] }), v);
  t.like(gen.next().value, { do: "adopt", jobId: "1" });
  // Meanwhile job 2 was killed and job 3 was sent to this session by a push.
  jobs.set("2", job("2", JobState.KILLED, 1));
  sent.set("3", 1);
  const rest = [...gen];
  t.deepEqual(rest, []);
});
