/**
 * Pending jobs in scheduling order: priority high to low, then id (submit order).
 *
 * One lane per priority. A lane is a list of sorted chunks (at most
 * 2 × CHUNK ids each; every id of a chunk comes before every id of the
 * next), read from a head index in the first chunk: taking from the front
 * never moves the rest, and an id that arrives out of order (a replica
 * listing ids in etcd's key order, a job requeued or put back after a failed
 * assignment) is set aside and sorted in at the next read: by binary search
 * and a splice within one chunk when few wait, by one sort and merge when many
 * do (a replica's first load).
 * Deletion is lazy: a deleted id stays where it is until the head passes it
 * or the lane is rebuilt, which happens once it holds more stale entries than
 * live ones. So taking from the front and skipping are O(1) amortized, an add
 * is O(log n + CHUNK), and nothing moves the whole backlog per pass.
 *
 * A PendingQueue holds the jobs of one user in one queue; FairQueue keeps one
 * per (queue, user) for fair share, which takes from them in turn.
 */
import { compareIds } from "../ids.js";

const CHUNK = 1024;

class Lane {
  chunks: string[][] = [];
  /** Ids of chunks[0] before this index are gone. */
  head = 0;
  /** Ids queued at this lane's key (the other entries are stale). */
  live = 0;
  /** Entries held, stale ones included (the ones set aside by push too). */
  physical = 0;
  /** Ids pushed out of order, not yet sorted in (see push). */
  private loose: string[] = [];

  constructor(readonly priority: number) {}

  /** Index of the first entry of chunk c that is still held. */
  start(c: number): number {
    return c === 0 ? this.head : 0;
  }

  /**
   * Adds an id: at the tail when it comes after every held id (the common
   * case), else set aside and sorted in at the next read (`settle`), so that
   * a replica loading ids in etcd's key order (1, 10, 100, …) sorts them once.
   */
  push(id: string): void {
    this.physical++;
    const last = this.chunks.at(-1);
    if (!last) this.chunks.push([id]);
    else if (compareIds(last.at(-1) as string, id) >= 0) this.loose.push(id);
    else if (last.length >= CHUNK) this.chunks.push([id]);
    else last.push(id);
  }

  /**
   * Sorts in the ids set aside by push: one at a time when they are few next to
   * the lane (O(log n + CHUNK) each), else all at once (a sort of them and one
   * merge with the held ids, O(n + k log k)).
   */
  private settle(): void {
    const loose = this.loose;
    if (loose.length === 0) return;
    this.loose = [];
    if (loose.length * CHUNK < this.physical) {
      for (const id of loose) this.insert(id);
      return;
    }
    loose.sort(compareIds);
    const out = new ChunkWriter();
    let j = 0;
    for (const id of this.held()) {
      while (j < loose.length && compareIds(loose[j] as string, id) < 0) out.put(loose[j++] as string);
      out.put(id);
    }
    while (j < loose.length) out.put(loose[j++] as string);
    this.chunks = out.done();
    this.head = 0;
  }

  /** Places an id that comes before the tail by binary search and a splice within one chunk. */
  private insert(id: string): void {
    const { chunks } = this;
    // The last chunk whose first held id is not after `id` (else the first chunk).
    let lo = 0;
    let hi = chunks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      const chunk = chunks[mid] as string[];
      if (compareIds(chunk[this.start(mid)] as string, id) <= 0) lo = mid;
      else hi = mid - 1;
    }
    const c = lo;
    const chunk = chunks[c] as string[];
    let a = this.start(c);
    let b = chunk.length;
    while (a < b) {
      const mid = (a + b) >> 1;
      if (compareIds(chunk[mid] as string, id) < 0) a = mid + 1;
      else b = mid;
    }
    chunk.splice(a, 0, id);
    if (chunk.length - this.start(c) > 2 * CHUNK) {
      const held = chunk.slice(this.start(c));
      if (c === 0) this.head = 0;
      chunks.splice(c, 1, held.slice(0, CHUNK), held.slice(CHUNK));
    }
  }

  /** The id at the tail, if any (stale or not). */
  last(): string | undefined {
    this.settle();
    return this.chunks.at(-1)?.at(-1);
  }

  /** The id at the head, if any (stale or not). */
  front(): string | undefined {
    this.settle();
    return this.chunks[0]?.[this.head];
  }

  /** Drops the id at the head. */
  shift(): void {
    this.physical--;
    this.head++;
    const first = this.chunks[0];
    if (first && this.head >= first.length) {
      this.chunks.shift();
      this.head = 0;
    }
  }

  /** Every held entry in order, stale ones included. */
  ids(): Generator<string> {
    this.settle();
    return this.held();
  }

  /** The entries in the chunks in order (not the ones set aside). */
  private *held(): Generator<string> {
    const { chunks } = this;
    for (let c = 0; c < chunks.length; c++) {
      const chunk = chunks[c] as string[];
      for (let i = this.start(c); i < chunk.length; i++) yield chunk[i] as string;
    }
  }

  /** Keeps only the entries `keep` accepts (each id once), in fresh chunks. */
  rebuild(keep: (id: string) => boolean): void {
    const out = new ChunkWriter();
    let previous: string | undefined;
    for (const id of this.ids()) {
      if (id === previous || !keep(id)) continue;
      previous = id;
      out.put(id);
    }
    this.chunks = out.done();
    this.head = 0;
    this.physical = out.count;
  }
}

