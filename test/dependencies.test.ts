import { timestampDate } from "@bufbuild/protobuf/wkt";
import test from "ava";
import { DependencyCondition, type Job, JobState } from "../gen/crms/v1/job_pb.js";
import { TestCluster } from "./helpers/cluster.js";

const ms = (ts: Job["startTime"]) => (ts ? timestampDate(ts).getTime() : Number.NaN);

test("a three-job chain runs in order", async (t) => {
  const cluster = await TestCluster.start();
  try {
    const c = cluster.client();
    await cluster.startWorker("d1", 4);
    const a = await c.submit({ command: ["sh", "-c", "sleep 0.5"], name: "a" });
    const b = await c.submit({ command: ["sh", "-c", "sleep 0.5"], name: "b", after: [{ jobId: a.id }] });
    const cc = await c.submit({
      command: ["true"],
      name: "c",
      after: [{ jobId: b.id, condition: DependencyCondition.FINISHED }],
    });
    // While a runs, b and c wait with a reason naming what they wait for.
    const waiting = await c.getJob(cc.id);
    t.is(waiting.state, JobState.PENDING);
    t.is(waiting.pendingReason, `waiting for job ${b.id} (finished)`);
    const [da, db, dc] = await Promise.all([a, b, cc].map((j) => c.wait(j.id, { timeoutMs: 30_000 })));
    for (const j of [da, db, dc]) t.is(j?.state, JobState.SUCCEEDED, j?.error);
    if (!da || !db || !dc) return;
    t.true(ms(db.startTime) >= ms(da.endTime), "b started after a ended");
    t.true(ms(dc.startTime) >= ms(db.endTime), "c started after b ended");
  } finally {
    await cluster.stop();
  }
});

test("a :succeeded dependency on a failing job fails its dependant with a reason; :failed runs", async (t) => {
  const cluster = await TestCluster.start();
  try {
    const c = cluster.client();
    await cluster.startWorker("d2", 2);
    const bad = await c.submit({ command: ["sh", "-c", "exit 3"] });
    const dep = await c.submit({
      command: ["true"],
      after: [{ jobId: bad.id, condition: DependencyCondition.SUCCEEDED }],
    });
    const onFail = await c.submit({
      command: ["true"],
      after: [{ jobId: bad.id, condition: DependencyCondition.FAILED }],
    });
    const done = await c.wait(dep.id, { timeoutMs: 30_000 });
    t.is(done.state, JobState.FAILED);
    t.is(done.error, `dependency not met: job ${bad.id} ended FAILED, needed succeeded`);
    t.is(done.attempts.length, 0, "it never ran");
    t.is((await c.wait(onFail.id, { timeoutMs: 30_000 })).state, JobState.SUCCEEDED);
  } finally {
    await cluster.stop();
  }
});

test("a dependency on an array waits for all its tasks", async (t) => {
  const cluster = await TestCluster.start();
  try {
    const c = cluster.client();
    await cluster.startWorker("d3", 4);
    const arr = await c.submit({ command: ["sh", "-c", "sleep 0.3"], array: { first: 1, last: 6, maxRunning: 2 } });
    const after = await c.submit({ command: ["true"], after: [{ jobId: arr.id }] });
    const done = await c.wait(after.id, { timeoutMs: 30_000 });
    t.is(done.state, JobState.SUCCEEDED);
    const tasks = [];
    for await (const j of c.jobs({ arrayParent: arr.id })) tasks.push(j);
    t.is(tasks.length, 6);
    for (const task of tasks)
      t.true(ms(done.startTime) >= ms(task.endTime), `after started after task ${task.arrayIndex}`);
  } finally {
    await cluster.stop();
  }
});

test("dependencies: an unknown id is NOT_FOUND (also the id the job itself would get), a bad form INVALID_ARGUMENT, and refused submits use no job id", async (t) => {
  const cluster = await TestCluster.start();
  try {
    const c = cluster.client();
    const first = await c.submit({ command: ["true"], hold: true });
    // The next id this replica hands out would be the submitted job's own: it does not exist.
    const next = String(Number(first.id) + 1);
    const self = await t.throwsAsync(c.submit({ command: ["true"], after: [{ jobId: next }] }));
    t.regex(self?.message ?? "", new RegExp(`NOT_FOUND: after: job ${next} not found`));
    const later = await t.throwsAsync(c.submit({ command: ["true"], after: [{ jobId: "999999" }] }));
    t.regex(later?.message ?? "", /NOT_FOUND: after: job 999999 not found/);
    t.notRegex(later?.message ?? "", /cycle/);
    // Refused submits drew no id: the next job gets the next id.
    t.is((await c.submit({ command: ["true"], hold: true, after: [{ jobId: first.id }] })).id, next);
    await c.deleteJob((await c.kill(first.id)).id);
    const gone = await t.throwsAsync(c.submit({ command: ["true"], after: [{ jobId: first.id }] }));
    t.regex(gone?.message ?? "", /NOT_FOUND/);
    const form = await t.throwsAsync(c.submit({ command: ["true"], after: [{ jobId: "x1" }] }));
    t.regex(form?.message ?? "", /INVALID_ARGUMENT/);
  } finally {
    await cluster.stop();
  }
});
