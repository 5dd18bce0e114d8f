/**
 * Domain errors and the one table that maps them, and etcd's errors, to gRPC
 * status codes. Lower layers throw CrmsError; the server edge turns it into a status.
 */
import { status } from "@grpc/grpc-js";

/** The gRPC codes crms answers with, by name. */
export type Code =
  | "INVALID_ARGUMENT"
  | "NOT_FOUND"
  | "ALREADY_EXISTS"
  | "FAILED_PRECONDITION"
  | "RESOURCE_EXHAUSTED"
  | "UNAVAILABLE"
  | "ABORTED"
  | "OUT_OF_RANGE"
  | "DEADLINE_EXCEEDED"
  | "PERMISSION_DENIED"
  | "UNAUTHENTICATED"
  | "INTERNAL";

/** An error with a gRPC code and a message meant for the user. */
export class CrmsError extends Error {
  constructor(
    readonly code: Code,
    message: string,
  ) {
    super(message);
    this.name = "CrmsError";
  }
}

/** Shorthands for the common cases. */
export const invalid = (message: string) => new CrmsError("INVALID_ARGUMENT", message);
export const notFound = (message: string) => new CrmsError("NOT_FOUND", message);
export const precondition = (message: string) => new CrmsError("FAILED_PRECONDITION", message);

const etcdMessages: Array<[RegExp, Code, string]> = [
  [
    /database space exceeded|NOSPACE/i,
    "RESOURCE_EXHAUSTED",
    "etcd is out of space (NOSPACE alarm); run `crms admin recover`",
  ],
  [/too many operations in txn|request is too large/i, "RESOURCE_EXHAUSTED", "request too large for etcd"],
  [/required revision has been compacted/i, "OUT_OF_RANGE", "revision has been compacted"],
  [/leader changed|no leader|timed out|deadline/i, "UNAVAILABLE", "etcd is not available"],
];

/** Maps any thrown value to a CrmsError; unknown errors become INTERNAL. */
export function toCrmsError(err: unknown): CrmsError {
  if (err instanceof CrmsError) return err;
  const message = err instanceof Error ? err.message : String(err);
  for (const [pattern, code, text] of etcdMessages) {
    if (pattern.test(message)) return new CrmsError(code, `${text}: ${message}`);
  }
  const name = err instanceof Error ? err.constructor.name : "";
  if (/Unavailable|ClientClosed|Deadline|Cancelled/.test(name) || /ECONNREFUSED|UNAVAILABLE/.test(message)) {
    return new CrmsError("UNAVAILABLE", `etcd is not available: ${message}`);
  }
  return new CrmsError("INTERNAL", message);
}

/** The grpc-js status number of a code. */
export function grpcStatus(code: Code): status {
  return status[code];
}
