/**
 * grpc-js wiring for transport-free handlers: unary handlers return promises,
 * streaming handlers return async iterables. Every thrown error becomes a
 * status here, once: the call pipeline (src/server/pipeline.ts) maps it to a
 * CrmsError, and grpcStatuses maps its code to grpc-js's.
 */
import type { DescService, Message } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import { status } from "@grpc/grpc-js";
import type { StreamLimiter } from "../auth/stream-limit.js";
import { type Code, invalid } from "../errors.js";
import type { Logger } from "../log.js";
import type { CallContext } from "../rpc/context.js";
import { serviceDefinition, UndecodableRequest } from "../rpc/definition.js";
import { eachHandler, type ServiceHandlers } from "../rpc/handlers.js";
import { AsyncQueue } from "../services/async-queue.js";
import { type Arrival, type Authorize, type CallRules, edgeFailure, streamCall, unaryCall } from "./pipeline.js";

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

/** The status of what a call failed with; details travel in an HTTP/2 trailer, kept well under its size limit. */
function toStatus(err: unknown, log: Logger, method: string): Partial<grpc.StatusObject> {
  const e = edgeFailure(err, log, method);
  const details = e.message.length > 1024 ? `${e.message.slice(0, 1024)}…` : e.message;
  return { code: grpcStatuses[e.code], details };
}

/** Throws INVALID_ARGUMENT for a request the deserializer could not decode. */
function decoded(msg: unknown): Message {
  if (msg instanceof UndecodableRequest) throw invalid(msg.message);
  return msg as Message;
}

const CALL_CANCELLED = new Error("call cancelled by the client");
const CALL_ENDED = new Error("call ended");

/** What grpc-js tells of a call: its metadata, its peer, and a signal aborted when it ends. */
function arrivalOf(
  call:
    | grpc.ServerUnaryCall<unknown, unknown>
    | grpc.ServerWritableStream<unknown, unknown>
    | grpc.ServerDuplexStream<unknown, unknown>,
): Arrival {
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
function inbound(call: grpc.ServerDuplexStream<unknown, unknown>): AsyncIterable<Message> {
  const q = new AsyncQueue<Message>();
  call.on("data", (msg) => (msg instanceof UndecodableRequest ? q.fail(invalid(msg.message)) : q.push(msg as Message)));
  call.on("end", () => q.end());
  call.on("error", () => q.end());
  (call as unknown as NodeJS.EventEmitter).on("cancelled", () => q.end());
  return q;
}

/** Serves a streaming call (server-streaming or bidi): the pipeline's messages written out, then the status. */
function serveStream(
  call: grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>,
  rules: CallRules,
  method: string,
  open: (ctx: CallContext) => AsyncIterable<unknown>,
): void {
  const arrival = arrivalOf(call);
  pipeOut(streamCall(rules, method, arrival, open), call, arrival.signal).then(
    () => call.end(),
    (err) => {
      const st = toStatus(err, rules.log, method);
      call.emit("error", Object.assign(new Error(st.details), st));
    },
  );
}

/**
 * Adds a service to a grpc-js server: one handler per RPC, keyed by the
 * methods' local names (a map that misses one does not type-check).
 */
export function addService<S extends DescService>(
  server: grpc.Server,
  service: S,
  handlers: ServiceHandlers<S>,
  log: Logger,
  authorize?: Authorize,
  streams?: StreamLimiter,
): void {
  const rules: CallRules = { log, authorize, streams };
  const impl: grpc.UntypedServiceImplementation = {};
  eachHandler(service, handlers, {
    unary(name, method, handler) {
      impl[method.localName] = (
        call: grpc.ServerUnaryCall<unknown, unknown>,
        callback: grpc.sendUnaryData<unknown>,
      ) => {
        unaryCall(rules, name, arrivalOf(call), (ctx) => handler(decoded(call.request), ctx)).then(
          (res) => callback(null, res),
          (err) => callback(toStatus(err, log, name)),
        );
      };
    },
    serverStreaming(name, method, handler) {
      impl[method.localName] = (call: grpc.ServerWritableStream<unknown, unknown>) =>
        serveStream(call, rules, name, (ctx) => handler(decoded(call.request), ctx));
    },
    bidiStreaming(name, method, handler) {
      impl[method.localName] = (call: grpc.ServerDuplexStream<unknown, unknown>) =>
        serveStream(call, rules, name, (ctx) => handler(inbound(call), ctx));
    },
  });
  server.addService(serviceDefinition(service), impl);
}
