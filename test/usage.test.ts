/**
 * Accounting: GetUsage sums the job history per user, queue and worker, on
 * the embedded database and on a real PostgreSQL, rows kept before the usage
 * migration included; through gRPC and `crms usage` against a real control
 * plane and worker; and /metrics counts finished jobs and their usage by queue.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { status } from "@grpc/grpc-js";
import anyTest, { type ExecutionContext, type TestFn } from "ava";
import type { CrmsClient } from "../clients/typescript/src/client.js";
import {
  ArraySpecSchema,
  AttemptSchema,
  GetUsageRequestSchema,
  type Job,
  JobSchema,
  JobSpecSchema,
  JobState,
  UsageGrouping,
  UsageSchema,
} from "../gen/crms/v1/job_pb.js";
import { QueueSchema } from "../gen/crms/v1/queue_pb.js";
import { WorkerState } from "../gen/crms/v1/worker_pb.js";
import { allowedRoles } from "../src/auth/policy.js";
import { CrmsError } from "../src/errors.js";
import { History, type UsageSums } from "../src/history/history.js";
import { MIGRATIONS, migrate } from "../src/history/migrations.js";
import { openEmbedded, openPostgres } from "../src/history/sql.js";
import { OWNER_LABEL } from "../src/rpc/names.js";
import { createMetrics } from "../src/server/metrics.js";
import { startServer } from "../src/server/server.js";
import { cli, TestCluster } from "./helpers/cluster.js";
import { type PostgresInstance, startPostgres } from "./helpers/postgres.js";
import { startSimWorker } from "./helpers/sim-worker.js";

const test = anyTest as TestFn<{ pg: PostgresInstance; cluster: TestCluster; c: CrmsClient; env: NodeJS.ProcessEnv }>;

test.before(async (t) => {
  const pg = await startPostgres();
  const dataDir = mkdtempSync(join(tmpdir(), "crms-usage-"));
  const cluster = await TestCluster.start({ dataDir, retentionIntervalSeconds: 0 });
  await cluster.startWorker("usage-w1", 2);
  for (const name of ["batch", "metrics-q"])
    await cluster.server.store.queues.create(create(QueueSchema, { name, weight: 1 }));
  t.context = { pg, cluster, c: cluster.client(), env: { ...process.env, CRMS_SERVER: cluster.address } };
});

test.after.always(async (t) => {
  await t.context.cluster?.stop();
  await t.context.pg?.destroy();
});

const HOUR = 3600;
const GiB = 2n ** 30n;
const ago = (seconds: number) => timestampFromDate(new Date(Date.now() - seconds * 1000));

/** A finished job as the control plane keeps it (usage summed over its runs). */
function finished(
  id: string,
  state: JobState,
  o: {
    user?: string;
    label?: string;
    queue?: string;
    worker: string;
    cpu?: number;
    wall?: number;
    gpu?: number;
    rss?: bigint;
    endedAgo?: number;
    array?: boolean;
  },
): Job {
  return create(JobSchema, {
    id,
    state,
    user: o.user ?? "",
    queue: o.queue ?? "",
    worker: o.worker,
    spec: create(JobSpecSchema, {
      name: `usage-${id}`,
      command: ["true"],
      labels: o.label ? { [OWNER_LABEL]: o.label } : {},
      array: o.array ? create(ArraySpecSchema, { first: 1, last: 2 }) : undefined,
    }),
    attempts: o.array ? [] : [create(AttemptSchema, { number: 1, worker: o.worker })],
    submitTime: ago((o.endedAgo ?? 60) + 10),
    endTime: ago(o.endedAgo ?? 60),
    usage:
      o.cpu === undefined
        ? undefined
        : create(UsageSchema, {
            cpuSeconds: o.cpu,
            wallSeconds: o.wall ?? 0,
            gpuSeconds: o.gpu ?? 0,
            maxRssBytes: o.rss,
          }),
  });
}

