/**
 * Pending jobs are kept encoded in the job cache (a backlog's records are
 * many and rarely read whole) and decoded when read: reads, listing and
 * watching see the same records as before, on the replica that wrote them
 * (write-through), on one that saw them by watch and on one that listed
 * them at start; a job that leaves PENDING is kept decoded again.
 */
import { toBinary } from "@bufbuild/protobuf";
import test from "ava";
import { CrmsClient } from "../clients/typescript/src/client.js";
import { JobSchema, JobState, WatchEventType } from "../gen/crms/v1/job_pb.js";
import { startServer } from "../src/server/server.js";
import type { Store } from "../src/store/store.js";
import { TestCluster } from "./helpers/cluster.js";

const encoded = (store: Store, id: string) => {
  const e = store.jobs.entries.get(id);
  if (!e) throw new Error(`job ${id} is not in the cache`);
  return "bytes" in e;
};

test("pending jobs are cached encoded and read, listed and watched as before on every replica", async (t) => {
  const cluster = await TestCluster.start({});
  t.teardown(() => cluster.stop());
  const c = cluster.client();
  const spec = (i: number) => ({
    command: ["sh", "-c", `echo ${i}`],
    name: `compact-${i}`,
    env: { N: String(i) },
    labels: { team: "a" },
    priority: i % 3,
  });
  const first = [];
  for (let i = 0; i < 50; i++) first.push(await c.submit(spec(i)));
  const held = await c.submit({ command: ["true"], hold: true });
  const store = cluster.server.store;
  for (const j of first) t.true(encoded(store, j.id), `pending job ${j.id} is kept encoded`);
  t.false(encoded(store, held.id), "a held job is kept as it is");
  // A read gives the whole record, the same as the submit's answer (plus what GetJob computes: its place in the queue).
  const one = first[7];
  if (!one) throw new Error("no job");
  const read = await c.getJob(one.id);
  // Behind the 16 jobs of priority 2 and the 2 earlier ones of its priority 1.
  t.is(read.queuePosition, 19n);
  t.deepEqual(
    toBinary(JobSchema, read),
    toBinary(JobSchema, { ...one, pendingReason: read.pendingReason, queuePosition: read.queuePosition }),
  );
  t.is(read.spec?.env.N, "7");
  // The last records read stay decoded: reading one again decodes nothing.
  store.job(one.id);
  const decodes = store.jobs.decodes;
  store.job(one.id);
  t.is(store.jobs.decodes, decodes);

  // A second replica lists them at start (and keeps them encoded), then sees new ones by watch.
  const other = await startServer({ listen: "127.0.0.1:0", etcd: [cluster.etcd.endpoint], logLevel: "warn" });
  t.teardown(() => other.stop());
  for (const j of first) t.true(encoded(other.store, j.id), `listed pending job ${j.id} is kept encoded`);
  const late = await c.submit(spec(99));
  await cluster.waitFor(() => other.store.jobs.entries.has(late.id), 10_000, "the watch to bring the new job");
  t.true(encoded(other.store, late.id), "a pending job seen by watch is kept encoded");
  const otherClient = new CrmsClient(other.address);
  t.teardown(() => otherClient.close());
  const listed = (await otherClient.listJobs({ pageSize: 1000 })).jobs;
  t.deepEqual(
    listed.map((j) => j.spec?.name),
    [...first.map((j) => j.spec?.name), held.spec?.name, "compact-99"],
  );
  t.true(listed.filter((j) => j.state === JobState.PENDING).every((j) => j.pendingReason !== ""));
  // A watch from the start gives every record in full.
  const ac = new AbortController();
  const names: string[] = [];
  for await (const ev of otherClient.watchJobs([], { signal: ac.signal })) {
    if (ev.type === WatchEventType.SYNCED) break;
    names.push(ev.job?.spec?.name ?? "");
  }
  ac.abort();
  t.is(names.length, 52);
  t.true(names.includes("compact-49"));

  // Once run, the jobs are kept decoded again and finish as usual.
  await cluster.startWorker("compact-w", 8);
  await cluster.waitFor(
    () => (store.jobIndex.counts.get(JobState.SUCCEEDED) ?? 0) === 51,
    60_000,
    "the pending jobs to run",
  );
  for (const j of [...first, late]) t.false(encoded(store, j.id), `finished job ${j.id} is kept decoded`);
  t.is((await c.getJob(late.id)).state, JobState.SUCCEEDED);
});

