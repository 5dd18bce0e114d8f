/**
 * etcd maintenance: compaction, defragmentation one member at a time,
 * alarms, and recovery from NOSPACE (compact, defragment each member, disarm,
 * then prove a write works), as GoCRMS's author needed and could not do.
 */
import { CrmsError } from "../errors.js";
import type { Logger } from "../log.js";
import { toCrmsError } from "./errors.js";
import { internals } from "./internals.js";
import { type RetentionOptions, runRetention } from "./retention.js";
import { memberStatus } from "./status.js";
import type { Store } from "./store.js";

/** Compacts history up to `revision` (0: the current revision). Returns the revision used. */
export async function compact(store: Store, revision = 0): Promise<number> {
  const target = revision || (await store.revision());
  try {
    await internals(store).etcd.kv.compact({ revision: target, physical: true });
  } catch (err) {
    // Already compacted that far: nothing to do.
    if (toCrmsError(err).code !== "OUT_OF_RANGE") throw err;
  }
  return target;
}

/**
 * Compaction asked for by an operator (AdminService.Compact): unlike `compact`,
 * a revision outside what etcd can compact to is refused, naming the range:
 * past the last compaction, up to the current revision (0: the current one).
 */
export async function compactOnRequest(store: Store, revision: number): Promise<number> {
  const head = await store.revision();
  if (revision > head) {
    throw new CrmsError(
      "OUT_OF_RANGE",
      `revision ${revision} is in the future: the current revision is ${head}; compact to at most ${head} (0: the current revision)`,
    );
  }
  if (revision === 0) return compact(store, head);
  try {
    await internals(store).etcd.kv.compact({ revision, physical: true });
    return revision;
  } catch (err) {
    if (toCrmsError(err).code !== "OUT_OF_RANGE") throw err;
    const from = (await compactedRevision(store, head)) + 1;
    throw new CrmsError(
      "OUT_OF_RANGE",
      `revision ${revision} is already compacted: compact to a revision from ${from} to ${head} (0: the current revision)`,
    );
  }
}

/** The revision etcd last compacted to (0 if never): the oldest revision still readable, found by bisection. */
async function compactedRevision(store: Store, head: number): Promise<number> {
  const { etcd, keys } = internals(store);
  const readable = (revision: number) =>
    etcd.kv.range({ key: Buffer.from(keys.idseq), revision, count_only: true }).then(
      () => true,
      (err) => {
        if (toCrmsError(err).code === "OUT_OF_RANGE") return false;
        throw err;
      },
    );
  let lo = 1;
  let hi = head;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    if (await readable(mid)) hi = mid;
    else lo = mid + 1;
  }
  return lo === 1 && (await readable(1)) ? 0 : lo;
}

/** Defragments every member in turn (never all at once), so the cluster keeps serving. */
export async function defragment(store: Store, onMember?: (endpoint: string) => void) {
  const before = (await memberStatus(store)).members;
  for (const m of before) {
    if (m.error) continue;
    onMember?.(m.endpoint);
    await internals(store)
      .memberClient(m.endpoint)
      .maintenance.defragment({ deadline: Date.now() + 5 * 60_000 });
  }
  const after = (await memberStatus(store)).members;
  return { before, after };
}

/** Disarms every active alarm; returns the names of those disarmed. */
export async function disarmAlarms(store: Store): Promise<string[]> {
  const { etcd } = internals(store);
  const res = await etcd.maintenance.alarm({ action: "Get", alarm: "None", memberID: "0" });
  const names = new Set<string>();
  for (const a of res.alarms) {
    await etcd.maintenance.alarm({ action: "Deactivate", alarm: a.alarm, memberID: a.memberID });
    names.add(String(a.alarm) === "1" || String(a.alarm) === "Nospace" ? "NOSPACE" : String(a.alarm).toUpperCase());
  }
  return [...names];
}

/** True if a write goes through (used after recovery). */
export async function canWrite(store: Store): Promise<boolean> {
  try {
    const { etcd, keys } = internals(store);
    await etcd.put(`${keys.prefix}health/write-check`).value(String(Date.now())).exec();
    return true;
  } catch {
    return false;
  }
}

