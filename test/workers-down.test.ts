/**
 * Workers are remembered: a worker that went away stays listed as DOWN, with
 * when, why, its real last heartbeat and the jobs it had, until an operator
 * forgets it, retention removes it, or it attaches again (UP).
 */
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { status } from "@grpc/grpc-js";
import test from "ava";
import { JobState } from "../gen/crms/v1/job_pb.js";
import { WorkerState } from "../gen/crms/v1/worker_pb.js";
import { cli, TestCluster } from "./helpers/cluster.js";

let cluster: TestCluster;
let env: NodeJS.ProcessEnv;

test.before(async () => {
  // Grace 3 s; at most 2 DOWN records kept, retention every second.
  cluster = await TestCluster.start({ downWorkerRetentionCount: 2, retentionIntervalSeconds: 1 });
  env = { ...process.env, CRMS_SERVER: cluster.address };
});

test.after.always(async () => {
  await cluster?.stop();
});

type WorkerJson = {
  name: string;
  state: string;
  lastHeartbeat?: string;
  attachTime?: string;
  downTime?: string;
  downReason?: string;
  lastJobs?: string[];
};

async function workersJson(): Promise<WorkerJson[]> {
  const r = await cli(["workers", "-o", "json"], env);
  if (r.code !== 0) throw new Error(`crms workers failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as WorkerJson[];
}

test.serial(
  "a SIGKILLed worker is DOWN with its real last heartbeat and its jobs; forget removes it; reattaching brings it UP",
  async (t) => {
    const c = cluster.client();
    const w = await cluster.startWorker("down-a", 1);
    const job = await c.submit({ command: ["sleep", "60"], targetWorker: "down-a", maxRetries: 0 });
    const running = await c.waitUntil(job.id, (j) => j.state === JobState.RUNNING, { timeoutMs: 20_000 });
    // Heartbeats every second: let a few arrive after the attach, so the last one is not the attach time.
    await new Promise((r) => setTimeout(r, 2500));
    const killedAt = Date.now();
    await w.stop("SIGKILL");
    try {
      process.kill(-running.pid, "SIGKILL"); // the dead worker's orphan
    } catch {
      // gone already
    }
    await cluster.waitFor(
      async () => (await c.getWorker("down-a")).state === WorkerState.DOWN,
      30_000,
      "down-a to be DOWN",
    );
    const listed = (await workersJson()).find((x) => x.name === "down-a");
    t.truthy(listed, "a DOWN worker stays in crms workers");
    t.is(listed?.state, "DOWN");
    t.is(listed?.downReason, "stream ended");
    t.deepEqual(listed?.lastJobs, [job.id]);
    const heartbeat = Date.parse(listed?.lastHeartbeat ?? "");
    const attached = Date.parse(listed?.attachTime ?? "");
    t.true(
      heartbeat > attached + 1000,
      `last heartbeat ${listed?.lastHeartbeat} is after the attach ${listed?.attachTime}`,
    );
    t.true(heartbeat <= killedAt + 500 && heartbeat > killedAt - 5000, "last heartbeat is just before the kill");
    t.true(Date.parse(listed?.downTime ?? "") >= killedAt, "down time is after the kill");
    // The job it had was LOST and requeued (it is pinned to down-a, so it waits).
    const after = await c.getJob(job.id);
    t.is(after.state, JobState.PENDING);
    t.is(after.attempts[0]?.outcome, JobState.LOST);
    t.true((await c.clusterStatus()).workersDown >= 1, "the cluster status counts DOWN workers");
    t.regex((await cli(["admin", "status"], env)).stdout, /Workers: +\d+ up of \d+ \(\d+ down\)/);
    const detail = await cli(["worker", "down-a"], env);
    t.regex(detail.stdout, /State:\s+DOWN/);
    t.regex(detail.stdout, new RegExp(`Had jobs:\\s+${job.id}`));

    // Reattach under the same name: UP again, the down fields cleared, and the pinned job runs there.
    await cluster.startWorker("down-a", 1);
    const up = await c.getWorker("down-a");
    t.is(up.state, WorkerState.UP);
    t.is(up.downReason, "");
    t.is(up.downTime, undefined);
    const rerun = await c.waitUntil(job.id, (j) => j.state === JobState.RUNNING, { timeoutMs: 20_000 });
    t.is(rerun.attempt, 2);
    await c.kill(job.id, 0, undefined, true);
    await c.wait(job.id);

    // Forget refuses a worker that is not DOWN, and an unknown one.
    const notDown = await cli(["worker", "forget", "down-a"], env);
    t.is(notDown.code, 1);
    t.regex(notDown.stderr, /FAILED_PRECONDITION: worker down-a is UP; only a DOWN worker can be forgotten/);
    const unknown = await t.throwsAsync(() => c.forgetWorker("no-such-worker"));
    t.is((unknown as { code?: number }).code, status.NOT_FOUND);

    // Stop it (an operator's stop): DOWN at once, then forget removes the record.
    await cli(["stop", "down-a"], env);
    await cluster.waitFor(
      async () => (await c.getWorker("down-a")).state === WorkerState.DOWN,
      20_000,
      "stopped down-a to be DOWN",
    );
    t.is((await c.getWorker("down-a")).downReason, "stopped by an operator");
    const forgot = await cli(["worker", "forget", "down-a"], env);
    t.is(forgot.code, 0, forgot.stderr);
    t.regex(forgot.stdout, /worker down-a forgotten/);
    t.false((await workersJson()).some((x) => x.name === "down-a"));
    const gone = await cli(["worker", "down-a"], env);
    t.regex(gone.stderr, /NOT_FOUND/);
  },
);

test.serial("DOWN records are bounded: retention keeps the newest (count 2 here)", async (t) => {
  const c = cluster.client();
  for (const name of ["ret-1", "ret-2", "ret-3"]) {
    await cluster.startWorker(name, 1);
    await c.stopWorker(name);
    await cluster.waitFor(async () => (await c.getWorker(name)).state === WorkerState.DOWN, 20_000, `${name} DOWN`);
  }
  await cluster.waitFor(
    async () => !(await workersJson()).some((w) => w.name === "ret-1"),
    20_000,
    "retention to delete the oldest DOWN record",
  );
  const down = (await workersJson()).filter((w) => w.state === "DOWN").map((w) => w.name);
  t.deepEqual(down.sort(), ["ret-2", "ret-3"]);
  const times = await Promise.all(["ret-2", "ret-3"].map(async (n) => timestampMs((await c.getWorker(n)).downTime!)));
  t.true(times.every((x) => x > 0));
});
