/** Fault test 3: SIGKILL the etcd raft leader under load, restart it later (same data dir). */
import { spawn } from "node:child_process";
import test from "ava";
import { FaultCluster, summaryLine, waitFor } from "../helpers/fault-cluster.js";
import { runLoad } from "../helpers/fault-load.js";

test("3. SIGKILL the etcd leader under load and restart it: every acknowledged job exists once and finishes once; clients only retried UNAVAILABLE / DEADLINE_EXCEEDED", async (t) => {
  const cluster = await FaultCluster.start({ grace: 15 });
  const restarted: ReturnType<typeof spawn>[] = [];
  try {
    const status = await cluster.client().clusterStatus({ timeoutMs: 5_000 });
    const leaderEndpoint = status.members.find((m) => m.leader)?.endpoint;
    const member = cluster.etcd.members.find((m) => m.endpoint === leaderEndpoint);
    if (!member) throw new Error(`no etcd leader among ${JSON.stringify(status.members)}`);
    const result = await runLoad(
      cluster,
      {
        async fault() {
          member.process.kill("SIGKILL");
          await new Promise((r) => member.process.once("exit", r));
        },
        async restore() {
          // The same member again: same name, ports and data dir (its spawn arguments).
          const [bin, ...args] = member.process.spawnargs;
          restarted.push(spawn(bin as string, args, { stdio: "ignore" }));
          await waitFor(
            () =>
              fetch(`${member.endpoint}/health`).then(
                (r) => r.ok,
                () => false,
              ),
            30_000,
            "the etcd member to come back",
          );
        },
      },
      "etcd-kill",
    );
    t.log(summaryLine("etcd-leader-kill", result));
    t.log(`retried: ${JSON.stringify([...result.retried])}; failed: ${JSON.stringify([...result.failed])}`);
    t.deepEqual(result.problems.slice(0, 10), []);
    t.is(result.lost, 0);
    t.is(result.duplicated, 0);
    for (const code of [...result.retried.keys(), ...result.failed.keys()])
      t.true(["UNAVAILABLE", "DEADLINE_EXCEEDED"].includes(code), `clients saw ${code}`);
    t.is(result.failed.size, 0, "every submit was acknowledged after retries");
    const after = await cluster.client().clusterStatus({ timeoutMs: 5_000 });
    t.true(
      after.members.every((m) => !m.error),
      `every etcd member answers again: ${JSON.stringify(after.members.map((m) => m.error))}`,
    );
  } finally {
    for (const p of restarted) p.kill("SIGKILL");
    await cluster.stop();
  }
});
