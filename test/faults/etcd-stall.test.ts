/**
 * Fault test: etcd stalls (SIGSTOP: a paused VM, a long fsync, a lost quorum)
 * while three jobs run on one worker, one of which ends during the stall, and
 * submits arrive during it. After SIGCONT the worker is UP again within 10 s,
 * every job SUCCEEDED exactly once on attempt 1, a new job runs, and the submits
 * made during the stall either failed with UNAVAILABLE and created nothing or
 * created exactly one job.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import test, { type ExecutionContext } from "ava";
import { JobState } from "../../gen/crms/v1/job_pb.js";
import { WorkerState } from "../../gen/crms/v1/worker_pb.js";
import { cli } from "../helpers/cluster.js";
import { account, FaultCluster, sleep, summaryLine, waitFor } from "../helpers/fault-cluster.js";

interface Outcome {
  ok: boolean;
  codes: string[];
  messages: string[];
  /** ms from the call to its first answer (success or error). */
  firstAnswerMs: number;
}

const codeName = (err: unknown) => grpc.status[(err as { code?: number }).code ?? -1] ?? String(err);

async function stall(
  t: ExecutionContext,
  tag: string,
  opts: { etcdMembers: number; stopped: number; seconds: number; replicas: number },
): Promise<void> {
  // One worker (on the first replica) and a grace shorter than the stall; with one replica as `crms dev`.
  const cluster = await FaultCluster.start({
    etcdMembers: opts.etcdMembers,
    replicas: opts.replicas,
    workers: 1,
    slots: 4,
    grace: 6,
  });
  try {
    const client = cluster.client();
    const acknowledged = new Map<string, string>();
    const gate = (name: string) => join(cluster.dir, `${name}.go`);
    // Each job records its run, then waits for its gate file: A's opens during the stall.
    const names = ["a", "b", "c"];
    for (const name of names) {
      const job = await client.submit(
        { name, command: cluster.markerCommand(`while [ ! -e ${gate(name)} ]; do sleep 0.1; done`), maxRetries: 0 },
        { requestId: `${tag}-${name}` },
      );
      acknowledged.set(`${tag}-${name}`, job.id);
    }
    await waitFor(
      async () => {
        for (const id of acknowledged.values())
          if ((await client.getJob(id).catch(() => undefined))?.state !== JobState.RUNNING) return false;
        return true;
      },
      30_000,
      "the three jobs to run",
    );

    // A submit as clients make it: retried on UNAVAILABLE with its request id for `budgetMs`.
    const submitDuring = (requestId: string, budgetMs: number): Promise<Outcome> => {
      const start = Date.now();
      const out: Outcome = { ok: false, codes: [], messages: [], firstAnswerMs: -1 };
      const seen = (err: unknown) => {
        if (out.firstAnswerMs < 0) out.firstAnswerMs = Date.now() - start;
        out.codes.push(codeName(err));
        out.messages.push((err as Error).message);
      };
      return client
        .submit(
          { name: requestId, command: cluster.markerCommand(), maxRetries: 0 },
          { requestId, timeoutMs: 8_000, retry: { budgetMs }, onRetry: seen },
        )
        .then(
          (job) => {
            if (out.firstAnswerMs < 0) out.firstAnswerMs = Date.now() - start;
            acknowledged.set(requestId, job.id);
            out.ok = true;
            return out;
          },
          (err) => {
            seen(err);
            return out;
          },
        );
    };
    const stopped = cluster.etcd.members.slice(0, opts.stopped);
    for (const m of stopped) m.process.kill("SIGSTOP");
    const stalledAt = Date.now();
    try {
      // One submit at once, before the replica can know etcd stopped: its write is sent
      // and waits; it is answered UNAVAILABLE (outcome unknown) and its retries land one job.
      const atOnce = submitDuring(`${tag}-at-once`, 120_000);
      // A ends while etcd is away.
      writeFileSync(gate("a"), "");
      await sleep(4_000);
      // Then two: one that gives up after a few seconds, one that keeps retrying.
      const givesUp = submitDuring(`${tag}-gives-up`, 3_000);
      const keepsTrying = submitDuring(`${tag}-keeps-trying`, 120_000);
      const early = await givesUp;
      t.log(`submit during the stall (3 s budget): ${JSON.stringify(early)}`);
      t.false(early.ok, "etcd is stopped: the submit cannot have been written");
      t.true(early.firstAnswerMs >= 0 && early.codes[0] === "UNAVAILABLE", `first answer: ${early.codes[0]}`);
      t.true(
        early.codes.every((c) => c === "UNAVAILABLE"),
        `every answer UNAVAILABLE (not INTERNAL, not a deadline): ${early.codes}`,
      );
      t.regex(early.messages[0] ?? "", /etcd is not reachable/);
      // The operator asks what is going on: answered at once, from the replica's cache.
      const during = await cli(["admin", "status", "--server", cluster.addresses], process.env);
      t.is(during.code, 0, during.stderr);
      t.regex(during.stdout, /etcd: +NOT REACHABLE/);
      t.regex(during.stdout, /Last etcd outage: since .* so far/);
      await waitFor(() => Date.now() - stalledAt >= opts.seconds * 1000, opts.seconds * 1000 + 5_000, "the stall");
      for (const m of stopped) m.process.kill("SIGCONT");
      const resumedAt = Date.now();

      // Within 10 s of etcd's return the worker is UP again.
      await waitFor(
        async () => (await client.getWorker("w0").catch(() => undefined))?.state === WorkerState.UP,
        10_000,
        "worker w0 UP again after etcd returned",
      );
      t.log(`worker UP ${((Date.now() - resumedAt) / 1000).toFixed(1)} s after etcd returned`);
      const late = await keepsTrying;
      const first = await atOnce;
      for (const [what, o] of [
        ["retrying", late],
        ["at once, retrying", first],
      ] as const) {
        t.log(`submit during the stall (${what}): ok=${o.ok} codes=${o.codes.join(",")} ${o.messages[0]}`);
        t.true(o.ok, `the retried submit (${what}) lands once etcd is back`);
        t.true(
          o.codes.every((c) => c === "UNAVAILABLE"),
          `it was only answered UNAVAILABLE (never INTERNAL or a deadline): ${o.codes}`,
        );
      }
    } finally {
      for (const m of stopped) m.process.kill("SIGCONT");
    }

    writeFileSync(gate("b"), "");
    writeFileSync(gate("c"), "");
    const after = await client.submit(
      { name: "after", command: cluster.markerCommand() },
      { requestId: `${tag}-after` },
    );
    acknowledged.set(`${tag}-after`, after.id);
    const done = new Map<string, number>();
    await waitFor(
      async () => {
        for (const id of acknowledged.values()) {
          const job = await client.getJob(id).catch(() => undefined);
          if (job?.state === JobState.SUCCEEDED) done.set(id, job.attempt);
          else if (
            job &&
            job.state !== JobState.RUNNING &&
            job.state !== JobState.PENDING &&
            job.state !== JobState.ASSIGNED
          )
            throw new Error(`job ${id} ended ${JobState[job.state]}: ${job.error}`);
        }
        return done.size === acknowledged.size;
      },
      60_000,
      "every job to succeed",
    );
    for (const [id, attempt] of done) t.is(attempt, 1, `job ${id} succeeded on attempt 1`);
    const result = await account(cluster, acknowledged);
    const jobs = [...result.jobs.values()];
    t.is(jobs.filter((j) => j.requestId === `${tag}-gives-up`).length, 0, "the submit that gave up created nothing");
    t.is(jobs.filter((j) => j.requestId === `${tag}-keeps-trying`).length, 1, "the retried submit created one job");
    t.is(
      jobs.filter((j) => j.requestId === `${tag}-at-once`).length,
      1,
      "the submit sent into the stall created one job",
    );
    t.log(
      summaryLine(tag, {
        faults: 1,
        submitted: 7,
        acknowledged: acknowledged.size,
        finished: result.finished,
        lost: result.lost,
        duplicated: result.duplicated,
      }),
    );
    const w0 = await client.getWorker("w0");
    t.is(w0.state, WorkerState.UP, "the worker is still UP at the end");
    t.is(result.jobs.get(after.id)?.worker, "w0");
    for (const line of cluster.replicas[0]?.output().split("\n") ?? [])
      if (/lease|worker record|etcd|could not record/.test(line)) t.log(line.slice(0, 300));
    // `crms admin status` says when etcd was lost, for how long, and what was written again.
    const status = await cli(["admin", "status", "--server", cluster.addresses, "-o", "json"], process.env);
    t.is(status.code, 0, status.stderr);
    const answer = JSON.parse(status.stdout);
    const outage = answer.lastEtcdOutage;
    t.log(`admin status: ${JSON.stringify(outage)}`);
    t.truthy(outage?.restoredTime, "the outage is over");
    t.true(outage.seconds >= opts.seconds - 5, `the outage lasted about the stall: ${outage.seconds}`);
    // The replica that answered wrote w0's record again if it holds w0's stream (with two, w0 may be on the other).
    if (outage.leaseRenewed && answer.replica === w0.replica) t.deepEqual(outage.reregisteredWorkers, ["w0"]);
    const table = await cli(["admin", "status", "--server", cluster.addresses], process.env);
    t.regex(table.stdout, /Last etcd outage: .* for \d+\.\ds/);
    t.deepEqual(result.problems, []);
    t.is(result.lost, 0);
    t.is(result.duplicated, 0);
  } finally {
    await cluster.stop();
  }
}

