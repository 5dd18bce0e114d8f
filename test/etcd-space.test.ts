import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { status } from "@grpc/grpc-js";
import test from "ava";
import { Etcd3 } from "etcd3";
import { JobSchema, JobState } from "../gen/crms/v1/job_pb.js";
import { Compactor, compact, defragment } from "../src/store/maintenance.js";
import { expiredJobs, Retention } from "../src/store/retention.js";
import { memberStatus } from "../src/store/status.js";
import { Store } from "../src/store/store.js";
import { TestCluster } from "./helpers/cluster.js";
import { startEtcd, startEtcdCluster } from "./helpers/etcd.js";
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
    // A run asked for while another is in flight waits for it and does its own.
    const more = [];
    for (let i = 0; i < 40; i++) more.push((await c.submit({ command: ["true"] })).id);
    for (const id of more) await c.wait(id, { timeoutMs: 10_000 });
    const first = cluster.server.retention.runNow();
    const second = await cluster.server.retention.runNow();
    const finished = [...cluster.server.store.jobs.entries.values()].filter(
      (e) => e.value.state === JobState.SUCCEEDED,
    );
    t.is(finished.length, 2, "retention was done when the second call answered");
    t.is(second + (await first), 40);
  } finally {
    sim.stop();
    await cluster.stop();
  }
});

test("retention deletes in the order jobs finished, not by id, and works off a backlog without waiting an interval", async (t) => {
  const cluster = await TestCluster.start({ retentionCount: 1, retentionAgeSeconds: 0, retentionIntervalSeconds: 0 });
  try {
    const c = cluster.client();
    await cluster.startWorker("w", 2);
    // The lower id finishes last.
    const slow = await c.submit({ command: ["sleep", "1"], targetWorker: "w" });
    const fast = await c.submit({ command: ["true"], targetWorker: "w" });
    await c.wait(fast.id, { timeoutMs: 10_000 });
    await c.wait(slow.id, { timeoutMs: 10_000 });
    t.deepEqual([...cluster.server.store.jobIndex.finished.keys()], [fast.id, slow.id]);
    t.is((await c.runRetention()).deleted, 1n);
    t.is((await c.getJob(slow.id)).state, JobState.SUCCEEDED, "the job that finished last is kept");
    t.is(status[(await c.getJob(fast.id).catch((e) => e)).code], "NOT_FOUND");

    // A backlog of several batches (128 each): all deleted in one run, and the next run
    // follows in 1 s rather than an interval later, while jobs may still be finishing fast.
    cluster.server.retention.stop();
    const sim = startSimWorker(cluster.address, "sim", 64);
    t.teardown(() => sim.stop());
    const ids: string[] = [];
    for (let i = 0; i < 600; i++) ids.push((await c.submit({ command: ["true"], targetWorker: "sim" })).id);
    await cluster.waitFor(
      () => ids.every((id) => cluster.server.store.job(id)?.state === JobState.SUCCEEDED),
      30_000,
      "600 jobs to finish",
    );
    const retention = new Retention(cluster.server.store, { maxAgeSeconds: 0, maxCount: 10 }, 4000);
    retention.start();
    t.teardown(() => retention.stop());
    await cluster.waitFor(() => retention.runs === 1, 15_000, "the first run, an interval after start");
    t.is(retention.deleted, 591, "one run deletes every expired job");
    t.is(cluster.server.store.jobIndex.finished.size, 10);
    const firstAt = Date.now();
    await cluster.waitFor(() => retention.runs === 2, 15_000, "the second run");
    t.true(Date.now() - firstAt < 2500, "a run that deleted a batch or more is followed in ~1 s, not the 4 s interval");
  } finally {
    await cluster.stop();
  }
});

