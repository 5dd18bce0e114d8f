/**
 * etcd maintenance: compaction, defragmentation one member at a time,
 * alarms, and recovery from NOSPACE (compact, defragment each member, disarm,
 * then prove a write works), as GoCRMS's author needed and could not do.
 */
import { memberStatus } from "./status.js";
import type { Store } from "./store.js";

/** Compacts history up to `revision` (0: the current revision). Returns the revision used. */
export async function compact(store: Store, revision = 0): Promise<number> {
  const target = revision || (await store.revision());
  try {
    await store.etcd.kv.compact({ revision: target, physical: true });
  } catch (err) {
    // Already compacted that far: nothing to do.
    if (!/required revision has been compacted/.test(String(err))) throw err;
  }
  return target;
}

/** Defragments every member in turn (never all at once), so the cluster keeps serving. */
export async function defragment(store: Store, onMember?: (endpoint: string) => void) {
  const before = (await memberStatus(store)).members;
  for (const m of before) {
    if (m.error) continue;
    onMember?.(m.endpoint);
    await store.memberClient(m.endpoint).maintenance.defragment({ deadline: Date.now() + 5 * 60_000 });
  }
  const after = (await memberStatus(store)).members;
  return { before, after };
}

/** Disarms every active alarm; returns the names of those disarmed. */
export async function disarmAlarms(store: Store): Promise<string[]> {
  const res = await store.etcd.maintenance.alarm({ action: "Get", alarm: "None", memberID: "0" });
  const names = new Set<string>();
  for (const a of res.alarms) {
    await store.etcd.maintenance.alarm({ action: "Deactivate", alarm: a.alarm, memberID: a.memberID });
    names.add(String(a.alarm) === "1" || String(a.alarm) === "Nospace" ? "NOSPACE" : String(a.alarm).toUpperCase());
  }
  return [...names];
}

/** True if a write goes through (used after recovery). */
export async function canWrite(store: Store): Promise<boolean> {
  try {
    await store.etcd.put(`${store.keys.prefix}health/write-check`).value(String(Date.now())).exec();
    return true;
  } catch {
    return false;
  }
}

/** Gets etcd out of NOSPACE without touching live records. */
export async function recover(store: Store) {
  const compactedRevision = await compact(store);
  const { after } = await defragment(store);
  const disarmed = await disarmAlarms(store);
  const writable = await canWrite(store);
  return { compactedRevision, members: after, disarmed, writable };
}

/** Active alarm names across the cluster. */
export async function activeAlarms(store: Store): Promise<string[]> {
  const res = await store.etcd.maintenance.alarm({ action: "Get", alarm: "None", memberID: "0" });
  return [
    ...new Set(
      res.alarms.map((a) => (String(a.alarm) === "1" || String(a.alarm) === "Nospace" ? "NOSPACE" : String(a.alarm))),
    ),
  ];
}

/**
 * Periodic compaction, kube-apiserver style: every interval, compact to the
 * revision seen one interval earlier, so watchers always have an interval of history.
 */
export class Compactor {
  private timer?: NodeJS.Timeout;
  private previous = 0;
  runs = 0;

  constructor(
    private readonly store: Store,
    private readonly intervalMs: number,
    private readonly log?: (msg: string, fields?: Record<string, unknown>) => void,
  ) {}

  start(): void {
    if (this.timer || this.intervalMs <= 0) return;
    this.timer = setInterval(() => void this.tick(), this.intervalMs);
    void this.tick();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.previous = 0;
  }

  private async tick(): Promise<void> {
    try {
      const now = await this.store.revision();
      if (this.previous > 0) {
        await compact(this.store, this.previous);
        this.runs++;
        this.log?.("compacted etcd", { revision: this.previous });
      }
      this.previous = now;
    } catch (err) {
      this.log?.("compaction failed", { error: String(err) });
    }
  }
}
