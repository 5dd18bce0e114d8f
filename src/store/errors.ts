/**
 * The one table from etcd's errors to crms's (src/errors.ts), by etcd3's typed
 * error classes. The store's callers see CrmsError only; transports map codes to statuses.
 */
import { BrokenCircuitError } from "cockatiel";
import {
  ClientClosedError,
  EtcdAuthenticationFailedError,
  EtcdInvalidAuthTokenError,
  EtcdLeaseInvalidError,
  EtcdPermissionDeniedError,
  GRPCCancelledError,
  GRPCDeadlineExceededError,
  GRPCInvalidArgumentError,
  GRPCOutOfRangeError,
  GRPCResourceExhastedError,
  GRPCUnavailableError,
} from "etcd3";
import { type Code, CrmsError } from "../errors.js";

/** Any error class: etcd3's typed errors, and (for entries added later) a resilience library's. */
// biome-ignore lint/suspicious/noExplicitAny: constructors of any signature
type ErrorClass = abstract new (...args: any[]) => Error;

/** One row of the table: errors of `type` (whose text contains `text`, if given) become `code` with crms's `message`. */
export interface ErrorRule {
  type: ErrorClass;
  /** etcd's own words, where one class carries several of etcd's errors. */
  text?: string;
  code: Code;
  message: string;
}

/**
 * The one table from etcd's errors to crms's. Matched in order by etcd3's
 * typed error classes (etcd's gRPC code), then etcd's text inside a class;
 * the first match wins, so specific rows go before a class's catch-all.
 * Add rows here (e.g. for a circuit breaker's errors) rather than matching elsewhere.
 */
export const errorTable: ErrorRule[] = [
  {
    type: GRPCResourceExhastedError,
    text: "database space exceeded",
    code: "RESOURCE_EXHAUSTED",
    message: "etcd is out of space (NOSPACE alarm); run `crms admin recover`",
  },
  {
    type: GRPCResourceExhastedError,
    text: "larger than max",
    code: "RESOURCE_EXHAUSTED",
    message: "request too large for etcd (its limit is 1.5 MiB by default)",
  },
  {
    type: GRPCResourceExhastedError,
    code: "RESOURCE_EXHAUSTED",
    message: "etcd is overloaded (too many requests); retry later",
  },
  {
    type: GRPCInvalidArgumentError,
    text: "too many operations in txn",
    code: "RESOURCE_EXHAUSTED",
    message: "request too large for etcd: too many operations in one transaction",
  },
  {
    type: GRPCInvalidArgumentError,
    text: "request is too large",
    code: "RESOURCE_EXHAUSTED",
    message: "request too large for etcd (its limit is 1.5 MiB by default)",
  },
  {
    type: GRPCOutOfRangeError,
    text: "required revision has been compacted",
    code: "OUT_OF_RANGE",
    message: "revision has been compacted: etcd no longer keeps that history",
  },
  {
    type: GRPCOutOfRangeError,
    text: "future revision",
    code: "OUT_OF_RANGE",
    message: "revision is in the future: etcd has not reached it yet",
  },
  { type: GRPCUnavailableError, code: "UNAVAILABLE", message: "etcd is not available" },
  // etcd3's per-member circuit breaker (cockatiel) refused the call: every member failed just before.
  { type: BrokenCircuitError, code: "UNAVAILABLE", message: "etcd is not reachable; retry" },
  { type: GRPCDeadlineExceededError, code: "UNAVAILABLE", message: "etcd did not answer in time" },
  { type: GRPCCancelledError, code: "UNAVAILABLE", message: "the call to etcd was cancelled" },
  { type: ClientClosedError, code: "UNAVAILABLE", message: "this control-plane replica is shutting down" },
  {
    type: EtcdLeaseInvalidError,
    code: "UNAVAILABLE",
    message: "this replica's etcd lease expired; it is taking a new one, retry",
  },
  {
    type: EtcdPermissionDeniedError,
    code: "INTERNAL",
    message: "etcd refused the control plane's credentials for this key",
  },
  { type: EtcdAuthenticationFailedError, code: "INTERNAL", message: "etcd refused the control plane's credentials" },
  { type: EtcdInvalidAuthTokenError, code: "UNAVAILABLE", message: "the control plane's etcd session expired; retry" },
];

/** Maps any thrown value to a CrmsError; unknown errors become INTERNAL (with their own text, for the log). */
export function toCrmsError(err: unknown): CrmsError {
  if (err instanceof CrmsError) return err;
  if (err instanceof Error) {
    for (const rule of errorTable) {
      if (err instanceof rule.type && (rule.text === undefined || err.message.includes(rule.text))) {
        return new CrmsError(rule.code, rule.message, err);
      }
    }
  }
  return new CrmsError("INTERNAL", err instanceof Error ? err.message : String(err), err);
}
