/**
 * The job history on the embedded database (PGlite under the control plane's
 * data directory): a finished job outlives etcd retention and is found by
 * `crms job`, `crms history` and ListHistory; a second replica on embedded
 * history is refused, naming the flag for PostgreSQL.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { status } from "@grpc/grpc-js";
import anyTest, { type TestFn } from "ava";
import type { CrmsClient } from "../clients/typescript/src/client.js";
import { JobState } from "../gen/crms/v1/job_pb.js";
import { History } from "../src/history/history.js";
import { MIGRATIONS, migrate } from "../src/history/migrations.js";
import { openEmbedded } from "../src/history/sql.js";
import { startServer } from "../src/server/server.js";
import { createLogService, keptOutput } from "../src/services/log-service.js";
import { shares } from "../src/worker/ship-output.js";
import { cli, TestCluster } from "./helpers/cluster.js";

const test = anyTest as TestFn<{ cluster: TestCluster; c: CrmsClient; env: NodeJS.ProcessEnv; dataDir: string }>;

test.before(async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), "crms-cp-"));
  // Retention runs only when asked (admin gc), and deletes what ended a second ago.
  const cluster = await TestCluster.start({ dataDir, retentionIntervalSeconds: 0, retentionAgeSeconds: 1 });
  await cluster.startWorker("hist-w1", 2);
  t.context = { cluster, c: cluster.client(), env: { ...process.env, CRMS_SERVER: cluster.address }, dataDir };
});

test.after.always(async (t) => {
  await t.context.cluster?.stop();
});

/** Runs retention until none of `ids` is left in etcd. */
async function retainUntilGone(cluster: TestCluster, c: CrmsClient, ids: string[]): Promise<void> {
  await cluster.waitFor(
    async () => {
      await c.runRetention();
      const left = await Promise.all(ids.map((id) => cluster.server.store.fetchJob(id)));
      return left.every((e) => e === undefined);
    },
    30_000,
    `retention to delete ${ids.join(", ")} from etcd`,
  );
}

test.serial("a job deleted from etcd by retention is still found by crms job and crms history", async (t) => {
  const { cluster, c, env } = t.context;
  const failed = await c.submit({
    name: "hist-fail",
    command: ["sh", "-c", "echo out; exit 3"],
    labels: { team: "alpha" },
  });
  const ok = await c.submit({ name: "hist-ok", command: ["true"], labels: { team: "beta" } });
  t.is((await c.wait(failed.id, { timeoutMs: 30_000 })).state, JobState.FAILED);
  t.is((await c.wait(ok.id, { timeoutMs: 30_000 })).state, JobState.SUCCEEDED);
  await retainUntilGone(cluster, c, [failed.id, ok.id]);
  t.is(cluster.server.store.job(failed.id), undefined, "gone from the replica's cache too");

  // GetJob and `crms job` answer from the history.
  const got = await c.getJob(failed.id);
  t.is(got.state, JobState.FAILED);
  t.is(got.exitCode, 3);
  t.is(got.worker, "hist-w1");
  t.is(got.attempts.length, 1);
  const shown = await cli(["job", failed.id, "-o", "json"], env);
  t.is(shown.code, 0, shown.stderr);
  const json = JSON.parse(shown.stdout);
  t.is(json.state, "FAILED");
  t.is(json.exitCode, 3);

  // `crms history` with filters, in each output format.
  const csv = await cli(["history", "--since", "1h", "--label", "team=alpha", "-o", "csv"], env);
  t.is(csv.code, 0, csv.stderr);
  const lines = csv.stdout.trimEnd().split("\r\n");
  t.is(
    lines[0],
    "id,name,state,owner,queue,worker,labels,command,submit_time,start_time,end_time,runtime_seconds,exit_code,signal,attempts,array_parent,error",
  );
  t.is(lines.length, 2);
  const row = (lines[1] as string).split(",");
  t.deepEqual(
    [row[0], row[1], row[2], row[5], row[6], row[12], row[14]],
    [failed.id, "hist-fail", "FAILED", "hist-w1", "team=alpha", "3", "1"],
  );
  const succeeded = await cli(["history", "--state", "SUCCEEDED", "-o", "json"], env);
  t.deepEqual(
    JSON.parse(succeeded.stdout).map((j: { id: string }) => j.id),
    [ok.id],
  );
  const table = await cli(["history", "--name", "hist-*", "--worker", "hist-w1"], env);
  t.is(table.code, 0, table.stderr);
  t.regex(table.stdout, new RegExp(`^${failed.id}\\s+hist-fail\\s+FAILED`, "m"));
  t.regex(table.stdout, new RegExp(`^${ok.id}\\s+hist-ok\\s+SUCCEEDED`, "m"));
  const none = await cli(["history", "--worker", "elsewhere", "-o", "json"], env);
  t.deepEqual(JSON.parse(none.stdout), []);
  const future = await cli(["history", "--until", "2001-01-01", "-o", "json"], env);
  t.deepEqual(JSON.parse(future.stdout), []);
  // A limit shows the newest and says that more matched (a table of a long history is 1,000 rows by default).
  const newest = await cli(["history", "--name", "hist-*", "--limit", "1", "-o", "json"], env);
  t.is(newest.code, 0, newest.stderr);
  t.is(JSON.parse(newest.stdout).length, 1);
  t.regex(newest.stderr, /the newest 1 shown, more matched: --limit N for more/);
  const all = await cli(["history", "--name", "hist-*", "--limit", "2", "-o", "json"], env);
  t.is(JSON.parse(all.stdout).length, 2);
  t.is(all.stderr, "", "no note when nothing more matched");

  // Newest end first, a page at a time.
  const first = await c.listHistory({ pageSize: 1, nameGlob: "hist-*" });
  t.is(first.jobs.length, 1);
  t.truthy(first.nextPageToken);
  const second = await c.listHistory({ pageSize: 1, nameGlob: "hist-*", pageToken: first.nextPageToken });
  t.deepEqual([first.jobs[0]?.id, second.jobs[0]?.id].sort(), [failed.id, ok.id].sort());
  t.is(second.nextPageToken, "");

  // `crms admin status` names the history.
  const st = await cli(["admin", "status"], env);
  t.regex(st.stdout, /History:\s+embedded .*history, up/);
});

