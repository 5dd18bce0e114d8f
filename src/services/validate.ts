/** Input checks with the limits the contract documents; all fail with INVALID_ARGUMENT. */
import type { DescEnum } from "@bufbuild/protobuf";
import { type Dependency, DependencyConditionSchema, type JobSpec, type Resources } from "../../gen/crms/v1/job_pb.js";
import { invalid } from "../errors.js";
import { checkWorkerName, WORKER_NAME_MAX_BYTES, workerNameProblem } from "../rpc/names.js";
import { MAX_ARRAY_TASKS } from "../scheduler/arrays.js";
import { MAX_DEPENDENCIES } from "../scheduler/dependencies.js";

/** The worker-name check lives with the name rule (src/rpc/names.ts), where src/auth can use it too. */
export { checkWorkerName };

export const LIMITS = {
  argvItems: 1024,
  argvBytes: 128 * 1024,
  envEntries: 256,
  envBytes: 64 * 1024,
  labels: 64,
  labelBytes: 4096,
  nameBytes: 256,
  requestIdBytes: 128,
  workerNameBytes: WORKER_NAME_MAX_BYTES,
  slots: 100_000,
  pageSize: 1000,
  watchIds: 10_000,
} as const;

const JOB_ID = /^[1-9][0-9]{0,15}$/;
const LABEL_KEY = /^[A-Za-z0-9][A-Za-z0-9._/-]*$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

const bytes = (s: string) => Buffer.byteLength(s);

function noNul(what: string, s: string): void {
  if (s.includes("\0")) throw invalid(`${what} must not contain a NUL byte`);
}

function checkMap(
  what: string,
  m: { [k: string]: string },
  maxEntries: number,
  maxBytes: number,
  keyPattern?: RegExp,
): void {
  const entries = Object.entries(m);
  if (entries.length > maxEntries) throw invalid(`${what}: at most ${maxEntries} entries (got ${entries.length})`);
  let total = 0;
  for (const [k, v] of entries) {
    if (!k) throw invalid(`${what}: empty key`);
    noNul(`${what} key`, k);
    noNul(`${what} value of ${k}`, v);
    if (keyPattern && !keyPattern.test(k))
      throw invalid(`${what}: key ${JSON.stringify(k.slice(0, 40))} must match ${keyPattern}`);
    total += bytes(k) + bytes(v);
  }
  if (total > maxBytes) throw invalid(`${what}: at most ${maxBytes} bytes in total (got ${total})`);
}

/** Checks a job id's form (NOT_FOUND comes later for well-formed unknown ids). */
export function checkJobId(id: string, what = "job id"): void {
  if (!id) throw invalid(`${what} is required`);
  if (!JOB_ID.test(id)) throw invalid(`${what} ${JSON.stringify(id.slice(0, 40))} is not a job id (decimal digits)`);
}

/** Checks an enum field: a value the contract does not define is refused, naming the ones it does. */
export function checkEnum(what: string, value: number, schema: DescEnum): void {
  if (schema.values.some((v) => v.number === value)) return;
  const known = schema.values.map((v) => `${v.number} (${v.name})`).join(", ");
  throw invalid(`${what}: ${value} is not a ${schema.name}; one of ${known}`);
}

/**
 * Checks a page token: only a next_page_token this RPC gave (ListJobs: a job
 * id; ListWorkers: a worker name) is one; the message talks about tokens, not ids.
 */
export function checkPageToken(token: string, rpc: "ListJobs" | "ListWorkers"): void {
  if (!token) return;
  const ok = rpc === "ListJobs" ? JOB_ID.test(token) : workerNameProblem(token) === undefined;
  if (!ok) {
    throw invalid(
      `page_token ${JSON.stringify(token.slice(0, 40))} is not a page token from ${rpc}: pass next_page_token as it was returned, or none for the first page`,
    );
  }
}

/** Checks a revision field: 0 or a positive etcd revision. */
export function checkRevision(what: string, revision: bigint, zero: string): void {
  if (revision < 0n || revision > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw invalid(`${what} ${revision} is not a revision: give 0 (${zero}) or a revision crms reported`);
  }
}

/** Checks a submitted spec against the limits. */
/** Queue names: 1 to 63 of [a-z0-9_.-], starting with a letter or digit. */
const QUEUE_NAME = /^[a-z0-9][a-z0-9_.-]{0,62}$/;
const RESOURCE_NAME = /^[a-z0-9_.-]{1,63}$/;

/** Throws INVALID_ARGUMENT unless `name` is a well-formed queue name. */
export function checkQueueName(name: string, what = "queue name"): void {
  if (!QUEUE_NAME.test(name))
    throw invalid(
      `${what} ${JSON.stringify(name.slice(0, 64))} must be 1 to 63 of [a-z0-9_.-], starting with a letter or digit`,
    );
}