/** Builds a lane's chunks from ids in order, CHUNK a chunk. */
class ChunkWriter {
  private readonly chunks: string[][] = [];
  private cur: string[] = [];
  count = 0;

  put(id: string): void {
    if (this.cur.length >= CHUNK) {
      this.chunks.push(this.cur);
      this.cur = [];
    }
    this.cur.push(id);
    this.count++;
  }

  done(): string[][] {
    if (this.cur.length) this.chunks.push(this.cur);
    this.cur = [];
    return this.chunks;
  }
}

export class PendingQueue {
  private readonly lanes = new Map<number, Lane>();
  /** Lanes, highest priority first. */
  private order: Lane[] = [];
  private readonly members = new Map<string, number>();
  /**
   * Deleted ids still physically in a lane, with that lane's priority: adding
   * one back at the same priority revives it in place instead of inserting a
   * second copy.
   */
  private readonly ghosts = new Map<string, number>();

  get size(): number {
    return this.members.size;
  }

  has(id: string): boolean {
    return this.members.has(id);
  }

  add(id: string, priority: number): void {
    const known = this.members.get(id);
    if (known === priority) return;
    if (known !== undefined) this.delete(id);
    this.members.set(id, priority);
    const lane = this.lane(priority);
    lane.live++;
    if (this.ghosts.size > 0 && this.ghosts.get(id) === priority) {
      this.ghosts.delete(id);
      return;
    }
    lane.push(id);
  }

  /** Removes lazily: the id is skipped and dropped when iteration reaches it. */
  delete(id: string): void {
    const p = this.members.get(id);
    if (p === undefined) return;
    this.members.delete(id);
    this.ghosts.set(id, p);
    const lane = this.lanes.get(p) as Lane;
    lane.live--;
    if (lane.physical > 2 * lane.live + 64) this.rebuild(lane);
  }

  private lane(priority: number): Lane {
    let lane = this.lanes.get(priority);
    if (!lane) {
      lane = new Lane(priority);
      this.lanes.set(priority, lane);
      this.order.push(lane);
      this.order.sort((a, b) => b.priority - a.priority);
    }
    return lane;
  }

  private isLive(id: string, lane: Lane): boolean {
    return this.members.get(id) === lane.priority;
  }

  /** Drops a stale entry physically: it is no longer a ghost of this lane. */
  private dropped(id: string, lane: Lane): void {
    if (this.ghosts.get(id) === lane.priority) this.ghosts.delete(id);
  }

  private rebuild(lane: Lane): void {
    lane.rebuild((id) => {
      if (this.isLive(id, lane)) return true;
      this.dropped(id, lane);
      return false;
    });
    if (lane.live === 0 && lane.physical === 0) {
      this.lanes.delete(lane.priority);
      this.order = this.order.filter((l) => l !== lane);
    }
  }

  /** Live ids in order, lazily (stale entries at a lane's front are dropped on the way). Do not change the queue while iterating. */
  *iterate(): Generator<string> {
    for (const lane of this.order) {
      for (let id = lane.front(); id !== undefined && !this.isLive(id, lane); id = lane.front()) {
        this.dropped(id, lane);
        lane.shift();
      }
      let previous: string | undefined;
      for (const id of lane.ids()) {
        if (id === previous || !this.isLive(id, lane)) continue;
        previous = id;
        yield id;
      }
    }
  }

