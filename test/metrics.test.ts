/**
 * GET /metrics against a live cluster: real etcd, control plane, one
 * `crms worker` process and the HTTP endpoint on port 0.
 */
import anyTest, { type TestFn } from "ava";
import type { CrmsClient } from "../clients/typescript/src/client.js";
import { JobState } from "../gen/crms/v1/job_pb.js";
import { createMetrics } from "../src/server/metrics.js";
import { type HttpEndpoint, startHttp } from "../src/web/http.js";
import { TestCluster } from "./helpers/cluster.js";

const test = anyTest as TestFn<{ cluster: TestCluster; c: CrmsClient; http: HttpEndpoint }>;

test.before(async (t) => {
  const cluster = await TestCluster.start();
  const http = await startHttp(cluster.server, "127.0.0.1:0");
  await cluster.startWorker("metrics-alpha", 4);
  t.context = { cluster, c: cluster.client(), http };
});

test.after.always(async (t) => {
  await t.context.http?.close();
  await t.context.cluster?.stop();
});

/** The values of every sample of a metric, keyed by its label text ("" for none). */
function samples(text: string, name: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (m?.[1] === name) out.set(m[2]?.slice(1, -1) ?? "", Number(m[3]));
  }
  return out;
}

function sample(text: string, name: string, labels = ""): number | undefined {
  return samples(text, name).get(labels);
}

async function scrape(http: HttpEndpoint): Promise<{ text: string; type: string | null }> {
  const res = await fetch(new URL("metrics", http.url));
  if (res.status !== 200) throw new Error(`GET /metrics: ${res.status}`);
  return { text: await res.text(), type: res.headers.get("content-type") };
}

test.serial("/metrics counts jobs, placements, etcd writes and workers", async (t) => {
  const { c, http } = t.context;
  // The first scrape creates the metrics: nothing counted yet.
  const before = await scrape(http);
  t.regex(before.type ?? "", /^text\/plain; version=0\.0\.4/);
  t.is(sample(before.text, "crms_jobs_submitted_total"), 0);
  t.is(sample(before.text, "crms_jobs_finished_total", 'state="SUCCEEDED"'), 0);

  const commands = [...Array(5).fill("true"), ...Array(2).fill("false")] as string[];
  const jobs = await Promise.all(commands.map((cmd) => c.submit({ command: [cmd] })));
  const done = await Promise.all(jobs.map((j) => c.wait(j.id, { timeoutMs: 30_000 })));
  t.deepEqual(
    done.map((j) => j.state),
    [...Array(5).fill(JobState.SUCCEEDED), ...Array(2).fill(JobState.FAILED)],
  );

  const { text } = await scrape(http);
  t.is(sample(text, "crms_jobs_submitted_total"), 7);
  t.is(sample(text, "crms_jobs_finished_total", 'state="SUCCEEDED"'), 5);
  t.is(sample(text, "crms_jobs_finished_total", 'state="FAILED"'), 2);
  t.is(sample(text, "crms_jobs_finished_total", 'state="KILLED"'), 0);
  t.is(sample(text, "crms_jobs", 'state="SUCCEEDED"'), 5);
  t.is(sample(text, "crms_jobs", 'state="FAILED"'), 2);
  t.is(sample(text, "crms_jobs_pending"), 0);
  t.is(sample(text, "crms_jobs_running"), 0);
  t.is(sample(text, "crms_scheduling_latency_seconds_count"), 7);
  t.is(sample(text, "crms_submit_to_running_seconds_count"), 7);
  t.true((sample(text, "crms_etcd_txn_batch_size_count") ?? 0) > 0);
  t.true((sample(text, "crms_etcd_txn_seconds_count") ?? 0) > 0);
  t.is(sample(text, "crms_workers_attached"), 1);
  t.is(sample(text, "crms_workers", 'state="UP"'), 1);
  t.is(sample(text, "crms_streams_open", 'kind="attach"'), 1);
  t.is(sample(text, "crms_scheduler_leader"), 1);
  const dbSizes = [...samples(text, "crms_etcd_db_size_bytes").values()];
  t.true(dbSizes.length > 0 && dbSizes.every((v) => v > 0), "crms_etcd_db_size_bytes > 0");
  t.true([...samples(text, "crms_etcd_db_size_in_use_bytes").values()].every((v) => v > 0));
  t.is(sample(text, "crms_etcd_quota_bytes"), 2 * 1024 * 1024 * 1024);
  t.is(sample(text, "crms_etcd_alarm", 'alarm="NOSPACE"'), 0);
  t.is(typeof sample(text, "crms_retention_runs_total"), "number");
  t.is(typeof sample(text, "crms_compactions_total"), "number");
  // Relists after the first listing: a watch that fails is relisted, and counted.
  const { store } = t.context.cluster.server;
  const relists = sample(text, "crms_watch_relists_total", 'cache="jobs"') ?? -1;
  t.is(relists, store.jobs.relists - 1);
  t.is(sample(text, "crms_watch_relists_total", 'cache="workers"'), store.workers.relists - 1);
  (store.jobs as unknown as { watcher: { emit(e: string, err: Error): void } }).watcher.emit(
    "error",
    new Error("gone"),
  );
  await t.context.cluster.waitFor(() => store.jobs.relists - 1 === relists + 1, 10_000, "the relist");
  t.is(sample((await scrape(http)).text, "crms_watch_relists_total", 'cache="jobs"'), relists + 1);
  t.true((sample(text, "process_resident_memory_bytes") ?? 0) > 0, "default process metrics");

  const post = await fetch(new URL("metrics", t.context.http.url), { method: "POST" });
  t.is(post.status, 405);
});

