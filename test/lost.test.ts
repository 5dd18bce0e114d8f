import test from "ava";
import { JobState } from "../gen/crms/v1/job_pb.js";
import { TestCluster } from "./helpers/cluster.js";

test("a worker killed with SIGKILL while running a job: the job becomes LOST, then runs on another worker", async (t) => {
  const cluster = await TestCluster.start({ graceSeconds: 2 });
  try {
    const c = cluster.client();
    const victim = await cluster.startWorker("victim", 1);
    const job = await c.submit({
      command: ["sh", "-c", 'if [ "$CRMS_WORKER" = victim ]; then exec sleep 60; fi; echo rescued'],
      maxRetries: 0,
    });
    await cluster.waitFor(
      () => cluster.server.store.job(job.id)?.state === JobState.RUNNING,
      20_000,
      "job to run on victim",
    );
    const orphanPid = cluster.server.store.job(job.id)?.pid ?? 0;
    await cluster.startWorker("rescuer", 1);
    const states: JobState[] = [];
    cluster.server.store.jobs.on("put", (id, e) => id === job.id && states.push(e.value.state));
    await victim.stop("SIGKILL");
    const done = await c.wait(job.id, { timeoutMs: 30_000 });
    t.is(done.state, JobState.SUCCEEDED);
    t.is(done.worker, "rescuer");
    t.is(done.lostCount, 1);
    t.is(done.failures, 0, "a lost run does not use the user's retry budget");
    t.deepEqual(
      done.attempts.map((a) => [a.worker, JobState[a.outcome]]),
      [
        ["victim", "LOST"],
        ["rescuer", "SUCCEEDED"],
      ],
    );
    t.true(states.includes(JobState.PENDING), "requeued to PENDING after LOST");
    t.is(Buffer.from(done.stdoutTail).toString(), "rescued\n");
    // The victim's process outlived its worker; clean it up.
    if (orphanPid > 0) {
      try {
        process.kill(-orphanPid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  } finally {
    await cluster.stop();
  }
});
