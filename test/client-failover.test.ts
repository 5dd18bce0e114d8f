import test from "ava";
import { CrmsClient } from "../clients/typescript/src/client.js";
import { addressesOf } from "../clients/typescript/src/failover.js";
import { TestCluster } from "./helpers/cluster.js";
import { freePort } from "./helpers/etcd.js";

test("addresses are split on commas; none is an error", (t) => {
  t.deepEqual(addressesOf("a:1, b:2,,c:3"), ["a:1", "b:2", "c:3"]);
  t.throws(() => addressesOf(" , "), { message: /no server address/ });
});

test("a client given a dead address first fails over to the next; submit without a request id gets one and creates one job", async (t) => {
  const cluster = await TestCluster.start();
  const dead = `127.0.0.1:${await freePort()}`;
  const c = new CrmsClient(`${dead},${cluster.address}`);
  try {
    const retried: unknown[] = [];
    const job = await c.submit({ command: ["true"] }, { timeoutMs: 5_000, onRetry: (e) => retried.push(e) });
    t.truthy(job.requestId, "a request id was generated");
    t.is((await c.getJob(job.id)).id, job.id);
    // The same request id again (as a retry after a reset would send it): the same job.
    const again = await c.submit({ command: ["true"] }, { requestId: job.requestId });
    t.is(again.id, job.id);
    t.is([...cluster.server.store.jobs.entries.values()].filter((e) => e.value.requestId === job.requestId).length, 1);
  } finally {
    c.close();
    await cluster.stop();
  }
});

test("a submit that only ever meets UNAVAILABLE gives up after its retry budget with UNAVAILABLE", async (t) => {
  const c = new CrmsClient(`127.0.0.1:${await freePort()},127.0.0.1:${await freePort()}`);
  try {
    let retries = 0;
    const started = Date.now();
    const err = await t.throwsAsync(() =>
      c.submit({ command: ["true"] }, { retry: { budgetMs: 1_500 }, onRetry: () => retries++ }),
    );
    t.is((err as { code?: number }).code, 14);
    t.true(retries >= 2, `retried ${retries} times`);
    t.true(Date.now() - started < 5_000);
  } finally {
    c.close();
  }
});
