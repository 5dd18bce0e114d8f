import { status } from "@grpc/grpc-js";
import anyTest, { type TestFn } from "ava";
import type { CrmsClient } from "../clients/typescript/src/client.js";
import { ServiceTransport } from "../clients/typescript/src/transport.js";
import { type DependencyCondition, JobState, WatchEventType } from "../gen/crms/v1/job_pb.js";
import { WorkerService } from "../gen/crms/v1/worker_pb.js";
import { TestCluster } from "./helpers/cluster.js";

const test = anyTest as TestFn<{ cluster: TestCluster; c: CrmsClient }>;

test.before(async (t) => {
  const cluster = await TestCluster.start();
  await cluster.startWorker("alpha", 2, { zone: "a" });
  await cluster.startWorker("beta", 2, { zone: "b", gpu: "yes" });
  t.context = { cluster, c: cluster.client() };
});

test.after.always(async (t) => {
  await t.context.cluster?.stop();
});

const codeOf = async (p: Promise<unknown>) => {
  try {
    await p;
    return "OK";
  } catch (err) {
    return status[(err as { code: number }).code];
  }
};

test("a job runs, succeeds and its output is readable", async (t) => {
  const { c } = t.context;
  const job = await c.submit({ command: ["echo", "hello"], name: "greeting" });
  const done = await c.wait(job.id, { timeoutMs: 20_000 });
  t.is(done.state, JobState.SUCCEEDED);
  t.is(done.exitCode, 0);
  t.is(Buffer.from(done.stdoutTail).toString(), "hello\n");
  const out = await c.outputText(job.id);
  t.is(out.stdout, "hello\n");
  t.is(done.attempts.length, 1);
  t.truthy(done.attempts[0]?.startTime);
});

test("wait and waitUntil on an unknown id fail NOT_FOUND instead of waiting forever", async (t) => {
  const { c } = t.context;
  t.is(await codeOf(c.wait("999999998", { timeoutMs: 10_000 })), "NOT_FOUND");
  t.is(await codeOf(c.waitUntil("999999998", () => true, { timeoutMs: 10_000 })), "NOT_FOUND");
});

test("a non-zero exit gives FAILED with the exit code", async (t) => {
  const { c } = t.context;
  const job = await c.submit({ command: ["sh", "-c", "echo oops >&2; exit 3"] });
  const done = await c.wait(job.id, { timeoutMs: 20_000 });
  t.is(done.state, JobState.FAILED);
  t.is(done.exitCode, 3);
  t.is(Buffer.from(done.stderrTail).toString(), "oops\n");
  t.regex(done.error, /exit code 3/);
});

test("an unknown command gives FAILED with a clear error", async (t) => {
  const { c } = t.context;
  const job = await c.submit({ command: ["no-such-command-xyz", "arg"] });
  const done = await c.wait(job.id, { timeoutMs: 20_000 });
  t.is(done.state, JobState.FAILED);
  t.is(done.exitCode, undefined);
  t.regex(done.error, /not found.*no-such-command-xyz|no-such-command-xyz.*not found/i);
});

