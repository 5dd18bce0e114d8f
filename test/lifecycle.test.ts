/**
 * What an operator does with jobs and workers beyond submit: kill with a
 * bounded grace that a later kill can shorten, RunJob / release onto a named
 * worker, resume a drained worker, requeue a finished job or array, and
 * sorted listings with totals. Real etcd, server and `crms worker` processes.
 */
import { status } from "@grpc/grpc-js";
import anyTest, { type TestFn } from "ava";
import type { CrmsClient } from "../clients/typescript/src/client.js";
import { JobState } from "../gen/crms/v1/job_pb.js";
import { WorkerState } from "../gen/crms/v1/worker_pb.js";
import { cli, TestCluster } from "./helpers/cluster.js";

const test = anyTest as TestFn<{ cluster: TestCluster; c: CrmsClient; env: NodeJS.ProcessEnv }>;

test.before(async (t) => {
  const cluster = await TestCluster.start();
  await cluster.startWorker("lc-1", 2);
  await cluster.startWorker("lc-2", 2);
  t.context = { cluster, c: cluster.client(), env: { ...process.env, CRMS_SERVER: cluster.address } };
});

test.after.always(async (t) => {
  await t.context.cluster?.stop();
});

const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => "OK",
    (err: { code: number }) => status[err.code],
  );

/** A job that ignores SIGTERM, so only the SIGKILL at the end of the grace ends it. */
const STUBBORN = ["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.2; done"];

test("kill grace is at most 3600 s: INVALID_ARGUMENT naming the limit", async (t) => {
  const { c } = t.context;
  const job = await c.submit({ command: ["true"], hold: true });
  for (const grace of [3601, 4294967295]) {
    const err = await t.throwsAsync(() => c.kill(job.id, grace));
    t.is((err as { code?: number }).code, status.INVALID_ARGUMENT);
    t.regex(err?.message ?? "", /grace_seconds: at most 3600/);
  }
  t.is((await c.getJob(job.id)).state, JobState.HELD, "a refused kill changed nothing");
  t.is((await c.kill(job.id, 3600)).state, JobState.KILLED);
});

test("a later kill with a shorter grace overrides a long one on the TypeScript worker", async (t) => {
  const { c, cluster } = t.context;
  const job = await c.submit({ command: STUBBORN, targetWorker: "lc-1" });
  await c.waitUntil(job.id, (j) => j.state === JobState.RUNNING, { timeoutMs: 20_000 });
  const first = await c.kill(job.id, 3600);
  t.true(first.killRequested);
  t.is(first.killGraceSeconds, 3600);
  // SIGTERM is ignored: with an hour of grace the job keeps running.
  await new Promise((r) => setTimeout(r, 1500));
  t.is((await c.getJob(job.id)).state, JobState.RUNNING);
  const second = await c.kill(job.id, 1);
  t.is(second.killGraceSeconds, 1, "the shorter grace is recorded");
  const done = await c.wait(job.id, { timeoutMs: 30_000 });
  t.is(done.state, JobState.KILLED);
  t.is(done.signal, "SIGKILL");
  t.regex(cluster.workers.find((w) => w.name === "lc-1")?.output() ?? "", /grace 1s/);
});

test("crms kill --force overrides an earlier kill's grace (SIGKILL now)", async (t) => {
  const { c, env } = t.context;
  const job = await c.submit({ command: STUBBORN, targetWorker: "lc-2" });
  await c.waitUntil(job.id, (j) => j.state === JobState.RUNNING, { timeoutMs: 20_000 });
  await c.kill(job.id, 3600);
  const r = await cli(["kill", job.id, "--force"], env);
  t.is(r.code, 0, r.stderr);
  t.true((await c.getJob(job.id)).killForce);
  const done = await c.wait(job.id, { timeoutMs: 30_000 });
  t.is(done.state, JobState.KILLED);
  t.is(done.signal, "SIGKILL");
  // A longer grace after that changes nothing.
  t.is(await codeOf(c.kill(job.id, 5)), "FAILED_PRECONDITION");
});

