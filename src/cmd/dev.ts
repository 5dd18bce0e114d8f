/**
 * `crms dev`: a one-machine cluster like `nomad agent -dev`: a one-member etcd
 * (Debian's etcd-server), the control plane and one local worker. Ctrl-C stops
 * all three and leaves no process behind.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { cpus, hostname } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { DEV_FLAGS, SERVER_DEFAULTS, VERSION } from "../config.js";
import { startServer } from "../server/server.js";
import { startHttp } from "../web/http.js";
import { createWorker } from "../worker/worker.js";
import { CliError } from "./flags.js";
import { setHeapGrowth } from "./heap.js";
import { stateDir } from "./paths.js";

function which(bin: string): string | undefined {
  const r = spawnSync("sh", ["-c", `command -v ${bin}`], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

async function waitHealthy(endpoint: string, exited: () => boolean, log: () => string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      if ((await fetch(`${endpoint}/health`)).ok) return;
    } catch {
      // not yet
    }
    if (exited() || Date.now() > deadline) throw new CliError(`etcd did not start:\n${log()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Runs `crms dev ARGS` until Ctrl-C or until etcd exits; the exit code. */
export async function dev(args: string[]): Promise<number> {
  const { values: v } = parseArgs({
    args,
    options: DEV_FLAGS,
    strict: true,
  });
  const etcdBin = process.env.ETCD_BIN || which("etcd") || (which("/usr/bin/etcd") ? "/usr/bin/etcd" : undefined);
  if (!etcdBin) {
    throw new CliError(
      "etcd is not installed. Install it with: sudo apt-get install -y etcd-server (or run `npm run dev`, which does)",
    );
  }
  const home = (v["data-dir"] as string) ?? join(stateDir(), "dev");
  mkdirSync(home, { recursive: true });
  const clientPort = Number(v["etcd-port"]);
  const endpoint = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${clientPort + 1}`;
  let etcdLog = "";
  const etcd = spawn(
    etcdBin,
    [
      "--name",
      "crms-dev",
      "--data-dir",
      join(home, "etcd"),
      "--listen-client-urls",
      endpoint,
      "--advertise-client-urls",
      endpoint,
      "--listen-peer-urls",
      peer,
      "--initial-advertise-peer-urls",
      peer,
      "--initial-cluster",
      `crms-dev=${peer}`,
      "--log-level",
      "warn",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  etcd.stderr?.on("data", (d) => (etcdLog = (etcdLog + d).slice(-4000)));
  const etcdExited = new Promise<void>((r) => etcd.once("exit", () => r()));
  const stopEtcd = async () => {
    if (etcd.exitCode !== null || etcd.signalCode !== null) return;
    etcd.kill("SIGTERM");
    const t = setTimeout(() => etcd.kill("SIGKILL"), 5000);
    await etcdExited;
    clearTimeout(t);
  };
  let server: Awaited<ReturnType<typeof startServer>> | undefined;
  let worker: ReturnType<typeof createWorker> | undefined;
  let web: Awaited<ReturnType<typeof startHttp>> | undefined;
  try {
    await waitHealthy(
      endpoint,
      () => etcd.exitCode !== null,
      () => etcdLog,
    );
    const listen = `localhost:${v.port}`;
    server = await startServer({ listen, etcd: [endpoint], logLevel: "warn", dataDir: join(home, "server") });
    setHeapGrowth(SERVER_DEFAULTS.heapGrowthPercent);
    if (server.overCapacity) throw new CliError(server.overCapacity.message);
    const name = hostname();
    worker = createWorker({
      name,
      slots: v.slots ? Number(v.slots) : cpus().length,
      servers: [server.address],
      labels: { dev: "true" },
      dataDir: join(home, "worker"),
      version: VERSION,
    });
    await worker.start();
    web = await startHttp(server, `localhost:${v["http-port"]}`);
    process.stdout.write(
      [
        "crms dev cluster is up:",
        `  control plane  ${server.address}   (gRPC; grpcurl -plaintext ${server.address} list)`,
        `  web page       ${web.url}`,
        `  etcd           ${endpoint}   (data in ${join(home, "etcd")})`,
        `  worker         ${name}`,
        "",
        "Try, in another terminal:",
        `  export CRMS_SERVER=${server.address}`,
        "  crms submit --wait -- echo hello",
        "  crms jobs",
        "  crms workers",
        "",
        "Ctrl-C stops etcd, the control plane and the worker.",
        "",
      ].join("\n"),
    );
    await new Promise<void>((resolve) => {
      process.once("SIGINT", resolve);
      process.once("SIGTERM", resolve);
      etcd.once("exit", resolve);
    });
    process.stdout.write("\nstopping...\n");
  } finally {
    await worker?.stop({ killRuns: true }).catch(() => undefined);
    await web?.close().catch(() => undefined);
    await server?.stop().catch(() => undefined);
    await stopEtcd();
  }
  process.stdout.write("stopped\n");
  return 0;
}
