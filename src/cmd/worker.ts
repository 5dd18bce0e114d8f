/**
 * `crms worker`: runs assigned jobs in its slots until SIGINT or SIGTERM
 * (which kill its runs), SIGUSR2 (which leaves them to the next worker with
 * this name and data dir), or the control plane's refusal.
 */
import { cpus, hostname } from "node:os";
import { defaultServer } from "../../clients/typescript/src/client.js";
import { authMetadata, channelCredentials, securityFromEnv } from "../../clients/typescript/src/security.js";
import { VERSION, WORKER_DEFAULTS, WORKER_FLAGS } from "../config.js";
import { RESOURCE_NAME, type WorkerResources } from "../worker/resources.js";
import { checkCanRunAs, type RunAs, resolveRunAs } from "../worker/run-as.js";
import { createWorker, type Worker, type WorkerOptions } from "../worker/worker.js";
import { byteSize, CliError, int, keyValues, parse, securityOf, untilSignal } from "./flags.js";
import { defaultDataDir } from "./paths.js";

/** A count of a uint32 field of Resources (cpus, gpus). */
function count(value: unknown, what: string): number {
  const n = int(value, what);
  if (n > 2 ** 32 - 1) throw new CliError(`${what} must be at most ${2 ** 32 - 1} (got ${value})`, 2);
  return n;
}

/** --cpus, --memory, --gpus and --resource NAME=N: what the worker offers instead of what it detects. */
export function resourcesOf(v: Record<string, unknown>): Partial<WorkerResources> {
  const named: Record<string, bigint> = {};
  for (const [name, amount] of Object.entries(keyValues(v.resource, "--resource"))) {
    if (!RESOURCE_NAME.test(name)) {
      throw new CliError(`--resource: the name must be 1 to 63 of a-z 0-9 _ . - (got ${JSON.stringify(name)})`, 2);
    }
    named[name] = BigInt(int(amount, `--resource ${name}`));
  }
  const memory = v.memory !== undefined ? BigInt(byteSize(v.memory, "--memory")) : undefined;
  return {
    ...(v.cpus !== undefined ? { cpus: count(v.cpus, "--cpus") } : {}),
    ...(memory !== undefined ? { memoryBytes: memory } : {}),
    ...(v.gpus !== undefined ? { gpus: count(v.gpus, "--gpus") } : {}),
    ...(Object.keys(named).length > 0 ? { named } : {}),
  };
}

/** Runs `crms worker ARGS` until it stops; the exit code. */
export async function worker(args: string[]): Promise<number> {
  const { values: v } = parse(args, WORKER_FLAGS);
  let security: Pick<WorkerOptions, "credentials" | "metadata">;
  let runAs: RunAs | undefined;
  try {
    const sec = securityFromEnv(securityOf(v));
    security = { credentials: channelCredentials(sec), metadata: authMetadata(sec) };
    if (v["run-as"]) {
      runAs = resolveRunAs(v["run-as"] as string);
      checkCanRunAs(runAs);
    }
  } catch (err) {
    throw new CliError((err as Error).message, 2);
  }
  const resources = resourcesOf(v);
  const name = (v.name as string) ?? hostname();
  // Flags are checked before the worker is made: only what createWorker refuses is about --name.
  const slots = int(v.slots, "--slots", cpus().length);
  const labels = keyValues(v.label, "--label");
  const shipOutputBytes = int(v["output-cap"], "--output-cap", WORKER_DEFAULTS.shipOutputBytes);
  let w: Worker;
  try {
    w = createWorker({
      name,
      slots,
      servers: ((v.server as string) ?? defaultServer()).split(","),
      labels,
      dataDir: (v["data-dir"] as string) ?? defaultDataDir(`worker-${name}`),
      version: VERSION,
      ...security,
      ...(runAs ? { runAs } : {}),
      shipOutputBytes,
      ...(v.shim !== undefined ? { shim: v.shim as string } : {}),
      resources,
    });
  } catch (err) {
    throw new CliError(`--name: ${(err as Error).message}`, 2);
  }
  await w.start();
  // SIGUSR2: exit at once and leave the runs to the next worker with this name and data dir (an upgrade).
  const leave = new Promise<string>((resolve) => process.once("SIGUSR2", () => resolve("SIGUSR2")));
  const sig = await Promise.race([untilSignal(), leave, w.stopped.then(() => "stopped")]);
  if (sig === "SIGUSR2") await w.stop({ killRuns: false, keepRuns: true, reason: "SIGUSR2" });
  else if (sig !== "stopped") await w.stop({ killRuns: true });
  if (w.refusal) throw new CliError(w.refusal, 1);
  return 0;
}
