/**
 * An in-memory copy of one key prefix, built by list + watch from a revision.
 * A compacted watch (or one that falls silent while etcd moved on) relists and
 * emits the difference, so the copy never keeps a silent gap.
 */
import { EventEmitter } from "node:events";
import { type Etcd3, SortOrder, SortTarget, type Watcher } from "etcd3";
import { kvWire, type WireKeyValue } from "./kv-wire.js";

/** One cached record with the revisions etcd gave it. */
export interface Entry<T> {
  value: T;
  mod: number;
  create: number;
  lease: string;
}

/** Events: put(name, entry, prev?), delete(name, prev, revision), synced(). */
export interface CacheEvents<T> {
  put: [name: string, entry: Entry<T>, prev: Entry<T> | undefined];
  delete: [name: string, prev: Entry<T>, revision: number];
  synced: [];
}

/** The key just past every key with this prefix. */
export function prefixEnd(prefix: string | Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if ((end[i] as number) < 0xff) {
      end[i] = (end[i] as number) + 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

const LIST_PAGE = 2000;
/** A sub-range holding more than this many pages of keys is split by the next character (see list()). */
const SPLIT_PAGES = 16;

/**
 * Keeping some records of a prefix encoded instead of as objects: a decoded
 * protobuf-es job takes about 2.5 KB of heap, its encoding under 100 bytes,
 * and a backlog of pending jobs is many records that are rarely read whole.
 */
export interface Compaction<T> {
  /** True for the records kept encoded. */
  keep(value: T): boolean;
  encode(value: T): Uint8Array;
  /** Decoded records of encoded entries kept at once (the most recently read). */
  hot: number;
}

/**
 * A record kept as its encoding (in a one-byte string, the most compact form
 * V8 has for bytes), decoded when read; the last `hot` decoded records are
 * kept decoded, so a scheduler pass over the head of the queue decodes each
 * once. Readers must not change what `value` returns (nobody changes a cached
 * record in place: updates build a new one).
 */
class EncodedEntry<T> implements Entry<T> {
  hot: T | undefined;
  constructor(
    readonly bytes: string,
    readonly mod: number,
    readonly create: number,
    readonly lease: string,
    private readonly ring: HotRing<T>,
  ) {}

  get value(): T {
    return this.hot ?? this.ring.load(this);
  }
}

/** The decoded records of encoded entries kept, oldest replaced first. */
class HotRing<T> {
  private readonly slots: (EncodedEntry<T> | undefined)[];
  private next = 0;
  decodes = 0;

  constructor(
    size: number,
    private readonly decode: (bytes: Buffer) => T,
  ) {
    this.slots = new Array(Math.max(1, size));
  }

  load(e: EncodedEntry<T>): T {
    const value = this.decode(Buffer.from(e.bytes, "latin1"));
    this.decodes++;
    const old = this.slots[this.next];
    if (old) old.hot = undefined;
    e.hot = value;
    this.slots[this.next] = e;
    this.next = (this.next + 1) % this.slots.length;
    return value;
  }
}

export class PrefixCache<T> extends EventEmitter<CacheEvents<T>> {
  readonly entries = new Map<string, Entry<T>>();
  /** The store revision this copy reflects. */
  revision = 0;
  relists = 0;
  private watcher?: Watcher;
  private tombstones = new Map<string, number>();
  private closed = false;
  private lastEventAt = Date.now();
  /** checkProgress reads the whole prefix again no sooner than this (ms since the epoch). */
  private nextFullCheck = 0;

  private readonly ring?: HotRing<T>;

  constructor(
    private readonly etcd: Etcd3,
    readonly prefix: string,
    private readonly decode: (bytes: Buffer) => T,
    private readonly compaction?: Compaction<T>,
    /**
     * How lists are read: `alphabet`, every character a key's name can hold
     * when known (job ids: digits), splits large lists (see list()); `page`,
     * keys per request (default LIST_PAGE).
     */
    private readonly listing: { alphabet?: string; page?: number } = {},
  ) {
    super();
    this.setMaxListeners(0);
    if (compaction) this.ring = new HotRing(compaction.hot, decode);
  }

  /** Records decoded from their compact form so far (for benchmarks). */
  get decodes(): number {
    return this.ring?.decodes ?? 0;
  }

  /** The form an entry is kept in: encoded when the compaction keeps it so, else as it is. */
  private kept(entry: Entry<T>, bytes?: Uint8Array): Entry<T> {
    const c = this.compaction;
    if (!c || !this.ring || !c.keep(entry.value)) return entry;
    const raw = bytes ?? c.encode(entry.value);
    const text = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString("latin1");
    return new EncodedEntry(text, entry.mod, entry.create, entry.lease, this.ring);
  }

  /** Lists the prefix and starts watching after the listed revision. */
  async start(): Promise<void> {
    await this.relist();
  }

  /**
   * Reads every key of the prefix at one revision, a page at a time, in key
   * order. With `each`, records go to it as they come (with the decoded entry
   * too) instead of into the map.
   *
   * etcd 3.4 collects every key from a page's start to the range's end before
   * it cuts the page (its index has no limit), so paging through n keys costs
   * n²/(2 × page) key visits: 500 pages over a million jobs took 70 s. With an
   * alphabet, a sub-range of more than SPLIT_PAGES pages of keys is listed
   * as one sub-range per next character instead: a key is then visited once
   * per level of splitting and at most SPLIT_PAGES / 2 times on average in
   * its last sub-range (a million job ids: about 5 million visits).
   */
  async list(
    each?: (name: string, kept: Entry<T>, decoded: Entry<T>) => void,
  ): Promise<{ revision: number; kvs: Map<string, Entry<T>> }> {
    const kvs = new Map<string, Entry<T>>();
    let revision = 0;
    const limit = this.listing.page ?? LIST_PAGE;
    const wire = kvWire(this.etcd);
    const page = async (key: Buffer, end: Buffer) => {
      const res = await wire.range({ key, end, limit, revision });
      if (!revision) revision = res.revision;
      return res;
    };
    const skip = Buffer.byteLength(this.prefix);
    const take = (kv: WireKeyValue) => {
      const name = kv.key.toString("utf8", skip);
      const decoded = { value: this.decode(kv.value), mod: kv.mod, create: kv.create, lease: kv.lease };
      const kept = this.kept(decoded, kv.value);
      if (each) each(name, kept, decoded);
      else kvs.set(name, kept);
    };
    const alphabet = [...(this.listing.alphabet ?? "")].map((ch) => Buffer.from(ch)).sort(Buffer.compare);
    /** The first key after `key`. */
    const after = (key: Buffer): Buffer => Buffer.concat([key, Buffer.from([0])]);
    /**
     * Lists [start, end). When it is all the keys under `under` and holds more
     * than SPLIT_PAGES pages of them: the key `under` itself, then for each character
     * of the alphabet in order the keys under `under` + character, and the
     * gaps between them (keys with other characters, if any, are not lost).
     */
    const listRange = async (start: Buffer, end: Buffer, under?: Buffer): Promise<void> => {
      let res = await page(start, end);
      if (under && res.more && alphabet.length > 0 && res.count > SPLIT_PAGES * limit) {
        const exact = res.kvs[0];
        if (exact?.key.equals(under)) take(exact);
        let at = after(under);
        for (const ch of alphabet) {
          const child = Buffer.concat([under, ch]);
          const childEnd = prefixEnd(child);
          if (Buffer.compare(at, child) < 0) await listRange(at, child);
          await listRange(child, childEnd, child);
          at = childEnd;
        }
        if (Buffer.compare(at, end) < 0) await listRange(at, end);
        return;
      }
      for (;;) {
        // The next page is asked for before this one is taken in: etcd reads it
        // (on another core) while this process decodes.
        const last = res.kvs.at(-1);
        const next = res.more && last ? page(after(last.key), end) : undefined;
        // Let the request go out (etcd3 sends it a few ticks later) before decoding.
        if (next) await new Promise((resolve) => setImmediate(resolve));
        try {
          for (const kv of res.kvs) take(kv);
        } catch (err) {
          next?.catch(() => undefined);
          throw err;
        }
        if (!next) return;
        res = await next;
      }
    };
    const from = Buffer.from(this.prefix);
    await listRange(from, prefixEnd(from), from);
    return { revision, kvs };
  }

  private async relist(): Promise<void> {
    // Do not wait for the old watch to confirm its cancel: a stalled watch never would.
    void this.watcher?.cancel().catch(() => undefined);
    this.watcher = undefined;
    if (this.entries.size === 0) {
      // The first load (or a relist of an empty copy): nothing to compare, so
      // records are kept and announced page by page, decoded once.
      const { revision } = await this.list((name, kept, decoded) => {
        this.entries.set(name, kept);
        this.emit("put", name, decoded, undefined);
      });
      this.relists++;
      this.tombstones.clear();
      this.revision = revision;
      if (!this.closed) await this.watch(revision + 1);
      this.emit("synced");
      return;
    }
    const { revision, kvs } = await this.list();
    this.relists++;
    for (const [name, prev] of this.entries) {
      if (!kvs.has(name)) {
        this.entries.delete(name);
        this.emit("delete", name, prev, revision);
      }
    }
    for (const [name, entry] of kvs) {
      const prev = this.entries.get(name);
      if (!prev || prev.mod !== entry.mod) {
        this.entries.set(name, entry);
        this.emit("put", name, entry, prev);
      }
    }
    this.tombstones.clear();
    this.revision = revision;
    if (!this.closed) await this.watch(revision + 1);
    this.emit("synced");
  }

  private async watch(from: number): Promise<void> {
    const watcher = await this.etcd.watch().prefix(this.prefix).startRevision(String(from)).create();
    this.watcher = watcher;
    watcher.on("data", (res) => {
      this.lastEventAt = Date.now();
      for (const ev of res.events) {
        const name = ev.kv.key.toString().slice(this.prefix.length);
        const mod = Number(ev.kv.mod_revision);
        if (ev.type === "Put") {
          // Most puts are this replica's own writes, already applied: skip them before decoding.
          if (this.stale(name, mod)) continue;
          this.apply(
            name,
            {
              value: this.decode(ev.kv.value),
              mod,
              create: Number(ev.kv.create_revision),
              lease: String(ev.kv.lease),
            },
            ev.kv.value,
          );
        } else {
          this.applyDelete(name, mod);
        }
      }
      const rev = Number(res.header.revision);
      if (rev > this.revision) this.revision = rev;
      for (const [name, r] of this.tombstones) if (r <= this.revision) this.tombstones.delete(name);
    });
    watcher.on("error", () => {
      // Compacted or cancelled by etcd: relist from scratch rather than miss events.
      if (this.watcher === watcher && !this.closed) void this.relist().catch(() => this.retryRelist());
    });
  }

  private retryRelist(): void {
    if (this.closed) return;
    setTimeout(() => void this.relist().catch(() => this.retryRelist()), 1000);
  }

  /**
   * Applies a record written by this process (write-through) or seen by the
   * watch (with its encoding, when at hand). Listeners get the decoded entry;
   * the cache keeps it in the compaction's form.
   */
  apply(name: string, entry: Entry<T>, bytes?: Uint8Array): void {
    if (this.stale(name, entry.mod)) return;
    const prev = this.entries.get(name);
    this.entries.set(name, this.kept(entry, bytes));
    this.emit("put", name, entry, prev);
  }

  /** True if a put at revision `mod` is not newer than what the cache holds or deleted. */
  private stale(name: string, mod: number): boolean {
    const prev = this.entries.get(name);
    if (prev && prev.mod >= mod) return true;
    const dead = this.tombstones.get(name);
    return dead !== undefined && dead >= mod;
  }

  /** Applies a deletion at a revision. */
  applyDelete(name: string, revision: number): void {
    const prev = this.entries.get(name);
    if (prev && prev.mod > revision) return;
    this.tombstones.set(name, revision);
    if (!prev) return;
    this.entries.delete(name);
    this.emit("delete", name, prev, revision);
  }

  /**
   * Relists if the watch has been silent for `silentMs` while this prefix
   * changed past the cache's revision. One keys-only read (at one revision)
   * gives the newest mod revision in the prefix and its key count: a put
   * missed since the cache's revision leaves a key newer than it, a delete
   * missed leaves fewer keys than the cache holds. Changes under other
   * prefixes move etcd's revision but neither figure, so they never relist.
   * (etcd does not apply min_mod_revision to a count, so a filtered count
   * cannot answer this.) That read costs etcd a pass over the whole prefix,
   * so a one-key read first rules out the quiet case, and full reads take
   * at most `share` of the time (2 %: after one that took d ms the next waits
   * 49 × d; a million idle jobs are read minutes apart, not every 5 s).
   */
  async checkProgress(silentMs: number, share = 0.02): Promise<boolean> {
    if (Date.now() - this.lastEventAt < silentMs || Date.now() < this.nextFullCheck) return false;
    // A one-key read first: when etcd's revision has not moved past the cache's, nothing was missed.
    const probe = await this.etcd.kv.range({ key: Buffer.from(this.prefix), keys_only: true });
    if (Number(probe.header.revision) <= this.revision) return false;
    // The read of the whole prefix below makes etcd load and sort every key in it (seconds for a
    // million jobs): at most `share` of the time goes to it, so a large idle prefix is checked less often.
    const started = Date.now();
    const res = await this.etcd.kv.range({
      key: Buffer.from(this.prefix),
      range_end: prefixEnd(this.prefix),
      keys_only: true,
      limit: 1,
      sort_order: SortOrder.Descend,
      sort_target: SortTarget.Mod,
    });
    this.nextFullCheck = Date.now() + ((1 - share) / share) * (Date.now() - started);
    if (Number(res.header.revision) <= this.revision) return false;
    const newest = Number(res.kvs[0]?.mod_revision ?? 0);
    if (newest <= this.revision && Number(res.count) === this.entries.size) {
      this.lastEventAt = Date.now();
      return false;
    }
    await this.relist();
    return true;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.watcher?.cancel().catch(() => undefined);
  }
}
