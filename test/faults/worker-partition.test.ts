/**
 * Fencing of a live worker: a TCP proxy cuts the worker off from every
 * replica. Past the grace the worker (and its shims) end its runs before the
 * control plane reruns them elsewhere; a keep_on_disconnect run goes on, and
 * once the worker is back and its job was rerun, that run is killed.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import test from "ava";
import { JobState } from "../../gen/crms/v1/job_pb.js";
import { FaultCluster, marks, requireShim, sleep, waitFor } from "../helpers/fault-cluster.js";
import { TcpProxy } from "../helpers/tcp-proxy.js";

const GRACE = 4;

test("worker-partition: a worker cut off past the grace kills its runs before they rerun elsewhere; a --keep-on-disconnect run goes on until its rerun is found", async (t) => {
  requireShim();
  const cluster = await FaultCluster.start({ workers: 0, grace: GRACE, heartbeat: 1 });
  const proxies = await Promise.all(cluster.replicas.map((r) => TcpProxy.start(r.address)));
  try {
    await cluster.startWorker(
      "w0",
      4,
      undefined,
      proxies.map((p) => p.address),
    );
    const c = cluster.client();
    // Attempt 1 would run for a minute; a rerun takes a second. Each marks its start and its end.
    const mark = join(cluster.dir, "mark-$CRMS_JOB_ID");
    const command = [
      "sh",
      "-c",
      `echo "$CRMS_JOB_ID $CRMS_ATTEMPT $CRMS_WORKER $$" >> ${cluster.runsFile}; echo s >> ${mark}; ` +
        `if [ "$CRMS_ATTEMPT" = 1 ]; then sleep 60; else sleep 1; fi; echo e >> ${mark}`,
    ];
    const fenced: string[] = [];
    for (let i = 0; i < 2; i++) fenced.push((await c.submit({ name: `cut-${i}`, command, maxRetries: 0 })).id);
    const kept = (await c.submit({ name: "kept", command, maxRetries: 0, keepOnDisconnect: true })).id;
    const ids = [...fenced, kept];
    await waitFor(
      async () => (await cluster.allJobs()).filter((j) => j.state === JobState.RUNNING).length === 3,
      60_000,
      "3 jobs RUNNING on w0",
    );
    await cluster.startWorker("w1", 4);
    // Cut off long enough for the control plane to notice (3 heartbeats), wait the grace and the fencing bound.
    for (const p of proxies) p.freeze();
    const frozeAt = Date.now();
    await waitFor(
      async () =>
        (await cluster.allJobs()).filter((j) => ids.includes(j.id) && j.attempts[0]?.outcome === JobState.LOST)
          .length === 3,
      60_000,
      "the control plane to mark w0's jobs LOST",
    );
    const thawAt = Date.now();
    t.true(thawAt - frozeAt >= GRACE * 1000, "rerun only after the grace");
    await sleep(1000);
    for (const p of proxies) p.thaw();
    const runDir = (id: string) => join(cluster.dataDirs.get("w0") ?? "", "runs", `${id}.1`);
    const exitOf = (id: string) => {
      try {
        return JSON.parse(readFileSync(join(runDir(id), "exit"), "utf8")) as {
          fenced?: boolean;
          signal?: string;
          ended_ms: number;
        };
      } catch {
        return undefined;
      }
    };
    await waitFor(
      async () =>
        (await cluster.allJobs()).filter((j) => ids.includes(j.id) && j.state === JobState.SUCCEEDED).length === 3 &&
        exitOf(kept) !== undefined,
      60_000,
      "every job to succeed and the kept run to be killed",
    );
    const jobs = new Map((await cluster.allJobs()).map((j) => [j.id, j]));
    for (const id of ids) {
      const job = jobs.get(id);
      t.deepEqual(
        job?.attempts.map((a) => [a.worker, JobState[a.outcome]]),
        [
          ["w0", "LOST"],
          ["w1", "SUCCEEDED"],
        ],
        `${id}: LOST on w0, rerun and SUCCEEDED on w1`,
      );
    }
    for (const id of fenced) {
      const exit = exitOf(id);
      t.truthy(exit, `${id}: its run on w0 ended`);
      t.true((exit?.ended_ms ?? Infinity) < thawAt, `${id}: killed while w0 was cut off, before the rerun`);
    }
    // The kept run went on through the cut-off and was killed only once w0 was back and found it replaced.
    const keptExit = exitOf(kept);
    t.true((keptExit?.ended_ms ?? 0) > thawAt, "the kept run outlived the cut-off");
    t.falsy(keptExit?.fenced);
    t.regex(cluster.workers[0]?.output() ?? "", new RegExp(`killing job ${kept} attempt 1`));
    // Each started twice, ran to its end once (the rerun).
    for (const [id, m] of marks(cluster.dir, ids)) t.is(m, "sse", `${id} ran to its end once`);
  } finally {
    for (const p of proxies) await p.close();
    await cluster.stop();
  }
});
