import test from "ava";
import { JobState } from "../gen/crms/v1/job_pb.js";
import { TestCluster } from "./helpers/cluster.js";
import { startSimWorker } from "./helpers/sim-worker.js";

test("a start and finish received together are written as one transition that records both", async (t) => {
  const cluster = await TestCluster.start();
  const sim = startSimWorker(cluster.address, "sim", 4);
  try {
    const c = cluster.client();
    const seen = new Map<string, JobState[]>();
    cluster.server.store.jobs.on("put", (id, e) => seen.set(id, [...(seen.get(id) ?? []), e.value.state]));
    const ids = await Promise.all(Array.from({ length: 8 }, async () => (await c.submit({ command: ["true"] })).id));
    for (const id of ids) {
      const job = await c.wait(id, { timeoutMs: 15_000 });
      t.is(job.state, JobState.SUCCEEDED);
      t.is(job.pid, 1);
      t.truthy(job.startTime, "the start is recorded");
      t.truthy(job.attempts[0]?.startTime, "the attempt's start is recorded");
      t.truthy(job.endTime);
      t.is(seen.get(id)?.at(-1), JobState.SUCCEEDED);
    }
    // The simulated worker sends both reports at once; on a loaded machine the finish can still
    // arrive after the start's short wait, so not every job is merged, but most must be.
    const separate = ids.filter((id) => seen.get(id)?.includes(JobState.RUNNING)).length;
    t.true(separate <= ids.length / 2, `${separate} of ${ids.length} jobs had a separate RUNNING write`);
  } finally {
    sim.stop();
    await cluster.stop();
  }
});
