/** Pending jobs in scheduling order: priority high to low, then id (submit order). */
import { compareIds } from "../store/keys.js";

export class PendingQueue {
  private buckets = new Map<number, string[]>();
  private priorities: number[] = [];
  private members = new Map<string, number>();

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
    let bucket = this.buckets.get(priority);
    if (!bucket) {
      bucket = [];
      this.buckets.set(priority, bucket);
      this.priorities.push(priority);
      this.priorities.sort((a, b) => b - a);
    }
    const last = bucket.at(-1);
    if (last === undefined || compareIds(last, id) < 0) {
      bucket.push(id);
      return;
    }
    let lo = 0;
    let hi = bucket.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareIds(bucket[mid] as string, id) < 0) lo = mid + 1;
      else hi = mid;
    }
    bucket.splice(lo, 0, id);
  }

  /** Removes lazily: the id is skipped and dropped when iteration reaches it. */
  delete(id: string): void {
    this.members.delete(id);
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
    for (const p of this.priorities) {
      const bucket = this.buckets.get(p) as string[];
      let write = 0;
      let read = 0;
      // Compact stale ids out of the part we walk.
      for (; read < bucket.length && out.length < limit && scanned < maxScan; read++) {
        const id = bucket[read] as string;
        if (this.members.get(id) !== p) continue;
        bucket[write++] = id;
        scanned++;
        if (!eligible || eligible(id)) out.push(id);
      }
      if (read > write) bucket.splice(write, read - write);
      if (out.length >= limit || scanned >= maxScan) break;
    }
    return out;
  }
}
