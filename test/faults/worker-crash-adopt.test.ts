/**
 * Worker restarts: a worker SIGKILLed while it runs jobs and restarted within
 * the grace (same name, same data dir) re-adopts its runs through their run
 * shims; the control plane keeps attempt 1, and nothing runs twice.
 */
import test from "ava";
import { JobState } from "../../gen/crms/v1/job_pb.js";
import { FaultCluster, markedCommand, marks, requireShim, waitFor } from "../helpers/fault-cluster.js";

test("worker-crash-adopt: a worker SIGKILLed and restarted within the grace re-adopts its 20 runs; each runs once, on attempt 1", async (t) => {
  requireShim();
  const cluster = await FaultCluster.start({ workers: 1, slots: 20, grace: 20 });
  try {
    const c = cluster.client();
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const job = await c.submit({ name: `adopt-${i}`, command: markedCommand(cluster.dir, 5), maxRetries: 0 });
      ids.push(job.id);
    }
    await waitFor(
      async () => (await cluster.allJobs()).filter((j) => j.state === JobState.RUNNING).length === 20,
      60_000,
      "20 jobs RUNNING on w0",
    );
    const victim = cluster.workers[0];
    if (!victim) throw new Error("no worker");
    victim.signal("SIGKILL");
    await victim.exited;
    const again = await cluster.startWorker("w0", 20);
    await waitFor(() => /re-adopted \d+ runs, reported \d+ ended/.test(again.output()), 30_000, "the adoption log");
    const [, adopted, ended] = /re-adopted (\d+) runs, reported (\d+) ended/.exec(again.output()) ?? [];
    t.log(`re-adopted ${adopted} runs, reported ${ended} ended`);
    t.is(Number(adopted) + Number(ended), 20, "every run found again");
    t.true(Number(adopted) > 0, "live runs were adopted");
    await waitFor(
      async () => (await cluster.allJobs()).filter((j) => j.state === JobState.SUCCEEDED).length === 20,
      60_000,
      "every job to succeed",
    );
    const jobs = (await cluster.allJobs()).filter((j) => ids.includes(j.id));
    for (const job of jobs) {
      t.is(job.attempt, 1, `${job.id} kept attempt 1`);
      t.deepEqual(
        job.attempts.map((a) => JobState[a.outcome]),
        ["SUCCEEDED"],
        `${job.id}: one attempt, no LOST`,
      );
      t.is(job.exitCode, 0);
    }
    for (const [id, m] of marks(cluster.dir, ids)) t.is(m, "se", `${id} ran once, to its end`);
    // The whole output of a re-adopted run, served by the new worker process from the run's files.
    const first = ids[0] as string;
    const out = await c.outputText(first, { timeoutMs: 10_000 });
    t.regex(out.stdout, new RegExp(`begin ${first}\\n(.|\\n)*end ${first}`));
  } finally {
    await cluster.stop();
  }
});
