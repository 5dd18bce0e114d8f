/**
 * The one etcd→crms error table: every etcd error that can reach a client is
 * produced here by a real etcd, and each maps to its gRPC code with crms's own
 * message (etcd's text does not leak).
 */
import anyTest, { type TestFn } from "ava";
import { noop } from "cockatiel";
import { Etcd3 } from "etcd3";
import type { Code } from "../src/errors.js";
import { toCrmsError } from "../src/store/errors.js";
import { type EtcdInstance, startEtcd } from "./helpers/etcd.js";

const test = anyTest as TestFn<{ etcd: EtcdInstance; client: Etcd3 }>;

test.before(async (t) => {
  t.context.etcd = await startEtcd();
  // No circuit breaker: each case must reach etcd, not a breaker opened by the case before.
  t.context.client = new Etcd3({ hosts: [t.context.etcd.endpoint], faultHandling: { host: () => noop, global: noop } });
});
test.after.always(async (t) => {
  t.context.client?.close();
  await t.context.etcd?.stop();
});

async function mapped(op: () => Promise<unknown>): Promise<{ code: Code; message: string }> {
  try {
    await op();
  } catch (err) {
    const e = toCrmsError(err);
    return { code: e.code, message: e.message };
  }
  throw new Error("the etcd call did not fail");
}

const crmsOwn = (message: string) => !/etcdserver|mvcc|GRPC|Error:/.test(message);

test("etcd's errors map by etcd3's typed errors to crms codes and crms's own messages", async (t) => {
  const etcd = t.context.client;
  await etcd.put("errors/a").value("1");
  const head = Number((await etcd.get("errors/a").exec()).header.revision);
  await etcd.put("errors/a").value("2");
  await etcd.kv.compact({ revision: head + 1, physical: true });

  const cases: Array<[string, () => Promise<unknown>, Code, RegExp]> = [
    ["future revision", () => etcd.kv.range({ key: Buffer.from("errors/a"), revision: 1e9 }), "OUT_OF_RANGE", /future/],
    [
      "compacted revision",
      () => etcd.kv.range({ key: Buffer.from("errors/a"), revision: 1 }),
      "OUT_OF_RANGE",
      /compacted/,
    ],
    [
      "too many operations in one Txn",
      () =>
        etcd.kv.txn({
          compare: [],
          success: Array.from({ length: 200 }, (_, i) => ({
            request_put: { key: Buffer.from(`errors/t${i}`), value: Buffer.from("x") },
          })),
          failure: [],
        }),
      "RESOURCE_EXHAUSTED",
      /too large|too many/,
    ],
    [
      "request too large",
      () =>
        etcd
          .put("errors/big")
          .value(Buffer.alloc(2 * 1024 * 1024))
          .exec(),
      "RESOURCE_EXHAUSTED",
      /too large/,
    ],
    [
      "a write bound to a lease that expired",
      () => etcd.put("errors/leased").value("x").lease("123456789").exec(),
      "UNAVAILABLE",
      /lease/,
    ],
  ];
  for (const [what, op, code, text] of cases) {
    const e = await mapped(op);
    t.is(e.code, code, `${what}: ${e.message}`);
    t.regex(e.message, text, what);
    t.true(crmsOwn(e.message), `${what}: crms's own words, not etcd's: ${e.message}`);
  }
});

test("an unreachable etcd is UNAVAILABLE, and a closed client too", async (t) => {
  const gone = new Etcd3({ hosts: ["http://127.0.0.1:1"], dialTimeout: 500 });
  const e = await mapped(() => gone.get("x").exec());
  t.is(e.code, "UNAVAILABLE", e.message);
  t.true(crmsOwn(e.message), e.message);
  gone.close();
  const closing = new Etcd3({ hosts: [t.context.etcd.endpoint] });
  closing.close();
  const closed = await mapped(() => closing.get("x").exec());
  t.is(closed.code, "UNAVAILABLE", closed.message);
});

test("an error crms does not know stays INTERNAL and keeps what it said (for the log)", (t) => {
  const e = toCrmsError(new TypeError("x is undefined"));
  t.is(e.code, "INTERNAL");
  t.regex(e.message, /x is undefined/);
});
