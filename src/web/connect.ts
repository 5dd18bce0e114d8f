/**
 * Connect wiring for transport-free handlers: the same handler maps grpc-js
 * serves, registered on a Connect router so that a browser can call them over
 * HTTP/1.1, through the same call pipeline (src/server/pipeline.ts). Every thrown
 * error becomes a ConnectError here, once: the pipeline maps it to a CrmsError,
 * and connectCodes maps its code to Connect's.
 */
import type { DescService, Message } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  createContextKey,
  createContextValues,
  type HandlerContext,
  type ServiceImpl,
} from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { AdminService } from "../../gen/crms/v1/admin_pb.js";
import { JobService } from "../../gen/crms/v1/job_pb.js";
import { QueueService } from "../../gen/crms/v1/queue_pb.js";
import { WorkerService } from "../../gen/crms/v1/worker_pb.js";
import type { StreamLimiter } from "../auth/stream-limit.js";
import type { Code as CrmsCode } from "../errors.js";
import type { Logger } from "../log.js";
import { eachHandler, type ServiceHandlers } from "../rpc/handlers.js";
import {
  type Arrival,
  type Authorize,
  type CallRules,
  edgeFailure,
  streamCall,
  unaryCall,
} from "../server/pipeline.js";
import type { Handlers } from "../server/server.js";

type NodeHandler = ReturnType<typeof connectNodeAdapter>;

/** crms's codes as Connect codes: the Connect transport's one table. */
export const connectCodes: Record<CrmsCode, Code> = {
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

/** Turns what a call failed with into a ConnectError with the matching code. */
export function toConnectError(err: unknown, log: Logger, method: string): ConnectError {
  if (err instanceof ConnectError) return err;
  const e = edgeFailure(err, log, method);
  return new ConnectError(e.message, connectCodes[e.code]);
}

/** What Connect tells of a call: its headers as metadata, its peer, and its signal. */
function arrivalOf(ctx: HandlerContext): Arrival {
  const metadata: Record<string, string> = {};
  ctx.requestHeader.forEach((value, key) => {
    metadata[key] = value;
  });
  return { signal: ctx.signal, metadata, peer: ctx.values.get(peerKey) };
}

/**
 * Adapts a handler map to Connect through the call pipeline: unary handlers
 * stay promises, server-streaming ones become async generators. Client and
 * bidi streaming (WorkerService.Attach) are left out: a browser over HTTP/1.1
 * cannot carry them, Connect answers UNIMPLEMENTED.
 */
export function adaptService<S extends DescService>(
  service: S,
  handlers: ServiceHandlers<S>,
  log: Logger,
  authorize?: Authorize,
  streams?: StreamLimiter,
): Partial<ServiceImpl<S>> {
  const rules: CallRules = { log, authorize, streams };
  const impl: Record<string, unknown> = {};
  eachHandler(service, handlers, {
    unary(name, method, handler) {
      impl[method.localName] = (req: Message, ctx: HandlerContext) =>
        unaryCall(rules, name, arrivalOf(ctx), (c) => handler(req, c)).catch((err) => {
          throw toConnectError(err, log, name);
        });
    },
    serverStreaming(name, method, handler) {
      impl[method.localName] = async function* (req: Message, ctx: HandlerContext) {
        try {
          yield* streamCall(rules, name, arrivalOf(ctx), (c) => handler(req, c));
        } catch (err) {
          throw toConnectError(err, log, name);
        }
      };
    },
  });
  return impl as Partial<ServiceImpl<S>>;
}

/** Registers the crms services on a Connect router. */
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
  router.service(QueueService, adaptService(QueueService, handlers.queue, log, authorize, streams));
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
