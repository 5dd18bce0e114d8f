/**
 * The per-client cap on open streams: RESOURCE_EXHAUSTED naming the limit,
 * released when streams end; an anonymous client counted per connection, a
 * token's holder across its connections; and `crms submit --wait` printing the
 * job id before waiting, so a failed wait never hides a job that was created.
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import test from "ava";
import type { CrmsClient } from "../clients/typescript/src/client.js";
import { WorkerService } from "../gen/crms/v1/worker_pb.js";
import { cli, TestCluster } from "./helpers/cluster.js";

test("a client holds at most maxStreamsPerClient streams; ended and cancelled ones are given back", async (t) => {
  const cluster = await TestCluster.start({ maxStreamsPerClient: 3 });
  t.teardown(() => cluster.stop());
  const c = cluster.client();
  const open = () => openWatch(c);
  const streams = [open(), open(), open()];
  for (const s of streams) t.is(await s.first, status.OK);
  const fourth = open();
  t.is(await fourth.first, status.RESOURCE_EXHAUSTED);
  t.regex(fourth.details(), /limit 3 streams per connection/);
  // Workers' Attach streams from the same address are not client streams: four attach past the cap.
  const workers = ["w1", "w2", "w3", "w4"];
  for (const w of workers) await cluster.startWorker(w, 1); // each waits until attached
  t.is(workers.filter((w) => cluster.server.store.worker(w)?.state === 1).length, 4);
  // Unary calls are not streams.
  t.truthy(await c.listJobs());
  streams[0]?.call.cancel();
  await cluster.waitFor(() => cluster.server.streams.total() === 2, 5000, "a released stream");
  const again = open();
  t.is(await again.first, status.OK);
  // Streams that end on their own are given back too.
  again.call.cancel();
  for (const s of streams) s.call.cancel();
  await cluster.waitFor(() => cluster.server.streams.total() === 0, 5000, "all streams released");
  const job = await c.submit({ command: ["true"], hold: true });
  for (let i = 0; i < 6; i++) t.deepEqual((await c.outputText(job.id)).stdout, "");
  await cluster.waitFor(() => cluster.server.streams.total() === 0, 5000, "ended streams released");

  // Input limits name the limit.
  const code = async (p: Promise<unknown>) =>
    p.then(
      () => ({ code: 0, details: "" }),
      (e: { code: number; details: string }) => e,
    );
  const ctl = await code(c.submit({ command: ["true"], name: "ok\u001b[2Jevil" }));
  t.is(ctl.code, status.INVALID_ARGUMENT);
  t.regex(ctl.details, /control characters/);
  const argv = await code(c.submit({ command: Array.from({ length: 1025 }, () => "x") }));
  t.is(argv.code, status.INVALID_ARGUMENT);
  t.regex(argv.details, /at most 1024 arguments/);
  const worker = await code(c.getWorker("../etc"));
  t.is(worker.code, status.INVALID_ARGUMENT);
  t.regex(worker.details, /may hold only letters, digits/);
  const big = await code(c.submit({ command: ["true"], env: { BIG: "x".repeat(17 * 1024 * 1024) } }));
  t.is(big.code, status.RESOURCE_EXHAUSTED);
  // Jobs per request: one SubmitJob makes at most 100,000 array tasks; one watch names at most 10,000 ids.
  const array = await code(c.submit({ command: ["true"], array: { first: 1, last: 100_001 } }));
  t.is(array.code, status.INVALID_ARGUMENT);
  t.regex(array.details, /array: at most 100000 tasks/);
  const watch = await code(
    (async () => {
      for await (const _ of c.watchJobs(Array.from({ length: 10_001 }, (_, i) => String(i + 1)))) break;
    })(),
  );
  t.is(watch.code, status.INVALID_ARGUMENT);
  t.regex(watch.details, /at most 10000 job ids per watch/);
  t.is(cluster.server.store.jobs.entries.size, 1);
});

/** Opens a WatchWorkers stream; resolves with its first outcome (OK on the first message). */
function openWatch(c: CrmsClient) {
  const call = c.transport.serverStream(WorkerService.method.watchWorkers, {});
  let details = "";
  const first = new Promise<number>((resolve) => {
    call.on("data", () => resolve(status.OK));
    call.on("error", (e: { code: number; details: string }) => {
      details = e.details;
      resolve(e.code);
    });
  });
  return { call, first, details: () => details };
}

test("without a token the cap is per connection: one process at the cap does not block another's submit --wait", async (t) => {
  const cluster = await TestCluster.start({ maxStreamsPerClient: 2 });
  t.teardown(() => cluster.stop());
  await cluster.startWorker("w1", 2);
  const hog = cluster.client();
  const held = [openWatch(hog), openWatch(hog)];
  for (const s of held) t.is(await s.first, status.OK);
  const third = openWatch(hog);
  t.is(await third.first, status.RESOURCE_EXHAUSTED);
  t.regex(third.details(), /limit 2 streams per connection/);
  // Another local process (its own connection, the same address) is not affected.
  const r = await cli(["submit", "--wait", "--server", cluster.address, "--", "echo", "hello"], process.env);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, "hello\n");
  t.regex(r.stderr, /^job \d+ submitted/m);
  t.regex(r.stderr, /job \d+ SUCCEEDED/);
  for (const s of held) s.call.cancel();
});

test("with a token the cap is per token across connections, and a failed submit --wait still names the job and how to follow it", async (t) => {
  const adminTokenFile = join(mkdtempSync(join(tmpdir(), "crms-cap-")), "admin.token");
  const cluster = await TestCluster.start({ adminTokenFile, maxStreamsPerClient: 2 });
  t.teardown(() => cluster.stop());
  const admin = cluster.client(readFileSync(adminTokenFile, "utf8").trim());
  const alice = await admin.createToken("alice", "submitter", "");
  await cluster.waitFor(() => !!cluster.server.tokens.lookup(alice.secret), 10_000, "the token in the cache");
  const hog = cluster.client(alice.secret);
  const held = [openWatch(hog), openWatch(hog)];
  for (const s of held) t.is(await s.first, status.OK);
  const before = (await admin.listJobs({ pageSize: 1000 })).jobs.length;
  const r = await cli(["submit", "--wait", "--server", cluster.address, "--", "true"], {
    ...process.env,
    CRMS_TOKEN: alice.secret,
  });
  t.not(r.code, 0, "the wait failed: the token is at its cap");
  const id = /^job (\d+) submitted/m.exec(r.stderr)?.[1];
  t.truthy(id, `the id was printed before waiting:\n${r.stderr}`);
  t.regex(r.stderr, /RESOURCE_EXHAUSTED.*limit 2 streams per token/);
  t.true(r.stderr.includes(`crms job ${id}`) && r.stderr.includes(`crms logs -f ${id}`), r.stderr);
  const after = await admin.listJobs({ pageSize: 1000 });
  t.is(after.jobs.length, before + 1, "exactly one job was created");
  t.is(after.jobs.at(-1)?.id, id);
  for (const s of held) s.call.cancel();
});
