import test from "ava";
import { CrmsClient } from "../clients/typescript/src/client.js";
import { addressesOf, retrySameRequest } from "../clients/typescript/src/failover.js";
import { TestCluster } from "./helpers/cluster.js";
import { freePort } from "./helpers/etcd.js";

test("addresses are split on commas; none is an error", (t) => {
  t.deepEqual(addressesOf("a:1, b:2,,c:3"), ["a:1", "b:2", "c:3"]);
  t.throws(() => addressesOf(" , "), { message: /no server address/ });
});

test("a submit whose stream was reset under it (a replica stopping mid-call) is sent again; any other INTERNAL is not", async (t) => {
  const reset = {
    code: 13,
    details: "Received RST_STREAM with code 2 triggered by internal client error: Session closed with error code 2",
  };
  let calls = 0;
  const ok = await retrySameRequest(
    async () => {
      calls++;
      if (calls === 1) throw reset;
      return "job 1";
    },
    { budgetMs: 5_000 },
  );
  t.is(ok, "job 1");
  t.is(calls, 2);
  calls = 0;
  await t.throwsAsync(
    retrySameRequest(
      async () => {
        calls++;
        throw Object.assign(new Error("13 INTERNAL: a bug in the handler"), {
          code: 13,
          details: "a bug in the handler",
        });
      },
      { budgetMs: 5_000 },
    ),
    { message: /a bug in the handler/ },
  );
  t.is(calls, 1, "a server-side INTERNAL is not retried");
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
