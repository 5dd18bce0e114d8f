/**
 * The machine's raw process spawn rate: runs a program N times, C at a time,
 * with node's child_process.spawn (stdio ignored) and with execa (as the
 * worker's runner does, output to files by descriptor).
 *
 *   tsx bench/spawner.ts --jobs N --concurrency C [--program /bin/true] [--modes spawn,execa]
 */
import { spawn } from "node:child_process";
import { closeSync, mkdtempSync, openSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { emit, hardDeadline, nowMs, numFlag, parseFlags, progress } from "./lib/util.js";

const { flags } = parseFlags(process.argv.slice(2));
const jobs = numFlag(flags, "jobs", 1000);
const concurrency = Math.max(1, numFlag(flags, "concurrency", 8));
const program = flags.get("program") ?? "/bin/true";
const modes = (flags.get("modes") ?? "spawn,execa").split(",");
hardDeadline(numFlag(flags, "max-seconds", 300), "spawner");

const dir = mkdtempSync(join(tmpdir(), "crms-bench-spawn-"));

function spawnOnce(): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, [], { stdio: "ignore" });
    child.once("error", reject);
    child.once("exit", () => resolve());
  });
}

async function execaOnce(i: number): Promise<void> {
  const out = openSync(join(dir, `out-${i % 64}`), "w");
  const err = openSync(join(dir, `err-${i % 64}`), "w");
  try {
    // As the worker's runner does: descriptors (execa's types only list 3 to 9), own process group.
    await execa(program, [], {
      stdin: "ignore",
      stdout: out as 3,
      stderr: err as 3,
      reject: false,
      detached: true,
      cleanup: false,
      extendEnv: false,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
    });
  } finally {
    closeSync(out);
    closeSync(err);
  }
}

async function measure(name: string, op: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  const start = nowMs();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < jobs) await op(next++);
    }),
  );
  const perS = jobs / ((nowMs() - start) / 1000);
  progress(`raw ${name} of ${program}: ${Math.round(perS)}/s (${jobs} at concurrency ${concurrency})`);
  return perS;
}

try {
  const out: Record<string, number> = {};
  if (modes.includes("spawn")) out.raw_spawn_per_s = await measure("spawn", spawnOnce);
  if (modes.includes("execa")) out.raw_execa_per_s = await measure("execa", execaOnce);
  emit({ type: "final", jobs, concurrency, program, ...out });
} catch (err) {
  emit({ type: "error", error: String(err) });
  process.exitCode = 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