/** Checks resource amounts and names (a job's request or a worker's offer). */
export function checkResources(r: Resources, what = "resources"): void {
  if (r.cpus > 1_000_000) throw invalid(`${what}: at most 1000000 cpus`);
  if (r.gpus > 1024) throw invalid(`${what}: at most 1024 gpus`);
  if (Object.keys(r.named).length > 32) throw invalid(`${what}: at most 32 named resources`);
  for (const k of Object.keys(r.named)) {
    if (!RESOURCE_NAME.test(k))
      throw invalid(`${what}: name ${JSON.stringify(k.slice(0, 64))} must be 1 to 63 of [a-z0-9_.-]`);
  }
}

export function checkSpec(spec: JobSpec | undefined, requestId: string): JobSpec {
  if (!spec) throw invalid("spec is required");
  if (spec.command.length === 0) throw invalid("command is empty: give at least the program to run");
  if (spec.command.length > LIMITS.argvItems) throw invalid(`command: at most ${LIMITS.argvItems} arguments`);
  if (!spec.command[0]) throw invalid("command: the program (first element) is empty");
  let total = 0;
  for (const arg of spec.command) {
    noNul("command argument", arg);
    total += bytes(arg);
    if (total > LIMITS.argvBytes) throw invalid(`command: at most ${LIMITS.argvBytes} bytes in total`);
  }
  noNul("name", spec.name);
  if (bytes(spec.name) > LIMITS.nameBytes) throw invalid(`name: at most ${LIMITS.nameBytes} bytes`);
  // Printed by the CLI and the page: no control characters (terminal escapes, line breaks).
  if (CONTROL.test(spec.name)) throw invalid("name: control characters (such as newline or ESC) are not allowed");
  noNul("working_dir", spec.workingDir);
  if (bytes(spec.workingDir) > 4096) throw invalid("working_dir: at most 4096 bytes");
  checkMap("env", spec.env, LIMITS.envEntries, LIMITS.envBytes);
  for (const k of Object.keys(spec.env))
    if (k.includes("=")) throw invalid(`env key ${JSON.stringify(k.slice(0, 40))} contains '='`);
  checkMap("labels", spec.labels, LIMITS.labels, LIMITS.labelBytes, LABEL_KEY);
  checkMap("constraints", spec.constraints, LIMITS.labels, LIMITS.labelBytes, LABEL_KEY);
  if (spec.targetWorker) checkWorkerName(spec.targetWorker, "target worker");
  if (spec.maxRetries > 1000) throw invalid("max_retries: at most 1000");
  if (spec.maxLostRetries > 1000) throw invalid("max_lost_retries: at most 1000");
  if (spec.queue) checkQueueName(spec.queue, "queue");
  if (spec.resources) checkResources(spec.resources);
  noNul("request_id", requestId);
  if (bytes(requestId) > LIMITS.requestIdBytes) throw invalid(`request_id: at most ${LIMITS.requestIdBytes} bytes`);
  if (requestId.includes("/")) throw invalid("request_id must not contain '/'");
  return spec;
}

/** Checks the form and count of a submit's dependencies (`after`). */
export function checkDependencies(after: Dependency[]): void {
  if (after.length > MAX_DEPENDENCIES) throw invalid(`after: at most ${MAX_DEPENDENCIES} dependencies`);
  for (const d of after) {
    checkJobId(d.jobId, "after: job id");
    checkEnum(`after: condition for job ${d.jobId}`, d.condition, DependencyConditionSchema);
  }
}

/** Checks an array spec: a non-empty range of at most MAX_ARRAY_TASKS indexes. */
export function checkArray(spec: JobSpec): void {
  const a = spec.array;
  if (!a) return;
  if (a.last < a.first) throw invalid(`array: last index ${a.last} is before first ${a.first}`);
  const n = a.last - a.first + 1;
  if (n > MAX_ARRAY_TASKS) throw invalid(`array: at most ${MAX_ARRAY_TASKS} tasks (got ${n})`);
  if (a.last > 0x7fffffff) throw invalid("array: indexes must be below 2^31");
}

/** Checks the job ids one WatchJobs call names: each a job id, at most LIMITS.watchIds of them. */
export function checkWatchIds(ids: string[]): void {
  if (ids.length > LIMITS.watchIds)
    throw invalid(`ids: at most ${LIMITS.watchIds} job ids per watch (got ${ids.length})`);
  for (const id of ids) checkJobId(id);
}

/** A page size in 1..1000, 0 meaning 100. */
export function pageSize(n: number): number {
  if (n === 0) return 100;
  if (n > LIMITS.pageSize) throw invalid(`page_size: at most ${LIMITS.pageSize}`);
  return n;
}

/** The longest kill grace a KillJob may ask for, in seconds. */
export const MAX_KILL_GRACE_SECONDS = 3600;

/** Checks a KillJob grace: at most MAX_KILL_GRACE_SECONDS (0 means the default). */
export function checkKillGrace(seconds: number): void {
  if (seconds > MAX_KILL_GRACE_SECONDS)
    throw invalid(`grace_seconds: at most ${MAX_KILL_GRACE_SECONDS} (got ${seconds})`);
}