test.serial("bad ListHistory requests are INVALID_ARGUMENT", async (t) => {
  const { c, env } = t.context;
  const e1 = await t.throwsAsync(c.listHistory({ states: [JobState.RUNNING] }));
  t.is((e1 as { code?: number }).code, status.INVALID_ARGUMENT);
  const e2 = await t.throwsAsync(c.listHistory({ pageToken: "not a token" }));
  t.is((e2 as { code?: number }).code, status.INVALID_ARGUMENT);
  const bad = await cli(["history", "--since", "yesterday"], env);
  t.is(bad.code, 2);
  t.regex(bad.stderr, /--since must be a duration/);
});

test.serial("a second replica on embedded history is refused, naming --history", async (t) => {
  const { cluster } = t.context;
  const err = await t.throwsAsync(
    startServer({
      listen: "127.0.0.1:0",
      etcd: [cluster.etcd.endpoint],
      dataDir: mkdtempSync(join(tmpdir(), "crms-cp2-")),
      leaseTtl: 1,
      logLevel: "silent",
    }),
  );
  t.regex(err?.message ?? "", /replica .* is running .*--history postgres:\/\//);
  // The embedded database's directory is locked by the process that has it open.
  const locked = await t.throwsAsync(History.open(join(t.context.dataDir, "history")));
  t.regex(locked?.message ?? "", new RegExp(`in use by process ${process.pid}`));
});

test.serial("logs of a job whose worker was SIGKILLed and forgotten are served in full", async (t) => {
  const { cluster, c, env } = t.context;
  const w = await cluster.startWorker("hist-logs", 1);
  // About 590 KB of stdout, far past the 2 KiB tail etcd keeps.
  const job = await c.submit({
    name: "hist-logs",
    command: ["sh", "-c", "seq 1 100000; echo err-line >&2"],
    targetWorker: "hist-logs",
  });
  t.is((await c.wait(job.id, { timeoutMs: 30_000 })).state, JobState.SUCCEEDED);
  const history = cluster.server.history;
  if (!history) throw new Error("no history");
  await cluster.waitFor(
    async () => (await history.readLog(job.id, 1)).length === 2,
    20_000,
    "the worker to ship the output",
  );
  await w.stop("SIGKILL");
  // DOWN once its grace ran out, then forgotten: nothing of the worker is left.
  await cluster.waitFor(() => cluster.server.store.worker("hist-logs")?.state === 4, 30_000, "the worker to be DOWN");
  await c.forgetWorker("hist-logs");
  await cluster.waitFor(() => cluster.server.store.worker("hist-logs") === undefined, 10_000, "the worker forgotten");
  const expected = `${Array.from({ length: 100000 }, (_, i) => i + 1).join("\n")}\n`;
  const out = await cli(["logs", job.id], env);
  t.is(out.code, 0, out.stderr);
  t.is(out.stdout.length, expected.length);
  t.true(out.stdout === expected, "stdout served in full");
  t.is(out.stderr, "err-line\n");
  // Still served once retention deleted the job from etcd.
  await retainUntilGone(cluster, c, [job.id]);
  const again = await c.outputText(job.id);
  t.true(again.stdout === expected);
});

test.serial("output past the cap is cut, and the cut is marked", async (t) => {
  const { cluster } = t.context;
  t.deepEqual(shares(100, 10, 64), [54, 10], "stderr keeps what it needs, stdout the rest");
  t.deepEqual(shares(100, 100, 64), [32, 32], "both over: half each");
  const cp = cluster.server;
  const deps = { store: cp.store, election: cp.election, log: cp.log, history: cp.history, options: {} as never };
  const logs = createLogService(deps, 10);
  const job = await t.context.c.submit({ name: "hist-cut", command: ["true"], targetWorker: "hist-w1" });
  const done = await t.context.c.wait(job.id, { timeoutMs: 30_000 });
  await logs.uploadOutput({
    $typeName: "crms.v1.UploadOutputRequest",
    jobId: job.id,
    attempt: done.attempt,
    stream: 1,
    offset: 0n,
    data: Buffer.from("0123456789ABCDEF"),
    last: true,
    cutBytes: 5n,
  });
  const kept = await keptOutput(deps, done);
  const text = Buffer.concat((kept ?? []).map((m) => m.data)).toString();
  t.is(text, "0123456789\n[crms: output cut at the per-job cap; 11 more bytes were not kept]\n");
  const bad = await t.throwsAsync(
    logs.uploadOutput({
      $typeName: "crms.v1.UploadOutputRequest",
      jobId: job.id,
      attempt: done.attempt,
      stream: 1,
      offset: 7n,
      data: Buffer.from("x"),
      last: true,
      cutBytes: 0n,
    }),
  );
  t.regex(bad?.message ?? "", /expected offset 0/);
});

test("kept output reads back the same whether stored before schema 4 (all compressed), small (as it is) or large (compressed)", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "crms-logs-"));
  const old = await openEmbedded(dir);
  t.is(await migrate(old, 3), 3);
  await old.query(
    "INSERT INTO job_logs (job_id, stream, attempt, size, cut_bytes, data) VALUES (7001, 1, 1, 9, 0, $1)",
    [gzipSync("old bytes")],
  );
  await old.close();
  const history = await History.open(dir);
  try {
    const large = Buffer.from("0123456789".repeat(1000));
    // Together: one flush writes both, and each call resolves once it is written.
    await Promise.all([
      history.storeLog("7002", 1, 1, Buffer.from("small"), 0),
      history.storeLog("7003", 1, 1, large, 0),
      history.storeLog("7003", 1, 2, Buffer.from("err"), 0),
    ]);
    const { rows } = await history.db.query<{ job_id: string; packed: boolean; n: number }>(
      "SELECT job_id::text, packed, length(data) AS n FROM job_logs ORDER BY job_id, stream",
    );
    t.deepEqual(
      rows.map((r) => [r.job_id, r.packed]),
      [
        ["7001", true],
        ["7002", false],
        ["7003", true],
        ["7003", false],
      ],
    );
    t.true(Number(rows[2]?.n) < large.length / 10, "the large stream is compressed");
    t.is((await history.readLog("7001", 1))[0]?.data.toString(), "old bytes");
    t.is((await history.readLog("7002", 1))[0]?.data.toString(), "small");
    const both = await history.readLog("7003", 1);
    t.true(both[0]?.data.equals(large));
    t.is(both[1]?.data.toString(), "err");
  } finally {
    await history.close();
  }
});

