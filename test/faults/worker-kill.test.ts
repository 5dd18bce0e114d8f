/** Fault test 1: SIGKILL a worker running jobs; each job it held is LOST once, then SUCCEEDED elsewhere. */
import test from "ava";
import { JobState } from "../../gen/crms/v1/job_pb.js";
import { account, FaultCluster, requireShim, summaryLine, waitFor } from "../helpers/fault-cluster.js";

test("1. SIGKILL a worker running jobs: each of its jobs is LOST, then SUCCEEDED elsewhere with one extra attempt", async (t) => {
  requireShim();
  const cluster = await FaultCluster.start({ grace: 3 });
  try {
    const c = cluster.client();
    const acked = new Map<string, string>();
    const n = 12;
    // On w0 the job hangs (until killed); elsewhere it takes a second, so w0 is sure to hold some.
    const command = cluster.markerCommand('if [ "$CRMS_WORKER" = w0 ]; then exec sleep 300; fi; sleep 1');
    for (let i = 0; i < n; i++) {
      const job = await c.submit({ name: `kill-${i}`, command, maxRetries: 0 }, { requestId: `kill-${i}` });
      acked.set(`kill-${i}`, job.id);
    }
    const onVictim = async () =>
      (await cluster.allJobs()).filter((j) => j.worker === "w0" && j.state === JobState.RUNNING);
    await waitFor(async () => (await onVictim()).length >= 2, 60_000, "w0 to run jobs");
    const held = await onVictim();
    // Live output is read over the worker's stream: the replica holding it serves it, the other says where it is.
    const holder = (await c.getWorker("w0")).replica;
    const ids = await Promise.all(cluster.replicas.map(async (r) => (await r.client.clusterStatus()).replica));
    const [here, there] = ids[0] === holder ? cluster.replicas : [...cluster.replicas].reverse();
    const first = held[0];
    if (!here || !there || !first) throw new Error("replicas or job missing");
    await t.notThrowsAsync(() => here.client.outputText(first.id, { timeoutMs: 10_000 }));
    const refused = await t.throwsAsync(() => there.client.outputText(first.id, { timeoutMs: 10_000 }));
    t.is((refused as { code?: number }).code, 9, "FAILED_PRECONDITION from the replica without the stream");
    t.regex(refused?.message ?? "", new RegExp(`held by replica ${holder}`));
    const victim = cluster.workers[0];
    victim?.signal("SIGKILL");
    await victim?.exited;
    // Its runs outlive it in their shims, which end them once its lease runs out (the grace), before the rerun.
    await waitFor(
      async () => (await cluster.allJobs()).filter((j) => j.state === JobState.SUCCEEDED).length === n,
      90_000,
      "every job to succeed",
    );
    const result = await account(cluster, acked);
    t.log(
      summaryLine("worker-kill", {
        faults: 1,
        submitted: n,
        acknowledged: acked.size,
        ...result,
      }),
    );
    t.deepEqual(result.problems, []);
    t.is(result.finished, n);
    // Every job w0 ever held (running when sampled, or assigned to it just before the kill).
    const victims = [...result.jobs.values()].filter((j) => j.attempts.some((a) => a.worker === "w0"));
    t.true(held.every((h) => victims.some((v) => v.id === h.id)));
    for (const job of victims) {
      t.is(job.lostCount, 1, `${job.id} was LOST once`);
      t.deepEqual(
        job.attempts.map((a) => [a.worker === "w0", JobState[a.outcome]]),
        [
          [true, "LOST"],
          [false, "SUCCEEDED"],
        ],
        `${job.id}: exactly one extra attempt, elsewhere`,
      );
    }
    const others = [...result.jobs.values()].filter((j) => !victims.includes(j));
    for (const j of others) t.is(j.attempts.length, 1, `${j.id} ran once`);
  } finally {
    await cluster.stop();
  }
});
