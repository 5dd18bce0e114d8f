import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { status } from "@grpc/grpc-js";
import test from "ava";
import { JobSchema, JobState } from "../gen/crms/v1/job_pb.js";
import type { CrmsClient } from "../src/client/client.js";
import { defragment } from "../src/store/maintenance.js";
import { expiredJobs } from "../src/store/retention.js";
import { Store } from "../src/store/store.js";
import { CRMS_BIN, TestCluster } from "./helpers/cluster.js";
import { startEtcdCluster } from "./helpers/etcd.js";
import { startSimWorker } from "./helpers/sim-worker.js";

const run = promisify(execFile);
const QUOTA = ["--quota-backend-bytes", String(16 * 1024 * 1024)];
const KIB = Buffer.alloc(1024, "x");

/**
 * Submits `n` jobs with at most `inFlight` requests outstanding (and, with `backlog`,
 * at most that many jobs not yet finished, as a pipeline feeding a cluster would);
 * stops at the first error and returns it.
 */
async function submitMany(
  c: CrmsClient,
  n: number,
  inFlight: number,
  spec: Parameters<CrmsClient["submit"]>[0],
  backlog?: { limit: number; finished: () => number },
) {
  let next = 0;
  let error: unknown;
  const ids: string[] = [];
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < n && !error) {
        while (backlog && next - backlog.finished() > backlog.limit) await new Promise((r) => setTimeout(r, 5));
        next++;
        try {
          ids.push((await c.submit(spec)).id);
        } catch (err) {
          error ??= err;
        }
      }
    }),
  );
  return { ids, error };
}

const mib = (n: bigint | number) => `${(Number(n) / 1024 / 1024).toFixed(1)} MiB`;

test("with compaction and retention on, 50,000 jobs with 1 KiB of output each fit in a 16 MiB etcd", async (t) => {
  t.timeout(400_000);
  const cluster = await TestCluster.start(
    { compactionIntervalSeconds: 0.5, retentionCount: 2000, retentionIntervalSeconds: 1, quotaBytes: 16 * 1024 * 1024 },
    QUOTA,
  );
  const sims = [1, 2, 3, 4].map((i) => startSimWorker(cluster.address, `sim${i}`, 64, KIB));
  try {
    const c = cluster.client();
    await cluster.waitFor(() => cluster.server.store.workers.entries.size === 4, 10_000, "sim workers");
    const started = Date.now();
    const finished = () => sims.reduce((n, s) => n + s.finished, 0);
    const { ids, error } = await submitMany(c, 50_000, 256, { command: ["true"] }, { limit: 2000, finished });
    t.is(error, undefined);
    await cluster.waitFor(() => finished() >= 50_000, 300_000, "all jobs to finish");
    const seconds = (Date.now() - started) / 1000;
    await cluster.server.retention.runNow();
    const s = await c.clusterStatus();
    const db = s.members[0]?.dbSize ?? 0n;
    t.log(`50,000 jobs in ${seconds.toFixed(1)} s; etcd db ${mib(db)} of 16 MiB; alarms: ${s.alarms.join(",") || "none"}`);
    t.deepEqual(s.alarms, []);
    t.is(ids.length, 50_000);
    t.true(cluster.server.store.jobs.entries.size <= 2000 + 256 * 2);
  } finally {
    for (const s of sims) s.stop();
    await cluster.stop();
  }
});

test("with compaction and retention off, etcd reaches NOSPACE; reads go on, `crms admin recover` restores writes, and live jobs finish", async (t) => {
  t.timeout(300_000);
  const cluster = await TestCluster.start(
    { compactionIntervalSeconds: 0, retentionCount: 0, retentionAgeSeconds: 0, retentionIntervalSeconds: 0 },
    QUOTA,
  );
  const filler = startSimWorker(cluster.address, "filler", 64, KIB);
  try {
    const c = cluster.client();
    await cluster.startWorker("slow", 1);
    const running = await c.submit({ command: ["sh", "-c", "sleep 4; echo survived"], targetWorker: "slow" });
    await cluster.waitFor(() => cluster.server.store.job(running.id)?.state === JobState.RUNNING, 20_000, "running job");
    const pending = await Promise.all(
      [1, 2, 3].map(() => c.submit({ command: ["echo", "pending"], targetWorker: "slow" })),
    );
    const { error } = await submitMany(c, 200_000, 64, { command: ["true"], targetWorker: "filler", name: "x".repeat(200) });
    const err = error as { code: number; details: string };
    t.is(status[err.code], "RESOURCE_EXHAUSTED");
    t.regex(err.details, /crms admin recover/);
    t.deepEqual(await cluster.server.checkAlarms(), ["NOSPACE"]);
    // Reads keep working while etcd refuses writes.
    t.is((await c.getJob(running.id)).id, running.id);
    t.true((await c.listJobs({ pageSize: 10 })).jobs.length > 0);
    const health = await run(process.env.GRPCURL ?? `${process.env.HOME}/go/bin/grpcurl`, [
      "-plaintext", "-d", '{"service":"crms.writes"}', cluster.address, "grpc.health.v1.Health/Check",
    ]).catch(() => ({ stdout: "grpcurl unavailable" }));
    t.regex(health.stdout, /NOT_SERVING|grpcurl unavailable/);
    const before = (await c.clusterStatus()).members[0]?.dbSize ?? 0n;
    const recovered = await run(process.execPath, [CRMS_BIN, "admin", "recover", "--server", cluster.address]);
    t.regex(recovered.stdout, /disarmed NOSPACE/);
    t.regex(recovered.stdout, /accepts writes again/);
    const after = (await c.clusterStatus()).members[0]?.dbSize ?? 0n;
    t.log(`db ${mib(before)} at NOSPACE, ${mib(after)} after recover`);
    t.deepEqual(await cluster.server.checkAlarms(), []);
    const fresh = await c.submit({ command: ["echo", "after"], targetWorker: "slow" });
    for (const j of [running, ...pending, fresh]) {
      const done = await c.wait(j.id, { timeoutMs: 60_000 });
      t.is(done.state, JobState.SUCCEEDED, `job ${j.id}: ${done.error}`);
    }
    t.is(Buffer.from((await c.getJob(running.id)).stdoutTail).toString(), "survived\n");
  } finally {
    filler.stop();
    await cluster.stop();
  }
});