test.serial("log retention deletes kept output by age and by total size, oldest first", async (t) => {
  const history = t.context.cluster.server.history;
  if (!history) throw new Error("no history");
  const ids = ["900001", "900002", "900003"];
  for (const id of ids) await history.storeLog(id, 1, 1, Buffer.from(`output of ${id}`), 0);
  const { rows } = await history.db.query<{ n: number }>(
    "SELECT length(data) AS n FROM job_logs WHERE job_id = 900003",
  );
  const newest = Number(rows[0]?.n);
  // Room for the newest stream only: the two older ones (and any older kept output) go.
  t.true((await history.pruneLogs(0, newest)) >= 2);
  t.is((await history.readLog("900003", 1)).length, 1);
  t.is((await history.readLog("900001", 1)).length, 0);
  t.is((await history.readLog("900002", 1)).length, 0);
  // By age: everything stored before now minus 0.001 s goes.
  await new Promise((r) => setTimeout(r, 20));
  t.true((await history.pruneLogs(0.001, 0)) >= 1);
  t.is((await history.readLog("900003", 1)).length, 0);
});

test.serial(
  "the embedded history outlives the control plane: a restart on the same data dir still finds the job",
  async (t) => {
    const { cluster, c, dataDir } = t.context;
    const job = await c.submit({ name: "hist-restart", command: ["true"] });
    await c.wait(job.id, { timeoutMs: 30_000 });
    await retainUntilGone(cluster, c, [job.id]);
    // Stop this replica and start another on the same etcd and data dir.
    await cluster.server.stop();
    const again = await startServer({
      listen: "127.0.0.1:0",
      etcd: [cluster.etcd.endpoint],
      dataDir,
      logLevel: "warn",
    });
    try {
      t.is(again.history?.schemaVersion, MIGRATIONS.length, "migrations are not applied twice");
      const found = await again.handlers.job.getJob({ id: job.id } as never);
      t.is(found.job.spec?.name, "hist-restart");
    } finally {
      await again.stop();
    }
  },
);
