/**
 * The parent's side of the bench processes: spawns them, reads their JSON
 * lines, sends commands, and makes sure every process and temporary
 * directory is gone when the run ends, however it ends.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import { createWriteStream, mkdtempSync, readFileSync, rmSync, type WriteStream } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { progress, sleep } from "./util.js";

export const BENCH_DIR = fileURLToPath(new URL("..", import.meta.url));
export const REPO_DIR = fileURLToPath(new URL("../..", import.meta.url));
export const CRMS_BIN = join(REPO_DIR, "bin", "crms.js");

const children = new Set<ChildProcess>();
const tempDirs = new Set<string>();
const logStreams = new Set<WriteStream>();

/** A temporary directory removed at exit. */
export function tempDir(label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `crms-bench-${label}-`));
  tempDirs.add(dir);
  return dir;
}

export function forgetTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  tempDirs.delete(dir);
}

function killAllNow(): void {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null && c.pid) {
      try {
        process.kill(c.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  }
  children.clear();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}

process.on("exit", killAllNow);
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.once(sig, () => {
    progress(`${sig}: stopping every bench process`);
    killAllNow();
    process.exit(130);
  });
}

/** A spawned process whose stdout lines are parsed as JSON messages ("message" events). */
export class Proc extends EventEmitter {
  readonly messages: Record<string, unknown>[] = [];
  readonly exited: Promise<number | null>;
  private tail: string[] = [];

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
    logFile?: string,
  ) {
    super();
    children.add(child);
    this.exited = new Promise((resolve) =>
      child.once("exit", (code, signal) => {
        children.delete(child);
        resolve(code ?? (signal ? -1 : null));
      }),
    );
    let log: WriteStream | undefined;
    if (logFile) {
      log = createWriteStream(logFile, { flags: "a" });
      logStreams.add(log);
    }
    if (child.stdout) {
      createInterface({ input: child.stdout }).on("line", (line) => {
        if (line.startsWith("{")) {
          try {
            const msg = JSON.parse(line) as Record<string, unknown>;
            this.messages.push(msg);
            this.emit("message", msg);
            return;
          } catch {
            // not one of ours
          }
        }
        this.keep(line);
        log?.write(`${line}\n`);
      });
    }
    if (child.stderr) {
      createInterface({ input: child.stderr }).on("line", (line) => {
        this.keep(line);
        log?.write(`${line}\n`);
        if (process.env.BENCH_VERBOSE) process.stderr.write(`  [${this.name}] ${line}\n`);
      });
    }
    child.stdin?.on("error", () => undefined);
  }

  private keep(line: string): void {
    this.tail.push(line);
    if (this.tail.length > 40) this.tail.shift();
  }

  /** The last lines it wrote that were not JSON messages (for error reports). */
  lastLines(): string {
    return this.tail.join("\n");
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  send(cmd: Record<string, unknown>): void {
    if (this.running && this.child.stdin?.writable) this.child.stdin.write(`${JSON.stringify(cmd)}\n`);
  }

  /** Resolves with the first message (already received or future) that `pred` accepts. */
  waitFor(
    pred: (m: Record<string, unknown>) => boolean,
    timeoutMs: number,
    what = "message",
  ): Promise<Record<string, unknown>> {
    const known = this.messages.find(pred);
    if (known) return Promise.resolve(known);
    return new Promise((resolve, reject) => {
      const onMsg = (m: Record<string, unknown>) => {
        if (!pred(m)) return;
        cleanup();
        resolve(m);
      };
      const onExit = () => {
        cleanup();
        reject(new Error(`${this.name} exited before ${what}:\n${this.lastLines()}`));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`${this.name}: no ${what} within ${timeoutMs} ms:\n${this.lastLines()}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.off("message", onMsg);
        this.child.off("exit", onExit);
      };
      this.on("message", onMsg);
      this.child.once("exit", onExit);
    });
  }

  /** Asks it to stop (a command, then SIGTERM, then SIGKILL) and waits for the exit. */
  async stop(graceMs = 5000, command?: Record<string, unknown>): Promise<number | null> {
    if (!this.running) return this.exited;
    if (command) {
      this.send(command);
      if (await Promise.race([this.exited.then(() => true), sleep(graceMs).then(() => false)])) return this.exited;
    }
    this.child.stdin?.end();
    this.child.kill("SIGTERM");
    if (await Promise.race([this.exited.then(() => true), sleep(graceMs).then(() => false)])) return this.exited;
    this.child.kill("SIGKILL");
    return this.exited;
  }
}

/** Starts a bench script (bench/<script>.ts) as its own node process through tsx. */
export function startScript(
  name: string,
  script: string,
  args: string[],
  opts: { nodeArgs?: string[]; logFile?: string } = {},
): Proc {
  const child = spawn(
    process.execPath,
    [...(opts.nodeArgs ?? []), "--import", "tsx", join(BENCH_DIR, script), ...args],
    { cwd: REPO_DIR, stdio: ["pipe", "pipe", "pipe"], env: { ...process.env } },
  );
  return new Proc(name, child, opts.logFile);
}

/** Starts a node program (the crms CLI) as its own process. */
export function startNode(
  name: string,
  args: string[],
  opts: { nodeArgs?: string[]; logFile?: string; env?: Record<string, string> } = {},
): Proc {
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), ...args], {
    cwd: REPO_DIR,
    stdio: ["pipe", "pipe", "pipe"],
    env: { ...process.env, ...opts.env },
  });
  return new Proc(name, child, opts.logFile);
}

/** Starts any executable. */
export function startExe(name: string, file: string, args: string[], logFile?: string): Proc {
  const child = spawn(file, args, { cwd: REPO_DIR, stdio: ["ignore", "pipe", "pipe"] });
  return new Proc(name, child, logFile);
}

/** Stops everything still running (used at the end of a scenario and on errors). */
export async function stopAll(): Promise<void> {
  const list = [...children];
  await Promise.all(
    list.map(async (c) => {
      if (c.exitCode !== null || c.signalCode !== null) return;
      const exited = new Promise((r) => c.once("exit", r));
      c.kill("SIGTERM");
      if (!(await Promise.race([exited.then(() => true), sleep(4000).then(() => false)]))) c.kill("SIGKILL");
    }),
  );
  for (const s of logStreams) s.end();
  logStreams.clear();
}

/** Removes the temporary directories now. */
export function removeTempDirs(): void {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}

/** Memory and CPU of a process from /proc. */
export function procStatus(pid: number): {
  rssBytes: number;
  anonBytes: number;
  cpuSeconds: number;
  childCpuSeconds: number;
} {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const rss = /VmRSS:\s+(\d+)\s+kB/.exec(status);
  // The process's own memory: RSS also counts the pages of its executable, shared by every process running it.
  const anon = /RssAnon:\s+(\d+)\s+kB/.exec(status);
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may contain spaces) start at ") ".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  // Children it waited for (a worker's job processes).
  const children = Number(fields[13]) + Number(fields[14]);
  return {
    rssBytes: Number(rss?.[1] ?? 0) * 1024,
    anonBytes: Number(anon?.[1] ?? 0) * 1024,
    cpuSeconds: (utime + stime) / CLK_TCK,
    childCpuSeconds: children / CLK_TCK,
  };
}

/** Linux's USER_HZ; 100 on every mainstream kernel configuration. */
const CLK_TCK = 100;

/** Busy CPU seconds of the whole machine (all cores) from /proc/stat, and the 1-minute load average. */
export function machineCpu(): { busySeconds: number; load1: number } {
  const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0] ?? "";
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user)
  const busy = (v[0] ?? 0) + (v[1] ?? 0) + (v[2] ?? 0) + (v[5] ?? 0) + (v[6] ?? 0) + (v[7] ?? 0);
  const load1 = Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]);
  return { busySeconds: busy / CLK_TCK, load1 };
}