test("retention keeps the newest N, deletes by age, and never deletes an unfinished job", (t) => {
  const now = Date.now();
  const job = (id: number, state: JobState, endedSecondsAgo?: number, retentionSeconds = 0) =>
    create(JobSchema, {
      id: String(id),
      state,
      spec: { command: ["x"], retentionSeconds },
      endTime: endedSecondsAgo === undefined ? undefined : timestampFromMs(now - endedSecondsAgo * 1000),
    });
  const jobs = [
    job(1, JobState.SUCCEEDED, 500),
    job(2, JobState.FAILED, 400),
    job(3, JobState.RUNNING),
    job(4, JobState.PENDING),
    job(5, JobState.KILLED, 300, 10_000),
    job(6, JobState.SUCCEEDED, 200),
    job(7, JobState.SUCCEEDED, 10),
  ];
  t.deepEqual(expiredJobs(jobs, { maxAgeSeconds: 0, maxCount: 2 }, now), ["1", "2", "6"]);
  t.deepEqual(expiredJobs(jobs, { maxAgeSeconds: 250, maxCount: 0 }, now), ["1", "2"]);
  t.deepEqual(expiredJobs(jobs, { maxAgeSeconds: 0, maxCount: 0 }, now), []);
  t.deepEqual(expiredJobs(jobs, { maxAgeSeconds: 1, maxCount: 1 }, now), ["1", "2", "6", "7"]);
});

test("retention through the API: expired jobs give NOT_FOUND saying they expired", async (t) => {
  const cluster = await TestCluster.start({ retentionCount: 2, retentionAgeSeconds: 0, retentionIntervalSeconds: 0 });
  const sim = startSimWorker(cluster.address, "sim", 4);
  try {
    const c = cluster.client();
    const held = await c.submit({ command: ["true"], hold: true });
    const jobs = [];
    for (let i = 0; i < 5; i++) jobs.push(await c.wait((await c.submit({ command: ["true"] })).id, { timeoutMs: 10_000 }));
    const res = await c.runRetention();
    t.is(res.deleted, 3n);
    const err = await c.getJob(jobs[0]?.id ?? "").catch((e) => e);
    t.is(status[err.code], "NOT_FOUND");
    t.regex(err.details, /expired/);
    t.is((await c.getJob(jobs[4]?.id ?? "")).state, JobState.SUCCEEDED);
    t.is((await c.getJob(held.id)).state, JobState.HELD);
  } finally {
    sim.stop();
    await cluster.stop();
  }
});

test("defragmenting a three-member cluster goes one member at a time, and the cluster keeps serving", async (t) => {
  const etcd = await startEtcdCluster(3);
  const store = await Store.open({ endpoints: etcd.endpoints, replicaId: "defrag-test" });
  try {
    for (let i = 0; i < 200; i++) await store.etcd.put(`filler/${i}`).value("y".repeat(2000));
    await store.etcd.delete().prefix("filler/");
    let writing = true;
    let writes = 0;
    let failures = 0;
    const writer = (async () => {
      while (writing) {
        try {
          await store.etcd.put(`live/${writes}`).value("v");
          writes++;
        } catch {
          failures++;
        }
      }
    })();
    const order: string[] = [];
    const { before, after } = await defragment(store, (endpoint) => order.push(endpoint));
    writing = false;
    await writer;
    t.deepEqual(order, etcd.endpoints.filter((e) => before.some((m) => m.endpoint === e)).sort((a, b) => order.indexOf(a) - order.indexOf(b)));
    t.is(new Set(order).size, 3);
    t.is(after.length, 3);
    t.is(failures, 0);
    t.true(writes > 0);
    t.log(`${writes} writes went through during defragmentation; sizes ${before.map((m) => mib(m.dbSize)).join(",")} -> ${after.map((m) => mib(m.dbSize)).join(",")}`);
  } finally {
    await store.close();
    await etcd.stop();
  }
});
