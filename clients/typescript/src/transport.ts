/**
 * Typed grpc-js calls over protobuf-es descriptors: one place that turns a
 * DescService into promise-returning unary calls and async-iterable streams.
 */
import type {
  DescMessage,
  DescMethod,
  DescMethodBiDiStreaming,
  DescMethodServerStreaming,
  DescMethodUnary,
  MessageInitShape,
  MessageShape,
} from "@bufbuild/protobuf";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { serviceDefinition } from "../../../src/rpc/definition.js";

/** Options every call accepts. */
export interface CallOptions {
  /** Milliseconds before the call fails with DEADLINE_EXCEEDED. */
  timeoutMs?: number;
  /** Extra request metadata (e.g. authorization). */
  metadata?: Record<string, string>;
  /** Aborts the call (CANCELLED). */
  signal?: AbortSignal;
}

/** Channel options shared by clients and workers: keepalive agreed with the server. */
export const channelOptions: grpc.ChannelOptions = {
  "grpc.keepalive_time_ms": 10_000,
  "grpc.keepalive_timeout_ms": 5_000,
  "grpc.keepalive_permit_without_calls": 1,
  "grpc.max_receive_message_length": 16 * 1024 * 1024,
  "grpc.max_send_message_length": 16 * 1024 * 1024,
};

function metadataOf(options: CallOptions | undefined, base: Record<string, string> = {}): grpc.Metadata {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries({ ...base, ...options?.metadata })) md.set(k, v);
  return md;
}

function callOptionsOf(options: CallOptions | undefined): grpc.CallOptions {
  return options?.timeoutMs ? { deadline: Date.now() + options.timeoutMs } : {};
}

/** A grpc-js client for one protobuf-es service; methods are passed as descriptors for full typing. */
export class ServiceTransport {
  readonly client: grpc.Client;

  constructor(
    target: string,
    credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
    options: grpc.ChannelOptions = channelOptions,
    /** Metadata sent with every call (e.g. authorization). */
    readonly metadata: Record<string, string> = {},
  ) {
    this.client = new grpc.Client(target, credentials, options);
  }

  /** Calls a unary method and resolves with its response. */
  unary<I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O>,
    request: MessageInitShape<I>,
    options?: CallOptions,
  ): Promise<MessageShape<O>> {
    const def = definitionOf(method);
    return new Promise((resolve, reject) => {
      const call = this.client.makeUnaryRequest(
        def.path,
        def.requestSerialize,
        def.responseDeserialize as (b: Buffer) => MessageShape<O>,
        create(method.input, request),
        metadataOf(options, this.metadata),
        callOptionsOf(options),
        (err, value) => (err || !value ? reject(err) : resolve(value)),
      );
      options?.signal?.addEventListener("abort", () => call.cancel(), { once: true });
    });
  }

  /** Calls a server-streaming method. */
  serverStream<I extends DescMessage, O extends DescMessage>(
    method: DescMethodServerStreaming<I, O>,
    request: MessageInitShape<I>,
    options?: CallOptions,
  ): grpc.ClientReadableStream<MessageShape<O>> {
    const def = definitionOf(method);
    const call = this.client.makeServerStreamRequest(
      def.path,
      def.requestSerialize,
      def.responseDeserialize as (b: Buffer) => MessageShape<O>,
      create(method.input, request),
      metadataOf(options, this.metadata),
      callOptionsOf(options),
    );
    options?.signal?.addEventListener("abort", () => call.cancel(), { once: true });
    return call;
  }

  /** Opens a bidirectional stream. */
  bidiStream<I extends DescMessage, O extends DescMessage>(
    method: DescMethodBiDiStreaming<I, O>,
    options?: CallOptions,
  ): grpc.ClientDuplexStream<MessageShape<I>, MessageShape<O>> {
    const def = definitionOf(method);
    return this.client.makeBidiStreamRequest(
      def.path,
      def.requestSerialize as (v: MessageShape<I>) => Buffer,
      def.responseDeserialize as (b: Buffer) => MessageShape<O>,
      metadataOf(options, this.metadata),
      callOptionsOf(options),
    );
  }

  close(): void {
    this.client.close();
  }
}

const definitions = new WeakMap<DescMethod, grpc.MethodDefinition<unknown, unknown>>();

function definitionOf(method: DescMethod): grpc.MethodDefinition<unknown, unknown> {
  let def = definitions.get(method);
  if (!def) {
    def = serviceDefinition(method.parent)[method.localName];
    if (!def) throw new Error(`no definition for ${method.name}`);
    definitions.set(method, def);
  }
  return def;
}
