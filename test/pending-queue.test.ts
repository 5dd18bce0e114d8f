import test from "ava";
import { FairQueue, PendingQueue } from "../src/scheduler/pending-queue.js";

test("ids an eligibility check refuses are passed over without using the limit, and stay queued", (t) => {
  const q = new PendingQueue();
  for (let i = 1; i <= 10; i++) q.add(String(i), 0);
  q.add("11", 5);
  const blocked = new Set(["11", "1", "2", "3", "4", "5", "6"]);
  t.deepEqual(
    q.head(2, (id) => !blocked.has(id)),
    ["7", "8"],
  );
  t.is(q.size, 11, "refused ids stay queued");
  t.deepEqual(q.head(3), ["11", "1", "2"]);
  t.deepEqual(
    q.head(5, () => false, 4),
    [],
    "at most maxScan ids are looked at",
  );
  let looked = 0;
  q.head(
    100,
    () => {
      looked++;
      return false;
    },
    4,
  );
  t.is(looked, 4);
});

/** A deterministic shuffle (xorshift), so a failure repeats. */
function shuffled<T>(items: T[], seed = 2463534242): T[] {
  const out = [...items];
  let x = seed;
  for (let i = out.length - 1; i > 0; i--) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const j = (x >>> 0) % (i + 1);
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

const N = 100_000;
const priorityOf = (n: number): number => (n % 10 === 0 ? 5 : n % 7 === 0 ? -1 : 0);
/** Ids 1..N in scheduling order: priority high to low, then id as a number. */
const expectedOrder = (ids: number[]): string[] =>
  [...ids].sort((a, b) => priorityOf(b) - priorityOf(a) || a - b).map(String);

test("100,000 ids added in submit order and out of order come out by priority, then id", (t) => {
  const all = Array.from({ length: N }, (_, i) => i + 1);
  const inOrder = new PendingQueue();
  for (const n of all) inOrder.add(String(n), priorityOf(n));
  t.is(inOrder.size, N);
  t.deepEqual(inOrder.head(N), expectedOrder(all));

  const scrambled = new PendingQueue();
  for (const n of shuffled(all)) scrambled.add(String(n), priorityOf(n));
  t.deepEqual(scrambled.head(N), expectedOrder(all));
  t.deepEqual(scrambled.head(3), ["10", "20", "30"]);

  // A replica starting over etcd lists ids in key order ("10" before "9").
  const listed = new PendingQueue();
  for (const id of all.map(String).sort()) listed.add(id, priorityOf(Number(id)));
  t.deepEqual(listed.head(N), expectedOrder(all));
});

test("draining 100,000 ids a few at a time keeps the order, skips deleted and refused ids, and keeps refused ones queued", (t) => {
  const q = new PendingQueue();
  for (let n = 1; n <= N; n++) q.add(String(n), priorityOf(n));
  // Every id divisible by 1,000 waits (a dependency not met): passed over, never placed.
  const waiting = (id: string): boolean => Number(id) % 1000 === 0;
  // A third of the rest is cancelled before it is reached.
  const expected = expectedOrder(Array.from({ length: N }, (_, i) => i + 1)).filter((id) => !waiting(id));
  const cancelled = new Set(expected.filter((_, i) => i % 3 === 1));
  for (const id of cancelled) q.delete(id);
  const placed: string[] = [];
  for (;;) {
    const ids = q.head(4, (id) => !waiting(id), 200);
    if (ids.length === 0) break;
    for (const id of ids) {
      q.delete(id);
      placed.push(id);
    }
  }
  t.deepEqual(
    placed,
    expected.filter((id) => !cancelled.has(id)),
  );
  t.is(q.size, N / 1000, "the waiting ids are all still queued");
  t.deepEqual(q.head(2), ["1000", "2000"]);
});

test("an id put back after it was taken (a failed assignment, a requeue) returns to its place, once", (t) => {
  const q = new PendingQueue();
  for (let n = 1; n <= N; n++) q.add(String(n), 0);
  const first = q.head(1000);
  for (const id of first) q.delete(id);
  t.deepEqual(q.head(1), ["1001"]);
  // Put back in scrambled order, some twice, one at another priority and back.
  for (const id of shuffled(first).slice(0, 500)) q.add(id, 0);
  q.add("7", 0);
  q.add("7", 3);
  q.add("7", 0);
  const back = first.filter((id) => q.has(id));
  t.is(back.length, 500);
  const order = q.head(N);
  t.is(order.length, N - 500);
  t.is(new Set(order).size, order.length, "no id twice");
  t.deepEqual(
    order.slice(0, 500),
    [...back].sort((a, b) => Number(a) - Number(b)),
  );
  t.is(order[500], "1001");
  // Deleted and re-added many times at the same priority: still one entry.
  for (let i = 0; i < 10_000; i++) {
    q.delete("2000");
    q.add("2000", 0);
  }
  const again = q.head(N);
  t.deepEqual(again, order);
});

test("FairQueue keeps one queue per (queue, user) and tells a job's position in its queue", (t) => {
  const q = new FairQueue();
  for (let n = 1; n <= 6; n++) q.add(String(n), 0, "a", n % 2 ? "ann" : "bob");
  q.add("7", 5, "a", "bob");
  q.add("8", 0, "b", "ann");
  t.is(q.size, 8);
  // Priority first, then submit order, over every user of the queue.
  t.is(q.position("7"), 1);
  t.is(q.position("1"), 2);
  t.is(q.position("6"), 7);
  t.is(q.position("8"), 1);
  q.delete("1");
  t.is(q.position("6"), 6);
  t.deepEqual([...(q.queues.get("a")?.get("ann")?.iterate() ?? [])], ["3", "5"]);
  // Moving a job to another queue takes it out of the first.
  q.add("3", 0, "b", "ann");
  t.deepEqual([...(q.queues.get("a")?.get("ann")?.iterate() ?? [])], ["5"]);
  t.is(q.position("3"), 1);
  q.delete("5");
  t.false(q.queues.get("a")?.has("ann") ?? false);
});

test("adds, deletes and reads in any mix agree with a sorted list: ids set aside out of order are sorted in one by one or all at once", (t) => {
  // A deterministic pseudo-random sequence (no flakiness): xorshift.
  let seed = 12345;
  const rand = (n: number) => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const q = new PendingQueue();
  const model = new Map<string, number>();
  const expected = () =>
    [...model].sort((a, b) => b[1] - a[1] || a[0].length - b[0].length || (a[0] < b[0] ? -1 : 1)).map(([id]) => id);
  let next = 50_000;
  for (let step = 0; step < 40_000; step++) {
    const r = rand(100);
    if (r < 45) {
      // Mostly new ids at the tail, some far back (requeued, or listed in key order).
      const id = String(r < 30 ? next++ : 1 + rand(next));
      const p = rand(10) === 0 ? 5 : 0;
      q.add(id, p);
      model.set(id, p);
    } else if (r < 60) {
      // Mostly ids that are queued (taken, killed), some that are not (a no-op).
      const id = String(next - 1 - rand(Math.min(next - 1, 2000)));
      q.delete(id);
      model.delete(id);
    } else if (r < 62) {
      // A burst in key order (a replica's load): many set aside at once.
      const ids = Array.from({ length: 3000 }, () => String(1 + rand(next))).sort();
      for (const id of ids) {
        q.add(id, 0);
        model.set(id, 0);
      }
    }
    // Reads in between (each sorts in what was set aside until then).
    if (step % 400 === 0) t.deepEqual(q.head(20), expected().slice(0, 20));
  }
  t.is(q.size, model.size);
  t.deepEqual(q.head(model.size), expected());
});
