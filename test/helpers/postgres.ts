/**
 * Starts a real PostgreSQL (Debian's `postgresql` package) on a free loopback
 * port with a temporary data directory, for one test file. As root it runs as
 * the unprivileged `postgres` user (else `nobody`), since postgres refuses root.
 */

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { freePort } from "./etcd.js";

const INSTALL = "install it with `bash scripts/setup.sh test` (Debian: apt-get install postgresql)";

/** The bin directory of the newest installed PostgreSQL, or an error naming the install step. */
export function postgresBin(): string {
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root) ? readdirSync(root).filter((v) => existsSync(join(root, v, "bin", "initdb"))) : [];
  const newest = versions.sort((a, b) => Number(b) - Number(a))[0];
  if (!newest) throw new Error(`PostgreSQL (initdb, postgres under ${root}/<version>/bin) is missing: ${INSTALL}`);
  return join(root, newest, "bin");
}

/** The user the server runs as: root may not run postgres. */
function runAs(): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  for (const user of ["postgres", "nobody"]) {
    try {
      const uid = Number(execFileSync("id", ["-u", user]).toString().trim());
      const gid = Number(execFileSync("id", ["-g", user]).toString().trim());
      return { uid, gid };
    } catch {}
  }
  throw new Error("running as root, and neither a postgres nor a nobody user exists to run PostgreSQL as");
}

export interface PostgresInstance {
  /** postgres://crms@127.0.0.1:PORT/postgres */
  url: string;
  port: number;
  dataDir: string;
  process?: ChildProcess;
  /** Stops the server (fast shutdown), keeping its data. */
  stop(): Promise<void>;
  /** Starts it again on the same port and data. */
  start(): Promise<void>;
  /** Stops it and removes its data. */
  destroy(): Promise<void>;
}

function accepting(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

export async function startPostgres(): Promise<PostgresInstance> {
  const bin = postgresBin();
  const who = runAs();
  const base = mkdtempSync(join(tmpdir(), "crms-pg-"));
  const dataDir = join(base, "data");
  const socketDir = base;
  if (who.uid !== undefined) {
    chownSync(base, who.uid, who.gid as number);
    chmodSync(base, 0o700);
  }
  // Node switches user itself (spawn's uid/gid), so signals reach postgres directly.
  const ids = who.uid !== undefined ? { uid: who.uid, gid: who.gid as number } : {};
  const env = { ...process.env, HOME: base };
  execFileSync(join(bin, "initdb"), ["-D", dataDir, "-U", "crms", "--auth=trust", "--no-sync", "-E", "UTF8"], {
    stdio: "pipe",
    cwd: base,
    env,
    ...ids,
  });
  const port = await freePort();
  let log = "";
  const pg: PostgresInstance = {
    url: `postgres://crms@127.0.0.1:${port}/postgres`,
    port,
    dataDir,
    async start() {
      const args = ["-D", dataDir, "-p", String(port), "-k", socketDir, "-h", "127.0.0.1", "-F", "-c", "fsync=off"];
      const proc = spawn(join(bin, "postgres"), args, { stdio: ["ignore", "pipe", "pipe"], cwd: base, env, ...ids });
      proc.stdout?.on("data", (d) => (log += d));
      proc.stderr?.on("data", (d) => (log += d));
      pg.process = proc;
      const deadline = Date.now() + 30_000;
      while (!(await accepting(port))) {
        if (proc.exitCode !== null) throw new Error(`postgres exited (${proc.exitCode}):\n${log}`);
        if (Date.now() > deadline) throw new Error(`postgres did not accept connections within 30 s:\n${log}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async stop() {
      const proc = pg.process;
      if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise<void>((r) => proc.once("exit", () => r()));
      // SIGINT: postgres' fast shutdown.
      proc.kill("SIGINT");
      await Promise.race([exited, sleep(15_000, undefined, { ref: false })]);
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill("SIGKILL");
        await exited;
      }
      while (await accepting(port)) await new Promise((r) => setTimeout(r, 100));
    },
    async destroy() {
      await pg.stop();
      rmSync(base, { recursive: true, force: true });
    },
  };
  await pg.start();
  return pg;
}