/**
 * Runs one job on a simulated worker of its own that reports a run of 2 CPU-hours,
 * 3 wall hours, 1 GPU-hour and 1 GiB max RSS, through the worker protocol.
 */
async function runMeasured(
  cluster: TestCluster,
  worker: string,
  spec: { queue: string; labels: Record<string, string> },
): Promise<Job> {
  const usage = { cpuSeconds: 2 * HOUR, wallSeconds: 3 * HOUR, gpuSeconds: HOUR, maxRssBytes: GiB };
  const sim = startSimWorker(cluster.address, worker, 1, undefined, usage);
  try {
    await cluster.waitFor(() => cluster.server.store.worker(worker)?.state === WorkerState.UP, 10_000, worker);
    const c = cluster.client();
    const job = await c.submit({ name: "acct-measured", command: ["true"], targetWorker: worker, ...spec });
    return await c.wait(job.id, { timeoutMs: 30_000 });
  } finally {
    sim.stop();
  }
}

/** Within 0.02 hours (the real runs' own small usage). */
const near = (hours: number | undefined, expected: number) => hours !== undefined && Math.abs(hours - expected) < 0.02;

/** The sums of a grouping as [key, jobs, succeeded, failed, killed, cpu, gpu, wall, rss], in the order returned. */
const flat = (rows: UsageSums[]) =>
  rows.map((r) => [
    r.key,
    r.jobs,
    r.succeeded,
    r.failed,
    r.killed,
    r.cpuSeconds,
    r.gpuSeconds,
    r.wallSeconds,
    r.maxRssBytes,
  ]);

/** A fresh history database of each kind: a directory, or a new database on the PostgreSQL server. */
async function freshTarget(t: ExecutionContext<{ pg: PostgresInstance }>, kind: "embedded" | "postgres") {
  if (kind === "embedded") return join(mkdtempSync(join(tmpdir(), "crms-usage-db-")), "history");
  const name = `usage_${Date.now()}`;
  const admin = await openPostgres(t.context.pg.url);
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.close();
  return t.context.pg.url.replace(/\/postgres$/, `/${name}`);
}

