/**
 * A cap on the streams one client holds open at once (watches, output
 * follows, Attach), so that one client cannot exhaust the replica's memory
 * and file descriptors. A client is its token's identity when authenticated
 * (across all its connections), else its connection (peer address and port):
 * counting anonymous clients by IP would let one local process at the cap
 * block every other local user. Workers' Attach streams do not count (one per
 * worker name; many workers may share an address).
 */

import { CrmsError } from "../errors.js";
import type { CallContext } from "../rpc/context.js";

/** Default cap per client. */
export const DEFAULT_MAX_STREAMS_PER_CLIENT = 1000;

/** The client a call counts against: "token:NAME", or "conn:ADDRESS:PORT" without a token. */
export function clientKey(ctx: CallContext): string {
  if (ctx.identity) return `token:${ctx.identity.name}`;
  return `conn:${ctx.peer.replace(/^ipv[46]:/, "")}`;
}

export class StreamLimiter {
  private readonly open = new Map<string, number>();

  constructor(readonly max = DEFAULT_MAX_STREAMS_PER_CLIENT) {}

  /** Counts a new stream of ctx's client; throws RESOURCE_EXHAUSTED over the cap. Returns the release function. */
  acquire(ctx: CallContext): () => void {
    const key = clientKey(ctx);
    const n = this.open.get(key) ?? 0;
    if (n >= this.max) {
      const [kind, who] = key.startsWith("token:")
        ? ["token", `token ${key.slice(6)}`]
        : ["connection", `this connection (${key.slice(5)})`];
      throw new CrmsError(
        "RESOURCE_EXHAUSTED",
        `too many open streams: ${who} already holds ${n} (limit ${this.max} streams per ${kind}; a client without a token may open another connection)`,
      );
    }
    this.open.set(key, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.open.get(key) ?? 1) - 1;
      if (left > 0) this.open.set(key, left);
      else this.open.delete(key);
    };
  }

  /** Streams open now for a client key (for tests and metrics). */
  count(key: string): number {
    return this.open.get(key) ?? 0;
  }

  /** Streams open now, all clients together. */
  total(): number {
    let n = 0;
    for (const v of this.open.values()) n += v;
    return n;
  }
}
