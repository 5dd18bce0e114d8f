import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import { JobState } from "../gen/crms/v1/job_pb.js";
import { cli, TestCluster } from "./helpers/cluster.js";

// (A worker SIGKILLed under a job with max_retries 0 that still gets the job
// rerun, LOST not using the user's budget, is test/lost.test.ts.)

test("a job that exits 1 with --retries 2 runs exactly three times", async (t) => {
  const cluster = await TestCluster.start();
  try {
    const c = cluster.client();
    await cluster.startWorker("r1", 2);
    const runs = join(mkdtempSync(join(tmpdir(), "crms-retries-")), "runs");
    const job = await c.submit({ command: ["sh", "-c", `echo run >> ${runs}; exit 1`], maxRetries: 2 });
    const done = await c.wait(job.id, { timeoutMs: 30_000 });
    t.is(done.state, JobState.FAILED);
    t.is(done.failures, 3);
    t.is(done.lostCount, 0);
    t.deepEqual(
      done.attempts.map((a) => [a.number, JobState[a.outcome], a.exitCode, a.worker]),
      [
        [1, "FAILED", 1, "r1"],
        [2, "FAILED", 1, "r1"],
        [3, "FAILED", 1, "r1"],
      ],
    );
    for (const a of done.attempts) t.truthy(a.startTime && a.endTime, "each attempt has its times");
    t.is(readFileSync(runs, "utf8"), "run\nrun\nrun\n", "the process ran three times");
    // Two retries of two used, after three failed runs (not "3 of 2").
    const shown = await cli(["job", job.id, "--server", cluster.address], process.env);
    t.regex(shown.stdout, /Retries:\s+2 of 2 used \(3 failed runs\)/);
  } finally {
    await cluster.stop();
  }
});

test("--timeout kills a run that runs too long and records it as a timeout", async (t) => {
  const cluster = await TestCluster.start();
  try {
    const c = cluster.client();
    await cluster.startWorker("r2", 1);
    const job = await c.submit({ command: ["sleep", "60"], timeoutSeconds: 1, maxRetries: 1 });
    const done = await c.wait(job.id, { timeoutMs: 60_000 });
    t.is(done.state, JobState.FAILED);
    t.is(done.error, "timed out after 1s");
    t.is(done.attempts.length, 2, "a timeout counts against --retries: one retry");
    for (const a of done.attempts) {
      t.true(a.timedOut);
      t.is(a.outcome, JobState.FAILED);
    }
    t.is(done.failures, 2);
  } finally {
    await cluster.stop();
  }
});
