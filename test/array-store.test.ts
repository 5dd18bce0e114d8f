import { create } from "@bufbuild/protobuf";
import anyTest, { type TestFn } from "ava";
import { type Job, JobSpecSchema, JobState } from "../gen/crms/v1/job_pb.js";
import { materializeBatch, TASK_BATCH } from "../src/scheduler/arrays.js";
import { Store } from "../src/store/store.js";
import { type EtcdInstance, startEtcd } from "./helpers/etcd.js";

const test = anyTest as TestFn<{ etcd: EtcdInstance }>;

test.before(async (t) => {
  t.context.etcd = await startEtcd();
});
test.after.always(async (t) => {
  await t.context.etcd?.stop();
});

const open = (t: { context: { etcd: EtcdInstance }; title: string }, replicaId: string) =>
  Store.open({
    endpoints: [t.context.etcd.endpoint],
    prefix: `${t.title.replace(/\W+/g, "-").slice(0, 40)}/`,
    replicaId,
  });

async function tasksIn(store: Store, parent: string): Promise<Job[]> {
  const listed = await store.jobs.list();
  return [...listed.kvs.values()].map((e) => e.value).filter((j) => j.arrayParent === parent);
}

test("tasks are created in bounded Txns, each with the parent's count; a new leader continues after a crash", async (t) => {
  const a = await open(t, "a");
  // 20 KiB per task record: a batch is bounded by bytes (about 1 MiB), not only by count.
  const spec = create(JobSpecSchema, {
    command: ["sh", "-c", `true ${"x".repeat(20_000)}`],
    array: { first: 1, last: 250, maxRunning: 5 },
  });
  const { job: parent } = await a.createJob(spec, "req-array");
  t.is(parent.state, JobState.PENDING);
  t.is((await tasksIn(a, parent.id)).length, 0, "submit writes only the parent");

  const txns = a.batcher.stats.txns;
  t.true(await materializeBatch(a, parent.id, []));
  t.is(a.batcher.stats.txns - txns, 1, "one Txn per batch");
  const first = await tasksIn(a, parent.id);
  t.true(first.length > 1 && first.length < TASK_BATCH, `byte-bounded batch of ${first.length}`);
  t.is((await a.fetchJob(parent.id))?.value.arrayCreated, first.length, "the count moved in the same Txn");
  // The leader "crashes" here; another replica takes over from the stored count.
  await a.close();
  const b = await open(t, "b");
  while (await materializeBatch(b, parent.id, [])) {}
  const tasks = await tasksIn(b, parent.id);
  t.is(tasks.length, 250);
  t.deepEqual(
    tasks.map((j) => j.arrayIndex).sort((x, y) => x - y),
    Array.from({ length: 250 }, (_, i) => i + 1),
    "every index exactly once",
  );
  const t7 = tasks.find((j) => j.arrayIndex === 7);
  t.is(t7?.spec?.env.CRMS_ARRAY_INDEX, "7");
  t.is(t7?.spec?.env.CRMS_ARRAY_ID, parent.id);
  t.is(t7?.spec?.array, undefined);
  t.is((await b.fetchJob(parent.id))?.value.arrayCreated, 250);
  t.false(await materializeBatch(b, parent.id, []), "nothing left to create");
  // A retried submit finds the same array.
  const again = await b.createJob(spec, "req-array");
  t.true(again.existing);
  t.is(again.job.id, parent.id);
  await b.close();
});

test("a batch whose parent changed meanwhile writes no task at all", async (t) => {
  const s = await open(t, "s");
  const spec = create(JobSpecSchema, { command: ["true"], array: { first: 0, last: 9 } });
  const { job: parent } = await s.createJob(spec, "");
  const stale = (await s.fetchJob(parent.id))?.mod ?? 0;
  await s.updateJob(parent.id, (j) => ({ ...j, state: JobState.HELD }));
  const tasks = [];
  for (let i = 0; i < 3; i++) {
    tasks.push({
      ...parent,
      id: await s.nextId(),
      arrayParent: parent.id,
      arrayIndex: i,
      spec: { ...spec, array: undefined },
    } as Job);
  }
  t.false(await s.createJobsWith({ ...parent, arrayCreated: 3 } as Job, stale, tasks, []));
  t.is((await tasksIn(s, parent.id)).length, 0);
  t.is((await s.fetchJob(parent.id))?.value.arrayCreated, 0);
  await s.close();
});
