/**
 * Fencing without a worker: a worker SIGKILLed and left down. Its run shims
 * see its lease run out after the grace and end their runs; the control plane
 * reruns the jobs only after the grace plus the fencing bound, so each command
 * runs to its end once.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import test from "ava";
import { JobState } from "../../gen/crms/v1/job_pb.js";
import { FaultCluster, markedCommand, marks, requireShim, waitFor } from "../helpers/fault-cluster.js";

test("worker-crash-fenced: a SIGKILLed worker left down has its runs fenced by their shims; each job is LOST once, SUCCEEDED elsewhere, and ran to its end once", async (t) => {
  requireShim();
  const cluster = await FaultCluster.start({ workers: 1, slots: 4, grace: 4, heartbeat: 1 });
  try {
    const c = cluster.client();
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      ids.push((await c.submit({ name: `fenced-${i}`, command: markedCommand(cluster.dir, 8), maxRetries: 0 })).id);
    }
    await waitFor(
      async () => (await cluster.allJobs()).filter((j) => j.state === JobState.RUNNING).length === 2,
      60_000,
      "2 jobs RUNNING on w0",
    );
    await cluster.startWorker("w1", 4);
    const victim = cluster.workers[0];
    if (!victim) throw new Error("no worker");
    victim.signal("SIGKILL");
    await victim.exited;
    await waitFor(
      async () =>
        (await cluster.allJobs()).filter((j) => ids.includes(j.id) && j.state === JobState.SUCCEEDED).length === 2,
      90_000,
      "both jobs to succeed elsewhere",
    );
    const jobs = (await cluster.allJobs()).filter((j) => ids.includes(j.id));
    for (const job of jobs) {
      t.deepEqual(
        job.attempts.map((a) => [a.worker, JobState[a.outcome]]),
        [
          ["w0", "LOST"],
          ["w1", "SUCCEEDED"],
        ],
        `${job.id}: LOST once on w0, then SUCCEEDED on w1`,
      );
      // The shim on w0 recorded that it ended the run because the worker's lease ran out.
      const exit = JSON.parse(
        readFileSync(join(cluster.dataDirs.get("w0") ?? "", "runs", `${job.id}.1`, "exit"), "utf8"),
      ) as { fenced?: boolean; signal?: string };
      t.true(exit.fenced, `${job.id}: its first run was fenced by its shim`);
      t.is(exit.signal, "SIGTERM");
    }
    // Started twice (w0, then w1), ran to its end once.
    for (const [id, m] of marks(cluster.dir, ids)) t.is(m, "sse", `${id} ran to its end once`);
  } finally {
    await cluster.stop();
  }
});
