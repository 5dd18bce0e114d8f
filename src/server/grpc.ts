/**
 * grpc-js wiring for transport-free handlers: unary handlers return promises,
 * streaming handlers return async iterables. Every thrown error becomes a
 * status here, once: CrmsError by its code, anything else INTERNAL with a log line.
 */
import type { DescService } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import { status } from "@grpc/grpc-js";
import type { StreamLimiter } from "../auth/stream-limit.js";
import { type Code, invalid } from "../errors.js";
import type { Logger } from "../log.js";
import { serviceDefinition, UndecodableRequest } from "../rpc/definition.js";
import { AsyncQueue } from "../services/async-queue.js";
import type { CallContext, Identity } from "../services/context.js";
import { toCrmsError } from "../store/errors.js";

// biome-ignore lint/suspicious/noExplicitAny: handler maps are checked where they are built.
type AnyHandler = (...args: any[]) => any;

/** crms's codes as grpc-js statuses: the gRPC transport's one table. */
export const grpcStatuses: Record<Code, status> = {
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  NOT_FOUND: status.NOT_FOUND,
  ALREADY_EXISTS: status.ALREADY_EXISTS,
  FAILED_PRECONDITION: status.FAILED_PRECONDITION,
  RESOURCE_EXHAUSTED: status.RESOURCE_EXHAUSTED,
  UNAVAILABLE: status.UNAVAILABLE,
  ABORTED: status.ABORTED,
  OUT_OF_RANGE: status.OUT_OF_RANGE,
  DEADLINE_EXCEEDED: status.DEADLINE_EXCEEDED,
  PERMISSION_DENIED: status.PERMISSION_DENIED,
  UNAUTHENTICATED: status.UNAUTHENTICATED,
  INTERNAL: status.INTERNAL,
};

function metadataOf(md: grpc.Metadata): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(md.getMap())) out[k] = typeof v === "string" ? v : v.toString();
  return out;
}

function toStatus(err: unknown, log: Logger, method: string): Partial<grpc.StatusObject> {
  const e = toCrmsError(err);
  if (e.code === "INTERNAL")
    log.error("internal error", { method, error: err instanceof Error ? err.stack : String(err) });
  // Details travel in an HTTP/2 trailer: keep them well under its size limit.
  const details = e.message.length > 1024 ? `${e.message.slice(0, 1024)}…` : e.message;
  return { code: grpcStatuses[e.code], details };
}

/** Throws INVALID_ARGUMENT for a request the deserializer could not decode. */
function decoded(msg: unknown): unknown {
  if (msg instanceof UndecodableRequest) throw invalid(msg.message);
  return msg;
}

const CALL_CANCELLED = new Error("call cancelled by the client");
const CALL_ENDED = new Error("call ended");

function contextOf(
  call:
    | grpc.ServerUnaryCall<unknown, unknown>
    | grpc.ServerWritableStream<unknown, unknown>
    | grpc.ServerDuplexStream<unknown, unknown>,
): CallContext {
  const controller = new AbortController();
  const emitter = call as unknown as NodeJS.EventEmitter;
  // One shared reason: abort() without one builds a DOMException (with a stack) per finished call.
  emitter.once("cancelled", () => controller.abort(CALL_CANCELLED));
  emitter.once("close", () => controller.abort(CALL_ENDED));
  return { signal: controller.signal, metadata: metadataOf(call.metadata), peer: call.getPeer() };
}

/** Writes an async iterable to a server stream, honouring back-pressure. */
async function pipeOut(
  iterable: AsyncIterable<unknown>,
  call: grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>,
  signal: AbortSignal,
): Promise<void> {
  for await (const msg of iterable) {
    if (signal.aborted) return;
    if (!call.write(msg)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          call.off("drain", done);
          signal.removeEventListener("abort", done);
          resolve();
        };
        call.on("drain", done);
        signal.addEventListener("abort", done, { once: true });
      });
    }
  }
}

