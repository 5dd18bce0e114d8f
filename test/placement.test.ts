import test from "ava";
import { PendingQueue } from "../src/scheduler/pending-queue.js";
import { place } from "../src/scheduler/placement.js";

const job = (id: string, targetWorker = "", constraints: Record<string, string> = {}) => ({
  id,
  targetWorker,
  constraints,
});

test("placement never gives a worker more jobs than its free slots", (t) => {
  const jobs = Array.from({ length: 10 }, (_, i) => job(String(i + 1)));
  const { placed } = place(jobs, [
    { name: "a", free: 2, labels: {} },
    { name: "b", free: 3, labels: {} },
  ]);
  t.is(placed.length, 5);
  t.is(placed.filter((p) => p.worker === "a").length, 2);
  t.is(placed.filter((p) => p.worker === "b").length, 3);
  t.deepEqual(
    placed.map((p) => p.jobId),
    ["1", "2", "3", "4", "5"],
  );
});

test("placement honours a target worker and reports one that is not attached", (t) => {
  const { placed, unplaced } = place(
    [job("1", "b"), job("2", "zzz"), job("3")],
    [
      { name: "a", free: 1, labels: {} },
      { name: "b", free: 1, labels: {} },
    ],
  );
  t.deepEqual(placed, [
    { jobId: "1", worker: "b" },
    { jobId: "3", worker: "a" },
  ]);
  t.deepEqual(unplaced, [{ jobId: "2", reason: "target worker zzz is not attached" }]);
});

test("placement matches constraints and a job that cannot match does not block later jobs", (t) => {
  const { placed, unplaced } = place(
    [job("1", "", { gpu: "yes" }), job("2", "", { os: "plan9" }), job("3", "", { gpu: "yes" }), job("4")],
    [
      { name: "cpu", free: 4, labels: { gpu: "no" } },
      { name: "gpu", free: 1, labels: { gpu: "yes" } },
    ],
  );
  t.deepEqual(placed, [
    { jobId: "1", worker: "gpu" },
    { jobId: "4", worker: "cpu" },
  ]);
  t.is(unplaced.length, 1);
  t.is(unplaced[0]?.jobId, "2");
  t.regex(unplaced[0]?.reason ?? "", /os=plan9/);
});

test("the pending queue orders by priority, then by id as numbers, and drops removed ids", (t) => {
  const q = new PendingQueue();
  q.add("10", 0);
  q.add("9", 0);
  q.add("11", 5);
  q.add("2", 0);
  q.add("12", -1);
  q.delete("9");
  t.deepEqual(q.head(10), ["11", "2", "10", "12"]);
  t.deepEqual(q.head(2), ["11", "2"]);
  t.is(q.size, 4);
});

const cpus = (n: number, gpus = 0, named: Record<string, number> = {}) => ({ cpus: n, memory: 0, gpus, named });

test("placement fits every resource: two 2-cpu jobs share a 4-cpu worker, a third waits", (t) => {
  const jobs = ["1", "2", "3"].map((id) => ({ ...job(id), request: cpus(2) }));
  const { placed, unplaced } = place(jobs, [{ name: "w", free: 8, labels: {}, resources: cpus(4) }]);
  t.deepEqual(
    placed.map((p) => p.jobId),
    ["1", "2"],
  );
  t.deepEqual(unplaced, []);
});

test("placement hands out distinct GPU indices and counts named resources", (t) => {
  const { placed } = place(
    [
      { ...job("1"), request: cpus(1, 1) },
      { ...job("2"), request: cpus(1, 2) },
      { ...job("3"), request: cpus(1, 0, { license: 2 }) },
      { ...job("4"), request: cpus(1, 0, { license: 1 }) },
      { ...job("5"), request: cpus(1, 0, { license: 1 }) },
    ],
    [{ name: "g", free: 8, labels: {}, resources: cpus(8, 3, { license: 3 }), gpuIndices: [0, 1, 2] }],
  );
  t.deepEqual(placed, [
    { jobId: "1", worker: "g", gpus: [0] },
    { jobId: "2", worker: "g", gpus: [1, 2] },
    { jobId: "3", worker: "g" },
    { jobId: "4", worker: "g" },
  ]);
});
