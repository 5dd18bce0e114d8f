/**
 * #17 on a real cluster (etcd, control plane, TypeScript workers that offer
 * resources by flag): resource fit, requests refused at submit, queue limits,
 * fair share between queues and users, preemption, usage from the OS.
 */

import type { MessageInitShape } from "@bufbuild/protobuf";
import { status } from "@grpc/grpc-js";
import anyTest, { type TestFn } from "ava";
import { CrmsClient } from "../clients/typescript/src/client.js";
import { ServiceTransport } from "../clients/typescript/src/transport.js";
import { type Job, JobState } from "../gen/crms/v1/job_pb.js";
import { type QueueSchema, QueueService } from "../gen/crms/v1/queue_pb.js";
import { OWNER_LABEL } from "../src/rpc/names.js";
import { startServer } from "../src/server/server.js";
import { TestCluster } from "./helpers/cluster.js";

const test = anyTest as TestFn<{ cluster: TestCluster; c: CrmsClient; queues: ServiceTransport }>;

test.before(async (t) => {
  const cluster = await TestCluster.start();
  // 8 slots but 4 cpus: cpus bind first for jobs that ask for them.
  await cluster.startWorker("w4", 8, {}, ["--cpus", "4", "--memory", "8G", "--gpus", "0"]);
  t.context = { cluster, c: cluster.client(), queues: new ServiceTransport(cluster.address) };
});

test.after.always(async (t) => {
  t.context.queues?.close();
  await t.context.cluster?.stop();
});

const codeOf = async (p: Promise<unknown>) => {
  try {
    await p;
    return "OK";
  } catch (err) {
    return `${status[(err as { code: number }).code]}: ${(err as Error).message}`;
  }
};

async function createQueue(
  t: { context: { queues: ServiceTransport } },
  queue: MessageInitShape<typeof QueueSchema>,
): Promise<void> {
  await t.context.queues.unary(QueueService.method.createQueue, { queue: { weight: 1, ...queue } });
}

async function queueStatus(t: { context: { queues: ServiceTransport } }, name: string) {
  const res = await t.context.queues.unary(QueueService.method.getQueue, { name });
  return res.queue?.status;
}

const active = (j: Job) => j.state === JobState.RUNNING || j.state === JobState.ASSIGNED;

async function killAll(c: CrmsClient, jobs: Job[]): Promise<void> {
  await Promise.all(jobs.map((j) => c.kill(j.id, 0, undefined, true).catch(() => undefined)));
  await Promise.all(jobs.map((j) => c.wait(j.id, { timeoutMs: 30_000 }).catch(() => undefined)));
}

test.serial("two 2-cpu jobs run together on a 4-cpu worker; a third waits, saying for what", async (t) => {
  const { c, cluster } = t.context;
  const jobs = await Promise.all(
    [1, 2, 3].map(() => c.submit({ command: ["sleep", "3"], resources: { cpus: 2, memoryBytes: 1n << 30n } })),
  );
  await cluster.waitFor(
    async () => (await Promise.all(jobs.map((j) => c.getJob(j.id)))).filter(active).length === 2,
    20_000,
    "two jobs running",
  );
  const now = await Promise.all(jobs.map((j) => c.getJob(j.id)));
  t.is(now.filter(active).length, 2);
  const waiting = now.find((j) => j.state === JobState.PENDING) as Job;
  t.truthy(waiting);
  t.regex(waiting.pendingReason, /waiting for 2 cpus; most free on one worker: 0 cpus/);
  t.is(waiting.queuePosition, 1n);
  t.is(waiting.queue, "default");
  for (const j of jobs) {
    const end = await c.wait(j.id, { timeoutMs: 30_000 });
    const why = {
      exitCode: end.exitCode,
      signal: end.signal,
      error: end.error,
      worker: end.worker,
      attempt: end.attempt,
    };
    t.is(end.state, JobState.SUCCEEDED, `job ${j.id} ended ${JobState[end.state]}: ${JSON.stringify(why)}`);
  }
});