for (const kind of ["embedded", "postgres"] as const) {
  test.serial(`usage sums finished jobs by user, queue and worker, old rows included (${kind})`, async (t) => {
    const where = await freshTarget(t, kind);
    // A history kept before the usage migration: a job of "olduser", and an array (parent 2, task 3).
    const old = kind === "embedded" ? await openEmbedded(where) : await openPostgres(where);
    t.is(await migrate(old, 2), 2);
    for (const [id, state, parent] of [
      ["1", "SUCCEEDED", null],
      ["2", "SUCCEEDED", null],
      ["3", "FAILED", "2"],
    ] as const) {
      await old.query(
        `INSERT INTO jobs (id, name, owner, state, labels, worker, command, end_time, attempts, array_parent, record)
         VALUES ($1, 'old', 'olduser', $2, '{}', $3, 'true', now() - interval '1 hour', 1, $4, $5)`,
        [
          id,
          state,
          id === "2" ? "" : "w-old",
          parent,
          Buffer.from(toBinary(JobSchema, create(JobSchema, { id: id as string }))),
        ],
      );
    }
    await old.close();

    const history = await History.open(where);
    try {
      t.is(history.schemaVersion, MIGRATIONS.length);
      await history.write([
        finished("10", JobState.SUCCEEDED, {
          user: "alice",
          queue: "gpu",
          worker: "w1",
          cpu: HOUR,
          wall: 1800,
          gpu: 2 * HOUR,
          rss: GiB,
        }),
        finished("11", JobState.FAILED, { user: "alice", worker: "w2", cpu: 1800, wall: 100, rss: 2n * GiB }),
        // No Job.user: the owner label stands in; no queue: "default".
        finished("12", JobState.KILLED, { label: "bob", worker: "w1", cpu: 2 * HOUR, rss: GiB / 2n }),
        // A final LOST counts as failed; no usage reads as 0.
        finished("13", JobState.LOST, { user: "carol", queue: "gpu", worker: "w2" }),
        // An array parent never runs: not a job of its own.
        finished("14", JobState.SUCCEEDED, { user: "alice", worker: "", array: true }),
        // Ended ten days ago.
        finished("15", JobState.SUCCEEDED, { user: "alice", worker: "w1", cpu: 100_000, endedAgo: 10 * 24 * HOUR }),
      ]);
      const week = new Date(Date.now() - 7 * 24 * HOUR * 1000);
      t.deepEqual(flat(await history.usage(week, "user")), [
        ["bob", 1, 0, 0, 1, 2 * HOUR, 0, 0, GiB / 2n],
        ["alice", 2, 1, 1, 0, 1.5 * HOUR, 2 * HOUR, 1900, 2n * GiB],
        ["carol", 1, 0, 1, 0, 0, 0, 0, 0n],
        ["olduser", 2, 1, 1, 0, 0, 0, 0, 0n],
      ]);
      t.deepEqual(flat(await history.usage(week, "queue")), [
        ["default", 4, 1, 2, 1, 2.5 * HOUR, 0, 100, 2n * GiB],
        ["gpu", 2, 1, 1, 0, HOUR, 2 * HOUR, 1800, GiB],
      ]);
      t.deepEqual(
        (await history.usage(week, "worker")).map((r) => [r.key, r.jobs, r.cpuSeconds]),
        [
          ["w1", 2, 3 * HOUR],
          ["w2", 2, 1800],
          ["w-old", 2, 0],
        ],
      );
      const month = await history.usage(new Date(Date.now() - 30 * 24 * HOUR * 1000), "user");
      t.deepEqual(
        month.map((r) => [r.key, r.jobs, r.cpuSeconds]),
        [
          ["alice", 3, 100_000 + 1.5 * HOUR],
          ["bob", 1, 2 * HOUR],
          ["carol", 1, 0],
          ["olduser", 2, 0],
        ],
      );
      t.deepEqual(await history.usage(new Date(Date.now() + 60_000), "user"), []);

      // ListHistory: the owner is the user, and rows from before queues are in "default".
      const ids = async (f: { owner?: string; queue?: string }) =>
        (await history.list({ ...f, pageSize: 100 })).jobs.map((j) => j.id).sort();
      t.deepEqual(await ids({ owner: "bob" }), ["12"]);
      t.deepEqual(await ids({ queue: "gpu" }), ["10", "13"]);
      t.deepEqual(await ids({ queue: "default" }), ["1", "11", "12", "14", "15", "2", "3"].sort());

      if (kind === "postgres") {
        // Down: GetUsage answers UNAVAILABLE, naming the history.
        const { createHistoryService } = await import("../src/services/history-service.js");
        const service = createHistoryService({ history } as never);
        await t.context.pg.stop();
        try {
          const err = await t.throwsAsync(service.getUsage(create(GetUsageRequestSchema)));
          t.true(err instanceof CrmsError && err.code === "UNAVAILABLE", String(err));
          t.regex(err?.message ?? "", /history database \(postgres .*\) is not available/);
        } finally {
          await t.context.pg.start();
        }
      }
    } finally {
      await history.close();
    }
  });
}

