/** The control plane under test, as its own process (the CLI's `server` command). */
import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { CrmsClient } from "../../clients/typescript/src/client.js";
import { freePort } from "./etcd.js";
import { CRMS_BIN, type Proc, startNode, startScript, tempDir } from "./procs.js";
import { progress, sleep } from "./util.js";

export interface ServerProc {
  proc: Proc;
  address: string;
  client: CrmsClient;
  logFile: string;
}

/**
 * Starts `crms server --log-level warn` on a free port and waits until it
 * answers and has elected a scheduler leader. With `profileDir` the process
 * runs under `node --cpu-prof` and writes its profile there when it exits.
 */
export async function startControlPlane(
  etcdEndpoint: string,
  opts: { profileDir?: string; instrumented?: boolean; args?: string[]; nodeArgs?: string[] } = {},
): Promise<ServerProc> {
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  const logFile = join(tempDir("server"), "server.log");
  const nodeArgs = [
    ...(opts.profileDir ? ["--cpu-prof", `--cpu-prof-dir=${opts.profileDir}`] : []),
    ...(opts.nodeArgs ?? []),
  ];
  // --instrumented: the same startServer() with its counters on stdout (bench/server-instrumented.ts).
  const proc = opts.instrumented
    ? startScript("server", "server-instrumented.ts", ["--listen", address, "--etcd", etcdEndpoint], {
        nodeArgs,
        logFile,
      })
    : startNode(
        "server",
        [
          ...[CRMS_BIN, "server", "--listen", address, "--etcd", etcdEndpoint, "--log-level", "warn"],
          // The embedded job history (the default) under this run's temporary directory.
          ...["--data-dir", dirname(logFile), ...(opts.args ?? [])],
        ],
        { nodeArgs, logFile },
      );
  const client = new CrmsClient(address);
  // Generous: the embedded history compiles PGlite's WASM at start, 20 s and more on a busy 2-core machine.
  const deadline = Date.now() + 90_000;
  for (;;) {
    try {
      const s = await client.clusterStatus({ timeoutMs: 1000 });
      if (s.schedulerLeader) break;
    } catch {
      // not serving yet
    }
    if (!proc.running || Date.now() > deadline) {
      client.close();
      await proc.stop(1000);
      throw new Error(`control plane did not start:\n${proc.lastLines()}`);
    }
    await sleep(100);
  }
  progress(`control plane up at ${address} (pid ${proc.pid})`);
  return { proc, address, client, logFile };
}

/** Stops the control plane with SIGTERM (so a CPU profile gets written). */
export async function stopControlPlane(s: ServerProc): Promise<void> {
  s.client.close();
  await s.proc.stop(15_000);
}

/** Simulated-worker processes, `perProcess` streams each at most. */
export function startSimWorkers(
  address: string,
  workers: number,
  slots: number,
  opts: { perProcess?: number; maxSeconds: number; deleteKeep?: number; channelsPerK?: number },
): Proc[] {
  const per = opts.perProcess ?? 20_000;
  const procs: Proc[] = [];
  const n = Math.max(1, Math.ceil(workers / per));
  for (let p = 0; p < n; p++) {
    const mine = Math.floor(workers / n) + (p < workers % n ? 1 : 0);
    const args = [
      "--server",
      address,
      "--workers",
      String(mine),
      "--slots",
      String(slots),
      "--prefix",
      `sim${p}-`,
      "--channels",
      String(Math.min(16, Math.max(2, Math.ceil(mine / 1000)))),
      "--max-seconds",
      String(opts.maxSeconds),
    ];
    if (opts.deleteKeep !== undefined) args.push("--delete-keep", String(Math.ceil(opts.deleteKeep / n)));
    procs.push(startScript(`sim${p}`, "sim-workers.ts", args));
  }
  return procs;
}

/** The latest message of a type from each process, summed field by field for numbers. */
export function sumLatest(procs: Proc[], type: string, fields: string[]): Record<string, number> {
  const out: Record<string, number> = Object.fromEntries(fields.map((f) => [f, 0]));
  for (const p of procs) {
    const last = [...p.messages].reverse().find((m) => m.type === type);
    if (!last) continue;
    for (const f of fields) out[f] = (out[f] as number) + Number(last[f] ?? 0);
  }
  return out;
}

/** The `crms server` flags this checkout's CLI knows (from its --help), e.g. "--retention-count". */
export function serverFlags(): Set<string> {
  try {
    const help = execFileSync(process.execPath, [CRMS_BIN, "--help"], { encoding: "utf8", timeout: 30_000 });
    return new Set(help.match(/--[a-z][a-z-]+/g) ?? []);
  } catch (err) {
    // `crms --help` exits 0; anything else: assume the bare minimum.
    const out = (err as { stdout?: string }).stdout ?? "";
    return new Set(out.match(/--[a-z][a-z-]+/g) ?? []);
  }
}