test("kill of a running sleep 60 gives KILLED within 2 s and the process is gone", async (t) => {
  const { c, cluster } = t.context;
  const job = await c.submit({ command: ["sleep", "60"] });
  await cluster.waitFor(() => cluster.server.store.job(job.id)?.state === JobState.RUNNING, 20_000, "job to run");
  const pid = cluster.server.store.job(job.id)?.pid ?? 0;
  t.true(pid > 0);
  const started = Date.now();
  await c.kill(job.id, 1);
  const done = await c.wait(job.id, { timeoutMs: 10_000 });
  t.is(done.state, JobState.KILLED);
  t.true(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
  t.throws(() => process.kill(pid, 0), { code: "ESRCH" });
  t.is(await codeOf(c.kill(job.id)), "FAILED_PRECONDITION");
});

test("hold and release: a held job waits, a released one runs", async (t) => {
  const { c } = t.context;
  const job = await c.submit({ command: ["true"], hold: true });
  t.is(job.state, JobState.HELD);
  await new Promise((r) => setTimeout(r, 300));
  t.is((await c.getJob(job.id)).state, JobState.HELD);
  t.is(await codeOf(c.release("999999")), "NOT_FOUND");
  await c.release(job.id);
  t.is((await c.wait(job.id, { timeoutMs: 20_000 })).state, JobState.SUCCEEDED);
  t.is(await codeOf(c.hold(job.id)), "FAILED_PRECONDITION");
});

test("a target worker is honoured", async (t) => {
  const { c } = t.context;
  const jobs = await Promise.all([1, 2, 3].map(() => c.submit({ command: ["true"], targetWorker: "beta" })));
  for (const j of jobs) t.is((await c.wait(j.id, { timeoutMs: 20_000 })).worker, "beta");
  const lonely = await c.submit({ command: ["true"], targetWorker: "gamma" });
  await new Promise((r) => setTimeout(r, 300));
  const pending = await c.getJob(lonely.id);
  t.is(pending.state, JobState.PENDING);
  t.regex(pending.pendingReason, /gamma is not attached/);
  await c.kill(lonely.id);
});

test("label constraints are honoured, and unmatched ones say why", async (t) => {
  const { c } = t.context;
  const jobs = await Promise.all([1, 2, 3, 4].map(() => c.submit({ command: ["true"], constraints: { gpu: "yes" } })));
  for (const j of jobs) t.is((await c.wait(j.id, { timeoutMs: 20_000 })).worker, "beta");
  const none = await c.submit({ command: ["true"], constraints: { zone: "mars" } });
  await new Promise((r) => setTimeout(r, 300));
  t.regex((await c.getJob(none.id)).pendingReason, /zone=mars/);
  await c.kill(none.id);
});

test("slots are honoured: 5 sleep 1 jobs on a 2-slot worker never run more than 2 at once", async (t) => {
  const { c } = t.context;
  const running = new Set<string>();
  let peak = 0;
  const controller = new AbortController();
  const seen = (async () => {
    for await (const ev of c.watchJobs([], { signal: controller.signal })) {
      const j = ev.job;
      if (j?.worker !== "alpha") continue;
      if (j.state === JobState.ASSIGNED || j.state === JobState.RUNNING) running.add(j.id);
      else running.delete(j.id);
      peak = Math.max(peak, running.size);
    }
  })().catch(() => undefined);
  const jobs = await Promise.all(
    [1, 2, 3, 4, 5].map(() => c.submit({ command: ["sleep", "1"], targetWorker: "alpha" })),
  );
  for (const j of jobs) t.is((await c.wait(j.id, { timeoutMs: 30_000 })).state, JobState.SUCCEEDED);
  controller.abort();
  await seen;
  t.is(peak, 2);
});

test("a second submit with the same request id returns the same job", async (t) => {
  const { c } = t.context;
  const requestId = `req-${Date.now()}`;
  const [a, b] = await Promise.all([
    c.submitJob({ command: ["true"] }, requestId),
    c.submitJob({ command: ["true"] }, requestId),
  ]);
  const again = await c.submitJob({ command: ["true"] }, requestId);
  t.is(a.job?.id, b.job?.id);
  t.is(again.job?.id, a.job?.id);
  t.true(again.existing);
  t.is([a.existing, b.existing].filter(Boolean).length, 1);
});

test.serial("bad input gets the right status code and changes nothing", async (t) => {
  const { c, cluster } = t.context;
  const before = cluster.server.store.jobs.entries.size;
  t.is(await codeOf(c.submit({ command: [] })), "INVALID_ARGUMENT");
  t.is(await codeOf(c.submit({ command: ["echo", "x".repeat(10 * 1024 * 1024)] })), "INVALID_ARGUMENT");
  t.is(await codeOf(c.submit({ command: ["echo"], name: "bad\0name" })), "INVALID_ARGUMENT");
  t.is(await codeOf(c.submit({ command: ["echo"], targetWorker: "no/slashes" })), "INVALID_ARGUMENT");
  t.is(await codeOf(c.getJob("424242")), "NOT_FOUND");
  t.is(await codeOf(c.getJob("not-an-id")), "INVALID_ARGUMENT");
  t.is(await codeOf(c.deleteJob("424242")), "NOT_FOUND");
  t.is(await codeOf(c.getWorker("nobody")), "NOT_FOUND");
  t.is(await codeOf(c.listJobs({ pageSize: 5000 })), "INVALID_ARGUMENT");
  // A worker claiming negative slots is refused: -1 cast to the contract's uint32 is 4294967295.
  const transport = new ServiceTransport(cluster.address);
  const stream = transport.bidiStream(WorkerService.method.attach);
  const refused = new Promise<string>((resolve) => {
    stream.on("error", (err: { code: number }) => resolve(status[err.code] ?? "?"));
    stream.on("data", () => undefined);
  });
  stream.write({ msg: { case: "hello", value: { name: "neg", slots: -1 >>> 0 } } } as never);
  t.is(await refused, "INVALID_ARGUMENT");
  transport.close();
  t.is(cluster.server.store.worker("neg"), undefined);
  t.is(cluster.server.store.jobs.entries.size, before);
});

test.serial(
  "one validator per field kind: unknown enums, foreign page tokens and negative revisions are INVALID_ARGUMENT, saying what is wrong",
  async (t) => {
    const { c } = t.context;
    const refusal = async (p: Promise<unknown>) => {
      const err = (await p.then(
        () => undefined,
        (e) => e,
      )) as { code: number; details: string } | undefined;
      return err ? `${status[err.code]}: ${err.details}` : "OK";
    };
    for (const state of [99, -1]) {
      t.regex(
        await refusal(c.listJobs({ states: [state] })),
        new RegExp(`^INVALID_ARGUMENT: states: ${state} is not a JobState`),
      );
    }
    t.regex(
      await refusal(c.listJobs({ pageToken: "Mg==" })),
      /^INVALID_ARGUMENT: page_token "Mg==" is not a page token/,
    );
    t.notRegex(await refusal(c.listJobs({ pageToken: "Mg==" })), /job id/);
    t.regex(await refusal(c.listWorkers(0, "!!")), /^INVALID_ARGUMENT: page_token "!!" is not a page token/);
    const watch = async (afterRevision: bigint) => {
      for await (const _ of c.watchJobs([], { afterRevision })) return "OK";
      return "ended";
    };
    t.regex(await refusal(watch(-5n)), /^INVALID_ARGUMENT: after_revision -5 is not a revision/);
    t.regex(
      await refusal(c.submit({ command: ["true"], after: [{ jobId: "1", condition: 7 as DependencyCondition }] })),
      /^INVALID_ARGUMENT: after.*7 is not a DependencyCondition/,
    );
    // Valid values still pass.
    t.is(await refusal(c.listJobs({ states: [JobState.HELD] })), "OK");
    t.is(await refusal(c.listWorkers(0, "some-worker")), "OK");
  },
);

test("a pending job can be deleted only once finished, and jobs list in id order with pages", async (t) => {
  const { c } = t.context;
  const held = await Promise.all(
    [1, 2, 3].map(() => c.submit({ command: ["true"], hold: true, labels: { batch: "paging" } })),
  );
  t.is(await codeOf(c.deleteJob(held[0]?.id ?? "")), "FAILED_PRECONDITION");
  const page1 = await c.listJobs({ labels: { batch: "paging" }, pageSize: 2 });
  t.deepEqual(
    page1.jobs.map((j) => j.id),
    held.slice(0, 2).map((j) => j.id),
  );
  const page2 = await c.listJobs({ labels: { batch: "paging" }, pageSize: 2, pageToken: page1.nextPageToken });
  t.deepEqual(
    page2.jobs.map((j) => j.id),
    [held[2]?.id],
  );
  t.is(page2.nextPageToken, "");
  for (const j of held) await c.kill(j.id);
  await c.deleteJob(held[0]?.id ?? "");
  t.is(await codeOf(c.getJob(held[0]?.id ?? "")), "NOT_FOUND");
  const ids = (await c.listJobs({ pageSize: 1000 })).jobs.map((j) => Number(j.id));
  t.deepEqual(
    ids,
    [...ids].sort((a, b) => a - b),
  );
});

test("watch starts with the current jobs, then SYNCED, then changes", async (t) => {
  const { c } = t.context;
  const job = await c.submit({ command: ["true"], hold: true });
  const types: WatchEventType[] = [];
  for await (const ev of c.watchJobs([job.id])) {
    types.push(ev.type);
    if (types.length === 2) await c.release(job.id);
    if (ev.job?.state === JobState.SUCCEEDED) break;
  }
  t.is(types[0], WatchEventType.EXISTING);
  t.is(types[1], WatchEventType.SYNCED);
  t.true(types.slice(2).every((x) => x === WatchEventType.PUT));
});
