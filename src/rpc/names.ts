/**
 * Worker names as the contract defines them (worker.proto): 1 to 128 bytes of
 * letters, digits, '.', '_' and '-', starting with a letter or digit. One check
 * shared by the server (INVALID_ARGUMENT) and the TypeScript worker (refuses to
 * start), so a worker never creates a directory for a name the server refuses.
 */
import { invalid } from "../errors.js";

export const WORKER_NAME_MAX_BYTES = 128;

/** What is wrong with a worker name, in words for the user; undefined if it is one. */
export function workerNameProblem(name: string): string | undefined {
  if (!name) return "is required";
  if (name.includes("\0")) return "must not contain a NUL byte";
  if (Buffer.byteLength(name) > WORKER_NAME_MAX_BYTES) return `is longer than ${WORKER_NAME_MAX_BYTES} bytes`;
  if (name === "." || name === "..") return "is not a name ('.' and '..' are directory references)";
  const bad = [...name].find((c) => !/[A-Za-z0-9._-]/.test(c));
  if (bad !== undefined) {
    return `contains ${JSON.stringify(bad)}: a name may hold only letters, digits, '.', '_' and '-'`;
  }
  if (!/^[A-Za-z0-9]/.test(name)) return "must start with a letter or a digit";
  return undefined;
}

/** The reserved job label naming a job's owner (the server sets it from the caller's token). */
export const OWNER_LABEL = "crms.io/owner";

/** Checks a worker name: safe characters, bounded length (the rule the workers check too). */
export function checkWorkerName(name: string, what = "worker name"): void {
  const problem = workerNameProblem(name);
  if (problem) throw invalid(name ? `${what} ${JSON.stringify(name.slice(0, 40))} ${problem}` : `${what} ${problem}`);
}
