import test from "ava";
import { JobState } from "../gen/crms/v1/job_pb.js";
import { TestCluster } from "./helpers/cluster.js";

test("a worker session forgets the runs that ended: assigned and killed do not grow per job", async (t) => {
  const cluster = await TestCluster.start();
  try {
    const c = cluster.client();
    await cluster.startWorker("w", 2);
    const jobs = await Promise.all(Array.from({ length: 6 }, () => c.submit({ command: ["/bin/true"] })));
    const long = await c.submit({ command: ["sleep", "60"] });
    await cluster.waitFor(
      () => cluster.server.store.job(long.id)?.state === JobState.RUNNING,
      20_000,
      "the long job to run",
    );
    const session = cluster.server.sessions.byName.get("w");
    t.truthy(session);
    t.true(session?.assigned.has(long.id), "a running job is remembered");
    await c.kill(long.id, 1);
    for (const j of [...jobs, long]) {
      const done = await c.wait(j.id, { timeoutMs: 30_000 });
      t.is(done.state, j.id === long.id ? JobState.KILLED : JobState.SUCCEEDED);
    }
    await cluster.waitFor(
      () => session?.assigned.size === 0 && session.killed.size === 0,
      5_000,
      "the session to forget ended runs",
    );
    t.is(session?.assigned.size, 0);
    t.is(session?.killed.size, 0);
  } finally {
    await cluster.stop();
  }
});
