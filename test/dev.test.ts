import { execFile, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import test from "ava";
import { CRMS_BIN } from "./helpers/cluster.js";
import { freeConsecutivePorts } from "./helpers/etcd.js";

const run = promisify(execFile);

/** Pids whose command line mentions `needle` (etcd, the dev process, job processes). */
function processesMentioning(needle: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8");
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      if (cmdline.includes(needle) && !/\) Z /.test(stat)) pids.push(Number(entry));
    } catch {
      // gone
    }
  }
  return pids;
}

test("crms dev starts, a job runs through the CLI, and Ctrl-C leaves no etcd, server or worker process", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "crms-dev-test-"));
  // crms dev listens on --port, and its etcd on --etcd-port and the port after it (peers).
  const [port, etcdPort] = await freeConsecutivePorts(3);
  const dev = spawn(
    process.execPath,
    [CRMS_BIN, "dev", "--port", String(port), "--etcd-port", String(etcdPort), "--http-port", "0", "--data-dir", dir],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let out = "";
  dev.stdout.on("data", (d) => (out += d));
  dev.stderr.on("data", (d) => (out += d));
  const exited = new Promise<number | null>((r) => dev.once("exit", (code) => r(code)));
  try {
    // Generous: the control plane also opens its embedded job history (PGlite compiles its WASM at start).
    const deadline = Date.now() + 60_000;
    while (!out.includes("crms dev cluster is up")) {
      if (Date.now() > deadline || dev.exitCode !== null) throw new Error(`dev did not start:\n${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    t.regex(out, new RegExp(`localhost:${port}`));
    t.true(processesMentioning(dir).length >= 2, "etcd and the dev process run with the data dir");
    const server = `localhost:${port}`;
    const submitted = await run(process.execPath, [
      CRMS_BIN,
      "submit",
      "--server",
      server,
      "--wait",
      "--",
      "echo",
      "hello",
    ]);
    t.is(submitted.stdout, "hello\n");
    t.regex(submitted.stderr, /SUCCEEDED/);
    const jobs = await run(process.execPath, [CRMS_BIN, "jobs", "--server", server]);
    t.regex(jobs.stdout, /SUCCEEDED.*echo hello/);
    const json = JSON.parse((await run(process.execPath, [CRMS_BIN, "jobs", "-o", "json", "--server", server])).stdout);
    t.is(json[0].state, "SUCCEEDED");
    const failed = await run(process.execPath, [CRMS_BIN, "job", "999", "--server", server]).catch((e) => e);
    t.is(failed.code, 1);
    t.regex(failed.stderr, /^crms: NOT_FOUND: job 999 not found/);
    // A long job is running when Ctrl-C comes: it must not survive either.
    await run(process.execPath, [CRMS_BIN, "submit", "--server", server, "--", "sleep", "307"]);
    await new Promise((r) => setTimeout(r, 1000));
    dev.kill("SIGINT");
    t.is(await exited, 0);
    t.regex(out, /stopped/);
    await new Promise((r) => setTimeout(r, 300));
    t.deepEqual(processesMentioning(dir), [], "no process left with the dev data dir");
    t.is(processesMentioning("sleep\u0000307").length, 0, "the running job was killed");
  } finally {
    if (dev.exitCode === null) dev.kill("SIGKILL");
    for (const pid of processesMentioning(dir)) process.kill(pid, "SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
});