test("a replica over a backlog has its queue from the load, and taking the lead decodes only what a pass looks at", async (t) => {
  const cluster = await TestCluster.start({});
  t.teardown(() => cluster.stop());
  const c = cluster.client();
  const n = 1500;
  let next = 0;
  const ids: string[] = [];
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < n) {
        const i = next++;
        ids[i] = (await c.submit({ command: ["true"], name: `backlog-${i}`, priority: i % 2 })).id;
      }
    }),
  );
  const other = await startServer({ listen: "127.0.0.1:0", etcd: [cluster.etcd.endpoint], logLevel: "warn" });
  t.teardown(() => other.stop());
  // Queued from the load's records, decoded once as they were listed: not one decoded again.
  t.is(other.scheduler.fairShare.pending.size, n);
  t.is(other.store.jobs.decodes, 0);
  const otherClient = new CrmsClient(other.address);
  t.teardown(() => otherClient.close());
  // Its place on the replica that is not leading: behind the 750 jobs of priority 1 (odd i), then by id.
  t.is((await otherClient.getJob(ids[2] as string)).queuePosition, 752n);

  // The leader goes: the other takes the lead over 1,500 pending jobs and no worker.
  await cluster.server.stop();
  cluster.server = other;
  await cluster.waitFor(async () => other.election.isLeader, 30_000, "the other replica to lead");
  await cluster.waitFor(async () => other.scheduler.stats.passes > 0, 10_000, "a scheduling pass");
  t.true(other.store.jobs.decodes <= 256, `decoded ${other.store.jobs.decodes} of ${n} pending records`);
  t.is(other.scheduler.fairShare.pending.size, n);
  // Once a worker comes, every one of them runs.
  await cluster.startWorker("backlog-w", 16);
  await cluster.waitFor(
    async () => (other.store.jobIndex.counts.get(JobState.SUCCEEDED) ?? 0) === n,
    120_000,
    "the backlog to run",
  );
});

test("a backlog aimed at an absent worker: each waiting reason is written once, not rewritten by every pass", async (t) => {
  const cluster = await TestCluster.start({});
  t.teardown(() => cluster.stop());
  const c = cluster.client();
  const store = cluster.server.store;
  const scheduler = cluster.server.scheduler;
  // Within what a pass looks at when no slot is free (128 jobs).
  const n = 100;
  for (let i = 0; i < n; i++) await c.submit({ command: ["true"], targetWorker: "absent" });
  const reasoned = async () =>
    (await c.listJobs({ pageSize: 1000 })).jobs.filter(
      (j) => j.pendingReason === "target worker absent is not attached",
    ).length;
  await cluster.waitFor(async () => (await reasoned()) === n, 30_000, "every job to say why it waits");
  // Count the record updates the passes make from now on (each a read and decode of the job).
  let updates = 0;
  const update = store.updateJob.bind(store);
  store.updateJob = ((...args: Parameters<typeof update>) => {
    updates++;
    return update(...args);
  }) as typeof store.updateJob;
  const passes = scheduler.stats.passes;
  for (let i = 0; i < 5; i++) await c.submit({ command: ["true"], targetWorker: "absent" });
  await cluster.waitFor(async () => (await reasoned()) === n + 5, 30_000, "the new jobs to say why they wait");
  t.true(scheduler.stats.passes >= passes + 5, "each submit kicked a pass over the whole backlog");
  // The 5 new reasons; before, every pass updated all ~100 unplaced jobs again.
  t.true(updates <= 10, `${updates} record updates`);
});
