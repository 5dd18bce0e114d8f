import test from "ava";
import { Emitter } from "../src/events.js";

test("every subscriber sees each event, in subscription order, until it unsubscribes", (t) => {
  const e = new Emitter<{ txn: [seconds: number, size: number]; other: [] }>();
  const seen: string[] = [];
  const offA = e.on("txn", (s, n) => seen.push(`a${s}/${n}`));
  e.on("txn", (s, n) => seen.push(`b${s}/${n}`));
  t.false(e.has("other"));
  e.emit("txn", 1, 2);
  offA();
  offA();
  e.emit("txn", 3, 4);
  t.deepEqual(seen, ["a1/2", "b1/2", "b3/4"]);
});

test("one function subscribed twice is two subscriptions, each with its own unsubscribe", (t) => {
  const e = new Emitter<{ placed: [seconds: number] }>();
  let n = 0;
  const fn = () => n++;
  const off1 = e.on("placed", fn);
  const off2 = e.on("placed", fn);
  e.emit("placed", 0);
  off1();
  e.emit("placed", 0);
  t.true(e.has("placed"));
  off2();
  e.emit("placed", 0);
  t.is(n, 3);
  t.false(e.has("placed"));
});
