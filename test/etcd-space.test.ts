import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { status } from "@grpc/grpc-js";
import test from "ava";
import { JobSchema, JobState } from "../gen/crms/v1/job_pb.js";
import { defragment } from "../src/store/maintenance.js";
import { expiredJobs } from "../src/store/retention.js";
import { Store } from "../src/store/store.js";
import { TestCluster } from "./helpers/cluster.js";
import { startEtcdCluster } from "./helpers/etcd.js";
import { startSimWorker } from "./helpers/sim-worker.js";

const mib = (n: bigint | number) => `${(Number(n) / 1024 / 1024).toFixed(1)} MiB`;

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
    for (let i = 0; i < 5; i++)
      jobs.push(await c.wait((await c.submit({ command: ["true"] })).id, { timeoutMs: 10_000 }));
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
    t.deepEqual(
      order,
      etcd.endpoints
        .filter((e) => before.some((m) => m.endpoint === e))
        .sort((a, b) => order.indexOf(a) - order.indexOf(b)),
    );
    t.is(new Set(order).size, 3);
    t.is(after.length, 3);
    t.is(failures, 0);
    t.true(writes > 0);
    t.log(
      `${writes} writes went through during defragmentation; sizes ${before.map((m) => mib(m.dbSize)).join(",")} -> ${after.map((m) => mib(m.dbSize)).join(",")}`,
    );
  } finally {
    await store.close();
    await etcd.stop();
  }
});
