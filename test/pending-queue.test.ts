import test from "ava";
import { PendingQueue } from "../src/scheduler/pending-queue.js";

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
