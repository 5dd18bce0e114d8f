/**
 * Queue records in etcd: one Queue (protobuf binary, settings only) per queue
 * under Keys.queues, and the fair-share usage the scheduler leader saves now
 * and then under Keys.fairShare (JSON), so a new leader goes on from it. Every
 * replica keeps a watched copy of the queues. The "default" queue always
 * exists: when no record is stored, it reads as weight 1 with no limits.
 */
import { create } from "@bufbuild/protobuf";
import type { Etcd3 } from "etcd3";
import { type Queue, QueueSchema } from "../../gen/crms/v1/queue_pb.js";
import { PrefixCache } from "./cache.js";
import { decode, encode } from "./codec.js";
import type { Keys } from "./keys.js";

/** The queue a job without one goes to. */
export const DEFAULT_QUEUE = "default";

/** Decayed usage per queue, then per user, at a time (ms since the epoch). */
export interface FairShareRecord {
  at: number;
  usage: { [queue: string]: { [user: string]: number } };
}

export class QueueRecords {
  readonly cache: PrefixCache<Queue>;

  constructor(
    private readonly etcd: Etcd3,
    private readonly keys: Keys,
  ) {
    this.cache = new PrefixCache(etcd, keys.queues, (b) => decode(QueueSchema, b));
  }

  start(): Promise<void> {
    return this.cache.start();
  }

  close(): Promise<void> {
    return this.cache.close();
  }

  /** A queue's settings from this replica's copy ("default" always exists). */
  get(name: string): Queue | undefined {
    const q = this.cache.entries.get(name)?.value;
    if (q || name !== DEFAULT_QUEUE) return q;
    return create(QueueSchema, { name: DEFAULT_QUEUE, weight: 1 });
  }

  /** Every queue: "default" first, then by name. */
  list(): Queue[] {
    const names = [...this.cache.entries.keys()].filter((n) => n !== DEFAULT_QUEUE).sort();
    return [DEFAULT_QUEUE, ...names].map((n) => this.get(n) as Queue);
  }

  /** Calls fn whenever a queue is created, changed or deleted. */
  onChange(fn: () => void): void {
    this.cache.on("put", fn);
    this.cache.on("delete", fn);
  }

  /** Writes a new queue unless one of that name exists (false then). */
  async create(queue: Queue): Promise<boolean> {
    const key = this.keys.queue(queue.name);
    const res = await this.etcd
      .if(key, "Create", "==", 0)
      .then(this.etcd.put(key).value(Buffer.from(encode(QueueSchema, queue))))
      .commit();
    if (!res.succeeded) return false;
    await this.seen(() => this.cache.entries.has(queue.name));
    return true;
  }

  /** Replaces an existing queue's settings (false if it does not exist; "default" is written either way). */
  async update(queue: Queue): Promise<boolean> {
    const key = this.keys.queue(queue.name);
    const value = Buffer.from(encode(QueueSchema, queue));
    if (queue.name === DEFAULT_QUEUE) await this.etcd.put(key).value(value).exec();
    else {
      const res = await this.etcd.if(key, "Create", ">", 0).then(this.etcd.put(key).value(value)).commit();
      if (!res.succeeded) return false;
    }
    const mine = Buffer.from(value).toString("latin1");
    await this.seen(() => {
      const cur = this.cache.entries.get(queue.name)?.value;
      return cur !== undefined && Buffer.from(encode(QueueSchema, cur)).toString("latin1") === mine;
    });
    return true;
  }

  /** Deletes a queue's record (false if there was none). */
  async delete(name: string): Promise<boolean> {
    const res = await this.etcd.delete().key(this.keys.queue(name)).exec();
    if (Number(res.deleted) === 0) return false;
    await this.seen(() => !this.cache.entries.has(name));
    return true;
  }

  /** The fair-share usage the leader saved last, if any. */
  async loadUsage(): Promise<FairShareRecord | undefined> {
    const s = await this.etcd.get(this.keys.fairShare).string();
    return s ? (JSON.parse(s) as FairShareRecord) : undefined;
  }

  /** Saves the fair-share usage (the leader's, under its fencing compares by the caller's choice). */
  async saveUsage(record: FairShareRecord): Promise<void> {
    await this.etcd.put(this.keys.fairShare).value(JSON.stringify(record)).exec();
  }

  /** Waits (up to 5 s) until this replica's copy satisfies cond. */
  private async seen(cond: () => boolean): Promise<void> {
    for (const deadline = Date.now() + 5000; !cond() && Date.now() < deadline; ) {
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}
