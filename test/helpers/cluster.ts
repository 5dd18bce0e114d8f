/**
 * A real cluster for one test file: etcd on free ports, a control plane on
 * port 0, and workers as separate `crms worker` processes.
 */

import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { Etcd3 } from "etcd3";
import { CrmsClient } from "../../clients/typescript/src/client.js";
import { type ControlPlane, type ServerOptions, startServer } from "../../src/server/server.js";
import { type EtcdInstance, startEtcd } from "./etcd.js";

export const CRMS_BIN = fileURLToPath(new URL("../../bin/crms.js", import.meta.url));

/** grpcurl as `go install` puts it, else from PATH. */
export function grpcurlPath(): string {
  const gopath = process.env.GOPATH || join(process.env.HOME ?? "/root", "go");
  const candidate = join(gopath, "bin", "grpcurl");
  return existsSync(candidate) ? candidate : "grpcurl";
}

/** Runs the crms CLI without blocking the event loop (the server runs in this process). */
export function cli(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CRMS_BIN, ...args], { env, timeout: 30_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

export interface WorkerProcess {
  name: string;
  process: ChildProcess;
  output: () => string;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export class TestCluster {
  readonly workers: WorkerProcess[] = [];
  readonly clients: CrmsClient[] = [];
  private raw?: Etcd3;

  private constructor(
    readonly etcd: EtcdInstance,
    /** The replica workers attach to and clients call (a test may hand over to another one). */
    public server: ControlPlane,
  ) {}

  static async start(options: Partial<ServerOptions> = {}, etcdFlags: string[] = []): Promise<TestCluster> {
    const etcd = await startEtcd(etcdFlags);
    const server = await startServer({
      listen: "127.0.0.1:0",
      etcd: [etcd.endpoint],
      logLevel: "warn",
      graceSeconds: 3,
      heartbeatSeconds: 1,
      ...options,
    });
    return new TestCluster(etcd, server);
  }

  get address(): string {
    return this.server.address;
  }

  /** A client, closed by stop(); with a token secret, it sends it as a bearer token. */
  client(token?: string): CrmsClient {
    const c = new CrmsClient(this.address, undefined, token ? { authorization: `Bearer ${token}` } : {});
    this.clients.push(c);
    return c;
  }

  /** Starts `crms worker` as its own process and waits until it is attached. */
  async startWorker(
    name: string,
    slots = 2,
    labels: Record<string, string> = {},
    /** More worker flags, e.g. ["--cpus", "4"]. */
    extra: string[] = [],
  ): Promise<WorkerProcess> {
    const dataDir = mkdtempSync(join(tmpdir(), `crms-worker-${name}-`));
    const args = [
      CRMS_BIN,
      "worker",
      "--name",
      name,
      "--slots",
      String(slots),
      "--server",
      this.address,
      "--data-dir",
      dataDir,
    ];
    for (const [k, v] of Object.entries(labels)) args.push("--label", `${k}=${v}`);
    args.push(...extra);
    const proc = spawn(process.execPath, args, {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, CRMS_HEARTBEAT_SECONDS: "1" },
    });
    let out = "";
    proc.stdout?.on("data", (d) => (out += d));
    proc.stderr?.on("data", (d) => (out += d));
    const exited = new Promise<void>((r) => proc.once("exit", () => r()));
    const worker: WorkerProcess = {
      name,
      process: proc,
      output: () => out,
      async stop(signal: NodeJS.Signals = "SIGTERM") {
        if (proc.exitCode !== null || proc.signalCode !== null) return;
        proc.kill(signal);
        await Promise.race([exited, sleep(10_000, undefined, { ref: false })]);
      },
    };
    this.workers.push(worker);
    await this.waitFor(() => this.server.store.worker(name)?.state === 1, 20_000, `worker ${name} to attach\n${out}`);
    return worker;
  }

  /** An etcd client of the test's own, for what a test does behind the store's back (raw reads, alarms). */
  etcdClient(): Etcd3 {
    this.raw ??= new Etcd3({ hosts: [this.etcd.endpoint] });
    return this.raw;
  }

  /** Polls a condition (for state that arrives by watch) until it holds. */
  async waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = "condition"): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await cond())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  async stop(): Promise<void> {
    for (const c of this.clients) c.close();
    await Promise.all(this.workers.map((w) => w.stop("SIGTERM")));
    await this.server.stop();
    this.raw?.close();
    await this.etcd.stop();
  }
}
