/**
 * Several server addresses behind one transport: "a:7070,b:7070" gives one
 * channel per replica. A unary call that fails with UNAVAILABLE (the replica
 * is down or unreachable) is sent to the next address; streams open on the
 * address that last answered. SubmitJob is additionally retried on
 * DEADLINE_EXCEEDED with the same request id (see `retrySameRequest`).
 */
import type {
  DescMessage,
  DescMethodBiDiStreaming,
  DescMethodServerStreaming,
  DescMethodUnary,
  MessageInitShape,
  MessageShape,
} from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { type CallOptions, ServiceTransport } from "./transport.js";

/** Splits "a,b , c" into addresses; an empty list is an error. */
export function addressesOf(target: string): string[] {
  const list = target
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  if (list.length === 0) throw new Error("no server address given");
  return list;
}

function codeOf(err: unknown): number | undefined {
  return (err as { code?: number } | undefined)?.code;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Whether a failed call may be sent again with the same request id: the
 * replica could not be reached or did not answer in time, or the connection
 * was reset under the call (grpc-js reports an HTTP/2 stream reset, as when a
 * replica stops mid-call, as INTERNAL "Received RST_STREAM ..."; the server
 * never answered it).
 */
export function isRetryableTransportError(err: unknown): boolean {
  const code = codeOf(err);
  if (code === grpc.status.UNAVAILABLE || code === grpc.status.DEADLINE_EXCEEDED) return true;
  const details = String((err as { details?: unknown } | undefined)?.details ?? "");
  return code === grpc.status.INTERNAL && /^Received RST_STREAM|Session closed/.test(details);
}

export class FailoverTransport {
  readonly transports: ServiceTransport[];
  #current = 0;

  constructor(
    target: string,
    credentials?: grpc.ChannelCredentials,
    /** Metadata sent with every call (e.g. authorization). */
    metadata: Record<string, string> = {},
  ) {
    this.transports = addressesOf(target).map((a) => new ServiceTransport(a, credentials, undefined, metadata));
  }

  /** The channel of the address in use (streams open here). */
  get client(): grpc.Client {
    return (this.transports[this.#current] as ServiceTransport).client;
  }

  /** Calls a unary method on the address in use, moving on to the next on UNAVAILABLE (one round). */
  async unary<I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O>,
    request: MessageInitShape<I>,
    options?: CallOptions,
  ): Promise<MessageShape<O>> {
    const n = this.transports.length;
    for (let tried = 1; ; tried++) {
      const index = this.#current;
      try {
        return await (this.transports[index] as ServiceTransport).unary(method, request, options);
      } catch (err) {
        if (codeOf(err) !== grpc.status.UNAVAILABLE || tried >= n || options?.signal?.aborted) throw err;
        if (this.#current === index) this.#current = (index + 1) % n;
      }
    }
  }

  serverStream<I extends DescMessage, O extends DescMessage>(
    method: DescMethodServerStreaming<I, O>,
    request: MessageInitShape<I>,
    options?: CallOptions,
  ): grpc.ClientReadableStream<MessageShape<O>> {
    return (this.transports[this.#current] as ServiceTransport).serverStream(method, request, options);
  }

  bidiStream<I extends DescMessage, O extends DescMessage>(
    method: DescMethodBiDiStreaming<I, O>,
    options?: CallOptions,
  ): grpc.ClientDuplexStream<MessageShape<I>, MessageShape<O>> {
    return (this.transports[this.#current] as ServiceTransport).bidiStream(method, options);
  }

  close(): void {
    for (const t of this.transports) t.close();
  }
}

/** How long a retried call keeps trying (ms) and the per-attempt deadline. */
export interface RetryOptions {
  budgetMs?: number;
  attemptTimeoutMs?: number;
}

/**
 * Runs `call` until it succeeds, retrying UNAVAILABLE, DEADLINE_EXCEEDED and
 * connection resets (`isRetryableTransportError`) with backoff for up to `budgetMs`; the caller keeps the request identical
 * (same request id), so the server creates one job however many times it is sent.
 * Other errors, and the last error once the budget is spent, are thrown.
 */
export async function retrySameRequest<T>(
  call: (attemptTimeoutMs: number) => Promise<T>,
  options: RetryOptions = {},
  onRetry?: (err: unknown) => void,
): Promise<T> {
  const budget = options.budgetMs ?? 30_000;
  const attemptTimeout = options.attemptTimeoutMs ?? 10_000;
  const deadline = Date.now() + budget;
  let delay = 100;
  for (;;) {
    try {
      return await call(Math.max(1, Math.min(attemptTimeout, deadline - Date.now())));
    } catch (err) {
      if (!isRetryableTransportError(err) || Date.now() + delay >= deadline) throw err;
      onRetry?.(err);
      await sleep(delay);
      delay = Math.min(delay * 2, 2_000);
    }
  }
}
