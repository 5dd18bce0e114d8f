/**
 * The one call pipeline both transports run (grpc-js in src/server/grpc.ts,
 * Connect in src/web/connect.ts): the transport hands over what it knows of a
 * call (signal, metadata, peer); the pipeline authorizes it into a CallContext,
 * counts a stream against its client's cap (src/auth/stream-limit.ts), calls
 * the handler and turns whatever it throws into a CrmsError (anything unknown
 * INTERNAL, logged once with the method). Each transport then maps the
 * CrmsError's code to a status of its own, in a table of its own.
 */
import type { StreamLimiter } from "../auth/stream-limit.js";
import { CrmsError } from "../errors.js";
import type { Logger } from "../log.js";
import type { CallContext, Identity } from "../rpc/context.js";
import { toCrmsError } from "../store/errors.js";

/** Authenticates and authorizes a call to "Service.Method" (src/auth/policy.ts); throws to refuse it. */
export type Authorize = (method: string, metadata: Record<string, string>) => Identity | undefined;

/** What the pipeline applies to every call a transport serves. */
export interface CallRules {
  log: Logger;
  /** The authorization check; absent: every call is allowed, with no identity. */
  authorize?: Authorize;
  /** The per-client cap on open streams; absent: no cap. */
  streams?: StreamLimiter;
}

/** What a transport knows of a call before the pipeline runs: a CallContext without its identity. */
export type Arrival = Omit<CallContext, "identity">;

/**
 * A worker's Attach stream is not a client's stream: there is one per worker
 * name (a worker token binds it), and many workers may share one address
 * behind a NAT or load balancer. It does not count against the cap.
 */
const UNCAPPED = new Set(["WorkerService.Attach"]);

/**
 * The CrmsError a client is told for err: CrmsErrors as they are, etcd's
 * errors by the store's table (src/store/errors.ts), anything else INTERNAL.
 * INTERNAL errors are logged with the method and the stack.
 */
export function failure(err: unknown, log: Logger, method: string): CrmsError {
  const e = toCrmsError(err);
  if (e.code === "INTERNAL")
    log.error("internal error", { method, error: err instanceof Error ? err.stack : String(err) });
  return e;
}

/**
 * What reached a transport's edge, as a CrmsError: the pipeline's own errors
 * are mapped (and logged) already; anything the transport's own code threw is mapped now.
 */
export function edgeFailure(err: unknown, log: Logger, method: string): CrmsError {
  return err instanceof CrmsError ? err : failure(err, log, method);
}

/** The call's context: the arrival plus the caller's identity; throws UNAUTHENTICATED or PERMISSION_DENIED. */
export function authorized(rules: CallRules, method: string, arrival: Arrival): CallContext {
  const ctx: CallContext = { ...arrival };
  const identity = rules.authorize?.(method, arrival.metadata);
  if (identity) ctx.identity = identity;
  return ctx;
}

/**
 * Counts a stream against its client's cap until the call ends (its signal
 * aborts) or the returned release is called, whichever is first; throws
 * RESOURCE_EXHAUSTED over the cap.
 */
export function admitted(rules: CallRules, method: string, ctx: CallContext): () => void {
  if (!rules.streams || UNCAPPED.has(method)) return () => {};
  const release = rules.streams.acquire(ctx);
  if (ctx.signal.aborted) release();
  else ctx.signal.addEventListener("abort", release, { once: true });
  return release;
}

/** Runs a unary call: authorization, then the handler (`run`); rejects with a CrmsError only. */
export async function unaryCall<O>(
  rules: CallRules,
  method: string,
  arrival: Arrival,
  run: (ctx: CallContext) => Promise<O>,
): Promise<O> {
  try {
    return await run(authorized(rules, method, arrival));
  } catch (err) {
    throw failure(err, rules.log, method);
  }
}

/**
 * Runs a streaming call (server-streaming or bidi): authorization, the stream
 * cap, then the handler's messages (`open`) as they come; throws a CrmsError only.
 */
export async function* streamCall<O>(
  rules: CallRules,
  method: string,
  arrival: Arrival,
  open: (ctx: CallContext) => AsyncIterable<O>,
): AsyncGenerator<O, void, undefined> {
  let release: (() => void) | undefined;
  try {
    const ctx = authorized(rules, method, arrival);
    release = admitted(rules, method, ctx);
    yield* open(ctx);
  } catch (err) {
    throw failure(err, rules.log, method);
  } finally {
    release?.();
  }
}
