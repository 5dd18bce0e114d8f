/**
 * Group commit: concurrent transitions are packed into one etcd Txn. Each
 * transition keeps its own compares; when the packed Txn fails, its failure
 * branch reads every compared key, so each transition learns alone whether it
 * lost (and sees the current record) or should go again in the next batch.
 */
import { type Etcd3, EtcdLeaseInvalidError } from "etcd3";
import { Emitter, type Events } from "../events.js";
import { kvWire, type WireCompare, type WireOp } from "./kv-wire.js";

/** A revision check on one key: its mod or create revision must equal `revision` (0: absent). */
export interface Compare {
  key: string;
  target: "mod" | "create";
  revision: number;
}

/** A write in a transition. */
export type Write = { type: "put"; key: string; value: Buffer; lease?: string } | { type: "delete"; key: string };

/** The state of a key as read in a failure branch. */
export interface KeyState {
  value: Buffer;
  mod: number;
  create: number;
  lease: string;
}

/** The outcome of one transition. */
export type TxnOutcome = { ok: true; revision: number } | { ok: false; current: Map<string, KeyState | undefined> };

interface Pending {
  compares: Compare[];
  writes: Write[];
  size: number;
  resolve: (o: TxnOutcome) => void;
  reject: (e: unknown) => void;
}

/** etcd's defaults: 128 operations per Txn, 1.5 MiB per request. */
export const MAX_TXN_OPS = 128;
const MAX_BATCH_BYTES = 1024 * 1024;

/** Counters a benchmark or /metrics reads. */
export interface BatcherStats {
  txns: number;
  transitions: number;
  conflicts: number;
  retries: number;
  largest: number;
  /** Bytes of keys and values put by successful Txns. */
  bytes: number;
}

/** What the batcher announces: `txn` with each Txn's duration in seconds and number of transitions. */
export interface BatcherEvents {
  txn: [seconds: number, size: number];
}

export class Batcher {
  private queue: Pending[] = [];
  private inFlight = 0;
  private scheduled = false;
  readonly stats: BatcherStats = { txns: 0, transitions: 0, conflicts: 0, retries: 0, largest: 0, bytes: 0 };
  private readonly emitter = new Emitter<BatcherEvents>();
  readonly events: Events<BatcherEvents> = this.emitter;
  /** Runs each commit while etcd answers (the store's health check); unset: always. */
  guard?: <T>(fn: () => Promise<T>) => Promise<T>;
  /** An error while etcd does not answer: queued transitions are refused with it instead of sent late. */
  blocked?: () => Error | undefined;

  constructor(
    private readonly etcd: Etcd3,
    private readonly maxInFlight = 16,
    private readonly maxOps = MAX_TXN_OPS,
  ) {}

  /** True while a Txn is in flight or transitions wait for one (the store is under load). */
  get busy(): boolean {
    return this.inFlight > 0 || this.queue.length > 0;
  }

  /** Queues one transition and resolves with its own outcome. */
  commit(compares: Compare[], writes: Write[]): Promise<TxnOutcome> {
    if (writes.length > this.maxOps || compares.length > this.maxOps) {
      return Promise.reject(new Error(`a transition may have at most ${this.maxOps} operations`));
    }
    let size = 0;
    for (const w of writes) size += w.key.length + (w.type === "put" ? w.value.length : 0);
    const queued = () =>
      new Promise<TxnOutcome>((resolve, reject) => {
        this.queue.push({ compares, writes, size, resolve, reject });
        this.schedule();
      });
    return this.guard ? this.guard(queued) : queued();
  }

  /**
   * Idle (no Txn in flight), the queue goes out once the current job of the
   * event loop is done (a microtask: what that job queued joins, nothing waits
   * for I/O). Under load it goes out after the I/O callbacks that are ready
   * (setImmediate), so the transitions they queue join the same Txn.
   */
  private schedule(): void {
    if (this.scheduled || this.inFlight >= this.maxInFlight || this.queue.length === 0) return;
    this.scheduled = true;
    const flushAll = () => {
      this.scheduled = false;
      while (this.inFlight < this.maxInFlight && this.queue.length > 0) this.flush();
    };
    if (this.inFlight === 0) queueMicrotask(flushAll);
    else setImmediate(flushAll);
  }