/**
 * The client's messages as an async iterable that, unlike iterating the call
 * itself, does not cancel the call when the handler stops reading early
 * (the handler must still be able to end it with a status).
 */
function inbound(call: grpc.ServerDuplexStream<unknown, unknown>): AsyncIterable<unknown> {
  const q = new AsyncQueue<unknown>();
  call.on("data", (msg) => (msg instanceof UndecodableRequest ? q.fail(invalid(msg.message)) : q.push(msg)));
  call.on("end", () => q.end());
  call.on("error", () => q.end());
  (call as unknown as NodeJS.EventEmitter).on("cancelled", () => q.end());
  return q;
}

/** Authenticates and authorizes a call to "Service.Method" (src/auth/policy.ts); throws to refuse it. */
export type Authorize = (method: string, metadata: Record<string, string>) => Identity | undefined;

/** Runs the authorization check into the call's context. */
function authorized(authorize: Authorize | undefined, method: string, ctx: CallContext): CallContext {
  if (authorize) ctx.identity = authorize(method, ctx.metadata);
  return ctx;
}

const ATTACH = new Set(["WorkerService.Attach", "crms.v1.WorkerService.Attach"]);

/** Authorizes a stream and counts it against its client's cap until the call ends. */
function admitted(
  authorize: Authorize | undefined,
  limiter: StreamLimiter | undefined,
  method: string,
  ctx: CallContext,
): CallContext {
  authorized(authorize, method, ctx);
  // A worker's Attach stream is not a client stream: there is one per worker
  // name (a worker token binds it), and many workers may share one address
  // behind a NAT or load balancer.
  if (limiter && !ATTACH.has(method)) {
    const release = limiter.acquire(ctx);
    if (ctx.signal.aborted) release();
    else ctx.signal.addEventListener("abort", release, { once: true });
  }
  return ctx;
}

/** Adds a service to a grpc-js server with handlers keyed by the methods' local names. */
export function addService(
  server: grpc.Server,
  service: DescService,
  handlers: Record<string, AnyHandler>,
  log: Logger,
  authorize?: Authorize,
  limiter?: StreamLimiter,
): void {
  const impl: grpc.UntypedServiceImplementation = {};
  for (const method of service.methods) {
    const handler = handlers[method.localName];
    if (!handler) continue; // grpc-js answers UNIMPLEMENTED
    const name = `${service.name}.${method.name}`;
    switch (method.methodKind) {
      case "unary":
        impl[method.localName] = (
          call: grpc.ServerUnaryCall<unknown, unknown>,
          callback: grpc.sendUnaryData<unknown>,
        ) => {
          const ctx = contextOf(call);
          Promise.resolve()
            .then(() => authorized(authorize, name, ctx))
            .then((c) => handler(decoded(call.request), c))
            .then(
              (res) => callback(null, res),
              (err) => callback(toStatus(err, log, name)),
            );
        };
        break;
      case "server_streaming":
        impl[method.localName] = (call: grpc.ServerWritableStream<unknown, unknown>) => {
          const ctx = contextOf(call);
          Promise.resolve()
            .then(() => admitted(authorize, limiter, name, ctx))
            .then((c) => pipeOut(handler(decoded(call.request), c), call, ctx.signal))
            .then(
              () => call.end(),
              (err) => {
                const st = toStatus(err, log, name);
                call.emit("error", Object.assign(new Error(st.details), st));
              },
            );
        };
        break;
      case "bidi_streaming":
        impl[method.localName] = (call: grpc.ServerDuplexStream<unknown, unknown>) => {
          const ctx = contextOf(call);
          Promise.resolve()
            .then(() => admitted(authorize, limiter, name, ctx))
            .then((c) => pipeOut(handler(inbound(call), c), call, ctx.signal))
            .then(
              () => call.end(),
              (err) => {
                const st = toStatus(err, log, name);
                call.emit("error", Object.assign(new Error(st.details), st));
              },
            );
        };
        break;
      default:
        throw new Error(`client streaming is not used by crms (${name})`);
    }
  }
  server.addService(serviceDefinition(service), impl);
}