test.serial("GetUsage and crms usage sum what a real cluster ran, by user, queue and worker", async (t) => {
  const { cluster, c, env } = t.context;
  const owner = (who: string) => ({ [OWNER_LABEL]: who });
  const jobs = [
    await c.submit({ name: "acct-ok", command: ["true"], labels: owner("dave") }),
    await c.submit({ name: "acct-ok", command: ["true"], labels: owner("dave") }),
    await c.submit({ name: "acct-fail", command: ["false"], labels: owner("dave") }),
  ];
  const sleeper = await c.submit({ name: "acct-kill", command: ["sleep", "60"], labels: owner("erin") });
  await cluster.waitFor(
    async () => (await c.getJob(sleeper.id)).state === JobState.RUNNING,
    30_000,
    "the sleeper to run",
  );
  await c.kill(sleeper.id);
  for (const j of [...jobs, sleeper]) await c.wait(j.id, { timeoutMs: 30_000 });
  await cluster.waitFor(
    async () => (await c.listHistory({ nameGlob: "acct-*" })).jobs.length === 4,
    20_000,
    "the finished jobs to reach the history",
  );
  // A worker that reports what its run used (a simulated one: its figures are exact).
  t.is((await runMeasured(cluster, "usage-sim1", { queue: "batch", labels: owner("dave") })).state, JobState.SUCCEEDED);
  await cluster.waitFor(
    async () => (await c.listHistory({ queue: "batch" })).jobs.length === 1,
    20_000,
    "the measured job to reach the history",
  );

  const byUser = await c.getUsage({});
  const since = byUser.since ? timestampDate(byUser.since).getTime() : 0;
  t.true(Math.abs(since - (Date.now() - 7 * 24 * HOUR * 1000)) < 60_000, "since defaults to 7 days back");
  const row = (rows: typeof byUser.rows, key: string) => rows.find((r) => r.key === key);
  const dave = row(byUser.rows, "dave");
  // The real runs add what the worker measured (little: true and false), once workers report it.
  t.deepEqual([dave?.jobs, dave?.succeeded, dave?.failed, dave?.killed, dave?.gpuHours], [4n, 3n, 1n, 0n, 1]);
  t.true(near(dave?.cpuHours, 2) && near(dave?.wallHours, 3), JSON.stringify([dave?.cpuHours, dave?.wallHours]));
  t.true((dave?.maxRssBytes ?? 0n) >= GiB);
  const erin = row(byUser.rows, "erin");
  t.deepEqual([erin?.jobs, erin?.killed], [1n, 1n]);
  t.is(byUser.rows[0]?.key, "dave", "largest CPU hours first");

  const byWorker = await c.getUsage({ groupBy: UsageGrouping.WORKER });
  t.is(row(byWorker.rows, "usage-w1")?.jobs, 4n);
  t.deepEqual([row(byWorker.rows, "usage-sim1")?.jobs, row(byWorker.rows, "usage-sim1")?.cpuHours], [1n, 2]);
  const byQueue = await c.getUsage({ groupBy: UsageGrouping.QUEUE, since: ago(HOUR) });
  t.deepEqual(
    byQueue.rows.map((r) => [r.key, r.jobs, near(r.cpuHours, r.key === "batch" ? 2 : 0)]),
    [
      ["batch", 1n, true],
      ["default", 4n, true],
    ],
  );
  const bad = await t.throwsAsync(c.getUsage({ groupBy: 9 as UsageGrouping }));
  t.is((bad as { code?: number }).code, status.INVALID_ARGUMENT);
  t.true(allowedRoles("JobService.GetUsage").includes("reader"), "every role may read usage");

  const json = await cli(["usage", "--since", "1h", "--by", "queue", "-o", "json"], env);
  t.is(json.code, 0, json.stderr);
  const parsed = JSON.parse(json.stdout);
  t.is(parsed.by, "queue");
  t.true(Math.abs(Date.parse(parsed.since) - (Date.now() - HOUR * 1000)) < 60_000);
  t.deepEqual(parsed.rows[0], {
    key: "batch",
    jobs: 1,
    succeeded: 1,
    failed: 0,
    killed: 0,
    cpuHours: 2,
    gpuHours: 1,
    wallHours: 3,
    maxRssBytes: Number(GiB),
  });
  t.deepEqual(
    parsed.rows.map((r: { key: string; jobs: number; killed: number }) => [r.key, r.jobs, r.killed]),
    [
      ["batch", 1, 0],
      ["default", 4, 1],
    ],
  );
  const table = await cli(["usage"], env);
  t.is(table.code, 0, table.stderr);
  t.regex(table.stdout, /^KEY\s+JOBS\s+SUCCEEDED\s+FAILED\s+KILLED\s+CPU-HOURS\s+GPU-HOURS\s+WALL-HOURS\s+MAX-RSS\n/);
  t.regex(table.stdout, /^dave\s+4\s+3\s+1\s+0\s+2\.\d\d\s+1\.00\s+3\.\d\d\s+1\.\d\d GiB$/m);
  t.regex(table.stderr, /^finished jobs since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, by user$/m);
  const wrong = await cli(["usage", "--by", "team"], env);
  t.is(wrong.code, 2);
  t.regex(wrong.stderr, /--by must be user, queue or worker/);
  const when = await cli(["usage", "--since", "last week"], env);
  t.is(when.code, 2);
  t.regex(when.stderr, /--since must be a duration/);
});