test("RunJob: a held job runs on the named worker; release --on does the same; a pending job is re-pointed", async (t) => {
  const { c, env } = t.context;
  const held = await c.submit({ command: ["sh", "-c", "echo on $CRMS_WORKER"], hold: true, name: "gocrms-style" });
  const ran = await c.runJob(held.id, "lc-2");
  t.is(ran.runOn, "lc-2");
  t.is(ran.state, JobState.PENDING);
  const done = await c.wait(held.id, { timeoutMs: 20_000 });
  t.is(done.state, JobState.SUCCEEDED);
  t.is(done.worker, "lc-2");

  const viaCli = await c.submit({ command: ["true"], hold: true });
  const r = await cli(["release", viaCli.id, "--on", "lc-1"], env);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, new RegExp(`job ${viaCli.id} will run on lc-1`));
  t.is((await c.wait(viaCli.id, { timeoutMs: 20_000 })).worker, "lc-1");

  // A pending job pinned at submit to a worker that never comes: re-pointed with crms run.
  const stuck = await c.submit({ command: ["true"], targetWorker: "lc-absent" });
  await c.waitUntil(stuck.id, (j) => j.pendingReason !== "", { timeoutMs: 10_000 });
  const r2 = await cli(["run", stuck.id, "--on", "lc-1"], env);
  t.is(r2.code, 0, r2.stderr);
  const moved = await c.wait(stuck.id, { timeoutMs: 20_000 });
  t.is(moved.state, JobState.SUCCEEDED);
  t.is(moved.worker, "lc-1");

  // Errors: unknown worker NOT_FOUND, a job in another state FAILED_PRECONDITION, missing --on a usage error.
  const other = await c.submit({ command: ["true"], hold: true });
  t.is(await codeOf(c.runJob(other.id, "nobody")), "NOT_FOUND");
  t.is((await c.getJob(other.id)).state, JobState.HELD);
  const pre = await t.throwsAsync(() => c.runJob(held.id, "lc-1"));
  t.is((pre as { code?: number }).code, status.FAILED_PRECONDITION);
  t.regex(pre?.message ?? "", /only a HELD or PENDING job/);
  t.is((await cli(["run", other.id], env)).code, 2);
});

test.serial("resume undoes a drain: the worker takes new jobs again", async (t) => {
  const { c, cluster, env } = t.context;
  await c.drain("lc-2");
  const job = await c.submit({ command: ["true"], targetWorker: "lc-2" });
  await c.waitUntil(job.id, (j) => j.pendingReason !== "", { timeoutMs: 10_000 });
  await new Promise((r) => setTimeout(r, 500));
  t.is((await c.getJob(job.id)).state, JobState.PENDING, "a draining worker takes no new job");
  const r = await cli(["resume", "lc-2"], env);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /worker lc-2 resumed/);
  t.is((await c.getWorker("lc-2")).state, WorkerState.UP);
  const done = await c.wait(job.id, { timeoutMs: 20_000 });
  t.is(done.state, JobState.SUCCEEDED);
  t.is(done.worker, "lc-2");
  // The worker process was told too (it logs leaving DRAINING).
  await cluster.waitFor(
    () => /resumed: taking new jobs/.test(cluster.workers.find((w) => w.name === "lc-2")?.output() ?? ""),
    10_000,
    "the worker to log its resume",
  );
  t.is((await c.resume("lc-2")).state, WorkerState.UP, "resuming an UP worker changes nothing");
  t.is(await codeOf(c.resume("nobody")), "NOT_FOUND");
});

test("requeue runs a finished job again under the same id, its attempts kept", async (t) => {
  const { c, env } = t.context;
  const job = await c.submit({ command: ["sh", "-c", "echo run; exit 3"] });
  t.is((await c.wait(job.id, { timeoutMs: 20_000 })).state, JobState.FAILED);
  const r = await cli(["requeue", job.id], env);
  t.is(r.code, 0, r.stderr);
  await c.waitUntil(job.id, (j) => j.attempts.length === 2 && j.state === JobState.FAILED, { timeoutMs: 20_000 });
  const again = await c.getJob(job.id);
  t.is(again.requeues, 1);
  t.deepEqual(
    again.attempts.map((a) => [a.number, JobState[a.outcome]]),
    [
      [1, "FAILED"],
      [2, "FAILED"],
    ],
  );
  const running = await c.submit({ command: ["sleep", "30"] });
  t.is(await codeOf(c.requeue(running.id)), "FAILED_PRECONDITION");
  await c.kill(running.id, 0, undefined, true);
});

test("requeue --failed reruns only an array's tasks that did not succeed", async (t) => {
  const { c, env } = t.context;
  const marker = `/tmp/crms-requeue-${process.pid}-${Date.now()}`;
  // Task 2 fails the first time (no marker yet), then succeeds.
  const array = await c.submit({
    command: ["sh", "-c", `[ "$CRMS_ARRAY_INDEX" != 2 ] || [ -e ${marker} ] || { touch ${marker}; exit 1; }`],
    array: { first: 1, last: 3 },
  });
  t.is((await c.wait(array.id, { timeoutMs: 30_000 })).state, JobState.FAILED);
  const r = await cli(["requeue", array.id, "--failed"], env);
  t.is(r.code, 0, r.stderr);
  const done = await c.waitUntil(array.id, (j) => j.state === JobState.SUCCEEDED, { timeoutMs: 30_000 });
  t.is(done.arrayCounts?.succeeded, 3);
  const tasks = [];
  for await (const task of c.jobs({ arrayParent: array.id })) tasks.push(task);
  t.deepEqual(
    tasks.map((x) => [x.arrayIndex, x.attempts.length]),
    [
      [1, 1],
      [2, 2],
      [3, 1],
    ],
  );
});

