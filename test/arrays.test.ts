import test from "ava";
import { JobState } from "../gen/crms/v1/job_pb.js";
import { isActive } from "../src/rpc/states.js";
import { TestCluster } from "./helpers/cluster.js";

test("an array of 1,000 tasks with %10 never has more than 10 running, and all succeed", async (t) => {
  t.timeout(300_000);
  const cluster = await TestCluster.start();
  try {
    const c = cluster.client();
    await cluster.startWorker("a1", 8);
    await cluster.startWorker("a2", 8);
    const store = cluster.server.store;
    // Every task state change, as the control plane's watch of etcd delivers it.
    const states = new Map<string, JobState>();
    let running = 0;
    let maxRunning = 0;
    let parentId = "";
    store.jobs.on("put", (id, e) => {
      if (!parentId || e.value.arrayParent !== parentId) return;
      const was = states.get(id);
      if (was !== undefined && isActive(was)) running--;
      if (isActive(e.value.state)) running++;
      states.set(id, e.value.state);
      maxRunning = Math.max(maxRunning, running);
    });
    const parent = await c.submit({
      command: ["sh", "-c", 'echo "$CRMS_ARRAY_ID:$CRMS_ARRAY_INDEX"'],
      name: "big",
      array: { first: 1, last: 1000, maxRunning: 10 },
    });
    parentId = parent.id;
    t.is(parent.state, JobState.PENDING);
    t.is(parent.arrayCounts?.total, 1000);
    const done = await c.wait(parent.id, { timeoutMs: 280_000 });
    t.is(done.state, JobState.SUCCEEDED, done.error);
    t.is(done.arrayCounts?.succeeded, 1000);
    t.is(done.arrayCreated, 1000);
    t.true(maxRunning <= 10, `at most 10 running at once (saw ${maxRunning})`);
    t.true(maxRunning >= 5, `tasks ran in parallel (saw at most ${maxRunning})`);

    // Tasks are listed by parent, a page at a time; a plain listing shows only the parent.
    const first = await c.listJobs({ arrayParent: parent.id, pageSize: 300 });
    t.is(first.jobs.length, 300);
    t.truthy(first.nextPageToken);
    const tasks = [];
    for await (const j of c.jobs({ arrayParent: parent.id, pageSize: 1000 })) tasks.push(j);
    t.is(tasks.length, 1000);
    t.deepEqual(
      tasks.map((j) => j.arrayIndex).sort((a, b) => a - b),
      Array.from({ length: 1000 }, (_, i) => i + 1),
    );
    const sample = tasks.find((j) => j.arrayIndex === 417);
    t.is(Buffer.from(sample?.stdoutTail ?? []).toString(), `${parent.id}:417\n`);
    const plain = [];
    for await (const j of c.jobs({})) plain.push(j.id);
    t.deepEqual(plain, [parent.id]);
  } finally {
    await cluster.stop();
  }
});

test("hold, release and kill act on a whole array or on one task", async (t) => {
  const cluster = await TestCluster.start();
  try {
    const c = cluster.client();
    const parent = await c.submit({
      command: ["sh", "-c", "exec sleep 60"],
      array: { first: 0, last: 9, maxRunning: 3 },
      hold: true,
    });
    t.is(parent.state, JobState.HELD);
    await cluster.startWorker("k1", 4);
    const counts = async () => (await c.getJob(parent.id)).arrayCounts;
    await cluster.waitFor(async () => (await counts())?.held === 10, 20_000, "10 held tasks");
    t.is((await counts())?.running, 0, "a held array runs nothing");

    // One task released alone runs.
    const tasks = [];
    for await (const j of c.jobs({ arrayParent: parent.id })) tasks.push(j);
    const task0 = tasks.find((j) => j.arrayIndex === 0);
    if (!task0) throw new Error("task 0 missing");
    t.is(task0.spec?.env.CRMS_ARRAY_INDEX, "0");
    await c.release(task0.id);
    await cluster.waitFor(
      async () => (await c.getJob(task0.id)).state === JobState.RUNNING,
      20_000,
      "released task to run",
    );
    // Release the array: at most 3 run (the %3 limit) though 4 slots are free.
    await c.release(parent.id);
    await cluster.waitFor(async () => (await counts())?.running === 3, 20_000, "3 tasks running");
    await new Promise((r) => setTimeout(r, 1000));
    t.is((await counts())?.running, 3);
    t.is((await counts())?.pending, 7);
    t.is((await c.getJob(parent.id)).state, JobState.RUNNING, "a parent with running tasks reads RUNNING");
    const runningIds = (await c.listJobs({ states: [JobState.RUNNING, JobState.ASSIGNED] })).jobs.map((j) => j.id);
    t.deepEqual(runningIds, [parent.id], "a state filter matches the parent by the state it reads as");
    const onWorker = (await c.listJobs({ worker: "k1" })).jobs;
    t.is(onWorker.filter((j) => j.arrayParent === parent.id).length, 3, "a worker filter lists the tasks on it");
    const waiting = (await c.getJob(tasks.find((j) => j.arrayIndex === 9)?.id ?? "")).pendingReason;
    t.regex(waiting, /array \d+ has 3 tasks running/);
    // A job submitted after the array takes the slot the %3 limit leaves free.
    const other = await c.submit({ command: ["true"] });
    t.is((await c.wait(other.id, { timeoutMs: 20_000 })).state, JobState.SUCCEEDED);
    t.is((await counts())?.pending, 7, "the array still waits");

    // Kill one task: only it ends KILLED; another takes its place.
    await c.kill(task0.id, 1);
    t.is((await c.wait(task0.id, { timeoutMs: 20_000 })).state, JobState.KILLED);
    await cluster.waitFor(async () => (await counts())?.running === 3, 20_000, "3 running again");

    // Kill the array: every task and the parent end KILLED.
    await c.kill(parent.id, 1);
    const done = await c.wait(parent.id, { timeoutMs: 30_000 });
    t.is(done.state, JobState.KILLED);
    t.is(done.arrayCounts?.killed, 10);
  } finally {
    await cluster.stop();
  }
});

test("array specs are checked and a retried submit with the same request id makes one array", async (t) => {
  const cluster = await TestCluster.start();
  try {
    const c = cluster.client();
    const bad = await t.throwsAsync(c.submit({ command: ["true"], array: { first: 5, last: 1 } }));
    t.regex(bad?.message ?? "", /INVALID_ARGUMENT|last index/);
    const huge = await t.throwsAsync(c.submit({ command: ["true"], array: { first: 1, last: 100_001 } }));
    t.regex(huge?.message ?? "", /at most 100000 tasks/);
    const a = await c.submit({ command: ["true"], array: { first: 1, last: 5 } }, { requestId: "arr-1" });
    const b = await c.submit({ command: ["true"], array: { first: 1, last: 5 } }, { requestId: "arr-1" });
    t.is(a.id, b.id);
    await cluster.startWorker("r1", 2);
    const done = await c.wait(a.id, { timeoutMs: 30_000 });
    t.is(done.state, JobState.SUCCEEDED);
    let n = 0;
    for await (const _ of c.jobs({ includeTasks: true })) n++;
    t.is(n, 6, "one parent and 5 tasks");
    await c.deleteJob(a.id);
    let left = 0;
    for await (const _ of c.jobs({ includeTasks: true })) left++;
    t.is(left, 0, "deleting an array deletes its tasks");
  } finally {
    await cluster.stop();
  }
});