test.serial("GetUsage without a history database is FAILED_PRECONDITION", async (t) => {
  const { cluster } = t.context;
  const bare = await startServer({
    listen: "127.0.0.1:0",
    etcd: [cluster.etcd.endpoint],
    prefix: "usage-bare/",
    logLevel: "silent",
  });
  try {
    const { CrmsClient } = await import("../clients/typescript/src/client.js");
    const c = new CrmsClient(bare.address);
    try {
      const err = await t.throwsAsync(c.getUsage({}));
      t.is((err as { code?: number }).code, status.FAILED_PRECONDITION);
      t.regex(err?.message ?? "", /runs without a history database/);
    } finally {
      c.close();
    }
  } finally {
    await bare.stop();
  }
});

test.serial(
  "/metrics counts finished jobs and their usage by queue, and each queue's running and pending jobs",
  async (t) => {
    const { cluster, c } = t.context;
    const metrics = createMetrics(cluster.server);
    const sample = async (name: string, labels: string) => {
      const text = await metrics.registry.metrics();
      const m = new RegExp(`^${name}\\{${labels}\\} (\\S+)$`, "m").exec(text);
      return m ? Number(m[1]) : undefined;
    };
    try {
      // Running and pending in the default queue: one sleeper on the worker, one job no worker can take.
      const labels = { [OWNER_LABEL]: "gina" };
      const running = await c.submit({ command: ["sleep", "60"], labels });
      const stuck = await c.submit({ command: ["true"], constraints: { nowhere: "yes" }, labels });
      await cluster.waitFor(async () => (await c.getJob(running.id)).state === JobState.RUNNING, 30_000, "a run");
      t.is(await sample("crms_queue_running", 'queue="default"'), 1);
      t.is(await sample("crms_queue_pending", 'queue="default"'), 1);
      await c.kill(running.id);
      await c.kill(stuck.id);
      const ok = await c.submit({ command: ["true"], labels });
      for (const id of [running.id, stuck.id, ok.id]) await c.wait(id, { timeoutMs: 30_000 });
      t.is(await sample("crms_queue_jobs_finished_total", 'queue="default",state="KILLED"'), 2);
      t.is(await sample("crms_queue_jobs_finished_total", 'queue="default",state="SUCCEEDED"'), 1);
      t.is(await sample("crms_queue_running", 'queue="default"'), 0);
      t.is(await sample("crms_queue_pending", 'queue="default"'), 0);

      await runMeasured(cluster, "usage-sim2", { queue: "metrics-q", labels });
      t.is(await sample("crms_queue_jobs_finished_total", 'queue="metrics-q",state="SUCCEEDED"'), 1);
      t.is(await sample("crms_queue_cpu_seconds_total", 'queue="metrics-q"'), 2 * HOUR);
      t.is(await sample("crms_queue_gpu_seconds_total", 'queue="metrics-q"'), HOUR);
      t.is(await sample("crms_queue_wall_seconds_total", 'queue="metrics-q"'), 3 * HOUR);
    } finally {
      metrics.close();
    }
  },
);
