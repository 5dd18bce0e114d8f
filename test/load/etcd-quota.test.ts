import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { status } from "@grpc/grpc-js";
import test from "ava";
import { JobState } from "../../gen/crms/v1/job_pb.js";
import type { CrmsClient } from "../../src/client/client.js";
import { CRMS_BIN, TestCluster } from "../helpers/cluster.js";
import { startSimWorker } from "../helpers/sim-worker.js";

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
    t.log(
      `50,000 jobs in ${seconds.toFixed(1)} s; etcd db ${mib(db)} of 16 MiB; alarms: ${s.alarms.join(",") || "none"}`,
    );
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
    await cluster.waitFor(
      () => cluster.server.store.job(running.id)?.state === JobState.RUNNING,
      20_000,
      "running job",
    );
    const pending = await Promise.all(
      [1, 2, 3].map(() => c.submit({ command: ["echo", "pending"], targetWorker: "slow" })),
    );
    const { error } = await submitMany(c, 200_000, 64, {
      command: ["true"],
      targetWorker: "filler",
      name: "x".repeat(200),
    });
    const err = error as { code: number; details: string };
    t.is(status[err.code], "RESOURCE_EXHAUSTED");
    t.regex(err.details, /crms admin recover/);
    t.deepEqual(await cluster.server.checkAlarms(), ["NOSPACE"]);
    // Reads keep working while etcd refuses writes.
    t.is((await c.getJob(running.id)).id, running.id);
    t.true((await c.listJobs({ pageSize: 10 })).jobs.length > 0);
    const health = await run(process.env.GRPCURL ?? `${process.env.HOME}/go/bin/grpcurl`, [
      "-plaintext",
      "-d",
      '{"service":"crms.writes"}',
      cluster.address,
      "grpc.health.v1.Health/Check",
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
