import { create } from "@bufbuild/protobuf";
import anyTest, { type TestFn } from "ava";
import { Etcd3 } from "etcd3";
import { JobSpecSchema, JobState } from "../gen/crms/v1/job_pb.js";
import type { CrmsError } from "../src/errors.js";
import { transition } from "../src/scheduler/job-machine.js";
import { Batcher } from "../src/store/batcher.js";
import { Store } from "../src/store/store.js";
import { type EtcdInstance, startEtcd } from "./helpers/etcd.js";
import { waitFor } from "./helpers/fault-cluster.js";

/** `client` reaches etcd behind the stores' backs. */
const test = anyTest as TestFn<{ etcd: EtcdInstance; client: Etcd3 }>;

test.before(async (t) => {
  t.context.etcd = await startEtcd();
  t.context.client = new Etcd3({ hosts: [t.context.etcd.endpoint] });
});
test.after.always(async (t) => {
  t.context.client?.close();
  await t.context.etcd?.stop();
});

/** Each test's own key prefix. */
const prefixOf = (t: { title: string }) => `${t.title.replace(/\W+/g, "-")}/`;

const open = (t: { context: { etcd: EtcdInstance }; title: string }, replicaId = "r1") =>
  Store.open({ endpoints: [t.context.etcd.endpoint], prefix: prefixOf(t), replicaId });

const spec = create(JobSpecSchema, { command: ["true"] });

test("concurrent creates are grouped into far fewer Txns, and every job is stored once", async (t) => {
  const store = await open(t);
  const n = 500;
  const before = store.batcher.stats.txns;
  const jobs = await Promise.all(Array.from({ length: n }, () => store.createJob(spec, "")));
  const txns = store.batcher.stats.txns - before;
  t.is(new Set(jobs.map((j) => j.job.id)).size, n);
  t.true(txns < n / 5, `${txns} Txns for ${n} creates`);
  const listed = await store.jobs.list();
  t.is(listed.kvs.size, n);
  await store.close();
});

test("conflicting updates of one record each apply exactly once (compare on mod revision)", async (t) => {
  const a = await open(t, "a");
  const b = await open(t, "b");
  const { job } = await a.createJob(spec, "");
  await Promise.all(
    Array.from({ length: 60 }, (_, i) =>
      (i % 2 ? a : b).updateJob(job.id, (j) => ({ ...j, failures: j.failures + 1 })),
    ),
  );
  t.is((await a.fetchJob(job.id))?.value.failures, 60);
  await a.close();
  await b.close();
});

test("a transition whose compare fails in a batch fails alone; the others commit", async (t) => {
  const store = await open(t);
  const jobs = await Promise.all(Array.from({ length: 20 }, () => store.createJob(spec, "")));
  const target = jobs[5]?.job.id as string;
  const stale = store.jobs.entries.get(target)?.mod ?? 0;
  await store.updateJob(target, (j) => ({ ...j, state: JobState.HELD }));
  const prefix = prefixOf(t);
  const batcher = new Batcher(t.context.client);
  const results = await Promise.all(
    jobs.map(({ job }) =>
      batcher.commit(
        [
          {
            key: `${prefix}jobs/${job.id}`,
            target: "mod",
            revision: job.id === target ? stale : (store.jobs.entries.get(job.id)?.mod ?? 0),
          },
        ],
        [{ type: "put", key: `${prefix}scratch/${job.id}`, value: Buffer.from("x") }],
      ),
    ),
  );
  t.is(results.filter((r) => r.ok).length, 19);
  t.false(results[5]?.ok);
  await store.close();
});

test("a watch that is compacted away relists, and the cache then equals etcd", async (t) => {
  const store = await open(t);
  const other = await open(t, "writer");
  const { job } = await store.createJob(spec, "");
  // Stop the cache's watch, write behind its back, compact, then let it notice.
  await (store.jobs as unknown as { watcher: { cancel(): Promise<void> } }).watcher.cancel();
  for (let i = 0; i < 100; i++) await other.updateJob(job.id, (j) => ({ ...j, failures: j.failures + 1 }));
  const extra = await other.createJob(spec, "");
  const rev = await other.revision();
  await t.context.client.kv.compact({ revision: rev, physical: true });
  await store.jobs.checkProgress(0);
  t.is(store.job(job.id)?.failures, 100);
  t.truthy(store.job(extra.job.id));
  t.true(store.jobs.relists >= 2);
  await store.close();
  await other.close();
});

test("hold and release sent to a replica whose cache lags re-read the record instead of failing or doing nothing", async (t) => {
  const a = await open(t, "a");
  const b = await open(t, "b");
  const { job } = await a.createJob(spec, "");
  await waitFor(() => b.job(job.id) !== undefined, 10_000, "replica b to see the job");
  // Delay b's watch for good: b now sees only what it writes or reads itself.
  const lagging = b.jobs as unknown as { watcher?: { cancel(): Promise<void> } };
  await lagging.watcher?.cancel();
  lagging.watcher = undefined;
  const now = new Date();
  const stateIn = async (s: Store) => (await s.fetchJob(job.id))?.value.state;

  // b's copy says PENDING; it is HELD: a release must not be refused.
  await a.updateJob(job.id, (j) => transition(j, { type: "hold" }));
  t.is(b.job(job.id)?.state, JobState.PENDING);
  const released = await b.updateJob(job.id, (j) => transition(j, { type: "release" }));
  t.is(released.state, JobState.PENDING);
  t.is(await stateIn(a), JobState.PENDING);

  // b's copy says HELD (its own write); a released it since: a hold must not be a no-op.
  await b.updateJob(job.id, (j) => transition(j, { type: "hold" }));
  await a.updateJob(job.id, (j) => transition(j, { type: "release" }));
  t.is(b.job(job.id)?.state, JobState.HELD);
  const held = await b.updateJob(job.id, (j) => transition(j, { type: "hold" }));
  t.is(held.state, JobState.HELD);
  t.is(await stateIn(a), JobState.HELD);

  // A refusal that holds on the fresh record is still a refusal, with its own reason.
  await a.updateJob(job.id, (j) => transition(j, { type: "kill", now }));
  for (let i = 0; i < 2; i++) {
    const err = await t.throwsAsync(b.updateJob(job.id, (j) => transition(j, { type: "release" })));
    t.is((err as CrmsError).code, "FAILED_PRECONDITION");
    t.regex(err?.message ?? "", /is KILLED/);
  }
  await a.close();
  await b.close();
});

test("the expired-jobs marker only moves up, even with concurrent writers (compare-and-put)", async (t) => {
  const a = await open(t, "a");
  const b = await open(t, "b");
  const ids = Array.from({ length: 200 }, (_, i) => String(i + 1)).sort(() => Math.random() - 0.5);
  await Promise.all(ids.map((id, i) => (i % 2 ? a : b).noteExpired(id)));
  t.true(await a.mayHaveExpired("200"));
  t.false(await a.mayHaveExpired("201"));
  await a.close();
  await b.close();
});