test.serial("a replica started over running and pending jobs counts them in its fair-share books", async (t) => {
  const { c, cluster } = t.context;
  const running = await Promise.all([1, 2].map(() => c.submit({ command: ["sleep", "30"], resources: { cpus: 2 } })));
  const pending = await c.submit({ command: ["sleep", "30"], resources: { cpus: 2 } });
  await cluster.waitFor(
    async () => (await Promise.all(running.map((j) => c.getJob(j.id)))).every(active),
    20_000,
    "two runs",
  );
  const late = await startServer({ listen: "127.0.0.1:0", etcd: [cluster.etcd.endpoint], logLevel: "warn" });
  try {
    const mine = cluster.server.fairShare;
    await cluster.waitFor(() => late.fairShare.status("default").running === 2, 10_000, "the late replica's count");
    t.like(late.fairShare.status("default"), { running: 2, pending: 1n, cpus: 4 });
    // The same books as the leader's (but the decayed usage, which only the leader accrues).
    const books = (r: ReturnType<typeof mine.status>) => ({
      ...r,
      users: r.users.map((u) => ({ ...u, decayedUsage: 0 })),
    });
    t.deepEqual(books(late.fairShare.status("default")), books(mine.status("default")));
    t.is(late.fairShare.allocated.get("w4")?.cpus, 4);
    // Its answers serialize (a negative count would not): GetWorker through it.
    const lc = new CrmsClient(late.address);
    try {
      t.is((await lc.getWorker("w4")).allocated?.cpus, 4);
    } finally {
      lc.close();
    }
  } finally {
    await late.stop();
    await killAll(c, [...running, pending]);
  }
  await cluster.waitFor(() => cluster.server.fairShare.status("default").running === 0, 10_000, "nothing running");
  t.is(cluster.server.fairShare.allocated.get("w4")?.cpus ?? 0, 0);
});

test.serial("a request no worker could ever hold is refused at submit, naming the largest worker", async (t) => {
  const { c } = t.context;
  t.regex(await codeOf(c.submit({ command: ["true"], resources: { cpus: 64 } })), /^INVALID_ARGUMENT: .*w4.*4 cpus/);
  t.regex(await codeOf(c.submit({ command: ["true"], resources: { gpus: 1 } })), /^INVALID_ARGUMENT: .*gpus/);
  t.regex(
    await codeOf(c.submit({ command: ["true"], resources: { named: { license: 1n } } })),
    /^INVALID_ARGUMENT: .*license/,
  );
  t.regex(await codeOf(c.submit({ command: ["true"], queue: "nope" })), /^NOT_FOUND: .*queue nope does not exist/);
  t.regex(await codeOf(c.submit({ command: ["true"], queue: "Bad Name" })), /^INVALID_ARGUMENT/);
});

test.serial("a queue's max-running holds, and its waiting jobs say so", async (t) => {
  const { c, cluster } = t.context;
  await createQueue(t, { name: "lim", maxRunning: 1 });
  const jobs = await Promise.all([1, 2, 3].map(() => c.submit({ command: ["sleep", "1"], queue: "lim" })));
  let most = 0;
  let reason = "";
  await cluster.waitFor(
    async () => {
      const now = await Promise.all(jobs.map((j) => c.getJob(j.id)));
      most = Math.max(most, now.filter(active).length);
      reason ||= now.find((j) => j.state === JobState.PENDING && /limit/.test(j.pendingReason))?.pendingReason ?? "";
      return now.every((j) => j.state === JobState.SUCCEEDED);
    },
    30_000,
    "the queue's jobs to finish",
  );
  t.is(most, 1);
  t.regex(reason, /queue lim is at its limit of 1 running jobs/);
});

test.serial("between queues, running cpus converge to the queues' weights (3:1)", async (t) => {
  const { c, cluster } = t.context;
  await createQueue(t, { name: "heavy", weight: 3 });
  await createQueue(t, { name: "light", weight: 1 });
  const spec = (queue: string) => ({ command: ["sleep", "1"], queue });
  const jobs = await Promise.all([
    ...Array.from({ length: 16 }, () => c.submit(spec("light"))),
    ...Array.from({ length: 24 }, () => c.submit(spec("heavy"))),
  ]);
  // Sample while both queues still wait for room.
  const samples: number[] = [];
  await cluster.waitFor(
    async () => {
      const [h, l] = await Promise.all([queueStatus(t, "heavy"), queueStatus(t, "light")]);
      if (h && l && h.pending > 0n && l.pending > 0n && h.running + l.running === 4) samples.push(h.running);
      return !h || !l || h.pending === 0n || l.pending === 0n;
    },
    60_000,
    "a queue to run out of pending jobs",
  );
  t.true(samples.length >= 5, `samples: ${samples.length}`);
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  // Weight 3 of 4: three of the four cpus.
  t.true(Math.abs(mean - 3) <= 0.6, `heavy ran ${mean.toFixed(2)} of 4 cpus on average (samples ${samples.join(",")})`);
  await killAll(c, jobs);
});