test.serial("the scheduler's and batcher's events reach every subscriber, and close unsubscribes", async (t) => {
  const { cluster, c } = t.context;
  const { store, scheduler } = cluster.server;
  let txns = 0;
  let placed = 0;
  const offTxn = store.batcher.events.on("txn", () => txns++);
  const offPlaced = scheduler.events.on("placed", () => placed++);
  const metrics = createMetrics(cluster.server);
  /** The count of a histogram of the second metrics, read even after close emptied its registry. */
  const countOf = (name: string) => {
    const metric = metrics.registry.getSingleMetric(name);
    if (!metric) throw new Error(`no metric ${name}`);
    return async () =>
      (await metric.get()).values.find((v) => (v as { metricName?: string }).metricName === `${name}_count`)?.value;
  };
  const latencyCount = countOf("crms_scheduling_latency_seconds");
  const batchCount = countOf("crms_etcd_txn_batch_size");
  try {
    const job = await c.submit({ command: ["true"] });
    await c.wait(job.id, { timeoutMs: 30_000 });
    t.true(txns > 0);
    t.is(placed, 1);
    const text = await metrics.registry.metrics();
    t.is(sample(text, "crms_scheduling_latency_seconds_count"), 1);
    t.is(sample(text, "crms_jobs_submitted_total"), 1);
    t.true((sample(text, "crms_etcd_txn_batch_size_count") ?? 0) > 0);
  } finally {
    metrics.close();
  }
  // Closed, the second metrics sees nothing more; the other subscribers still do.
  const [latencyAtClose, batchAtClose, txnsAtClose] = [await latencyCount(), await batchCount(), txns];
  const job = await c.submit({ command: ["true"] });
  await c.wait(job.id, { timeoutMs: 30_000 });
  t.is(placed, 2);
  t.true(txns > txnsAtClose);
  t.is(await latencyCount(), latencyAtClose);
  t.is(await batchCount(), batchAtClose);
  offTxn();
  offPlaced();
  // The endpoint's metrics saw both jobs as well.
  const { text } = await scrape(t.context.http);
  t.is(sample(text, "crms_jobs_submitted_total"), 9);
  t.is(sample(text, "crms_scheduling_latency_seconds_count"), 9);
});
