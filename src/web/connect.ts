/**
 * Connect wiring for transport-free handlers: the same handler maps grpc-js
 * serves, registered on a Connect router so that a browser can call them over
 * HTTP/1.1. Every thrown error becomes a ConnectError here, once: CrmsError by
 * its code, anything else INTERNAL with a log line (as src/server/grpc.ts does).
 */
import type { DescService } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  createContextKey,
  createContextValues,
  type HandlerContext,
} from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { AdminService } from "../../gen/crms/v1/admin_pb.js";
import { JobService } from "../../gen/crms/v1/job_pb.js";
import { WorkerService } from "../../gen/crms/v1/worker_pb.js";
import type { StreamLimiter } from "../auth/stream-limit.js";
import type { Code as CrmsCode } from "../errors.js";
import type { Logger } from "../log.js";
import type { Authorize } from "../server/grpc.js";
import type { Handlers } from "../server/server.js";
import type { CallContext } from "../services/context.js";
import { toCrmsError } from "../store/errors.js";

// biome-ignore lint/suspicious/noExplicitAny: handler maps are checked where they are built.
type AnyHandler = (...args: any[]) => any;
type NodeHandler = ReturnType<typeof connectNodeAdapter>;

/** The one table from crms codes to Connect codes. */
const codes: Record<CrmsCode, Code> = {
  INVALID_ARGUMENT: Code.InvalidArgument,
  NOT_FOUND: Code.NotFound,
  ALREADY_EXISTS: Code.AlreadyExists,
  FAILED_PRECONDITION: Code.FailedPrecondition,
  RESOURCE_EXHAUSTED: Code.ResourceExhausted,
  UNAVAILABLE: Code.Unavailable,
  ABORTED: Code.Aborted,
  OUT_OF_RANGE: Code.OutOfRange,
  DEADLINE_EXCEEDED: Code.DeadlineExceeded,
  PERMISSION_DENIED: Code.PermissionDenied,
  UNAUTHENTICATED: Code.Unauthenticated,
  INTERNAL: Code.Internal,
};

const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

/** The remote address of the HTTP connection, for CallContext.peer. */
const peerKey = createContextKey("");

/** Turns anything a handler throws into a ConnectError with the matching code. */
export function toConnectError(err: unknown, log: Logger, method: string): ConnectError {
  if (err instanceof ConnectError) return err;
  const e = toCrmsError(err);
  if (e.code === "INTERNAL")
    log.error("internal error", { method, error: err instanceof Error ? err.stack : String(err) });
  return new ConnectError(e.message, codes[e.code]);
}

function contextOf(ctx: HandlerContext, method: string, authorize: Authorize | undefined): CallContext {
  const metadata: Record<string, string> = {};
  ctx.requestHeader.forEach((value, key) => {
    metadata[key] = value;
  });
  const identity = authorize?.(method, metadata);
  return { signal: ctx.signal, metadata, peer: ctx.values.get(peerKey), ...(identity ? { identity } : {}) };
}

/**
 * Adapts a handler map to Connect: unary handlers stay promises, server-streaming
 * ones become async generators. Client and bidi streaming (WorkerService.Attach)
 * are left out: a browser over HTTP/1.1 cannot carry them, Connect answers UNIMPLEMENTED.
 */
export function adaptService(
  service: DescService,
  handlers: Record<string, AnyHandler>,
  log: Logger,
  authorize?: Authorize,
  streams?: StreamLimiter,
): Record<string, AnyHandler> {
  const impl: Record<string, AnyHandler> = {};
  for (const method of service.methods) {
    const handler = handlers[method.localName];
    if (!handler) continue;
    const name = `${service.name}.${method.name}`;
    switch (method.methodKind) {
      case "unary":
        impl[method.localName] = async (req: unknown, ctx: HandlerContext) => {
          try {
            return await handler(req, contextOf(ctx, name, authorize));
          } catch (err) {
            throw toConnectError(err, log, name);
          }
        };
        break;
      case "server_streaming":
        impl[method.localName] = async function* (req: unknown, ctx: HandlerContext) {
          let release: (() => void) | undefined;
          try {
            const c = contextOf(ctx, name, authorize);
            release = streams?.acquire(c);
            yield* handler(req, c) as AsyncIterable<unknown>;
          } catch (err) {
            throw toConnectError(err, log, name);
          } finally {
            release?.();
          }
        };
        break;
      default:
        break;
    }
  }
  return impl;
}

/** Registers the three crms services on a Connect router. */
export function registerServices(
  router: ConnectRouter,
  handlers: Handlers,
  log: Logger,
  authorize?: Authorize,
  streams?: StreamLimiter,
): void {
  router.service(JobService, adaptService(JobService, handlers.job, log, authorize, streams));
  router.service(WorkerService, adaptService(WorkerService, handlers.worker, log, authorize, streams));
  router.service(AdminService, adaptService(AdminService, handlers.admin, log, authorize, streams));
}

/** A node:http request handler for the crms Connect routes; other paths go to fallback. */
export function createConnectHandler(
  handlers: Handlers,
  log: Logger,
  fallback: NodeHandler,
  authorize?: Authorize,
  streams?: StreamLimiter,
): NodeHandler {
  return connectNodeAdapter({
    routes: (router) => registerServices(router, handlers, log, authorize, streams),
    // The same message limits as the gRPC server.
    readMaxBytes: MAX_MESSAGE_BYTES,
    writeMaxBytes: MAX_MESSAGE_BYTES,
    fallback,
    contextValues: (req) => {
      const { remoteAddress, remotePort } = req.socket;
      return createContextValues().set(peerKey, remoteAddress ? `${remoteAddress}:${remotePort}` : "");
    },
  });
}
