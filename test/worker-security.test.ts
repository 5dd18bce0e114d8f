/**
 * Worker-side security: an Attach stream that never says Hello is closed,
 * and `crms worker --run-as USER` runs jobs under that account (real uid/gid).
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import test from "ava";
import { WorkerService } from "../gen/crms/v1/worker_pb.js";
import { HELLO_TIMEOUT_MS } from "../src/services/sessions/index.js";
import { resolveRunAs } from "../src/worker/run-as.js";
import { CRMS_BIN, TestCluster } from "./helpers/cluster.js";

test("an Attach stream without Hello is closed with DEADLINE_EXCEEDED after a few seconds", async (t) => {
  const cluster = await TestCluster.start();
  t.teardown(() => cluster.stop());
  const c = cluster.client();
  const opened = Date.now();
  const stream = c.transport.bidiStream(WorkerService.method.attach);
  const err = await new Promise<{ code: number; details: string }>((resolve) => {
    stream.on("data", () => undefined);
    stream.on("error", (e) => resolve(e as unknown as { code: number; details: string }));
  });
  const waited = Date.now() - opened;
  t.is(err.code, status.DEADLINE_EXCEEDED);
  t.regex(err.details, /no hello within 5s/);
  t.true(waited >= HELLO_TIMEOUT_MS - 100 && waited < HELLO_TIMEOUT_MS + 10_000, `closed after ${waited} ms`);
  t.is(cluster.server.sessions.byName.size, 0);
});

const root = process.getuid?.() === 0;

(root ? test : test.skip)(
  "--run-as runs jobs with that user's uid and gid, in a run directory it can write",
  async (t) => {
    const nobody = resolveRunAs("nobody");
    const cluster = await TestCluster.start();
    t.teardown(() => cluster.stop());
    const dataDir = mkdtempSync(join(tmpdir(), "crms-runas-"));
    const proc = spawn(
      process.execPath,
      [CRMS_BIN, "worker", "--name", "ra", "--server", cluster.address, "--data-dir", dataDir, "--run-as", "nobody"],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    proc.stderr.on("data", (d) => (out += d));
    t.teardown(async () => {
      proc.kill("SIGTERM");
      await new Promise((r) => proc.once("exit", r));
      rmSync(dataDir, { recursive: true, force: true });
    });
    await cluster.waitFor(() => cluster.server.store.worker("ra")?.state === 1, 20_000, `worker ra\n${out}`);
    const c = cluster.client();
    const job = await c.submit({ command: ["sh", "-c", "id -u; id -g; echo $USER; touch written && echo wrote"] });
    const done = await c.wait(job.id, { timeoutMs: 30_000 });
    t.is(done.exitCode, 0, done.error);
    const stdout = Buffer.from(done.stdoutTail).toString();
    t.is(stdout, `${nobody.uid}\n${nobody.gid}\nnobody\nwrote\n`);
    // Root-only files stay closed to the job.
    const denied = await c.submit({ command: ["cat", "/etc/shadow"] });
    const d = await c.wait(denied.id, { timeoutMs: 30_000 });
    t.not(d.exitCode, 0);
    t.regex(Buffer.from(d.stderrTail).toString(), /Permission denied/);
  },
);

test("--run-as with an unknown user refuses to start the worker", async (t) => {
  const proc = spawn(process.execPath, [CRMS_BIN, "worker", "--name", "x", "--run-as", "no-such-user-here"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let err = "";
  proc.stderr.on("data", (d) => (err += d));
  const code = await new Promise((r) => proc.once("exit", r));
  t.is(code, 2);
  t.regex(err, /--run-as: no user "no-such-user-here"/);
});
