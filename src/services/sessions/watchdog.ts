/**
 * The sessions' watchdog: once a second it detaches sessions whose heartbeats
 * stopped, and makes the worker records of the streams held here match them
 * (written again if etcd lost them, bound to the current replica lease).
 */
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type Worker, WorkerState } from "../../../gen/crms/v1/worker_pb.js";
import type { ServiceDeps } from "../context.js";
import type { WorkerSession } from "../worker-session.js";

export class Watchdog {
  private readonly timer: NodeJS.Timeout;
  private reconciling?: Promise<void>;

  /** `byName`: the registry's sessions, by worker name. */
  constructor(
    private readonly deps: ServiceDeps,
    private readonly byName: ReadonlyMap<string, WorkerSession>,
  ) {
    const { store } = deps;
    store.onLeaseRenewed = () => void this.rebindAll();
    store.health.on("restored", () => void this.reconcile());
    this.timer = setInterval(() => {
      this.checkHeartbeats();
      void this.reconcile();
    }, 1000);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
  }

  private get me(): string {
    return this.deps.store.replicaId;
  }

  /** Closes sessions whose heartbeats stopped (a half-open stream). */
  private checkHeartbeats(): void {
    const limit = this.deps.options.heartbeatSeconds * 3000;
    const now = Date.now();
    for (const s of this.byName.values()) {
      if (now - s.lastHeartbeat > limit) {
        this.deps.log.warn("worker heartbeats stopped; detaching", { worker: s.name });
        s.closeReason = "heartbeat timeout";
        s.close();
      }
    }
  }

  /**
   * After the replica lease was renewed, bind every held worker's record to it
   * (or write it again): all of them, not only those the cache shows stale, since
   * a watch may not have delivered the deletions yet.
   */
  private async rebindAll(): Promise<void> {
    while (this.reconciling) await this.reconciling;
    await this.reconcile(true);
  }

  /**
   * Makes the worker records of the streams held here match them: a record
   * etcd lost (its lease expired while etcd stalled) is written again, one
   * bound to an old lease is bound to the current one. Runs every second, at
   * once when etcd returns and after a lease renewal, so a missed step heals
   * itself; a record another replica wrote since (the worker moved) is left alone.
   */
  reconcile(all = false): Promise<void> {
    const { store } = this.deps;
    if (this.reconciling || !store.health.reachable) return this.reconciling ?? Promise.resolve();
    this.reconciling = (async () => {
      const due: WorkerSession[] = [];
      for (const s of this.byName.values()) {
        const registered = s.registered;
        if (!s.open || !registered) continue;
        const e = store.workers.entries.get(s.name);
        const stale = all && s.boundLease !== store.leaseId;
        const ours = e !== undefined && this.ours(e.value, registered);
        if (stale || !e || (ours && (e.lease !== store.leaseId || notLive(e.value)))) due.push(s);
      }
      // Many at once, so that the batcher packs them: 100,000 workers re-register in seconds.
      const done = { recreated: [] as string[], rebound: [] as string[] };
      const failed: string[] = [];
      for (let i = 0; i < due.length && store.health.reachable; i += 1000) {
        await Promise.all(due.slice(i, i + 1000).map((s) => this.reregister(s, done, failed)));
      }
      if (done.recreated.length || done.rebound.length) {
        this.deps.log.info("worker records written again", {
          recreated: done.recreated.length,
          rebound: done.rebound.length,
          workers: [...done.recreated, ...done.rebound].slice(0, 10),
        });
      }
      if (failed.length)
        this.deps.log.warn("re-registering workers failed; retrying in 1s", {
          workers: failed.length,
          error: failed[0],
        });
    })().finally(() => (this.reconciling = undefined));
    return this.reconciling;
  }

  /** Writes a held stream's worker record again: re-created if etcd lost it, else bound to the current lease. */
  private async reregister(
    s: WorkerSession,
    done: { recreated: string[]; rebound: string[] },
    failed: string[],
  ): Promise<void> {
    const registered = s.registered;
    if (!registered || !s.open || this.byName.get(s.name) !== s) return;
    const recreated = !this.deps.store.workers.entries.has(s.name);
    try {
      await this.deps.store.updateWorker(
        s.name,
        (w) => {
          const state = s.state === "DRAINING" ? WorkerState.DRAINING : WorkerState.UP;
          // The stream is held here, so the worker is live whatever the record says.
          if (w) return this.ours(w, registered) ? { ...w, state: notLive(w) ? state : w.state } : undefined;
          return { ...registered, state, lastHeartbeat: timestampFromDate(new Date()) };
        },
        true,
      );
      s.boundLease = this.deps.store.workers.entries.get(s.name)?.lease;
      (recreated ? done.recreated : done.rebound).push(s.name);
      this.reregistered(s.name);
    } catch (err) {
      failed.push(`${s.name}: ${String(err)}`);
    }
  }

  /** Whether a worker record is the one this replica wrote for this stream (the worker did not move since). */
  private ours(w: Readonly<Worker>, registered: Worker): boolean {
    return (
      w.replica === this.me &&
      w.attachTime?.seconds === registered.attachTime?.seconds &&
      w.attachTime?.nanos === registered.attachTime?.nanos
    );
  }

  /** Counts a re-registration against the etcd outage in progress or just ended (for admin status). */
  private reregistered(name: string): void {
    const outage = this.deps.store.health.last;
    if (!outage || (outage.restoredAt && Date.now() - outage.restoredAt.getTime() > 60_000)) return;
    if (outage.reregisteredNames.includes(name)) return;
    outage.reregistered++;
    if (outage.reregisteredNames.length < 10) outage.reregisteredNames.push(name);
  }
}

/** A record saying the worker is away (written while etcd could not take this replica's word). */
function notLive(w: Readonly<Worker>): boolean {
  return w.state === WorkerState.DISCONNECTED || w.state === WorkerState.DOWN;
}