  /** How many live ids come before `id` (at most `cap` are counted); undefined when it is not queued. */
  ahead(id: string, cap: number): number | undefined {
    const p = this.members.get(id);
    if (p === undefined) return undefined;
    let n = 0;
    for (const lane of this.order) {
      if (lane.priority > p) {
        n += lane.live;
        continue;
      }
      if (lane.priority < p) break;
      // The newest job (the common case: one just submitted) is last: every other live entry is ahead.
      if (lane.last() === id) {
        n += lane.live - 1;
        break;
      }
      for (const x of lane.ids()) {
        if (n >= cap || x === id) break;
        if (this.isLive(x, lane)) n++;
      }
    }
    return Math.min(n, cap);
  }

  /** How many live ids come before `id` if it were queued at priority `p` (for other users' queues). */
  before(id: string, p: number, cap: number): number {
    let n = 0;
    for (const lane of this.order) {
      if (n >= cap || lane.priority < p) break;
      if (lane.priority > p) {
        n += lane.live;
        continue;
      }
      const last = lane.last();
      if (last !== undefined && compareIds(last, id) < 0) {
        n += lane.live;
        continue;
      }
      for (const x of lane.ids()) {
        if (n >= cap || compareIds(x, id) >= 0) break;
        if (this.isLive(x, lane)) n++;
      }
    }
    return Math.min(n, cap);
  }

  /** The priority an id is queued at. */
  priorityOf(id: string): number | undefined {
    return this.members.get(id);
  }

  /**
   * Up to `limit` ids in order. With `eligible`, ids it refuses stay queued
   * but are passed over without counting against `limit` (jobs waiting for
   * dependencies or for their array's running limit must not hide the jobs
   * behind them); at most `maxScan` ids are looked at then.
   */
  head(limit: number, eligible?: (id: string) => boolean, maxScan = Number.POSITIVE_INFINITY): string[] {
    const out: string[] = [];
    let scanned = 0;
    for (const id of this.iterate()) {
      if (out.length >= limit || scanned >= maxScan) break;
      scanned++;
      if (!eligible || eligible(id)) out.push(id);
    }
    return out;
  }
}

/** Where a pending job is queued: its queue and user. */
interface Group {
  queue: string;
  user: string;
}

/** Pending jobs by queue, then user, each user's in priority then submit order. */
export class FairQueue {
  readonly queues = new Map<string, Map<string, PendingQueue>>();
  private readonly where = new Map<string, Group>();
  /** Per queue, then user: no key built per call (a load adds a million jobs through here). */
  private readonly groups = new Map<string, Map<string, Group>>();

  get size(): number {
    return this.where.size;
  }

  has(id: string): boolean {
    return this.where.has(id);
  }

  add(id: string, priority: number, queue: string, user: string): void {
    const w = this.where.get(id);
    if (w && (w.queue !== queue || w.user !== user)) this.delete(id);
    let users = this.queues.get(queue);
    if (!users) {
      users = new Map();
      this.queues.set(queue, users);
    }
    let q = users.get(user);
    if (!q) {
      q = new PendingQueue();
      users.set(user, q);
    }
    q.add(id, priority);
    if (!w || w.queue !== queue || w.user !== user) this.where.set(id, this.group(queue, user));
  }

  /** One shared Group object per (queue, user): a backlog holds a pointer per job, not an object. */
  private group(queue: string, user: string): Group {
    let users = this.groups.get(queue);
    if (!users) {
      users = new Map();
      this.groups.set(queue, users);
    }
    let g = users.get(user);
    if (!g) {
      g = { queue, user };
      users.set(user, g);
    }
    return g;
  }

  delete(id: string): void {
    const w = this.where.get(id);
    if (!w) return;
    this.where.delete(id);
    const users = this.queues.get(w.queue);
    const q = users?.get(w.user);
    if (!users || !q) return;
    q.delete(id);
    if (q.size === 0) {
      users.delete(w.user);
      if (users.size === 0) this.queues.delete(w.queue);
    }
  }

  /**
   * A pending job's place in its queue (1 = next): the jobs of every user of
   * its queue at a higher priority, or at its priority and submitted before
   * it, come first. Counts at most `cap`.
   */
  position(id: string, cap = 100_000): number | undefined {
    const w = this.where.get(id);
    const users = w && this.queues.get(w.queue);
    const own = users?.get(w?.user ?? "");
    const p = own?.priorityOf(id);
    if (!w || !users || !own || p === undefined) return undefined;
    let n = own.ahead(id, cap) ?? 0;
    for (const [user, q] of users) if (user !== w.user && n < cap) n += q.before(id, p, cap - n);
    return Math.min(n, cap) + 1;
  }
}
