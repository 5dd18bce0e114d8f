/**
 * Fault test 5: SIGSTOP the scheduler leader's replica for twice its lease
 * under load, then SIGCONT. Another replica leads meanwhile; the stopped one
 * comes back deposed, its writes carrying the old leader token fail their
 * revision check, and no job ever runs two attempts.
 */
import test from "ava";
import { FaultCluster, sleep, summaryLine, waitFor } from "../helpers/fault-cluster.js";
import { runLoad } from "../helpers/fault-load.js";

const LEASE_SECONDS = 10; // crms server's default replica lease

test("5. SIGSTOP the leader replica for twice its lease, then SIGCONT: it is deposed, its stale writes fail, no job runs twice", async (t) => {
  const cluster = await FaultCluster.start({ grace: 40 });
  try {
    const stale = await cluster.leader();
    let stopped: Promise<void> | undefined;
    let newLeader = "";
    const result = await runLoad(
      cluster,
      {
        fault() {
          stale.signal("SIGSTOP");
          stopped = (async () => {
            const others = cluster.replicas.filter((r) => r !== stale);
            await waitFor(
              async () => {
                for (const r of others) {
                  const s = await r.client.clusterStatus({ timeoutMs: 1000 }).catch(() => undefined);
                  if (s && s.schedulerLeader === s.replica) newLeader = r.name;
                }
                return newLeader !== "";
              },
              2 * LEASE_SECONDS * 1000,
              "another replica to lead",
            ).catch(() => undefined);
            await sleep(2 * LEASE_SECONDS * 1000);
            stale.signal("SIGCONT");
          })();
        },
        async restore() {
          await stopped;
        },
      },
      "replica-stop",
    );
    await waitFor(
      () => /no longer scheduler leader/.test(stale.output()),
      30_000,
      "the stopped replica to see it was deposed",
    );
    const fenced = stale
      .output()
      .split("\n")
      .filter((l) => /fencing check/.test(l)).length;
    t.log(summaryLine("replica-stop", result));
    t.log(
      `new leader ${newLeader} while ${stale.name} was stopped; ${fenced} stale writes refused by their revision check`,
    );
    t.true(newLeader !== "" && newLeader !== stale.name, "another replica led while it was stopped");
    t.is((await cluster.leader()).name, newLeader, "the resumed replica did not take leadership back");
    t.deepEqual(result.problems.slice(0, 10), []);
    t.is(result.lost, 0);
    t.is(result.duplicated, 0);
    const runs = cluster.runs();
    const twice = [...runs].filter(([, r]) => r.length > 1).map(([id, r]) => `${id}: ${r.join(",")}`);
    t.deepEqual(twice, [], "no job ran two attempts");
  } finally {
    await cluster.stop();
  }
});
