/**
 * Scheduler leader election. The leader key is created with the replica's
 * lease only if absent; its create revision is the fencing token that every
 * leader write compares, so a deposed leader's writes fail even if it has not
 * noticed yet (an election alone is never trusted for exclusion).
 */
import { EventEmitter } from "node:events";
import type { Compare } from "./batcher.js";
import { internals, type StoreInternals } from "./internals.js";
import type { Store } from "./store.js";

export interface ElectionEvents {
  elected: [token: number];
  deposed: [];
  leader: [replicaId: string];
}

export class Election extends EventEmitter<ElectionEvents> {
  /** Fencing token while leading, else 0. */
  token = 0;
  /** Replica id of the current leader, if known. */
  leaderId = "";
  private stopped = false;
  private timer?: NodeJS.Timeout;
  private readonly etcd: StoreInternals["etcd"];
  private readonly key: string;

  constructor(private readonly store: Store) {
    super();
    const { etcd, keys } = internals(store);
    this.etcd = etcd;
    this.key = keys.leader;
  }

  get isLeader(): boolean {
    return this.token > 0;
  }

  /** The compare a leader write must carry. */
  fence(): Compare[] {
    return [{ key: this.key, target: "create", revision: this.token }];
  }

  /**
   * Campaigns now and re-checks every second by polling (no watch on the key):
   * a vacated key is taken, and a deposed leader notices, within about a
   * second; until then its writes fail on the fence.
   */
  start(): void {
    void this.tick();
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    try {
      await this.campaign();
    } catch {
      // etcd unavailable: keep trying; writes are fenced anyway.
    }
    if (!this.stopped) this.timer = setTimeout(() => void this.tick(), 1000);
  }

  private async campaign(): Promise<void> {
    const key = this.key;
    const res = await this.etcd.kv.txn({
      compare: [{ key: Buffer.from(key), target: "Create", result: "Equal", create_revision: 0 }],
      success: [
        { request_put: { key: Buffer.from(key), value: Buffer.from(this.store.replicaId), lease: this.store.leaseId } },
      ],
      failure: [{ request_range: { key: Buffer.from(key) } }],
    });
    // Stopped while the txn was in flight: the key goes with the revoked lease.
    if (this.stopped) return;
    if (res.succeeded) {
      this.leaderId = this.store.replicaId;
      this.token = Number(res.header.revision);
      this.emit("leader", this.leaderId);
      this.emit("elected", this.token);
      return;
    }
    const kv = res.responses[0]?.response_range?.kvs[0];
    const holder = kv?.value.toString() ?? "";
    const create = Number(kv?.create_revision ?? 0);
    if (holder !== this.leaderId) {
      this.leaderId = holder;
      this.emit("leader", holder);
    }
    if (this.token && create !== this.token) {
      this.token = 0;
      this.emit("deposed");
    }
  }

  /** Stops campaigning and gives up leadership. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.token) {
      const key = this.key;
      await this.etcd.kv
        .txn({
          compare: [{ key: Buffer.from(key), target: "Create", result: "Equal", create_revision: this.token }],
          success: [{ request_delete_range: { key: Buffer.from(key) } }],
        })
        .catch(() => undefined);
      this.token = 0;
    }
  }
}
