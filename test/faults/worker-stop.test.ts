/**
 * Fault test 2: SIGSTOP a worker past its grace period; its jobs are LOST and
 * run elsewhere; after SIGCONT its late reports are refused, the records keep
 * only the new attempts' results, and its stale processes are killed. The jobs
 * opt out of fencing (keep_on_disconnect), so their runs outlive the grace;
 * fenced runs are the subject of worker-crash-fenced and worker-partition.
 */
import test from "ava";
import { JobState } from "../../gen/crms/v1/job_pb.js";
import { account, FaultCluster, sleep, summaryLine, waitFor } from "../helpers/fault-cluster.js";

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test("2. SIGSTOP a worker past grace, SIGCONT after its jobs ran elsewhere: late reports refused, records keep the new attempt, stale runs killed", async (t) => {
  const cluster = await FaultCluster.start({ grace: 3 });
  const stale: number[] = [];
  try {
    const c = cluster.client();
    const n = 9;
    const acked = new Map<string, string>();
    const command = cluster.markerCommand('if [ "$CRMS_WORKER" = w0 ]; then exec sleep 300; fi; sleep 1');
    for (let i = 0; i < n; i++) {
      const job = await c.submit(
        { name: `stop-${i}`, command, maxRetries: 0, keepOnDisconnect: true },
        { requestId: `stop-${i}` },
      );
      acked.set(`stop-${i}`, job.id);
    }
    const onVictim = async () =>
      (await cluster.allJobs()).filter((j) => j.worker === "w0" && j.state === JobState.RUNNING);
    await waitFor(async () => (await onVictim()).length >= 2, 60_000, "w0 to run jobs");
    const held = await onVictim();
    stale.push(...held.map((j) => j.pid));
    const victim = cluster.workers[0];
    if (!victim) throw new Error("no worker");
    victim.signal("SIGSTOP");
    const stoppedAt = Date.now();
    await waitFor(
      async () => (await cluster.allJobs()).filter((j) => j.state === JobState.SUCCEEDED).length === n,
      90_000,
      "every job to succeed elsewhere",
    );
    t.true(Date.now() - stoppedAt > cluster.graceSeconds * 1000, "the worker stayed stopped past its grace");
    t.true(stale.every(alive), "the stopped worker's runs are still there before SIGCONT");
    victim.signal("SIGCONT");
    await waitFor(() => !stale.some(alive), 60_000, "the stale runs to be killed after SIGCONT");
    const refusedIn = () => cluster.replicas.map((r) => r.output()).join("\n");
    await waitFor(() => /refused stale/.test(refusedIn()), 30_000, "a replica to refuse the late reports");
    await sleep(2_000);
    const result = await account(cluster, acked);
    t.log(summaryLine("worker-stop", { faults: 1, submitted: n, acknowledged: acked.size, ...result }));
    t.deepEqual(result.problems, []);
    for (const h of held) {
      const job = result.jobs.get(h.id);
      t.is(job?.state, JobState.SUCCEEDED);
      t.not(job?.worker, "w0", "the record shows the new attempt's result");
      t.deepEqual(
        job?.attempts.map((a) => [a.worker === "w0", JobState[a.outcome]]),
        [
          [true, "LOST"],
          [false, "SUCCEEDED"],
        ],
      );
    }
  } finally {
    for (const pid of stale) {
      try {
        process.kill(-pid, "SIGKILL");
      } catch {
        // gone
      }
    }
    await cluster.stop();
  }
});
