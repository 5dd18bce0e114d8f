/**
 * Worker restarts: a worker SIGKILLed while it runs jobs and restarted within
 * the grace (same name, same data dir) re-adopts its runs through their run
 * shims; the control plane keeps attempt 1, and nothing runs twice.
 */
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import test from "ava";
import { JobState } from "../../gen/crms/v1/job_pb.js";
import { cli } from "../helpers/cluster.js";
import { FaultCluster, markedCommand, marks, requireShim, waitFor } from "../helpers/fault-cluster.js";

test("worker-crash-adopt: a worker SIGKILLed and restarted within the grace re-adopts its 20 runs and reports 2 that ended meanwhile; each runs once, on attempt 1", async (t) => {
  requireShim();
  const cluster = await FaultCluster.start({ workers: 1, slots: 24, grace: 20 });
  try {
    const c = cluster.client();
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const job = await c.submit({ name: `adopt-${i}`, command: markedCommand(cluster.dir, 5), maxRetries: 0 });
      ids.push(job.id);
    }
    // Two that end (exit 3) while the worker is down: once the go file exists.
    const go = join(cluster.dir, "go");
    const quick: string[] = [];
    for (let i = 0; i < 2; i++) {
      const command = ["sh", "-c", `while [ ! -e ${go} ]; do sleep 0.1; done; echo quick; exit 3`];
      quick.push((await c.submit({ name: `quick-${i}`, command, maxRetries: 0 })).id);
    }
    // Two that the next worker must still time out (from the recorded start) and kill.
    const timed = (await c.submit({ name: "timed", command: ["sleep", "60"], timeoutSeconds: 8, maxRetries: 0 })).id;
    const killed = (await c.submit({ name: "killed", command: ["sleep", "60"], maxRetries: 0 })).id;
    await waitFor(
      async () => (await cluster.allJobs()).filter((j) => j.state === JobState.RUNNING).length === 24,
      60_000,
      "24 jobs RUNNING on w0",
    );
    const victim = cluster.workers[0];
    if (!victim) throw new Error("no worker");
    victim.signal("SIGKILL");
    await victim.exited;
    writeFileSync(go, "");
    const runs = join(cluster.dataDirs.get("w0") ?? "", "runs");
    await waitFor(
      () => quick.every((id) => existsSync(join(runs, `${id}.1`, "exit"))),
      30_000,
      "the quick runs to end",
    );
    const again = await cluster.startWorker("w0", 24);
    await waitFor(() => /re-adopted \d+ runs, reported \d+ ended/.test(again.output()), 30_000, "the adoption log");
    const [, adopted, ended] = /re-adopted (\d+) runs, reported (\d+) ended/.exec(again.output()) ?? [];
    t.log(`re-adopted ${adopted} runs, reported ${ended} ended`);
    t.is(Number(adopted) + Number(ended), 24, "every run found again");
    t.true(Number(adopted) > 0, "live runs were adopted");
    t.true(Number(ended) >= 2, "the runs that ended meanwhile were reported");
    await waitFor(
      async () => (await cluster.allJobs()).filter((j) => j.state === JobState.SUCCEEDED).length === 20,
      60_000,
      "every job to succeed",
    );
    const gone = await c.kill(killed, 2);
    t.true(gone.killRequested);
    const k = await c.wait(killed, { timeoutMs: 30_000 });
    t.is(k.state, JobState.KILLED, "a re-adopted run is killed on request");
    t.is(k.attempts.length, 1);
    const to = await c.wait(timed, { timeoutMs: 60_000 });
    t.is(to.state, JobState.FAILED);
    t.regex(to.error, /timed out after 8s/, "the timeout holds across the restart");
    t.is(to.attempts.length, 1);
    await waitFor(
      async () => (await cluster.allJobs()).filter((j) => j.state === JobState.FAILED).length === 3,
      60_000,
      "the quick jobs to be recorded",
    );
    for (const job of (await cluster.allJobs()).filter((j) => quick.includes(j.id))) {
      t.is(job.exitCode, 3, `${job.id}: its real exit status, reported by the next worker`);
      t.deepEqual(
        job.attempts.map((a) => JobState[a.outcome]),
        ["FAILED"],
        `${job.id}: one attempt, no LOST`,
      );
      t.is(Buffer.from(job.stdoutTail).toString(), "quick\n", `${job.id}: its output tail`);
    }
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

test("worker upgrade: `crms stop NAME --keep-runs` and SIGUSR2 make the worker exit leaving its runs, which the next worker re-adopts", async (t) => {
  requireShim();
  const cluster = await FaultCluster.start({ workers: 1, slots: 4, grace: 20 });
  try {
    const c = cluster.client();
    const ids: string[] = [];
    const running = async (n: number) =>
      (await cluster.allJobs()).filter((j) => ids.includes(j.id) && j.state === JobState.RUNNING).length === n;
    for (const [round, leave] of [
      ["cli", "crms stop w0 --keep-runs"],
      ["signal", "SIGUSR2"],
    ] as const) {
      const batch: string[] = [];
      for (let i = 0; i < 3; i++) {
        batch.push((await c.submit({ name: `${round}-${i}`, command: markedCommand(cluster.dir, 4) })).id);
      }
      ids.push(...batch);
      await waitFor(() => running(3), 60_000, `3 jobs RUNNING (${round})`);
      const old = cluster.workers.findLast((w) => w.name === "w0");
      if (!old) throw new Error("no worker");
      if (leave === "SIGUSR2") old.signal("SIGUSR2");
      else {
        const r = await cli(["stop", "w0", "--keep-runs", "--server", cluster.addresses], process.env);
        t.is(r.code, 0, r.stderr);
        t.regex(r.stdout, /leaving its runs/);
      }
      await old.exited;
      t.regex(old.output(), /leaving 3 runs to the next worker named w0/, `${leave}: the worker left its runs`);
      const next = await cluster.startWorker("w0", 4);
      await waitFor(() => /re-adopted \d+ runs/.test(next.output()), 30_000, "the adoption log");
      t.regex(next.output(), /re-adopted 3 runs, reported 0 ended/, `${leave}: the next worker adopted them`);
      await waitFor(
        async () =>
          (await cluster.allJobs()).filter((j) => batch.includes(j.id) && j.state === JobState.SUCCEEDED).length === 3,
        60_000,
        `the ${round} batch to succeed`,
      );
    }
    for (const job of (await cluster.allJobs()).filter((j) => ids.includes(j.id))) {
      t.deepEqual(
        job.attempts.map((a) => JobState[a.outcome]),
        ["SUCCEEDED"],
        `${job.id}: attempt 1 only`,
      );
    }
    for (const [id, m] of marks(cluster.dir, ids)) t.is(m, "se", `${id} ran once, to its end`);
  } finally {
    await cluster.stop();
  }
});
