/**
 * The store's etcd client, key schema and batcher, for the store's own modules
 * (election, maintenance, status) and nobody else: the Store keeps them
 * private, and no file outside src/store imports this one.
 */
import type { Etcd3 } from "etcd3";
import type { Batcher } from "./batcher.js";
import type { Keys } from "./keys.js";

export interface StoreInternals {
  readonly etcd: Etcd3;
  readonly keys: Keys;
  readonly batcher: Batcher;
  /** A client bound to one member, for per-member maintenance (status, defragment). */
  memberClient(endpoint: string): Etcd3;
}

/** Keyed by the Store object (typed `object` so this module need not import store.ts, which imports it). */
const byStore = new WeakMap<object, StoreInternals>();

/** Called once by the Store's constructor. */
export function registerInternals(store: object, internals: StoreInternals): void {
  byStore.set(store, internals);
}

/** The etcd side of a store. */
export function internals(store: object): StoreInternals {
  const found = byStore.get(store);
  if (!found) throw new Error("not a Store");
  return found;
}
