/** Starts a real etcd on free loopback ports with a temporary data dir, for one test file. */

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (addr && typeof addr === "object" ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

/** Whether 127.0.0.1:port can be bound now. */
function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}

/**
 * `count` consecutive ports free now, below the kernel's ephemeral range
 * (32768 and up), so that no outgoing connection of another test takes one
 * of them before its server binds (as can happen to port + 1 of freePort()).
 */
export async function freeConsecutivePorts(count: number): Promise<number[]> {
  for (let tries = 0; tries < 200; tries++) {
    const base = 20_000 + Math.floor(Math.random() * (32_000 - 20_000 - count));
    const ports = Array.from({ length: count }, (_, i) => base + i);
    if ((await Promise.all(ports.map(canBind))).every(Boolean)) return ports;
  }
  throw new Error(`no ${count} consecutive free ports found`);
}

export interface EtcdInstance {
  endpoint: string;
  dataDir: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

/** Starts one etcd member; extra flags (e.g. --quota-backend-bytes) are passed on. */
export async function startEtcd(
  extra: string[] = [],
  at?: { name: string; client: number; peer: number },
  /** For a client port with TLS: "https", and a readiness check that can present a certificate. */
  tls?: { ready: (endpoint: string) => Promise<unknown> },
): Promise<EtcdInstance> {
  const dataDir = mkdtempSync(join(tmpdir(), "crms-etcd-"));
  const name = at?.name ?? "test";
  const client = at?.client ?? (await freePort());
  const peer = at?.peer ?? (await freePort());
  const endpoint = `${tls ? "https" : "http"}://127.0.0.1:${client}`;
  const ready = tls?.ready ?? (async (e: string) => (await fetch(`${e}/health`)).ok || Promise.reject());
  const proc = spawn(
    process.env.ETCD_BIN ?? "etcd",
    [
      "--name",
      name,
      "--data-dir",
      dataDir,
      "--listen-client-urls",
      endpoint,
      "--advertise-client-urls",
      endpoint,
      "--listen-peer-urls",
      `http://127.0.0.1:${peer}`,
      "--initial-advertise-peer-urls",
      `http://127.0.0.1:${peer}`,
      ...(extra.includes("--initial-cluster") ? [] : ["--initial-cluster", `${name}=http://127.0.0.1:${peer}`]),
      "--log-level",
      "error",
      ...extra,
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  proc.stderr?.on("data", (d) => (stderr += d));
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      await ready(endpoint);
      break;
    } catch {
      // not up yet
    }
    if (proc.exitCode !== null || Date.now() > deadline) {
      proc.kill("SIGKILL");
      throw new Error(`etcd did not start: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    endpoint,
    dataDir,
    process: proc,
    async stop() {
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once("exit", r));
        proc.kill("SIGTERM");
        await Promise.race([exited, sleep(3000, undefined, { ref: false })]);
        if (proc.exitCode === null) proc.kill("SIGKILL");
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface EtcdCluster {
  members: EtcdInstance[];
  endpoints: string[];
  stop(): Promise<void>;
}

/** Starts an n-member etcd cluster on loopback, each member with its own data dir. */
export async function startEtcdCluster(n = 3, extra: string[] = []): Promise<EtcdCluster> {
  const ports: Array<{ client: number; peer: number }> = [];
  for (let i = 0; i < n; i++) ports.push({ client: await freePort(), peer: await freePort() });
  const initial = ports.map((p, i) => `m${i}=http://127.0.0.1:${p.peer}`).join(",");
  const members = await Promise.all(
    ports.map((p, i) =>
      startEtcd(["--initial-cluster", initial, "--initial-cluster-token", `crms-test-${ports[0]?.peer}`, ...extra], {
        name: `m${i}`,
        client: p.client,
        peer: p.peer,
      }),
    ),
  );
  return {
    members,
    endpoints: members.map((m) => m.endpoint),
    async stop() {
      await Promise.all(members.map((m) => m.stop()));
    },
  };
}
