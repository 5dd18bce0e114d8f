/**
 * How the CLI writes: `-o table|wide|json|yaml|name`, the CLI's own JSON
 * (state names and text tails), colour only on a terminal, tables that fit
 * the terminal, and a quiet exit when the reader of a pipe goes away.
 */
import { constants } from "node:os";
import { toJson } from "@bufbuild/protobuf";
import pc from "picocolors";
import YAML from "yaml";
import { type Job, JobSchema, JobState } from "../../gen/crms/v1/job_pb.js";
import { type Worker, WorkerSchema } from "../../gen/crms/v1/worker_pb.js";
import type { Output } from "../cmd/flags.js";

export type { Output };

/**
 * Colour for people only: on when the stream is a terminal (or FORCE_COLOR is
 * set), off when NO_COLOR is set (any non-empty value) or TERM is dumb.
 */
export function colourOn(stream: NodeJS.WriteStream = process.stdout, env = process.env): boolean {
  if (env.NO_COLOR) return false;
  if (env.FORCE_COLOR && env.FORCE_COLOR !== "0") return true;
  return Boolean(stream.isTTY) && env.TERM !== "dumb";
}

/** The painter of state words: green done, red failed, yellow waiting, cyan running. */
export function stateColour(enabled = colourOn()): (text: string) => string {
  const c = pc.createColors(enabled);
  return (text) => {
    const word = text.split(/[\s[(]/)[0] ?? "";
    switch (word) {
      case "SUCCEEDED":
      case "UP":
        return c.green(text);
      case "FAILED":
      case "LOST":
      case "DOWN":
        return c.red(text);
      case "KILLED":
      case "DISCONNECTED":
        return c.magenta(text);
      case "PENDING":
      case "HELD":
      case "DRAINING":
        return c.yellow(text);
      case "RUNNING":
      case "ASSIGNED":
        return c.cyan(text);
      default:
        return text;
    }
  };
}

/** The width tables must fit: the terminal's, else $COLUMNS, else no limit (a pipe gets whole lines). */
export function terminalWidth(stream: NodeJS.WriteStream = process.stdout): number {
  if (stream.isTTY && stream.columns) return stream.columns;
  const env = Number(process.env.COLUMNS);
  return Number.isInteger(env) && env > 0 ? env : Number.POSITIVE_INFINITY;
}

const ENUM_PREFIX = /^(JOB_STATE|WORKER_STATE|DEPENDENCY_CONDITION|WATCH_EVENT_TYPE|OUTPUT_STREAM)_/;
const TAIL_KEYS = new Set(["stdoutTail", "stderrTail"]);

/** The API's canonical JSON made friendlier: enum names as the CLI shows them, output tails as text. */
function friendly(value: unknown, key = ""): unknown {
  if (Array.isArray(value)) return value.map((v) => friendly(v, key));
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, friendly(v, k)]));
  }
  if (typeof value === "string") {
    if (TAIL_KEYS.has(key)) return Buffer.from(value, "base64").toString("utf8");
    if (["state", "outcome", "condition"].includes(key)) return value.replace(ENUM_PREFIX, "");
  }
  return value;
}

/**
 * The CLI's `-o json|yaml` form of a job. It differs from the API's canonical
 * protobuf JSON (grpcurl, the Connect API): `SUCCEEDED` not
 * `JOB_STATE_SUCCEEDED`, and `stdoutTail`/`stderrTail` as text, not base64.
 */
export function jobJson(job: Job): unknown {
  return friendly(toJson(JobSchema, job));
}

/** The CLI's `-o json|yaml` form of a worker (`UP`, not `WORKER_STATE_UP`). */
export function workerJson(worker: Worker): unknown {
  return friendly(toJson(WorkerSchema, worker));
}

/** Writes data in the chosen form: json, yaml, name (one per line) or the table from `table()`. */
export function emit(output: Output | undefined, data: unknown, names: string[], table: () => string): void {
  switch (output) {
    case "json":
      process.stdout.write(`${JSON.stringify(data, null, 2)}\n`);
      return;
    case "yaml":
      process.stdout.write(YAML.stringify(data));
      return;
    case "name":
      if (names.length) process.stdout.write(`${names.join("\n")}\n`);
      return;
    default:
      process.stdout.write(`${table()}\n`);
  }
}

/**
 * `submit --wait`'s exit code, like `timeout(1)` and the shell: 0 when the job
 * succeeded; 124 when its --timeout ended it; 128+N when signal N ended it;
 * 127 when its command could not start (not found, not executable, bad
 * working directory); else the job's own exit code; 1 for anything else
 * (killed before it started, lost, an array with failed tasks).
 */
export function waitExitCode(job: Job): number {
  if (job.state === JobState.SUCCEEDED) return 0;
  if (job.attempts.at(-1)?.timedOut || /^timed out after/.test(job.error)) return 124;
  if (job.signal) {
    const n = (constants.signals as Record<string, number>)[job.signal];
    if (n) return 128 + n;
  }
  if (job.exitCode !== undefined && job.exitCode !== 0) return job.exitCode;
  if (/^(command not found|permission denied|cannot start|working directory)/.test(job.error)) return 127;
  return 1;
}

/** Ends the process quietly when stdout or stderr's reader is gone (`crms jobs | head -1`). */
export function quietOnEpipe(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "EPIPE") process.exit(0);
      throw err;
    });
  }
}
