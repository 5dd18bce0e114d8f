/**
 * What a worker offers (Hello.resources): cpus, memory and gpus detected at
 * start, each overridable by a flag, plus named countable resources.
 */
import { execFile } from "node:child_process";
import { availableParallelism, totalmem } from "node:os";

/** A worker's resources, as Hello.resources carries them. */
export interface WorkerResources {
  cpus: number;
  memoryBytes: bigint;
  gpus: number;
  named: Record<string, bigint>;
}

/** Named resource names: 1 to 63 of [a-z0-9_.-] (proto Resources.named). */
export const RESOURCE_NAME = /^[a-z0-9_.-]{1,63}$/;

/** GPUs `nvidia-smi -L` lists (one line each); 0 when it is absent, fails or takes over 10 s. */
export function detectGpus(program = "nvidia-smi"): Promise<number> {
  return new Promise((resolve) => {
    execFile(program, ["-L"], { timeout: 10_000 }, (err, stdout) => {
      resolve(err ? 0 : stdout.split("\n").filter((line) => line.trim() !== "").length);
    });
  });
}

/**
 * This machine's resources: CPUs the process may use (at least `slots`, so
 * that `--slots N` alone still runs N default one-cpu jobs at once, as
 * before resources), total memory, GPUs (nvidia-smi -L), with `override` on top.
 */
export async function detectResources(override: Partial<WorkerResources> = {}, slots = 1): Promise<WorkerResources> {
  return {
    cpus: override.cpus ?? Math.max(availableParallelism(), slots),
    memoryBytes: override.memoryBytes ?? BigInt(totalmem()),
    gpus: override.gpus ?? (await detectGpus()),
    named: override.named ?? {},
  };
}

const UNITS = ["", "K", "M", "G", "T", "P"];

/** A byte count for people: 32 GiB, 1.5 MiB, 512 B. */
export function formatBytes(bytes: bigint): string {
  let n = Number(bytes);
  let unit = 0;
  while (n >= 1024 && unit < UNITS.length - 1) {
    n /= 1024;
    unit++;
  }
  if (unit === 0) return `${n} B`;
  return `${Number.isInteger(n) ? n : n.toFixed(1)} ${UNITS[unit]}iB`;
}

/** One line for the start log: `cpus 8, memory 32 GiB, gpus 0, license=4`. */
export function describeResources(r: WorkerResources): string {
  const named = Object.entries(r.named).map(([name, n]) => `, ${name}=${n}`);
  return `cpus ${r.cpus}, memory ${formatBytes(r.memoryBytes)}, gpus ${r.gpus}${named.join("")}`;
}
