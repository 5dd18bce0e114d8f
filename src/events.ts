/**
 * Typed events, in place of single callback slots that only one listener can
 * hold (the etcd client announces a lost lease the same way). A module keeps an
 * `Emitter` and publishes it as `Events`, so others can subscribe but not emit.
 */

/** What a listener may do with a module's events: subscribe, and later unsubscribe. */
export interface Events<M extends { [K in keyof M]: unknown[] }> {
  /** Calls `listener` on each `name` event until the returned function is called. */
  on<K extends keyof M>(name: K, listener: (...args: M[K]) => void): () => void;
}

/** The emitting side. Listeners run in subscription order and must not throw. */
export class Emitter<M extends { [K in keyof M]: unknown[] }> implements Events<M> {
  private readonly listeners: { [K in keyof M]?: Set<(...args: M[K]) => void> } = {};

  on<K extends keyof M>(name: K, listener: (...args: M[K]) => void): () => void {
    const set = (this.listeners[name] ??= new Set());
    // Wrapped, so that subscribing one function twice gives two independent subscriptions.
    const entry = (...args: M[K]) => listener(...args);
    set.add(entry);
    return () => void set.delete(entry);
  }

  emit<K extends keyof M>(name: K, ...args: M[K]): void {
    const set = this.listeners[name];
    if (set) for (const listener of set) listener(...args);
  }

  /** Whether anyone listens to `name` (to skip computing an event's arguments). */
  has(name: keyof M): boolean {
    return (this.listeners[name]?.size ?? 0) > 0;
  }
}