test.serial("within a queue, a user who comes later is not stuck behind another's backlog", async (t) => {
  const { c, cluster } = t.context;
  const as = (user: string) => ({ command: ["sleep", "1"], labels: { [OWNER_LABEL]: user } });
  const a = await Promise.all(Array.from({ length: 24 }, () => c.submit(as("ann"))));
  await cluster.waitFor(async () => active(await c.getJob(a[0]?.id as string)), 20_000, "ann's first job");
  const b = await Promise.all(Array.from({ length: 8 }, () => c.submit(as("bob"))));
  t.is(b[0]?.user, "bob");
  const samples: number[] = [];
  let standing = "";
  await cluster.waitFor(
    async () => {
      const s = await queueStatus(t, "default");
      const ann = s?.users.find((u) => u.user === "ann");
      const bob = s?.users.find((u) => u.user === "bob");
      if (ann && bob && ann.pending > 0n && bob.pending > 0n) samples.push(bob.running);
      if (!standing && bob && bob.pending > 0n) {
        const waiting = (await Promise.all(b.map((j) => c.getJob(j.id)))).find((j) => j.state === JobState.PENDING);
        standing = waiting?.pendingReason ?? "";
      }
      return !bob || bob.pending === 0n;
    },
    60_000,
    "bob's jobs to be placed",
  );
  // Bob's jobs ran while Ann still had a backlog: at least half the cpus once he arrived.
  const bobFirst = await c.getJob(b[0]?.id as string);
  const annLast = await c.getJob(a.at(-1)?.id as string);
  t.true(bobFirst.state !== JobState.PENDING);
  t.true(annLast.state === JobState.PENDING || active(annLast) || annLast.startTime !== undefined);
  // From his first start on (Ann's runs are not preempted: he waits for them to end first).
  const since = samples.slice(
    Math.max(
      0,
      samples.findIndex((n) => n > 0),
    ),
  );
  const mean = since.length ? since.reduce((x, y) => x + y, 0) / since.length : 0;
  t.true(mean >= 1.5, `bob ran ${mean.toFixed(2)} of 4 cpus on average while both waited (samples ${since.join(",")})`);
  // A pending job says where its user stands against the queue's target.
  t.regex(standing, /^waiting for .*; user bob holds \d+ % of the cluster, target 50 %$/);
  await killAll(c, [...a, ...b]);
});

test.serial(
  "a queue below its share preempts preemptible runs of a queue above it: PREEMPTED, no retry charged",
  async (t) => {
    const { c, cluster } = t.context;
    await createQueue(t, { name: "scav", weight: 1, preemptible: true });
    await createQueue(t, { name: "prio", weight: 1 });
    const scav = await Promise.all([1, 2, 3, 4].map(() => c.submit({ command: ["sleep", "120"], queue: "scav" })));
    await cluster.waitFor(
      async () => (await Promise.all(scav.map((j) => c.getJob(j.id)))).every((j) => j.state === JobState.RUNNING),
      20_000,
      "four scavenger runs",
    );
    const prio = await Promise.all([1, 2].map(() => c.submit({ command: ["sleep", "1"], queue: "prio" })));
    for (const j of prio) t.is((await c.wait(j.id, { timeoutMs: 60_000 })).state, JobState.SUCCEEDED);
    const after = await Promise.all(scav.map((j) => c.getJob(j.id)));
    const preempted = after.filter((j) => j.preemptions > 0);
    // Half the cluster for prio: two of the four scavenger runs, no more.
    t.is(preempted.length, 2);
    for (const j of preempted) {
      t.is(j.attempts[0]?.outcome, JobState.PREEMPTED);
      t.is(j.failures, 0);
      t.is(j.lostCount, 0);
      t.false(j.killRequested);
    }
    // They run again once prio is done.
    await cluster.waitFor(
      async () => (await Promise.all(scav.map((j) => c.getJob(j.id)))).every(active),
      30_000,
      "the preempted runs to run again",
    );
    await killAll(c, scav);
  },
);

test.serial("a job's usage is what the OS measured: CPU seconds within 10 % of /proc", async (t) => {
  const { c } = t.context;
  // Burns about 1.5 s of CPU, then prints its own user+system time from /proc.
  const script =
    "import os,time\nt=time.process_time()\nwhile time.process_time()-t<1.5: pass\n" +
    "f=open('/proc/self/stat').read().rsplit(')',1)[1].split()\nprint((int(f[11])+int(f[12]))/os.sysconf('SC_CLK_TCK'))";
  const job = await c.submit({ command: ["python3", "-c", script] });
  const done = await c.wait(job.id, { timeoutMs: 30_000 });
  t.is(done.state, JobState.SUCCEEDED);
  const seen = Number(Buffer.from(done.stdoutTail).toString().trim());
  t.true(seen >= 1.4, `the job saw ${seen} s`);
  const cpu = done.usage?.cpuSeconds ?? 0;
  t.true(Math.abs(cpu - seen) <= 0.1 * seen, `usage says ${cpu} s, /proc said ${seen} s`);
  t.true((done.usage?.maxRssBytes ?? 0n) > 0n);
  t.true((done.usage?.wallSeconds ?? 0) >= cpu * 0.9);
  t.is(done.attempts[0]?.usage?.cpuSeconds, cpu);
});
