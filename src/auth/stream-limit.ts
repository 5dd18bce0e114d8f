/**
 * A cap on the streams one client holds open at once (watches, output
 * follows, Attach), so that one client cannot exhaust the replica's memory
 * and file descriptors. A client is its token's identity when authenticated,
 * else its IP address. Workers' Attach streams do not count (one per worker
 * name; many workers may share an address).
 */

import type { CallContext } from "../services/context.js";
import { CrmsError } from "../store/errors.js";

/** Default cap per client. */
export const DEFAULT_MAX_STREAMS_PER_CLIENT = 1000;

/** The client a call counts against: "token:NAME" or "ip:ADDRESS". */
export function clientKey(ctx: CallContext): string {
  if (ctx.identity) return `token:${ctx.identity.name}`;
  const peer = ctx.peer.replace(/^ipv[46]:/, "");
  const host = peer.startsWith("[") ? peer.slice(1, peer.indexOf("]")) : peer.slice(0, peer.lastIndexOf(":"));
  return `ip:${host || peer}`;
}

export class StreamLimiter {
  private readonly open = new Map<string, number>();

  constructor(readonly max = DEFAULT_MAX_STREAMS_PER_CLIENT) {}

  /** Counts a new stream of ctx's client; throws RESOURCE_EXHAUSTED over the cap. Returns the release function. */
  acquire(ctx: CallContext): () => void {
    const key = clientKey(ctx);
    const n = this.open.get(key) ?? 0;
    if (n >= this.max) {
      throw new CrmsError(
        "RESOURCE_EXHAUSTED",
        `too many open streams: ${key.replace(/^[a-z]+:/, "")} already holds ${n} (limit ${this.max} streams per client)`,
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
}