/**
 * Gets etcd out of NOSPACE without touching unfinished jobs: compact, defragment,
 * disarm; with `keepFinished`, then delete finished jobs beyond the newest that
 * many (deletes need writes to work again) and compact and defragment once more.
 */
export async function recover(store: Store, keepFinished?: number, confirm?: RetentionOptions["confirm"]) {
  let compactedRevision = await compact(store);
  let { after } = await defragment(store);
  const disarmed = await disarmAlarms(store);
  let deletedJobs = 0;
  if (keepFinished !== undefined) {
    // With a history database, only jobs it confirmed are deleted (it throws HistoryWait while down).
    deletedJobs = await runRetention(store, { maxAgeSeconds: 0, maxCount: 0, keepFinished, confirm });
    compactedRevision = await compact(store);
    ({ after } = await defragment(store));
  }
  const writable = await canWrite(store);
  return { compactedRevision, members: after, disarmed, deletedJobs, writable };
}

/** Active alarm names across the cluster. */
export async function activeAlarms(store: Store): Promise<string[]> {
  const res = await internals(store).etcd.maintenance.alarm({ action: "Get", alarm: "None", memberID: "0" });
  return [
    ...new Set(
      res.alarms.map((a) => (String(a.alarm) === "1" || String(a.alarm) === "Nospace" ? "NOSPACE" : String(a.alarm))),
    ),
  ];
}

/** When the leader compacts etcd's history. */
export interface CompactionOptions {
  /** Milliseconds between periodic compactions (kube-apiserver: 5 minutes); 0 turns them off. */
  intervalMs: number;
  /** Compact as soon as the revision has advanced by more than this since the last compaction; 0 off. */
  revisions: number;
  /** Recent revisions a triggered compaction leaves in place, so watchers are not compacted out. */
  keepRevisions: number;
  /** Compact (and run retention) when a member's db in use passes this fraction of the quota; 0 off. */
  dbFraction: number;
  /** The etcd backend quota, bytes (for `dbFraction`). */
  quotaBytes: number;
  /**
   * Milliseconds between checks of the revision and the db size (default 250;
   * a db-size compaction keeps the writes since the previous check, so the
   * shorter the interval the less a busy etcd holds: a 16 MiB etcd taking
   * 1,400 jobs/s peaked at 14.5–16 MiB checked every second, 11–12 MiB every 250 ms).
   * The db size itself is read only when it may have grown (`sizeCheckDue`).
   */
  checkMs?: number;
  /**
   * Defragment (one member at a time) when a member's db file passes this
   * fraction of the quota while less than half of it is in use (default 0.75;
   * 0 off): NOSPACE counts the file, and compaction only frees pages inside it.
   */
  defragFraction?: number;
}

/**
 * Compaction by the leader. Periodically, kube-apiserver style: every interval,
 * compact to the revision seen one interval earlier, so watchers always have an
 * interval of history. Between those, on pressure: when the revision ran more
 * than `revisions` ahead of the last compaction, compact to all but the newest
 * `keepRevisions`; when etcd's db in use passed `dbFraction` of the quota, ask
 * retention to run now and compact to the revision of the previous look at the
 * db size (at most `keepRevisions` back). With group commit a revision carries many writes,
 * so the db-size trigger is the one that follows the bytes.
 */
export class Compactor {
  private timers: NodeJS.Timeout[] = [];
  private previous = 0;
  private busy = false;
  private checking = false;
  /** The revision, time and this replica's bytes written at the last read of the members' db sizes. */
  private sized = { revision: -1, at: 0, bytes: 0 };
  /** The revision at the last check, and when checks first saw it. */
  private seen = { revision: -1, at: 0 };
  /** The revision etcd history was last compacted to by this compactor. */
  compacted = 0;
  runs = 0;
  /** Compactions started by the revision or db-size trigger. */
  triggered = 0;
  /** Defragmentations started because a db file neared the quota. */
  defrags = 0;
  /** No defragmentation before this (ms since the epoch): 10 × the last one's duration, at least 10 s apart. */
  private nextDefrag = 0;

  constructor(
    private readonly store: Store,
    readonly options: CompactionOptions,
    private readonly onDbPressure?: () => Promise<unknown>,
    private readonly log?: Logger,
  ) {}

