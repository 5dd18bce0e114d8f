import { execFile } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { status } from "@grpc/grpc-js";
import test from "ava";
import type { CrmsClient } from "../../clients/typescript/src/client.js";
import { JobState } from "../../gen/crms/v1/job_pb.js";
import { isFinal } from "../../src/rpc/states.js";
import { CRMS_BIN, grpcurlPath, TestCluster } from "../helpers/cluster.js";
import { startSimWorker } from "../helpers/sim-worker.js";

const run = promisify(execFile);
const QUOTA = ["--quota-backend-bytes", String(16 * 1024 * 1024)];
const KIB = Buffer.alloc(1024, "x");
const GRPCURL = grpcurlPath();
const HEALTH = "grpc.health.v1.Health/Check";

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
      for (;;) {
        while (backlog && !error && next - backlog.finished() > backlog.limit)
          await new Promise((r) => setTimeout(r, 5));
        // Checked after the backlog wait: others may have taken the last jobs meanwhile.
        if (next >= n || error) break;
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

test.serial(
  "with compaction and retention on, 50,000 jobs with 1 KiB of output each fit in a 16 MiB etcd",
  async (t) => {
    t.timeout(400_000);
    const cluster = await TestCluster.start(
      // What an operator of a 16 MiB etcd would set: the quota and how many finished jobs
      // to keep. Compaction has its defaults: the 5-minute periodic one never comes in this
      // test; the db-size trigger (half the quota in use) must keep up.
      { retentionCount: 2000, retentionIntervalSeconds: 1, quotaBytes: 16 * 1024 * 1024 },
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
      const { compactor, retention } = cluster.server;
      t.log(
        `50,000 jobs in ${seconds.toFixed(1)} s; etcd db ${mib(db)} of 16 MiB; alarms: ${s.alarms.join(",") || "none"}; ` +
          `revision ${s.revision}, ${compactor.runs} compactions (${compactor.triggered} triggered), ` +
          `retention deleted ${retention.deleted}`,
      );
      t.deepEqual(s.alarms, []);
      t.is(ids.length, 50_000);
      t.is(new Set(ids).size, 50_000);
      t.true(compactor.triggered > 0);
      t.true(db < 16n * 1024n * 1024n);
      t.true(cluster.server.store.jobs.entries.size <= 2000 + 256 * 2);
    } finally {
      for (const s of sims) s.stop();
      await cluster.stop();
    }
  },
);

test.serial(
  "with compaction and retention off, etcd reaches NOSPACE; reads go on, `crms admin recover` restores writes, and live jobs finish",
  async (t) => {
    t.timeout(300_000);
    const cluster = await TestCluster.start(
      {
        compactionIntervalSeconds: 0,
        compactionRevisions: 0,
        compactionDbFraction: 0,
        retentionCount: 0,
        retentionAgeSeconds: 0,
        retentionIntervalSeconds: 0,
      },
      QUOTA,
    );
    let filler = startSimWorker(cluster.address, "filler", 64, KIB);
    const gates = mkdtempSync(join(tmpdir(), "crms-nospace-"));
    const gate = join(gates, "go");
    const earlyGate = join(gates, "early");
    const waitFor = (file: string, last: string) =>
      `echo started; while [ ! -e ${file} ]; do sleep 0.1; done; echo ${last}`;
    try {
      const c = cluster.client();
      await cluster.startWorker("slow", 2);
      // Runs until the test opens its gate, so it is RUNNING through the alarm and the recovery.
      const running = await c.submit({ command: ["sh", "-c", waitFor(gate, "survived")], targetWorker: "slow" });
      // Ends while etcd is full: its finish report must be kept and recorded after recovery.
      const early = await c.submit({ command: ["sh", "-c", waitFor(earlyGate, "early")], targetWorker: "slow" });
      await cluster.waitFor(
        () => [running, early].every((j) => cluster.server.store.job(j.id)?.state === JobState.RUNNING),
        20_000,
        "running jobs",
      );
      const pending = await Promise.all(
        [1, 2, 3].map(() => c.submit({ command: ["echo", "pending"], targetWorker: "slow" })),
      );
      // Fill etcd; submitMany stops at the first refused submit.
      // As a cluster that keeps up would: at most 500 filler jobs unfinished at a time.
      const { ids: filled, error } = await submitMany(
        c,
        1_000_000,
        64,
        { command: ["true"], targetWorker: "filler", name: "x".repeat(200) },
        { limit: 500, finished: () => filler.finished },
      );
      const err = error as { code: number; details: string };
      t.is(status[err?.code], "RESOURCE_EXHAUSTED");
      t.regex(err.details, /etcd is out of space.*crms admin recover/);
      // Nothing may change the jobs while the alarm is raised and the recovery runs.
      filler.stop();
      t.deepEqual(await cluster.server.checkAlarms(), ["NOSPACE"]);
      const before = (await c.clusterStatus()).members[0]?.dbSize ?? 0n;
      t.log(`NOSPACE after ${filled.length} filler jobs; db ${mib(before)}`);

      // Reads keep working while etcd refuses writes: get, list, watch, output from the worker.
      t.is((await c.getJob(running.id)).state, JobState.RUNNING);
      const live: string[] = [];
      for await (const j of c.jobs({
        states: [JobState.PENDING, JobState.ASSIGNED, JobState.RUNNING],
        pageSize: 1000,
      })) {
        live.push(j.id);
      }
      t.true([running, early, ...pending].every((j) => live.includes(j.id)));
      const watched = new AbortController();
      for await (const ev of c.watchJobs([running.id], { signal: watched.signal })) {
        t.is(ev.job?.state, JobState.RUNNING);
        break;
      }
      watched.abort();
      for await (const chunk of c.output(running.id, true)) {
        t.is(Buffer.from(chunk.data).toString(), "started\n");
        break;
      }
      const health = await run(GRPCURL, ["-plaintext", "-d", '{"service":"crms.writes"}', cluster.address, HEALTH]);
      t.regex(health.stdout, /NOT_SERVING/);
      // A job ends while etcd refuses writes: its record stays RUNNING until writes work.
      writeFileSync(earlyGate, "");
      await new Promise((r) => setTimeout(r, 3000));
      t.is((await c.getJob(early.id)).state, JobState.RUNNING);
      const adminStatus = await run(process.execPath, [CRMS_BIN, "admin", "status", "--server", cluster.address]);
      t.regex(adminStatus.stdout, /Alarms: +NOSPACE — run `crms admin recover`/);

      // The one recovery command; --keep-finished 0 also drops every finished job, never a live one.
      const recovered = await run(process.execPath, [
        CRMS_BIN,
        "admin",
        "recover",
        "--keep-finished",
        "0",
        "--server",
        cluster.address,
      ]);
      t.regex(recovered.stdout, /disarmed NOSPACE/);
      t.regex(recovered.stdout, /deleted \d+ finished jobs/);
      t.regex(recovered.stdout, /accepts writes again/);
      const after = (await c.clusterStatus()).members[0]?.dbSize ?? 0n;
      t.log(`recover: db ${mib(before)} at NOSPACE, ${mib(after)} after; ${live.length} unfinished jobs kept`);
      t.true(after < before / 2n);
      t.deepEqual(await cluster.server.checkAlarms(), []);
      const healthy = await run(GRPCURL, ["-plaintext", "-d", '{"service":"crms.writes"}', cluster.address, HEALTH]);
      t.regex(healthy.stdout, /"SERVING"/);
      // Recovery keeps every job unfinished at the alarm. The early job's kept finish report may
      // already have been recorded by now (it is retried as soon as etcd answers), so it is RUNNING
      // or SUCCEEDED, and a pending job may have run in the slot it freed (SUCCEEDED too).
      for (const id of live) {
        const state = (await c.getJob(id)).state;
        if (id === early.id || pending.some((p) => p.id === id))
          t.true(state === JobState.SUCCEEDED || !isFinal(state), `job ${id}: ${JobState[state]}`);
        else t.false(isFinal(state), `job ${id} still unfinished`);
      }

      // Writes work again, and everything unfinished at the alarm finishes.
      const fresh = await c.submit({ command: ["echo", "after"], targetWorker: "slow" });
      filler = startSimWorker(cluster.address, "filler", 64, KIB);
      writeFileSync(gate, "");
      for (const j of [early, running, ...pending, fresh]) {
        const done = await c.wait(j.id, { timeoutMs: 60_000 });
        t.is(done.state, JobState.SUCCEEDED, `job ${j.id}: ${done.error}`);
      }
      t.is(Buffer.from((await c.getJob(running.id)).stdoutTail).toString(), "started\nsurvived\n");
      t.is(Buffer.from((await c.getJob(early.id)).stdoutTail).toString(), "started\nearly\n");
      await cluster.waitFor(
        () => live.every((id) => isFinal(cluster.server.store.job(id)?.state ?? JobState.UNSPECIFIED)),
        60_000,
        "every job unfinished at the alarm to reach a final state",
      );
      for (const id of live) t.true(isFinal((await c.getJob(id)).state), `job ${id} final`);
    } finally {
      filler.stop();
      await cluster.stop();
    }
  },
);
