/**
 * crms's error taxonomy, free of any transport: every layer throws CrmsError
 * with a code named after gRPC's (the contract's), and each transport (grpc-js,
 * Connect) maps the code to its own status in one table of its own.
 */
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
    /** What was thrown underneath (an etcd error), for logs; never sent to clients. */
    cause?: unknown,
  ) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "CrmsError";
  }
}

/** Shorthands for the common cases. */
export const invalid = (message: string) => new CrmsError("INVALID_ARGUMENT", message);
export const notFound = (message: string) => new CrmsError("NOT_FOUND", message);
export const precondition = (message: string) => new CrmsError("FAILED_PRECONDITION", message);
