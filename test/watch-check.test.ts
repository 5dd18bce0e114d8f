/**
 * The watch-silence check relists only when the cached prefix really changed
 * behind a silent watch: an idle prefix with 10,000 jobs, while another prefix
 * is busy, is never relisted; a put or a delete missed by a silent watch is.
 * (The fault test watch-gap covers a watch frozen by a network fault.)
 */
import { create } from "@bufbuild/protobuf";
import anyTest, { type TestFn } from "ava";
import { Etcd3 } from "etcd3";
import { JobSpecSchema } from "../gen/crms/v1/job_pb.js";
import { silentLogger } from "../src/log.js";
import type { PrefixCache } from "../src/store/cache.js";
import { Store } from "../src/store/store.js";
import { startWatchChecks } from "../src/store/watch-check.js";
import { type EtcdInstance, startEtcd } from "./helpers/etcd.js";
import { waitFor } from "./helpers/fault-cluster.js";

/** `client` writes behind the stores' backs (under another prefix). */
const test = anyTest as TestFn<{ etcd: EtcdInstance; client: Etcd3 }>;

test.before(async (t) => {
  t.context.etcd = await startEtcd();
  t.context.client = new Etcd3({ hosts: [t.context.etcd.endpoint] });
});
test.after.always(async (t) => {
  t.context.client?.close();
  await t.context.etcd?.stop();
});

const spec = create(JobSpecSchema, { command: ["true"] });

test("an idle prefix of 10,000 jobs is not relisted while another prefix is busy", async (t) => {
  const store = await Store.open({ endpoints: [t.context.etcd.endpoint], prefix: "idle/", replicaId: "r1" });
  t.teardown(() => store.close());
  for (let i = 0; i < 10_000; i += 500) await Promise.all(Array.from({ length: 500 }, () => store.createJob(spec, "")));
  await waitFor(() => store.jobs.entries.size === 10_000, 30_000, "the cache to hold 10,000 jobs");
  const before = { jobs: store.jobs.relists, workers: store.workers.relists };
  const relisted: string[] = [];
  // Checks every 100 ms, silence after 300 ms: in 6 s about 20 checks per cache.
  const stop = startWatchChecks(
    [store.jobs as PrefixCache<unknown>, store.workers as PrefixCache<unknown>],
    { intervalMs: 100, silentMs: 300 },
    { ...silentLogger, warn: (_m, f) => relisted.push(String(f?.prefix)) },
  );
  t.teardown(stop);
  const until = Date.now() + 6_000;
  let writes = 0;
  while (Date.now() < until) {
    await t.context.client.put("busy/other").value(String(writes++));
    await new Promise((r) => setTimeout(r, 20));
  }
  t.deepEqual(relisted, [], "no relist");
  t.is(store.jobs.relists, before.jobs);
  t.is(store.workers.relists, before.workers);
  t.true(writes > 50, `the other prefix was busy (${writes} writes)`);
});

test("a put or a delete that a silent watch missed is caught by the check and relisted", async (t) => {
  const store = await Store.open({ endpoints: [t.context.etcd.endpoint], prefix: "gap/", replicaId: "r1" });
  const other = await Store.open({ endpoints: [t.context.etcd.endpoint], prefix: "gap/", replicaId: "r2" });
  t.teardown(async () => {
    await store.close();
    await other.close();
  });
  const jobs = await Promise.all(Array.from({ length: 5 }, () => other.createJob(spec, "")));
  await waitFor(() => store.jobs.entries.size === 5, 10_000, "the cache to see 5 jobs");
  // Silence the watch (as a stalled stream would), then change etcd behind it. (Checks back to
  // back: share 1 lets each read the prefix whole.)
  const silent = async () => {
    const w = store.jobs as unknown as { watcher?: { cancel(): Promise<void> } };
    await w.watcher?.cancel();
    w.watcher = undefined;
  };
  await silent();
  await t.context.client.put("busy/other").value("x");
  const relists = store.jobs.relists;
  t.false(await store.jobs.checkProgress(0, 1), "nothing under the prefix changed");
  const first = jobs[0]?.job.id as string;
  await other.deleteJob(first, () => undefined);
  t.true(await store.jobs.checkProgress(0, 1), "a missed delete relists");
  t.is(store.jobs.relists, relists + 1);
  t.false(store.jobs.entries.has(first));
  await silent();
  const second = jobs[1]?.job.id as string;
  await other.updateJob(second, (j) => ({ ...j, failures: 7 }));
  t.true(await store.jobs.checkProgress(0, 1), "a missed put relists");
  t.is(store.job(second)?.failures, 7);
});
