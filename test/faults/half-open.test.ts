/**
 * Fault test 7: a proxy between a worker and its replica stops passing data
 * without closing; the replica detaches the worker within about 15 s and the
 * worker reconnects (to the next address it was given).
 */
import test from "ava";
import { FaultCluster, summaryLine, waitFor } from "../helpers/fault-cluster.js";
import { TcpProxy } from "../helpers/tcp-proxy.js";

test("7. a half-open link between a worker and its replica: detached within ~15 s, the worker reconnects", async (t) => {
  const cluster = await FaultCluster.start({ workers: 1 });
  const r0 = cluster.replicas[0];
  if (!r0) throw new Error("no replica");
  const proxy = await TcpProxy.start(r0.address);
  try {
    await cluster.startWorker("wp", 1, proxy.address);
    const c = cluster.client();
    const before = await c.getWorker("wp");
    t.is(before.state, 1, "attached through the proxy");
    const detachedLine = () =>
      r0
        .output()
        .split("\n")
        .find((l) => /worker detached|detaching/.test(l) && /"wp"/.test(l));
    t.is(detachedLine(), undefined);
    const frozenAt = Date.now();
    proxy.freeze();
    await waitFor(() => detachedLine() !== undefined, 30_000, `r0 to detach wp\n${r0.output().slice(-2000)}`);
    const detectedMs = Date.now() - frozenAt;
    await waitFor(
      async () => {
        const w = await c.getWorker("wp").catch(() => undefined);
        return w?.state === 1 && (w.attachTime?.seconds ?? 0n) > (before.attachTime?.seconds ?? 0n);
      },
      40_000,
      "wp to reconnect",
    );
    const reconnectedMs = Date.now() - frozenAt;
    const job = await c.submit({ command: ["true"], targetWorker: "wp" });
    const done = await c.wait(job.id, { timeoutMs: 30_000 });
    t.log(summaryLine("half-open", { faults: 1, submitted: 1, acknowledged: 1, finished: 1, lost: 0, duplicated: 0 }));
    t.log(`detached after ${detectedMs} ms, reconnected after ${reconnectedMs} ms`);
    t.true(detectedMs <= 20_000, `the replica detached the worker within ~15 s (took ${detectedMs} ms)`);
    t.is(done.worker, "wp", "the reconnected worker runs jobs again");
  } finally {
    await proxy.close();
    await cluster.stop();
  }
});
