/**
 * Chaos: 5,000 short jobs on 4 workers while a random worker is SIGKILLed and
 * restarted (same name, same data dir) every 3 s. Every job SUCCEEDED exactly
 * once in its attempts, and every command ran to its end exactly once.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import test from "ava";
import { JobState } from "../../gen/crms/v1/job_pb.js";
import { account, FaultCluster, requireShim, sleep, summaryLine } from "../helpers/fault-cluster.js";

/** CHAOS_JOBS sets another size (the issue's 10,000 report used 10,000). */
const JOBS = Number(process.env.CHAOS_JOBS ?? 5_000);
/** Under 2 minutes on an idle 2-core machine; the rest of the file's 300 s is margin for a busy one. */
const DEADLINE_MS = 240_000;
const WORKERS = 4;

test(`chaos: ${JOBS} short jobs while a random worker is SIGKILLed and restarted every 3 s: all SUCCEEDED once, each command ran to its end once`, async (t) => {
  requireShim();
  const cluster = await FaultCluster.start({ workers: WORKERS, slots: 8, grace: 10, heartbeat: 1 });
  try {
    const c = cluster.client();
    const ends = join(cluster.dir, "ends");
    const command = [
      "sh",
      "-c",
      `echo "$CRMS_JOB_ID $CRMS_ATTEMPT $CRMS_WORKER $$" >> ${cluster.runsFile}; mkdir -p ${ends}; echo "$CRMS_ATTEMPT" >> ${ends}/$CRMS_JOB_ID`,
    ];
    const acked = new Map<string, string>();
    let submitting = true;
    const submitter = (async () => {
      const queue = Array.from({ length: JOBS }, (_, i) => i);
      await Promise.all(
        Array.from({ length: 32 }, async () => {
          for (let i = queue.shift(); i !== undefined; i = queue.shift()) {
            const requestId = `chaos-${i}`;
            const job = await c.submit({ name: requestId, command, maxRetries: 0, maxLostRetries: 100 }, { requestId });
            acked.set(requestId, job.id);
          }
        }),
      );
      submitting = false;
    })();
    let kills = 0;
    // Counts from the cluster status, not a listing of 5,000 jobs every 3 s.
    const done = async () =>
      !submitting &&
      ((await c.clusterStatus({ timeoutMs: 10_000 })).jobs.find((j) => j.state === JobState.SUCCEEDED)?.count ?? 0) >=
        JOBS;
    const started = Date.now();
    const deadline = started + DEADLINE_MS;
    while (!(await done())) {
      if (Date.now() > deadline) {
        const counts = (await c.clusterStatus()).jobs.map((j) => `${JobState[j.state]} ${j.count}`).join(", ");
        throw new Error(`not done after ${DEADLINE_MS / 1000} s (${kills} kills, ${acked.size} submitted; ${counts})`);
      }
      await sleep(3_000);
      if (submitting || kills < 15) {
        const i = Math.floor(Math.random() * WORKERS);
        const victim = cluster.workers.findLast((w) => w.name === `w${i}`);
        if (!victim) continue;
        victim.signal("SIGKILL");
        await victim.exited;
        kills++;
        await cluster.startWorker(`w${i}`, 8);
      }
    }
    await submitter;
    t.log(`${JOBS} jobs through ${kills} worker kills in ${Math.round((Date.now() - started) / 1000)} s`);
    const result = await account(cluster, acked);
    let ranTwice = 0;
    for (const name of readdirSync(ends)) {
      if (readFileSync(join(ends, name), "utf8").trim().split("\n").length > 1) {
        ranTwice++;
        const job = result.jobs.get(name);
        t.log(
          `ran twice: ${name} ${job?.attempts.map((a) => `${a.worker}:${JobState[a.outcome]}:${a.error}`).join(" | ")}`,
        );
      }
    }
    const failed = [...result.jobs.values()].filter((j) => j.state !== JobState.SUCCEEDED).length;
    t.log(
      summaryLine("worker-chaos", {
        faults: kills,
        submitted: JOBS,
        acknowledged: acked.size,
        ...result,
        ranTwice,
      }),
    );
    const lostAttempts = [...result.jobs.values()].reduce(
      (n, j) => n + j.attempts.filter((a) => a.outcome === JobState.LOST).length,
      0,
    );
    t.log(`${lostAttempts} LOST attempts rerun; ${failed} jobs not SUCCEEDED`);
    t.true(kills >= 5, "workers were killed while jobs ran");
    t.deepEqual(result.problems, []);
    t.is(result.finished, JOBS);
    t.is(ranTwice, 0, "no command ran to its end twice");
    for (const job of result.jobs.values()) {
      t.is(job.attempts.filter((a) => a.outcome === JobState.SUCCEEDED).length, 1, `${job.id} SUCCEEDED once`);
    }
  } finally {
    await cluster.stop();
  }
});
