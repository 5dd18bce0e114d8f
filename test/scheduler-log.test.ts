/** The scheduler's failures (a write that failed) are logged as errors, not as info. */
import { create } from "@bufbuild/protobuf";
import test from "ava";
import { JobSpecSchema } from "../gen/crms/v1/job_pb.js";
import { WorkerSchema, WorkerState } from "../gen/crms/v1/worker_pb.js";
import { Scheduler } from "../src/scheduler/scheduler.js";
import type { Election } from "../src/store/election.js";
import { Store } from "../src/store/store.js";
import { startEtcd } from "./helpers/etcd.js";
import { waitFor } from "./helpers/fault-cluster.js";

test("an assignment whose fencing check fails is logged at error", async (t) => {
  const etcd = await startEtcd();
  const store = await Store.open({ endpoints: [etcd.endpoint], prefix: "sched-log/", replicaId: "r1" });
  t.teardown(async () => {
    await store.close();
    await etcd.stop();
  });
  // A leader whose fencing token no longer holds (another replica took over).
  const election = {
    on: () => election,
    isLeader: true,
    token: 1,
    fence: () => [{ key: "sched-log/leader", target: "create" as const, revision: 999_999 }],
  } as unknown as Election;
  const lines: Array<[string, string]> = [];
  const scheduler = new Scheduler(store, election, {
    log: {
      debug: (msg) => lines.push(["debug", msg]),
      info: (msg) => lines.push(["info", msg]),
      warn: (msg) => lines.push(["warn", msg]),
      error: (msg) => lines.push(["error", msg]),
    },
  });
  await store.updateWorker("w1", () => create(WorkerSchema, { name: "w1", slots: 1, state: WorkerState.UP }), true);
  await store.createJob(create(JobSpecSchema, { command: ["true"] }), "");
  scheduler.start();
  t.teardown(() => scheduler.stop());
  await waitFor(() => lines.some(([, m]) => m === "assignment failed"), 10_000, "the failed assignment");
  t.deepEqual(lines.filter(([, m]) => m === "assignment failed").map(([level]) => level)[0], "error");
});
