/**
 * Fault test 8: a watch gap. A replica's view (PrefixCache, the jobs and
 * workers indexes' source) watches etcd through a proxy; the proxy stops
 * passing data (the watch falls silent, no error), 100 changes are written and
 * etcd is compacted past them, then the proxy lets connections through again.
 * The silence check (as the server runs it) or the compacted watch makes the
 * view relist, and it then equals etcd's contents.
 */
import test from "ava";
import { Etcd3 } from "etcd3";
import { PrefixCache } from "../../src/store/cache.js";
import { startWatchChecks } from "../../src/store/watch-check.js";
import { startEtcdCluster } from "../helpers/etcd.js";
import { summaryLine, waitFor } from "../helpers/fault-cluster.js";
import { TcpProxy } from "../helpers/tcp-proxy.js";

test("8. watch gap: silent watch, 100 changes, compaction, resume: the view relists and equals etcd", async (t) => {
  const etcd = await startEtcdCluster(3);
  const member = etcd.endpoints[0] as string;
  const proxy = await TcpProxy.start(member.replace("http://", ""));
  const direct = new Etcd3({ hosts: etcd.endpoints });
  const viaProxy = new Etcd3({ hosts: [`http://${proxy.address}`] });
  const cache = new PrefixCache(viaProxy, "gap/", (b) => b.toString());
  const stopChecks = startWatchChecks([cache as PrefixCache<unknown>], { intervalMs: 500, silentMs: 2_000 });
  try {
    for (let i = 0; i < 20; i++) await direct.put(`gap/k${i}`).value(`v0-${i}`);
    await cache.start();
    t.is(cache.entries.size, 20);
    await direct.put("gap/k0").value("seen");
    await waitFor(() => cache.entries.get("k0")?.value === "seen", 10_000, "the watch to work");
    const relistsBefore = cache.relists;
    proxy.freeze();
    for (let i = 0; i < 100; i++) {
      if (i % 4 === 3) await direct.delete().key(`gap/k${i % 20}`);
      else await direct.put(`gap/k${i % 40}`).value(`v1-${i}`);
    }
    const head = Number((await direct.get("gap/k0").exec()).header.revision);
    await direct.put("other/x").value("x"); // the revision moves under another prefix too
    await direct.kv.compact({ revision: head });
    t.true(
      cache.entries.get("k1")?.value !== "v1-1" || cache.entries.size === 20,
      "the frozen view missed the changes",
    );
    proxy.thaw();
    const etcdView = async () => {
      const all = await direct.getAll().prefix("gap/").strings();
      return new Map(Object.entries(all).map(([k, v]) => [k.slice(4), v]));
    };
    const want = await etcdView();
    const equal = () =>
      cache.entries.size === want.size && [...want].every(([k, v]) => cache.entries.get(k)?.value === v);
    await waitFor(equal, 60_000, "the view to equal etcd");
    t.true(cache.relists > relistsBefore, "it relisted");
    const sorted = (m: Map<string, string>) => [...m].sort(([a], [b]) => a.localeCompare(b));
    t.deepEqual(sorted(new Map([...cache.entries].map(([k, e]) => [k, e.value]))), sorted(want));
    // It watches again: a later change arrives.
    await direct.put("gap/after").value("later");
    await waitFor(() => cache.entries.get("after")?.value === "later", 15_000, "the rewatch to deliver");
    t.log(
      summaryLine("watch-gap", { faults: 1, submitted: 100, acknowledged: 100, finished: 100, lost: 0, duplicated: 0 }),
    );
    t.log(`relists: ${cache.relists - relistsBefore}; keys: ${want.size}`);
  } finally {
    stopChecks();
    await cache.close();
    viaProxy.close();
    direct.close();
    await proxy.close();
    await etcd.stop();
  }
});

test("8b. a watch that falls silent without any error: the periodic check sees etcd moved on and relists", async (t) => {
  const etcd = await startEtcdCluster(3);
  const client = new Etcd3({ hosts: etcd.endpoints });
  const cache = new PrefixCache(client, "quiet/", (b) => b.toString());
  const stopChecks = startWatchChecks([cache as PrefixCache<unknown>], { intervalMs: 500, silentMs: 2_000 });
  try {
    await client.put("quiet/a").value("1");
    await cache.start();
    const relistsBefore = cache.relists;
    // The watch stays open but its events no longer reach the view: a stall with no error.
    const watcher = (cache as unknown as { watcher: { removeAllListeners(e: string): void } }).watcher;
    watcher.removeAllListeners("data");
    for (let i = 0; i < 100; i++) await client.put(`quiet/k${i}`).value(String(i));
    const silentAt = Date.now();
    await waitFor(() => cache.entries.size === 101, 30_000, "the silence check to relist");
    t.true(cache.relists > relistsBefore);
    t.is(cache.entries.get("k99")?.value, "99");
    t.log(`silent watch relisted after ${Date.now() - silentAt} ms`);
    await client.put("quiet/after").value("x");
    await waitFor(() => cache.entries.get("after")?.value === "x", 15_000, "the new watch to deliver");
  } finally {
    stopChecks();
    await cache.close();
    client.close();
    await etcd.stop();
  }
});