test("the only etcd member stalls 15 s while jobs run: the worker stays registered, reports land, writes answer UNAVAILABLE", async (t) => {
  await stall(t, "etcd-stall-15s", { etcdMembers: 1, stopped: 1, seconds: 15, replicas: 1 });
});

test("the only etcd member stalls 40 s: the same, and no job is LOST or requeued", async (t) => {
  await stall(t, "etcd-stall-40s", { etcdMembers: 1, stopped: 1, seconds: 40, replicas: 1 });
});

test("a 3-member etcd loses quorum for 40 s (two members stopped) under two replicas: the same", async (t) => {
  await stall(t, "etcd-quorum-40s", { etcdMembers: 3, stopped: 2, seconds: 40, replicas: 2 });
});

test("a worker cut off just before etcd stalls past its grace, back soon after etcd returns, keeps its jobs (a fresh grace)", async (t) => {
  const tag = "etcd-stall-fresh-grace";
  const cluster = await FaultCluster.start({ etcdMembers: 1, replicas: 1, workers: 1, slots: 2, grace: 6 });
  try {
    const client = cluster.client();
    const go = join(cluster.dir, "go");
    const acknowledged = new Map<string, string>();
    for (const name of ["a", "b"]) {
      const job = await client.submit(
        // keepOnDisconnect: a worker silent past its grace fences (kills) its runs, as the control plane may
        // rerun them; this test is about the control plane's fresh grace, so its jobs opt out of fencing.
        {
          name,
          command: cluster.markerCommand(`while [ ! -e ${go} ]; do sleep 0.1; done`),
          maxRetries: 0,
          keepOnDisconnect: true,
        },
        { requestId: `${tag}-${name}` },
      );
      acknowledged.set(`${tag}-${name}`, job.id);
    }
    await waitFor(
      async () => {
        for (const id of acknowledged.values())
          if ((await client.getJob(id).catch(() => undefined))?.state !== JobState.RUNNING) return false;
        return true;
      },
      30_000,
      "the jobs to run",
    );
    // The worker stops answering; its replica marks it DISCONNECTED (its grace starts), then etcd stalls.
    const worker = cluster.workers[0];
    worker?.signal("SIGSTOP");
    await waitFor(
      async () => (await client.getWorker("w0").catch(() => undefined))?.state === WorkerState.DISCONNECTED,
      30_000,
      "w0 DISCONNECTED",
    );
    const etcd = cluster.etcd.members[0];
    etcd?.process.kill("SIGSTOP");
    try {
      await sleep(2 * cluster.graceSeconds * 1000); // the grace runs out while etcd is away
      etcd?.process.kill("SIGCONT");
      // The worker comes back a while after the replica reaches etcd again, within a (fresh) grace.
      await waitFor(
        async () => (await client.clusterStatus({ timeoutMs: 2_000 }).catch(() => undefined))?.etcdReachable === true,
        20_000,
        "the replica to reach etcd again",
      );
      await sleep(cluster.graceSeconds * 500);
    } finally {
      etcd?.process.kill("SIGCONT");
      worker?.signal("SIGCONT");
    }
    await waitFor(
      async () => (await client.getWorker("w0").catch(() => undefined))?.state === WorkerState.UP,
      20_000,
      "w0 attached again",
    );
    writeFileSync(go, "");
    for (const id of acknowledged.values()) {
      const job = await client.wait(id, { timeoutMs: 60_000 });
      t.is(job.state, JobState.SUCCEEDED, `job ${id}: ${job.error}`);
      t.is(job.attempt, 1, `job ${id} was not LOST and run again`);
    }
    const result = await account(cluster, acknowledged);
    t.log(
      summaryLine(tag, {
        faults: 2,
        submitted: 2,
        acknowledged: acknowledged.size,
        finished: result.finished,
        lost: result.lost,
        duplicated: result.duplicated,
      }),
    );
    t.deepEqual(result.problems, []);
  } finally {
    await cluster.stop();
  }
});
