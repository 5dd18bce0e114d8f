/**
 * What every handler learns about its call, free of transport details: the
 * grpc-js and Connect adapters fill it, services and auth read it. A leaf, so
 * auth need not import services for it.
 */
/** Per-call context given to every handler, free of transport details. */
export interface CallContext {
  /** Aborted when the client goes away. */
  signal: AbortSignal;
  /** Request metadata, lower-case keys. */
  metadata: Record<string, string>;
  /** The peer address. */
  peer: string;
  /** Who calls, once authenticated (undefined when authentication is off). */
  identity?: Identity;
}

/** An authenticated caller: the token's name and role, and for a worker token its worker name. */
export interface Identity {
  name: string;
  role: "admin" | "submitter" | "reader" | "worker";
  worker?: string;
}