  start(): void {
    if (this.timers.length) return;
    const o = this.options;
    if (o.intervalMs > 0) {
      this.timers.push(setInterval(() => void this.periodic(), o.intervalMs));
      void this.periodic();
    }
    if (o.revisions > 0 || o.dbFraction > 0) {
      this.timers.push(setInterval(() => void this.check(), o.checkMs ?? 250));
    }
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.previous = 0;
  }

  private async periodic(): Promise<void> {
    try {
      const now = await this.store.revision();
      if (this.previous > 0) await this.compactTo(this.previous, "interval");
      this.previous = now;
    } catch (err) {
      this.log?.info("compaction failed", { error: String(err) });
    }
  }

  private async check(): Promise<void> {
    const o = this.options;
    if (this.checking) return;
    this.checking = true;
    try {
      // A count-only range: one small request per check, and it sees writes under every prefix.
      const now = await this.store.revision();
      if (o.revisions > 0 && now - this.compacted > o.revisions) {
        await this.compactTo(now - o.keepRevisions, "revisions");
        return;
      }
      const previous = o.dbFraction > 0 && o.quotaBytes > 0 ? this.sizeCheckDue(now) : undefined;
      if (previous !== undefined) {
        const { members } = await memberStatus(this.store);
        const inUse = Math.max(0, ...members.map((m) => Number(m.dbSizeInUse)));
        if (inUse > o.dbFraction * o.quotaBytes) {
          this.log?.info("etcd db in use past its threshold", { inUse, quota: o.quotaBytes });
          await this.onDbPressure?.().catch(() => undefined);
          // Space first: keep only what came since the previous look at the size (a watcher further behind relists).
          await this.compactTo(Math.max(previous, now - o.keepRevisions), "db size");
          return;
        }
        const fraction = o.defragFraction ?? 0.75;
        const fragmented = members.some(
          (m) => Number(m.dbSize) > fraction * o.quotaBytes && Number(m.dbSizeInUse) < Number(m.dbSize) / 2,
        );
        if (fraction > 0 && fragmented && Date.now() >= this.nextDefrag) await this.defragment();
      }
    } catch (err) {
      this.log?.info("compaction failed", { error: String(err) });
    } finally {
      this.checking = false;
    }
  }

  /**
   * Whether the members' db sizes are worth reading (three etcd calls) at this
   * check: not once they were read a second or more after the last write (etcd
   * commits its backend every 100 ms: its size can lag the revision, but not by
   * a second); under a trickle of writes once a second; at every check once
   * this replica wrote 1/64 of the quota since the last read (a busy etcd grows fast).
   * Returns the revision of the previous read when a read is due, else undefined.
   */
  private sizeCheckDue(revision: number): number | undefined {
    const bytes = this.store.batcher.stats.bytes;
    const now = Date.now();
    if (revision !== this.seen.revision) this.seen = { revision, at: now };
    const s = this.sized;
    if (s.revision === revision && s.at - this.seen.at >= 1000) return undefined;
    if (now - s.at < 1000 && bytes - s.bytes < this.options.quotaBytes / 64) return undefined;
    this.sized = { revision, at: now, bytes };
    return Math.max(0, s.revision);
  }

  private async defragment(): Promise<void> {
    const started = Date.now();
    const { before, after } = await defragment(this.store);
    const took = Date.now() - started;
    this.nextDefrag = Date.now() + Math.max(10_000, 10 * took);
    this.defrags++;
    const size = (ms: typeof before) => Math.max(0, ...ms.map((m) => Number(m.dbSize)));
    this.log?.warn("etcd db file near its quota with most of it free: defragmented", {
      before: size(before),
      after: size(after),
      ms: took,
    });
  }

  private async compactTo(revision: number, reason: string): Promise<void> {
    if (this.busy || revision <= this.compacted) return;
    this.busy = true;
    try {
      await compact(this.store, revision);
      this.compacted = revision;
      this.runs++;
      if (reason !== "interval") this.triggered++;
      this.log?.info("compacted etcd", { revision, reason });
    } finally {
      this.busy = false;
    }
  }
}
