/**
 * The shape of a service's handler map, derived from its protobuf-es
 * descriptor (gen/crms/v1/*_pb.ts) as connect-es derives ServiceImpl: one
 * handler per RPC, under the RPC's local name, taking the request (or, for a
 * bidi RPC, the stream of requests) and the transport-free CallContext. A map
 * that misses or misspells an RPC, or answers with the wrong message, does not
 * type-check.
 */
import type {
  DescMessage,
  DescMethod,
  DescMethodBiDiStreaming,
  DescMethodServerStreaming,
  DescMethodUnary,
  DescService,
  MessageInitShape,
  MessageShape,
} from "@bufbuild/protobuf";
import type { CallContext } from "./context.js";

/** A unary RPC: one request, one response. */
export type UnaryHandler<I extends DescMessage, O extends DescMessage> = (
  request: MessageShape<I>,
  ctx: CallContext,
) => Promise<MessageInitShape<O>>;

/** A server-streaming RPC: one request, a stream of responses. */
export type ServerStreamingHandler<I extends DescMessage, O extends DescMessage> = (
  request: MessageShape<I>,
  ctx: CallContext,
) => AsyncIterable<MessageInitShape<O>>;

/** A bidi-streaming RPC: a stream of requests, a stream of responses. */
export type BidiStreamingHandler<I extends DescMessage, O extends DescMessage> = (
  requests: AsyncIterable<MessageShape<I>>,
  ctx: CallContext,
) => AsyncIterable<MessageInitShape<O>>;

/** The handler of one RPC, by its kind (crms has no client-streaming RPC: such a method admits no handler). */
export type MethodHandler<M extends DescMethod> =
  M extends DescMethodUnary<infer I, infer O>
    ? UnaryHandler<I, O>
    : M extends DescMethodServerStreaming<infer I, infer O>
      ? ServerStreamingHandler<I, O>
      : M extends DescMethodBiDiStreaming<infer I, infer O>
        ? BidiStreamingHandler<I, O>
        : never;

/** The handlers of a service, keyed by its RPCs' local names (`submitJob`): every RPC has one. */
export type ServiceHandlers<S extends DescService> = {
  [K in keyof S["method"]]: MethodHandler<S["method"][K]>;
};

/** What a transport does with each kind of handler; a kind it leaves out is not served (Connect: no bidi). */
export interface HandlerKinds {
  unary?(name: string, method: DescMethod, handler: UnaryHandler<DescMessage, DescMessage>): void;
  serverStreaming?(name: string, method: DescMethod, handler: ServerStreamingHandler<DescMessage, DescMessage>): void;
  bidiStreaming?(name: string, method: DescMethod, handler: BidiStreamingHandler<DescMessage, DescMessage>): void;
}

/**
 * Hands each handler of a map to the transport by its RPC's kind, with the
 * RPC's name as the policy knows it ("JobService.SubmitJob"). The map's type
 * guarantees a handler of the matching shape for every RPC.
 */
export function eachHandler<S extends DescService>(
  service: S,
  handlers: ServiceHandlers<S>,
  kinds: HandlerKinds,
): void {
  const byName = handlers as Record<string, unknown>;
  for (const method of service.methods) {
    const name = `${service.name}.${method.name}`;
    const handler = byName[method.localName];
    switch (method.methodKind) {
      case "unary":
        kinds.unary?.(name, method, handler as UnaryHandler<DescMessage, DescMessage>);
        break;
      case "server_streaming":
        kinds.serverStreaming?.(name, method, handler as ServerStreamingHandler<DescMessage, DescMessage>);
        break;
      case "bidi_streaming":
        kinds.bidiStreaming?.(name, method, handler as BidiStreamingHandler<DescMessage, DescMessage>);
        break;
      default:
        throw new Error(`client streaming is not used by crms (${name})`);
    }
  }
}
