/**
 * Listing a large prefix (PrefixCache.list) against a real etcd: etcd 3.4
 * scans every key from a page's start to the range's end before it cuts the
 * page, so plain paging over n keys costs n²; with an alphabet the list is
 * split by next character and no request's range holds more than a bounded
 * number of keys, while every key still comes once and in key order.
 */
import test, { type ExecutionContext } from "ava";
import { Etcd3 } from "etcd3";
import { PrefixCache } from "../src/store/cache.js";
import { kvWire } from "../src/store/kv-wire.js";
import { startEtcd } from "./helpers/etcd.js";

/** A client of a fresh etcd, both gone after the test. */
async function freshEtcd(t: ExecutionContext): Promise<Etcd3> {
  const etcd = await startEtcd();
  const client = new Etcd3({ hosts: [etcd.endpoint] });
  t.teardown(async () => {
    client.close();
    await etcd.stop();
  });
  return client;
}

type Range = Etcd3["kv"]["range"];

/** Tells `seen` etcd's count of keys in the range of every page a list reads (on the store's own wire). */
function spyPages(client: Etcd3, seen: (count: number) => void): void {
  const wire = kvWire(client);
  const range = wire.range.bind(wire);
  wire.range = async (req) => {
    const res = await range(req);
    seen(res.count);
    return res;
  };
}

/** Tells `seen` of every range read through `client`: the request, etcd's count of keys in its range, its duration. */
function spyRanges(client: Etcd3, seen: (req: Parameters<Range>[0], count: number, ms: number) => void): void {
  const range = client.kv.range.bind(client.kv);
  client.kv.range = async (...args: Parameters<Range>) => {
    const started = Date.now();
    const res = await range(...args);
    seen(args[0], Number(res.count), Date.now() - started);
    return res;
  };
}

test("a split list gives every key once, in key order, and etcd visits each key a few times, not once per page", async (t) => {
  const client = await freshEtcd(t);
  const names = [
    ...Array.from({ length: 3000 }, (_, i) => String(i + 1)),
    // Names outside the alphabet (and the prefix's own key) are listed too.
    "",
    "abc",
    "1a",
    " 7",
    "9~",
    "\u00ff",
  ];
  for (let i = 0; i < names.length; i += 250) {
    await Promise.all(names.slice(i, i + 250).map((n) => client.put(`lst/${n}`).value(n)));
  }
  // Noise beside the prefix, which must not be listed.
  await client.put("lst0").value("x");
  await client.put("lss/1").value("x");

  const counts: number[] = [];
  spyPages(client, (count) => counts.push(count));
  const listed = async (alphabet?: string) => {
    counts.length = 0;
    const cache = new PrefixCache(client, "lst/", (b) => b.toString(), undefined, { alphabet, page: 10 });
    const seen: string[] = [];
    await cache.list((name) => seen.push(name));
    // etcd 3.4 visits every key of a request's range: the sum is its work.
    return { seen, requests: counts.length, visits: counts.reduce((a, b) => a + b, 0) };
  };
  const order = names.map((n) => Buffer.from(`lst/${n}`)).sort(Buffer.compare);
  const expected = order.map((k) => k.toString().slice(4));

  const plain = await listed();
  t.deepEqual(plain.seen, expected);
  const n = names.length;
  t.true(plain.visits > 100 * n, `plain paging: ${plain.visits} key visits for ${n} keys`);

  const split = await listed("0123456789");
  t.deepEqual(split.seen, expected, "every key once, in key order");
  t.true(split.visits < 12 * n, `split: ${split.visits} key visits for ${n} keys`);
  t.true(split.requests < 2 * plain.requests, `${split.requests} requests (plain: ${plain.requests})`);
});

test("the silent-watch check of a large idle prefix reads it whole only now and then (≤ 5 % of the time), and relists nothing", async (t) => {
  const client = await freshEtcd(t);
  const value = "x".repeat(200);
  for (let i = 0; i < 20_000; i += 500) {
    await Promise.all(Array.from({ length: 500 }, (_, k) => client.put(`idle/${i + k}`).value(value)));
  }
  const cache = new PrefixCache(client, "idle/", (b) => b.toString());
  await cache.start();
  t.teardown(() => cache.close());
  let full = 0;
  let fullMs = 0;
  let longest = 0;
  spyRanges(client, (req, _count, ms) => {
    if (req.sort_target === undefined) return;
    full++;
    fullMs += ms;
    longest = Math.max(longest, ms);
  });
  // Another prefix is busy, so etcd's revision moves on while this one is idle; checks every 50 ms.
  const until = Date.now() + 5000;
  let writes = 0;
  while (Date.now() < until) {
    await client.put("busy/other").value(String(writes++));
    await cache.checkProgress(200);
    await new Promise((r) => setTimeout(r, 50));
  }
  t.is(cache.relists, 1, "only the first list");
  t.true(full >= 1, "the prefix was read whole at least once");
  // Each read is paid for by the quiet time after it; the last one's may fall past the 5 s (a slow read on a busy machine).
  t.true(fullMs - longest <= 0.05 * 5000, `${full} whole reads took ${fullMs} ms of 5,000 (the longest ${longest} ms)`);
  t.true(full < writes / 4, `${full} whole reads in ${writes} checks`);
});
