/**
 * Pending jobs in scheduling order: priority high to low, then id (submit order).
 *
 * One lane per priority. A lane is a sorted deque (`main`, read from a head
 * index, so taking from the front never moves the rest) plus a small sorted
 * `late` list for ids that arrive behind the tail (a job requeued or put back
 * after a failed assignment); iteration merges the two. Deletion is lazy: a
 * deleted id stays where it is until the head passes it or the lane is
 * rebuilt, which happens once it holds more stale entries than live ones, so
 * every operation but an out-of-order add is O(1) amortized (that one is
 * O(√n)) and no operation moves the whole backlog per pass.
 *
 * The lane key is the priority today; #17 (queues, fair share) will key lanes
 * by more than that, which is why the lane is its own class.
 */
import { compareIds } from "../store/keys.js";

class Lane {
  main: string[] = [];
  head = 0;
  late: string[] = [];
  lateHead = 0;
  /** Ids queued at this lane's key (the rest of `main`/`late` are stale). */
  live = 0;

  constructor(readonly priority: number) {}

  get physical(): number {
    return this.main.length - this.head + this.late.length - this.lateHead;
  }

  push(id: string): void {
    const last = this.main.at(-1);
    if (this.main.length === this.head || last === undefined || compareIds(last, id) < 0) {
      if (this.main.length === this.head && this.head > 0) {
        this.main = [];
        this.head = 0;
      }
      this.main.push(id);
      return;
    }
    // Behind the tail: into the sorted late list (binary search, short splice).
    let lo = this.lateHead;
    let hi = this.late.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareIds(this.late[mid] as string, id) < 0) lo = mid + 1;
      else hi = mid;
    }
    this.late.splice(lo, 0, id);
  }

  /** Both lists merged in order, stale entries included; `keep` says which ids survive a rebuild. */
  rebuild(keep: (id: string) => boolean): void {
    const out: string[] = [];
    let i = this.head;
    let j = this.lateHead;
    const { main, late } = this;
    while (i < main.length || j < late.length) {
      let id: string;
      if (j >= late.length || (i < main.length && compareIds(main[i] as string, late[j] as string) <= 0)) {
        id = main[i++] as string;
      } else {
        id = late[j++] as string;
      }
      if (keep(id) && out.at(-1) !== id) out.push(id);
    }
    this.main = out;
    this.head = 0;
    this.late = [];
    this.lateHead = 0;
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
    if (this.ghosts.get(id) === priority) {
      this.ghosts.delete(id);
      return;
    }
    lane.push(id);
    if (lane.late.length - lane.lateHead > Math.max(64, Math.sqrt(lane.live))) this.rebuild(lane);
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

  /**
   * Up to `limit` ids in order. With `eligible`, ids it refuses stay queued
   * but are passed over without counting against `limit` (jobs waiting for
   * dependencies or for their array's running limit must not hide the jobs
   * behind them); at most `maxScan` ids are looked at then.
   */
  head(limit: number, eligible?: (id: string) => boolean, maxScan = Number.POSITIVE_INFINITY): string[] {
    const out: string[] = [];
    let scanned = 0;
    for (const lane of this.order) {
      if (out.length >= limit || scanned >= maxScan) break;
      // Stale entries at the front go for good.
      while (lane.head < lane.main.length && !this.isLive(lane.main[lane.head] as string, lane)) {
        this.dropped(lane.main[lane.head++] as string, lane);
      }
      while (lane.lateHead < lane.late.length && !this.isLive(lane.late[lane.lateHead] as string, lane)) {
        this.dropped(lane.late[lane.lateHead++] as string, lane);
      }
      // Give back the space the head left behind once it is half the array (amortized O(1)).
      if (lane.head > 1024 && lane.head * 2 > lane.main.length) {
        lane.main = lane.main.slice(lane.head);
        lane.head = 0;
      }
      if (lane.lateHead > 0 && lane.lateHead * 2 > lane.late.length) {
        lane.late = lane.late.slice(lane.lateHead);
        lane.lateHead = 0;
      }
      const { main, late } = lane;
      let i = lane.head;
      let j = lane.lateHead;
      let previous: string | undefined;
      while ((i < main.length || j < late.length) && out.length < limit && scanned < maxScan) {
        let id: string;
        if (j >= late.length || (i < main.length && compareIds(main[i] as string, late[j] as string) <= 0)) {
          id = main[i++] as string;
        } else {
          id = late[j++] as string;
        }
        if (id === previous || !this.isLive(id, lane)) continue;
        previous = id;
        scanned++;
        if (!eligible || eligible(id)) out.push(id);
      }
    }
    return out;
  }
}