test("ListJobs orders and totals; crms jobs --sort -submit --limit 3 lists the three newest", async (t) => {
  const { c, env } = t.context;
  const label = { batch: `order-${Date.now()}` };
  const ids: string[] = [];
  for (const name of ["delta", "alpha", "charlie", "bravo", "echo"]) {
    ids.push((await c.submit({ command: ["true"], name, labels: label, hold: true })).id);
  }
  const page = await c.listJobs({ labels: label, pageSize: 2, orderBy: "-id" });
  t.is(page.totalSize, 5);
  t.deepEqual(
    page.jobs.map((j) => j.id),
    [ids[4], ids[3]],
  );
  const byName = [];
  for await (const j of c.jobs({ labels: label, pageSize: 2, orderBy: "name" })) byName.push(j.spec?.name);
  t.deepEqual(byName, ["alpha", "bravo", "charlie", "delta", "echo"], "pages in name order, each job once");
  const byNameDesc = await c.listJobs({ labels: label, orderBy: "-name" });
  t.is(byNameDesc.jobs[0]?.spec?.name, "echo");
  // State order: the one killed (KILLED) after the HELD ones; end_time: unfinished first.
  await c.kill(ids[0] as string);
  t.deepEqual(
    (await c.listJobs({ labels: label, orderBy: "state" })).jobs.map((j) => j.id),
    [ids[1], ids[2], ids[3], ids[4], ids[0]],
  );
  t.is((await c.listJobs({ labels: label, orderBy: "-end_time" })).jobs[0]?.id, ids[0]);
  t.is((await c.listJobs({ labels: label, orderBy: "end_time" })).jobs.at(-1)?.id, ids[0]);
  t.is(await codeOf(c.listJobs({ orderBy: "size" })), "INVALID_ARGUMENT");
  // Unfiltered (the total from the index, the walk starting at the token): pages newest first, each job once.
  const all: string[] = [];
  for await (const j of c.jobs({ orderBy: "-id", pageSize: 3 })) all.push(j.id);
  t.deepEqual(
    all,
    [...all].sort((a, b) => Number(b) - Number(a)),
  );
  t.is(new Set(all).size, all.length);
  t.true(ids.every((id) => all.includes(id)));
  const first = await c.listJobs({ orderBy: "id", pageSize: 2 });
  const second = await c.listJobs({ orderBy: "id", pageSize: 2, pageToken: first.nextPageToken });
  t.true(Number(second.jobs[0]?.id) > Number(first.jobs[1]?.id));
  t.true(first.totalSize >= all.length, "the total counts every listed job (jobs are only added meanwhile)");

  const r = await cli(
    ["jobs", "--label", `batch=${label.batch}`, "--sort", "-submit", "--limit", "3", "-o", "json"],
    env,
  );
  t.is(r.code, 0, r.stderr);
  t.deepEqual(
    (JSON.parse(r.stdout) as { id: string }[]).map((j) => j.id),
    [ids[4], ids[3], ids[2]],
  );
  // The CLI's default is newest first too.
  const d = await cli(["jobs", "--label", `batch=${label.batch}`, "--limit", "1", "-o", "json"], env);
  t.is((JSON.parse(d.stdout) as { id: string }[])[0]?.id, ids[4]);
  t.is((await cli(["jobs", "--sort", "size"], env)).code, 2);
});

test.serial(
  "a state filter's total comes from the index's counts and matches the listing, page after page",
  async (t) => {
    const { c } = t.context;
    const held = [];
    for (let i = 0; i < 5; i++) held.push((await c.submit({ command: ["true"], hold: true })).id);
    const first = await c.listJobs({ states: [JobState.HELD], orderBy: "-id", pageSize: 2 });
    const listed: string[] = [];
    for await (const j of c.jobs({ states: [JobState.HELD], orderBy: "-id", pageSize: 2 })) listed.push(j.id);
    t.is(first.totalSize, listed.length);
    t.deepEqual(listed.slice(0, 5), [...held].reverse());
    const withKilled = await c.listJobs({ states: [JobState.HELD, JobState.KILLED], pageSize: 1 });
    const killed = [];
    for await (const j of c.jobs({ states: [JobState.KILLED] })) killed.push(j.id);
    t.is(withKilled.totalSize, listed.length + killed.length);
    for (const id of held) await c.kill(id);
  },
);
