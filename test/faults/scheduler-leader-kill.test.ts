/** Fault test 4: SIGKILL the replica leading the scheduler under load. */
import test from "ava";
import { JobState } from "../../gen/crms/v1/job_pb.js";
import { FaultCluster, summaryLine, waitFor } from "../helpers/fault-cluster.js";
import { runLoad } from "../helpers/fault-load.js";

test("4. SIGKILL the scheduler leader's replica under load: another leads in seconds, no job lost or run twice, its workers reconnect and keep their jobs", async (t) => {
  const cluster = await FaultCluster.start({ grace: 15 });
  try {
    const leader = await cluster.leader();
    let failoverMs = 0;
    const result = await runLoad(
      cluster,
      {
        async fault() {
          const killedAt = Date.now();
          leader.signal("SIGKILL");
          await leader.exited;
          const next = await cluster.leader(30_000);
          failoverMs = Date.now() - killedAt;
          t.not(next.name, leader.name);
        },
        async restore() {
          await cluster.startReplica(leader.name, Number(leader.address.split(":")[1]));
        },
      },
      "leader-kill",
    );
    t.log(summaryLine("scheduler-leader-kill", result));
    t.log(
      `new scheduler leader after ${failoverMs} ms; retried: ${JSON.stringify([...result.retried])}; failed: ${JSON.stringify([...result.failed])}`,
    );
    t.deepEqual(result.problems.slice(0, 10), []);
    t.is(result.lost, 0);
    t.is(result.duplicated, 0);
    t.is(result.failed.size, 0, "every submit was acknowledged after retries");
    for (const code of result.retried.keys()) t.true(["UNAVAILABLE", "DEADLINE_EXCEEDED"].includes(code), code);
    t.true(failoverMs < 20_000, `a new leader within 20 s (took ${failoverMs} ms)`);
    const lostAny = [...result.jobs.values()].filter((j) => j.lostCount > 0);
    t.deepEqual(
      lostAny.map((j) => j.id),
      [],
      "workers of the killed replica reconnected within grace: none of their jobs was LOST",
    );
    // Every worker is attached again, and workers that listed the other replica first also ran jobs
    // (assignments reach a worker through whichever replica holds its stream).
    const c = cluster.client();
    await waitFor(
      async () => (await Promise.all(["w0", "w1", "w2"].map((w) => c.getWorker(w)))).every((w) => w.state === 1),
      30_000,
      "every worker attached",
    );
    const ranOn = new Set([...result.jobs.values()].map((j) => j.worker));
    t.deepEqual([...ranOn].sort(), ["w0", "w1", "w2"]);
    t.true([...result.jobs.values()].every((j) => j.state === JobState.SUCCEEDED));
  } finally {
    await cluster.stop();
  }
});
