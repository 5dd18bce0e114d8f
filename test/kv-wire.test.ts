/**
 * The store's own Range and Txn codecs (src/store/kv-wire.ts) against a real
 * etcd, checked field by field against what etcd3 (protobufjs) reads from the
 * same etcd.
 */
import test from "ava";
import { Etcd3, EtcdLeaseInvalidError } from "etcd3";
import { decodeRange, decodeTxn, kvWire } from "../src/store/kv-wire.js";
import { startEtcd } from "./helpers/etcd.js";

const etcdReady = startEtcd();
const clientReady = etcdReady.then((e) => new Etcd3({ hosts: [e.endpoint] }));
test.after.always(async () => {
  (await clientReady).close();
  await (await etcdReady).stop();
});

test("a range reads every field as etcd3 does: keys, values, revisions, versions, a 64-bit lease id, count and more", async (t) => {
  const client = await clientReady;
  const lease = client.lease(60, { autoKeepAlive: false });
  const leaseId = await lease.grant();
  t.teardown(() => lease.revoke().catch(() => undefined));
  await client.put("r/a").value("one");
  await client.put("r/a").value("two"); // version 2
  await client.put("r/b").value(Buffer.alloc(0));
  await client
    .put("r/c")
    .value(Buffer.from([0, 255, 128, 7]))
    .lease(leaseId);
  await client.put(Buffer.from([0x72, 0x2f, 0xff, 0x00])).value("binary key");
  const key = Buffer.from("r/");
  const end = Buffer.from("r0");
  const theirs = await client.kv.range({ key, range_end: end });
  const mine = await kvWire(client).range({ key, end });
  t.is(mine.revision, Number(theirs.header.revision));
  t.is(mine.count, 4);
  t.false(mine.more);
  t.is(mine.kvs.length, theirs.kvs.length);
  theirs.kvs.forEach((kv, i) => {
    const m = mine.kvs[i];
    t.deepEqual(m?.key, kv.key);
    t.deepEqual(m?.value, kv.value);
    t.is(m?.create, Number(kv.create_revision));
    t.is(m?.mod, Number(kv.mod_revision));
    t.is(m?.version, Number(kv.version));
    t.is(m?.lease, String(kv.lease));
  });
  t.is(mine.kvs[2]?.lease, leaseId, "the lease id, exact even past 2^53");
  t.true(BigInt(leaseId) > 0n);
  // A page, at an earlier revision; keys only; a count only.
  const page = await kvWire(client).range({ key, end, limit: 2, revision: mine.revision - 1 });
  t.deepEqual(
    page.kvs.map((kv) => kv.key.toString()),
    ["r/a", "r/b"],
  );
  t.true(page.more);
  t.is(page.count, 3, "one key fewer at the revision before the last put");
  const keysOnly = await kvWire(client).range({ key, end, keysOnly: true });
  t.is(keysOnly.kvs[0]?.value.length, 0);
  const counted = await kvWire(client).range({ key, end, countOnly: true });
  t.is(counted.count, 4);
  t.is(counted.kvs.length, 0);
});

test("a txn's compares, puts and deletes take effect as etcd3's do; a failed one reads its keys", async (t) => {
  const client = await clientReady;
  const wire = kvWire(client);
  const k = (s: string) => Buffer.from(`t/${s}`);
  await client.put("t/old").value("x");
  const old = await client.kv.range({ key: k("old") });
  const oldMod = Number(old.kvs[0]?.mod_revision);
  // Absent key (create 0) and the old key's mod: both hold.
  const ok = await wire.txn(
    [
      { key: k("new"), target: "create", revision: 0 },
      { key: k("old"), target: "mod", revision: oldMod },
    ],
    [{ put: { key: k("new"), value: Buffer.from("v") } }, { delete: { key: k("old") } }],
    [{ range: { key: k("new") } }],
  );
  t.true(ok.succeeded);
  t.deepEqual(ok.responses, [undefined, undefined], "a put's and a delete's answers carry no range");
  const after = await client.kv.range({ key: k("new") });
  t.is(Number(after.kvs[0]?.mod_revision), ok.revision);
  t.is(await client.get("t/old").string(), null);
  // Now the same compare fails: the failure branch reads the key as it is, and a missing one as none.
  const lost = await wire.txn(
    [{ key: k("new"), target: "create", revision: 0 }],
    [{ put: { key: k("new"), value: Buffer.from("w") } }],
    [{ range: { key: k("new") } }, { range: { key: k("never") } }],
  );
  t.false(lost.succeeded);
  t.is(lost.responses[0]?.kvs[0]?.value.toString(), "v");
  t.is(lost.responses[0]?.kvs[0]?.mod, ok.revision);
  t.is(lost.responses[1]?.kvs.length, 0);
  t.is(await client.get("t/new").string(), "v");
});

test("a put under a lease etcd does not have fails with etcd3's EtcdLeaseInvalidError", async (t) => {
  const client = await clientReady;
  const err = await t.throwsAsync(
    kvWire(client).txn([], [{ put: { key: Buffer.from("l/x"), value: Buffer.from("v"), lease: "12345" } }], []),
  );
  t.true(err instanceof EtcdLeaseInvalidError, String(err));
  t.is(await client.get("l/x").string(), null);
});

test("a truncated answer is an error, not a short record", (t) => {
  // A RangeResponse with one KeyValue whose key claims 9 bytes and has 2.
  t.throws(() => decodeRange(Buffer.from([0x12, 0x04, 0x0a, 0x09, 0x61, 0x62])), { message: /truncated/ });
  t.throws(() => decodeTxn(Buffer.from([0x10, 0x80])), { message: /truncated/ });
});