test("defragmenting a three-member cluster goes one member at a time, and the cluster keeps serving", async (t) => {
  const etcd = await startEtcdCluster(3);
  const store = await Store.open({ endpoints: etcd.endpoints, replicaId: "defrag-test" });
  const client = new Etcd3({ hosts: etcd.endpoints });
  try {
    for (let i = 0; i < 200; i++) await client.put(`filler/${i}`).value("y".repeat(2000));
    await client.delete().prefix("filler/");
    let writing = true;
    let writes = 0;
    let failures = 0;
    const writer = (async () => {
      while (writing) {
        try {
          await client.put(`live/${writes}`).value("v");
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
    client.close();
    await store.close();
    await etcd.stop();
  }
});

/** Resolves when `ok()` holds, polling; fails after `ms`. */
async function until(ok: () => boolean, ms: number, what: string) {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("the revision trigger compacts once the revision ran N past the last compaction, keeping a window for watchers", async (t) => {
  const etcd = await startEtcd();
  const store = await Store.open({ endpoints: [etcd.endpoint], replicaId: "compactor-revisions" });
  const client = new Etcd3({ hosts: [etcd.endpoint] });
  const compactor = new Compactor(store, {
    intervalMs: 0,
    revisions: 300,
    keepRevisions: 100,
    dbFraction: 0,
    quotaBytes: 0,
    checkMs: 100,
  });
  try {
    compactor.start();
    const first = await store.revision();
    // Below the trigger: nothing is compacted.
    for (let i = 0; i < 100; i++) await client.put(`k/${i}`).value("v");
    await new Promise((r) => setTimeout(r, 500));
    t.is(compactor.runs, 0);
    for (let i = 0; i < 400; i++) await client.put(`k/${i % 10}`).value(String(i));
    await until(() => compactor.runs > 0, 10_000, "a triggered compaction");
    const head = await store.revision();
    // Fired once the revision ran 300 past the last compaction (none yet: revision 0), compacting
    // to 100 below it. (Not counted from `first`: the store's own start-up writes may come before it.)
    t.true(compactor.compacted >= 201, `compacted to ${compactor.compacted} (first ${first})`);
    t.true(compactor.compacted <= head - 100, `kept the newest 100 revisions (head ${head})`);
    t.is(compactor.triggered, compactor.runs);
    // History before the compacted revision is gone; the window after it is still readable.
    await t.throwsAsync(() => client.get("k/0").revision(compactor.compacted - 1), {
      message: /compacted/,
    });
    t.not(
      await client
        .get("k/0")
        .revision(head - 99)
        .string(),
      null,
    );
    // And again once the revision ran another 300 past that compaction.
    const previous = compactor.compacted;
    for (let i = 0; i < 400; i++) await client.put(`k/${i % 10}`).value(String(i));
    await until(() => compactor.runs > 1, 10_000, "a second triggered compaction");
    t.true(compactor.compacted > previous + 300 - 100);
  } finally {
    compactor.stop();
    client.close();
    await store.close();
    await etcd.stop();
  }
});

test("the db-size trigger compacts and runs retention when etcd's db in use passes its fraction of the quota", async (t) => {
  const etcd = await startEtcd();
  const store = await Store.open({ endpoints: [etcd.endpoint], replicaId: "compactor-db" });
  const client = new Etcd3({ hosts: [etcd.endpoint] });
  let pressure = 0;
  const compactor = new Compactor(
    store,
    { intervalMs: 0, revisions: 0, keepRevisions: 10, dbFraction: 0.5, quotaBytes: 4 * 1024 * 1024, checkMs: 50 },
    async () => pressure++,
  );
  try {
    compactor.start();
    await new Promise((r) => setTimeout(r, 1200));
    t.is(pressure, 0, "an almost empty db is below half of 4 MiB");
    t.is(compactor.runs, 0);
    // About 3 MiB of overwritten values: in use goes past 2 MiB.
    const value = "z".repeat(16 * 1024);
    for (let i = 0; i < 200; i++) await client.put(`big/${i % 4}`).value(value);
    await until(() => compactor.runs > 0, 15_000, "a db-size compaction");
    t.true(pressure > 0);
    t.is(compactor.triggered, compactor.runs);
    t.true(compactor.compacted <= (await store.revision()) - 10);
  } finally {
    compactor.stop();
    client.close();
    await store.close();
    await etcd.stop();
  }
});

test("a db file near the quota with most of it free is defragmented by the compactor, and only then", async (t) => {
  const etcd = await startEtcd();
  const store = await Store.open({ endpoints: [etcd.endpoint], replicaId: "compactor-defrag" });
  const client = new Etcd3({ hosts: [etcd.endpoint] });
  const options = { intervalMs: 0, revisions: 0, keepRevisions: 10, dbFraction: 0.5, checkMs: 50 };
  const fileSize = async () => Number((await memberStatus(store)).members[0]?.dbSize ?? 0);
  try {
    // About 5 MiB of overwritten values, then compacted away: the file stays large, little of it in use.
    const value = "z".repeat(16 * 1024);
    for (let i = 0; i < 320; i++) await client.put(`big/${i % 4}`).value(value);
    await compact(store);
    // etcd frees the compacted pages with the next writes.
    for (let i = 0; i < 20; i++) await client.put(`small/${i}`).value("x");
    const before = await fileSize();
    t.true(before > 4 * 1024 * 1024, `file ${mib(before)}`);
    // Against a quota it fills to 70 %: nothing to do.
    const compactor = new Compactor(store, { ...options, quotaBytes: Math.round(before / 0.7) });
    t.teardown(() => compactor.stop());
    compactor.start();
    await new Promise((r) => setTimeout(r, 600));
    t.is(compactor.defrags, 0);
    compactor.stop();
    // Against one it fills to 80 %, past 75 % with most of it free: defragmented once.
    const near = new Compactor(store, { ...options, quotaBytes: Math.round(before / 0.8) });
    near.start();
    try {
      await until(() => near.defrags > 0, 15_000, "a defragmentation");
      const after = await fileSize();
      t.true(after < before / 2, `file ${mib(before)} -> ${mib(after)}`);
      await new Promise((r) => setTimeout(r, 600));
      t.is(near.defrags, 1, "not again while the file is small");
    } finally {
      near.stop();
    }
  } finally {
    client.close();
    await store.close();
    await etcd.stop();
  }
});

test("AdminService.Compact: a future, negative or already compacted revision is refused with crms's own message naming the valid range", async (t) => {
  const cluster = await TestCluster.start();
  try {
    const c = cluster.client();
    await c.submit({ command: ["true"], hold: true });
    const failure = async (revision: bigint) => {
      const err = await c.compact(revision).then(
        () => undefined,
        (e) => e,
      );
      t.truthy(err, `compact ${revision} was accepted`);
      t.notRegex(err.details, /etcdserver|mvcc/, "etcd's text does not leak");
      return { code: status[err.code], details: err.details as string };
    };
    const future = await failure(99_999_999n);
    t.is(future.code, "OUT_OF_RANGE");
    t.regex(future.details, /revision 99999999 is in the future.*current revision is \d+/);
    const negative = await failure(-5n);
    t.is(negative.code, "INVALID_ARGUMENT");
    t.regex(negative.details, /-5/);
    const done = await c.compact(0n);
    t.true(done.revision > 1n);
    await c.submit({ command: ["true"], hold: true });
    const below = await failure(done.revision - 1n);
    t.is(below.code, "OUT_OF_RANGE");
    t.regex(below.details, new RegExp(`already compacted.*from ${done.revision + 1n} to \\d+`));
    t.is(
      status[(await c.compact(done.revision).catch((e) => e)).code],
      "OUT_OF_RANGE",
      "the compacted revision itself",
    );
    t.true((await c.compact(0n)).revision > done.revision, "0 still compacts to the current revision");
  } finally {
    await cluster.stop();
  }
});
