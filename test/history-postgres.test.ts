/**
 * The job history on a real PostgreSQL (Debian's, started by the harness):
 * retention holds back while the database is stopped, says so in
 * `crms admin status` and /metrics, and catches up when it returns, with no
 * job lost.
 */
import anyTest, { type TestFn } from "ava";
import type { CrmsClient } from "../clients/typescript/src/client.js";
import { JobState } from "../gen/crms/v1/job_pb.js";
import { createMetrics } from "../src/server/metrics.js";
import { cli, TestCluster } from "./helpers/cluster.js";
import { type PostgresInstance, startPostgres } from "./helpers/postgres.js";

const test = anyTest as TestFn<{ pg: PostgresInstance; cluster: TestCluster; c: CrmsClient; env: NodeJS.ProcessEnv }>;

test.before(async (t) => {
  const pg = await startPostgres();
  const cluster = await TestCluster.start({ history: pg.url, retentionIntervalSeconds: 0, retentionAgeSeconds: 1 });
  await cluster.startWorker("pg-w1", 4);
  t.context = { pg, cluster, c: cluster.client(), env: { ...process.env, CRMS_SERVER: cluster.address } };
});

test.after.always(async (t) => {
  await t.context.cluster?.stop();
  await t.context.pg?.destroy();
});

function sample(text: string, name: string): number | undefined {
  const m = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  return m ? Number(m[1]) : undefined;
}

test.serial("retention holds back while the history database is stopped and catches up when it returns", async (t) => {
  const { pg, cluster, c, env } = t.context;
  const metrics = createMetrics(cluster.server);
  try {
    const before = await c.submit({ name: "pg-before", command: ["true"] });
    await c.wait(before.id, { timeoutMs: 30_000 });
    // The leader archives it as it ends, without waiting for retention.
    await cluster.waitFor(
      async () => (await c.listHistory({ nameGlob: "pg-before" })).jobs.length === 1,
      20_000,
      "the finished job to reach PostgreSQL",
    );

    await pg.stop();
    const ids: string[] = [before.id];
    for (let i = 0; i < 5; i++) ids.push((await c.submit({ name: `pg-down-${i}`, command: ["true"] })).id);
    for (const id of ids) t.is((await c.wait(id, { timeoutMs: 30_000 })).state, JobState.SUCCEEDED);

    // Expired by age, yet retention deletes nothing and says why.
    await cluster.waitFor(
      async () => {
        await c.runRetention();
        return !!(await c.clusterStatus()).retentionWaiting;
      },
      30_000,
      "retention to wait for the history",
    );
    t.is((await c.runRetention()).deleted, 0n);
    for (const id of ids) t.truthy(await cluster.server.store.fetchJob(id), `job ${id} still in etcd`);
    const st = await cli(["admin", "status"], env);
    t.regex(st.stdout, /History:\s+postgres postgres:\/\/crms@127\.0\.0\.1:\d+\/postgres, DOWN/);
    t.regex(st.stdout, /Retention:\s+WAITING/);
    const down = await metrics.registry.metrics();
    t.is(sample(down, "crms_retention_waiting_for_history"), 1);
    t.is(sample(down, "crms_history_up"), 0);
    const unavailable = await t.throwsAsync(c.listHistory({}));
    t.regex(unavailable?.message ?? "", /history database .* is not available/);

    // Back: retention catches up, and every job is in the history.
    await pg.start();
    await cluster.waitFor(
      async () => {
        await c.runRetention();
        const left = await Promise.all(ids.map((id) => cluster.server.store.fetchJob(id)));
        return left.every((e) => e === undefined);
      },
      30_000,
      "retention to catch up",
    );
    t.is((await c.clusterStatus()).retentionWaiting, "");
    const archived = [];
    for await (const j of c.history({ nameGlob: "pg-*" })) archived.push(j.id);
    t.deepEqual(archived.sort(), [...ids].sort());
    for (const id of ids) t.is((await c.getJob(id)).state, JobState.SUCCEEDED);
    const up = await metrics.registry.metrics();
    t.is(sample(up, "crms_retention_waiting_for_history"), 0);
    t.is(sample(up, "crms_history_up"), 1);
  } finally {
    metrics.close();
  }
});
