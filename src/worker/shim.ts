/**
 * The run shim (clients/go/cmd/crms-shim): a small static helper that owns one
 * run's process group, so a run outlives its worker process, and that records
 * in the run directory what a restarted worker needs to re-adopt the run or to
 * report how it ended. This module finds the binary and reads its records.
 */
import { execFile } from "node:child_process";
import { existsSync, renameSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** How a worker runs jobs through the shim. */
export interface ShimOptions {
  /** The crms-shim executable. */
  path: string;
  /** The worker's lease file (see Lease); unset: runs are not fenced. */
  leaseFile?: string;
  /** Seconds between SIGTERM and SIGKILL when the shim fences or is told to stop. */
  killGraceSeconds: number;
}

/** `<run dir>/pid`: written by the shim once the command runs. */
export interface PidRecord {
  /** The command's pid, also its process group id. */
  pid: number;
  /** Field 22 of /proc/<pid>/stat when it started (clock ticks after boot): rules out a reused pid. */
  start: number;
  /** The shim's own pid. */
  shim: number;
  /** When the command started, Unix ms. */
  started_ms: number;
}

/**
 * `<run dir>/exit`: written by the shim once the command and its whole group
 * are gone. The usage fields come from wait4's rusage of the run's processes
 * (absent from an older shim's record, or when the command never ran).
 */
export interface ExitRecord {
  exit_code?: number;
  signal?: string;
  timed_out?: boolean;
  /** Ended by the shim because the worker's lease ran out. */
  fenced?: boolean;
  /** Ended because the shim itself got SIGTERM or SIGINT. */
  killed?: boolean;
  error?: string;
  ended_ms?: number;
  /** User plus system CPU seconds. */
  cpu_seconds?: number;
  /** Largest resident set, bytes. */
  max_rss_bytes?: number;
  /** From start to end, seconds. */
  wall_seconds?: number;
  /** GPUs reserved (-gpus) times wall seconds. */
  gpu_seconds?: number;
  /** How -memory was enforced: "cgroup" (memory.max) or "rlimit" (RLIMIT_AS). */
  memory_limit?: "cgroup" | "rlimit";
}

/** What a run used, as JobFinished.usage carries it. */
export interface RunUsage {
  cpuSeconds: number;
  maxRssBytes: bigint;
  wallSeconds: number;
  gpuSeconds: number;
}

/** The usage in an exit record; undefined when the record has none (an older shim, a command that never ran). */
export function usageOf(record: ExitRecord): RunUsage | undefined {
  if (record.cpu_seconds === undefined || record.wall_seconds === undefined) return undefined;
  return {
    cpuSeconds: record.cpu_seconds,
    maxRssBytes: BigInt(Math.max(0, Math.floor(record.max_rss_bytes ?? 0))),
    wallSeconds: record.wall_seconds,
    gpuSeconds: record.gpu_seconds ?? 0,
  };
}

/**
 * Which memory limit runs with a reservation get on this machine, in one line
 * (`crms-shim -memory-check`); undefined when the shim cannot tell.
 */
export async function memoryLimitOf(shim: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(shim, ["-memory-check"], { timeout: 5_000 }, (err, stdout) =>
      resolve(err ? undefined : stdout.trim() || undefined),
    );
  });
}

/** Marker a worker writes into a run directory once the control plane acknowledged the run's report. */
export const ACKED_FILE = "acked";

/** The install step named when the shim is missing. */
export const SHIM_INSTALL = "run scripts/setup.sh (it builds bin/crms-shim with `go build`), or pass --shim PATH";

/**
 * The shim binary: `explicit` (a flag), else $CRMS_SHIM, else bin/crms-shim of
 * this package (from the sources or from dist/). Undefined when none exists.
 */
export function findShim(explicit?: string): string | undefined {
  const given = explicit || process.env.CRMS_SHIM;
  if (given) return path.resolve(given);
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = path.join(dir, "bin", "crms-shim");
    if (existsSync(candidate)) return candidate;
    dir = path.dirname(dir);
  }
  return undefined;
}

async function readJson<T>(file: string): Promise<T | undefined> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch {
    return undefined;
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined;
  }
}

/** The run's pid record, if the shim wrote it. */
export function readPidRecord(runDir: string): Promise<PidRecord | undefined> {
  return readJson<PidRecord>(path.join(runDir, "pid"));
}

/** The run's exit record, if the shim wrote it. */
export function readExitRecord(runDir: string): Promise<ExitRecord | undefined> {
  return readJson<ExitRecord>(path.join(runDir, "exit"));
}

/** Fields of /proc/<pid>/stat after the command name: [state, ppid, pgrp, ...]; undefined if gone. */
async function procStat(pid: number): Promise<string[] | undefined> {
  if (!(pid > 0)) return undefined;
  try {
    const line = await readFile(`/proc/${pid}/stat`, "utf8");
    return line.slice(line.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

/** Whether `pid` is a live (not zombie) process that started at `start` ticks (0: any start). */
export async function processAlive(pid: number, start = 0): Promise<boolean> {
  const f = await procStat(pid);
  if (!f || f[0] === "Z" || f[0] === "X") return false;
  return start === 0 || Number(f[19]) === start;
}

/**
 * The worker's lease: `<dataDir>/lease` holds a deadline in Unix ms until
 * which its runs may go on. The worker moves it to (last acknowledged
 * heartbeat + grace) and never back; a shim past it ends its run. Written
 * synchronously through a rename, so a shim never reads a partial file and a
 * run never starts before its deadline is on disk.
 */
export class Lease {
  readonly file: string;
  #deadline = 0;

  constructor(dataDir: string) {
    this.file = path.resolve(dataDir, "lease");
  }

  /** The current deadline (Unix ms); 0 before the first extension by this process. */
  get deadline(): number {
    return this.#deadline;
  }

  /** Moves the deadline forward to `until` (never back); `write`: also to the file, for the shims. */
  extend(until: number, write = true): void {
    if (until <= this.#deadline) return;
    this.#deadline = until;
    if (!write) return;
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, `${Math.floor(until)}\n`);
    renameSync(tmp, this.file);
  }
}