  /**
   * Takes as many queued transitions as fit in one Txn: no key written twice,
   * no key both written and compared, one expectation per compared key, and at
   * most maxOps compares (deduplicated), writes and failure-branch reads.
   */
  private take(): Pending[] {
    const batch: Pending[] = [];
    const written = new Set<string>();
    const compared = new Map<string, string>();
    let writes = 0;
    let bytes = 0;
    const rest: Pending[] = [];
    for (const p of this.queue) {
      if (rest.length > 0) {
        rest.push(p);
        continue;
      }
      let newCompares = 0;
      let fits = writes + p.writes.length <= this.maxOps && bytes + p.size <= MAX_BATCH_BYTES;
      for (const c of p.compares) {
        const expect = `${c.target}:${c.revision}`;
        const known = compared.get(c.key);
        if (written.has(c.key) || (known !== undefined && known !== expect)) fits = false;
        if (known === undefined) newCompares++;
      }
      for (const w of p.writes) if (written.has(w.key) || compared.has(w.key)) fits = false;
      if (compared.size + newCompares > this.maxOps) fits = false;
      if (!fits && batch.length > 0) {
        rest.push(p);
        continue;
      }
      batch.push(p);
      writes += p.writes.length;
      bytes += p.size;
      for (const c of p.compares) compared.set(c.key, `${c.target}:${c.revision}`);
      for (const w of p.writes) written.add(w.key);
    }
    this.queue = rest;
    return batch;
  }

  private flush(): void {
    const blocked = this.blocked?.();
    if (blocked) {
      for (const p of this.queue) p.reject(blocked);
      this.queue = [];
      return;
    }
    const batch = this.take();
    if (batch.length === 0) return;
    this.inFlight++;
    this.run(batch)
      .catch((err) => {
        if (err instanceof EtcdLeaseInvalidError && batch.length > 1) {
          // A put naming a lease etcd no longer has fails the whole Txn: only the
          // transitions that put with a lease fail, the others go again.
          const leased = (p: Pending) => p.writes.some((w) => w.type === "put" && w.lease && w.lease !== "0");
          for (const p of batch) if (leased(p)) p.reject(err);
          this.queue.unshift(...batch.filter((p) => !leased(p)));
          return;
        }
        for (const p of batch) p.reject(err);
      })
      .finally(() => {
        this.inFlight--;
        this.schedule();
      });
  }

  private async run(batch: Pending[]): Promise<void> {
    const compare: WireCompare[] = [];
    const success: WireOp[] = [];
    const readKeys: string[] = [];
    const seen = new Set<string>();
    for (const p of batch) {
      for (const c of p.compares) {
        if (seen.has(c.key)) continue; // the same expectation, already compared
        compare.push({ key: Buffer.from(c.key), target: c.target, revision: c.revision });
        seen.add(c.key);
        readKeys.push(c.key);
      }
      for (const w of p.writes) {
        success.push(
          w.type === "put"
            ? { put: { key: Buffer.from(w.key), value: w.value, lease: w.lease } }
            : { delete: { key: Buffer.from(w.key) } },
        );
      }
    }
    const failure: WireOp[] = readKeys.map((k) => ({ range: { key: Buffer.from(k) } }));
    const started = process.hrtime.bigint();
    const res = await kvWire(this.etcd).txn(compare, success, failure);
    this.emitter.emit("txn", Number(process.hrtime.bigint() - started) / 1e9, batch.length);
    this.stats.txns++;
    this.stats.transitions += batch.length;
    this.stats.largest = Math.max(this.stats.largest, batch.length);
    const revision = res.revision;
    if (res.succeeded) {
      for (const p of batch) {
        this.stats.bytes += p.size;
        p.resolve({ ok: true, revision });
      }
      return;
    }
    const current = new Map<string, KeyState | undefined>();
    readKeys.forEach((key, i) => {
      const kv = res.responses[i]?.kvs[0];
      current.set(key, kv ? { value: kv.value, mod: kv.mod, create: kv.create, lease: kv.lease } : undefined);
    });
    const again: Pending[] = [];
    for (const p of batch) {
      const holds = p.compares.every((c) => {
        const s = current.get(c.key);
        return (c.target === "mod" ? (s?.mod ?? 0) : (s?.create ?? 0)) === c.revision;
      });
      if (holds && batch.length > 1) {
        again.push(p);
      } else {
        this.stats.conflicts++;
        const mine = new Map<string, KeyState | undefined>();
        for (const c of p.compares) mine.set(c.key, current.get(c.key));
        p.resolve({ ok: false, current: mine });
      }
    }
    this.stats.retries += again.length;
    this.queue.unshift(...again);
  }
}
