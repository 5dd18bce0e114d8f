/**
 * The job history: every job that reached a final state, in SQL, kept after
 * etcd retention deleted it. The leader's archiver writes final jobs as they
 * end (batched upserts, retried while the database is down); retention asks
 * `confirm` before it deletes, so a job leaves etcd only once the history has it.
 */
import { promisify } from "node:util";
import { gunzip, gzip } from "node:zlib";
import { toBinary } from "@bufbuild/protobuf";
import { timestampDate, timestampMs } from "@bufbuild/protobuf/wkt";
import { type Job, JobSchema, JobState } from "../../gen/crms/v1/job_pb.js";
import { invalid } from "../errors.js";
import type { Logger } from "../log.js";
import { decodeMessage } from "../rpc/binary.js";
import { OWNER_LABEL } from "../rpc/names.js";
import { isArrayParent, isFinal } from "../rpc/states.js";
import { migrate } from "./migrations.js";
import { openEmbedded, openPostgres, type SqlDb } from "./sql.js";

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);

/** Rows per INSERT statement. */
const WRITE_BATCH = 250;
/** Archiver: flush this often, and retry this long after a failure. */
const FLUSH_MS = 100;
const RETRY_MS = 1000;
/** Kept output: streams this small are stored as they are, larger ones gzip-compressed. */
const PACK_MIN_BYTES = 1024;
/** Kept output written in one flush: at most this many streams, and this many bytes (one stream may pass it alone). */
const LOG_BATCH = 100;
const LOG_BATCH_BYTES = 4 * 1024 * 1024;

/** One stream of a run's output waiting for the next flush, with the calls waiting for it to be written. */
interface PendingLog {
  params: unknown[];
  bytes: number;
  waiters: { resolve: () => void; reject: (err: Error) => void }[];
}

/** One stream of a run's output as kept by the history. */
export interface KeptOutput {
  /** OutputStream: 1 stdout, 2 stderr. */
  stream: number;
  /** Bytes past the per-job cap that the worker did not send. */
  cutBytes: number;
  data: Buffer;
}

export interface HistoryFilter {
  /** Jobs that ended at or after this time. */
  since?: Date;
  /** Jobs that ended before this time. */
  until?: Date;
  states?: JobState[];
  owner?: string;
  queue?: string;
  worker?: string;
  /** Shell-style glob on the job name (* and ?). */
  nameGlob?: string;
  labels?: Record<string, string>;
  pageSize: number;
  /** From a previous page's nextPageToken. */
  pageToken?: string;
}

/**
 * The queue of a job that names none (Job.queue's contract). The history sits
 * below the scheduler and the store, so it does not import their DEFAULT_QUEUE,
 * queueOf and userOf; it reads the same fields the same way.
 */
const DEFAULT_QUEUE = "default";

/** What GetUsage groups finished jobs by. */
export type UsageKey = "user" | "queue" | "worker";

/** One group's sums over its finished jobs (seconds, not hours: the service converts). */
export interface UsageSums {
  key: string;
  jobs: number;
  succeeded: number;
  /** FAILED, and LOST with no retries left. */
  failed: number;
  killed: number;
  cpuSeconds: number;
  gpuSeconds: number;
  wallSeconds: number;
  /** The largest max RSS of any run. */
  maxRssBytes: bigint;
}

/** The SQL of each grouping; rows from before queues (a NULL queue) are in "default". */
const USAGE_KEYS: Record<UsageKey, string> = {
  user: "owner",
  queue: `coalesce(queue, '${DEFAULT_QUEUE}')`,
  worker: "worker",
};

/** What `crms admin status` and /metrics say about the history. */
export interface HistoryStatus {
  kind: "embedded" | "postgres";
  where: string;
  up: boolean;
  /** The last error talking to the database, while it is down. */
  error: string;
  /** Final jobs waiting to be written (on the leader). */
  pending: number;
  /** Seconds since the oldest pending job ended (0 when none wait). */
  lagSeconds: number;
  /** Jobs written by this replica since it started. */
  written: number;
  schemaVersion: number;
}

const endMs = (j: Job) => (j.endTime ? timestampMs(j.endTime) : 0);
const date = (ts: Job["submitTime"]) => (ts ? timestampDate(ts) : null);

/** SQL LIKE pattern of a shell glob: * any run, ? one character, the rest literal. */
export function globToLike(glob: string): string {
  return glob
    .replace(/[\\%_]/g, (c) => `\\${c}`)
    .replace(/\*/g, "%")
    .replace(/\?/g, "_");
}

function row(j: Job): unknown[] {
  const labels = j.spec?.labels ?? {};
  const u = j.usage;
  return [
    j.id,
    j.spec?.name ?? "",
    j.user || labels[OWNER_LABEL] || "",
    JobState[j.state],
    j.queue || j.spec?.queue || DEFAULT_QUEUE,
    JSON.stringify(labels),
    j.worker,
    (j.spec?.command ?? []).join(" "),
    date(j.submitTime),
    date(j.startTime),
    new Date(endMs(j)),
    j.exitCode ?? null,
    j.signal,
    j.attempts.length,
    j.arrayParent || null,
    Buffer.from(toBinary(JobSchema, j)),
    u?.cpuSeconds ?? 0,
    String(u?.maxRssBytes ?? 0n),
    u?.wallSeconds ?? 0,
    u?.gpuSeconds ?? 0,
    isArrayParent(j),
  ];
}
const COLUMNS =
  "id, name, owner, state, queue, labels, worker, command, submit_time, start_time, end_time, exit_code, signal, attempts, array_parent, record, cpu_seconds, max_rss_bytes, wall_seconds, gpu_seconds, is_array";
const PER_ROW = 21;

export class History {
  private pending = new Map<string, Job>();
  /** Kept output waiting for the next flush, by job and stream (a newer upload replaces an older one). */
  private logs = new Map<string, PendingLog>();
  private timer?: NodeJS.Timeout;
  private flushing?: Promise<void>;
  private closed = false;
  up = true;
  error = "";
  written = 0;

  private constructor(
    readonly db: SqlDb,
    readonly schemaVersion: number,
    private readonly log?: Logger,
  ) {}

  /** Opens (and migrates) the history: a postgres:// URL, else an embedded database in that directory. */
  static async open(target: string, log?: Logger): Promise<History> {
    const db = /^postgres(ql)?:\/\//.test(target)
      ? await openPostgres(target)
      : await openEmbedded(target || undefined);
    try {
      return new History(db, await migrate(db), log);
    } catch (err) {
      await db.close().catch(() => undefined);
      throw new Error(`history database ${db.where}: ${(err as Error).message}`);
    }
  }

  status(): HistoryStatus {
    let oldest = Number.POSITIVE_INFINITY;
    for (const j of this.pending.values()) oldest = Math.min(oldest, endMs(j));
    return {
      kind: this.db.kind,
      where: this.db.where,
      up: this.up,
      error: this.error,
      pending: this.pending.size,
      lagSeconds: this.pending.size ? Math.max(0, (Date.now() - oldest) / 1000) : 0,
      written: this.written,
      schemaVersion: this.schemaVersion,
    };
  }

  /** Checks the database answers (updates `up` and `error`); never throws. */
  async ping(): Promise<boolean> {
    return this.track(this.db.query("SELECT 1")).then(
      () => true,
      () => false,
    );
  }

  /** Writes (or rewrites) final jobs now. */
  async write(jobs: Job[]): Promise<void> {
    await this.track(this.db.transaction((q) => this.writeJobs(q, jobs)));
    this.written += jobs.length;
  }

  /** Writes these final jobs in `q`'s transaction, WRITE_BATCH rows a statement. */
  private async writeJobs(q: SqlDb["query"], jobs: Job[]): Promise<void> {
    const set = COLUMNS.split(", ")
      .filter((c) => c !== "id")
      .map((c) => `${c} = EXCLUDED.${c}`)
      .join(", ");
    for (let i = 0; i < jobs.length; i += WRITE_BATCH) {
      const batch = jobs.slice(i, i + WRITE_BATCH);
      await q(
        `INSERT INTO jobs (${COLUMNS}) VALUES ${placeholders(batch.length, PER_ROW)} ON CONFLICT (id) DO UPDATE SET ${set}, archived_at = now()`,
        batch.flatMap(row),
      );
    }
  }

  /** Notes the outcome of a database call: up on success, down with the error on failure. */
  private async track<T>(p: Promise<T>): Promise<T> {
    try {
      const out = await p;
      if (!this.up) this.log?.info("history database is back", { where: this.db.where });
      this.up = true;
      this.error = "";
      return out;
    } catch (err) {
      if (this.up) this.log?.warn("history database unreachable", { where: this.db.where, error: String(err) });
      this.up = false;
      this.error = (err as Error).message || String(err);
      throw err;
    }
  }

  /**
   * Makes sure the history holds these jobs as they are now (same end time),
   * writing the ones it lacks; returns the ids it holds. Throws while the
   * database is down: the caller (retention) must then delete nothing.
   */
  async confirm(jobs: Job[]): Promise<Set<string>> {
    const { rows } = await this.track(
      this.db.query<{ id: string; end_ms: string | number }>(
        "SELECT id::text AS id, (extract(epoch FROM end_time) * 1000)::bigint AS end_ms FROM jobs WHERE id = ANY($1::bigint[])",
        [jobs.map((j) => j.id)],
      ),
    );
    const held = new Map(rows.map((r) => [r.id, Number(r.end_ms)]));
    const missing = jobs.filter((j) => held.get(j.id) !== endMs(j));
    if (missing.length) await this.write(missing);
    for (const j of missing) this.pending.delete(j.id);
    return new Set(jobs.map((j) => j.id));
  }

  /** A job from the history, or undefined. */
  async get(id: string): Promise<Job | undefined> {
    const { rows } = await this.track(
      this.db.query<{ record: Uint8Array }>("SELECT record FROM jobs WHERE id = $1", [id]),
    );
    return rows[0] ? decodeMessage(JobSchema, rows[0].record) : undefined;
  }

  /** Jobs from the history, newest end first, a page at a time. */
  async list(f: HistoryFilter): Promise<{ jobs: Job[]; nextPageToken: string }> {
    const where: string[] = [];
    const params: unknown[] = [];
    const p = (v: unknown) => {
      params.push(v);
      return `$${params.length}`;
    };
    if (f.since) where.push(`end_time >= ${p(f.since)}`);
    if (f.until) where.push(`end_time < ${p(f.until)}`);
    if (f.states?.length) where.push(`state = ANY(${p(f.states.map((s) => JobState[s]))}::text[])`);
    if (f.owner) where.push(`owner = ${p(f.owner)}`);
    // Rows kept before queues existed have none: they were in the default queue.
    if (f.queue) where.push(`(queue = ${p(f.queue)}${f.queue === DEFAULT_QUEUE ? " OR queue IS NULL" : ""})`);
    if (f.worker) where.push(`worker = ${p(f.worker)}`);
    if (f.nameGlob) where.push(`name LIKE ${p(globToLike(f.nameGlob))}`);
    if (f.labels && Object.keys(f.labels).length) where.push(`labels @> ${p(JSON.stringify(f.labels))}::jsonb`);
    if (f.pageToken) {
      const [ms, id] = decodeToken(f.pageToken);
      where.push(`(end_time, id) < (${p(new Date(ms))}, ${p(id)}::bigint)`);
    }
    const sql = `SELECT record FROM jobs ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY end_time DESC, id DESC LIMIT ${p(f.pageSize + 1)}`;
    const { rows } = await this.track(this.db.query<{ record: Uint8Array }>(sql, params));
    const jobs = rows.slice(0, f.pageSize).map((r) => decodeMessage(JobSchema, r.record));
    const last = jobs.at(-1);
    return { jobs, nextPageToken: rows.length > f.pageSize && last ? encodeToken(endMs(last), last.id) : "" };
  }

  /**
   * What the jobs that ended at or after `since` used, one row per user, queue
   * or worker (of the last attempt), largest CPU time first. Array parents,
   * which never run, are not counted.
   */
  async usage(since: Date, by: UsageKey): Promise<UsageSums[]> {
    const { rows } = await this.track(
      this.db.query<Record<string, string | number | null>>(
        `SELECT ${USAGE_KEYS[by]} AS key, count(*) AS jobs,
           count(*) FILTER (WHERE state = 'SUCCEEDED') AS succeeded,
           count(*) FILTER (WHERE state IN ('FAILED', 'LOST')) AS failed,
           count(*) FILTER (WHERE state = 'KILLED') AS killed,
           coalesce(sum(cpu_seconds), 0) AS cpu, coalesce(sum(gpu_seconds), 0) AS gpu,
           coalesce(sum(wall_seconds), 0) AS wall, coalesce(max(max_rss_bytes), 0)::text AS rss
         FROM jobs WHERE end_time >= $1 AND NOT is_array
         GROUP BY 1 ORDER BY cpu DESC, key`,
        [since],
      ),
    );
    return rows.map((r) => ({
      key: String(r.key ?? ""),
      jobs: Number(r.jobs),
      succeeded: Number(r.succeeded),
      failed: Number(r.failed),
      killed: Number(r.killed),
      cpuSeconds: Number(r.cpu),
      gpuSeconds: Number(r.gpu),
      wallSeconds: Number(r.wall),
      maxRssBytes: BigInt(r.rss ?? 0),
    }));
  }

  /**
   * Keeps one stream of a run's output (gzip-compressed unless small), replacing an
   * older attempt's; resolves once written. Written with the next flush of final
   * jobs, in one transaction: one database commit for every stream and job ended meanwhile.
   */
  async storeLog(jobId: string, attempt: number, stream: number, data: Buffer, cutBytes: number): Promise<void> {
    if (this.closed) throw new Error("the history is closed");
    const packed = data.length >= PACK_MIN_BYTES;
    const stored = packed ? await gzipAsync(data) : data;
    const params = [jobId, stream, attempt, data.length, cutBytes, stored, packed];
    return new Promise<void>((resolve, reject) => {
      const key = `${jobId}.${stream}`;
      const waiters = [...(this.logs.get(key)?.waiters ?? []), { resolve, reject }];
      this.logs.set(key, { params, bytes: stored.length, waiters });
      this.schedule(FLUSH_MS);
    });
  }

  /** Writes these streams in `q`'s transaction. */
  private async writeLogs(q: SqlDb["query"], logs: PendingLog[]): Promise<void> {
    await q(
      `INSERT INTO job_logs (job_id, stream, attempt, size, cut_bytes, data, packed) VALUES ${placeholders(logs.length, 7)}
       ON CONFLICT (job_id, stream) DO UPDATE SET attempt = EXCLUDED.attempt, size = EXCLUDED.size,
         cut_bytes = EXCLUDED.cut_bytes, data = EXCLUDED.data, packed = EXCLUDED.packed, stored_at = now()`,
      logs.flatMap((l) => l.params),
    );
  }

  /** The kept output of a job's attempt, by stream (stdout first); empty when none was kept. */
  async readLog(jobId: string, attempt: number): Promise<KeptOutput[]> {
    const { rows } = await this.track(
      this.db.query<{ stream: number; cut_bytes: string | number; data: Uint8Array; packed: boolean }>(
        "SELECT stream, cut_bytes, data, packed FROM job_logs WHERE job_id = $1 AND attempt = $2 ORDER BY stream",
        [jobId, attempt],
      ),
    );
    return Promise.all(
      rows.map(async (r) => ({
        stream: r.stream,
        cutBytes: Number(r.cut_bytes),
        data: r.packed ? await gunzipAsync(r.data) : Buffer.from(r.data),
      })),
    );
  }

  /** Log retention: deletes kept output stored before maxAgeSeconds ago, then the oldest until at most maxBytes (compressed) remain. */
  async pruneLogs(maxAgeSeconds: number, maxBytes: number): Promise<number> {
    let deleted = 0;
    if (maxAgeSeconds > 0) {
      const { rows } = await this.track(
        this.db.query("DELETE FROM job_logs WHERE stored_at < now() - make_interval(secs => $1) RETURNING job_id", [
          maxAgeSeconds,
        ]),
      );
      deleted += rows.length;
    }
    if (maxBytes > 0) {
      // Newest first, a running total of stored bytes (gzip-compressed but for small streams): whatever passes maxBytes goes.
      const { rows } = await this.track(
        this.db.query(
          `DELETE FROM job_logs WHERE (job_id, stream) IN (
             SELECT job_id, stream FROM (
               SELECT job_id, stream, sum(length(data)) OVER (ORDER BY stored_at DESC, job_id DESC, stream DESC) AS total
               FROM job_logs) t
             WHERE total > $1) RETURNING job_id`,
          [maxBytes],
        ),
      );
      deleted += rows.length;
    }
    return deleted;
  }

  /** Queues a job that reached a final state for the archiver (the newest version of a job wins). */
  enqueue(job: Job): void {
    if (this.closed || !isFinal(job.state)) return;
    this.pending.set(job.id, job);
    this.schedule(FLUSH_MS);
  }

  /** Flushes in `ms` unless closed, or a flush is already due or running (it reschedules what is left). */
  private schedule(ms: number): void {
    if (!this.closed && !this.flushing) this.timer ??= setTimeout(() => void this.flush(), ms);
  }

  /** Queues the final jobs of `jobs` the history does not hold yet (at a leader change or start). */
  async sweep(jobs: Iterable<Job>): Promise<void> {
    const finals = [...jobs].filter((j) => isFinal(j.state));
    for (let i = 0; i < finals.length; i += 5000) {
      const chunk = finals.slice(i, i + 5000);
      const { rows } = await this.track(
        this.db.query<{ id: string }>("SELECT id::text AS id FROM jobs WHERE id = ANY($1::bigint[])", [
          chunk.map((j) => j.id),
        ]),
      );
      const held = new Set(rows.map((r) => r.id));
      for (const j of chunk) if (!held.has(j.id)) this.enqueue(j);
    }
  }

  /**
   * Writes what is pending, final jobs and kept output together, one
   * transaction a batch; on failure keeps the jobs and tries again later, and
   * fails the batch's output uploads (the worker sends them again).
   */
  flush(): Promise<void> {
    this.flushing ??= (async () => {
      clearTimeout(this.timer);
      this.timer = undefined;
      let failed = false;
      while ((this.pending.size || this.logs.size) && !failed) {
        const jobs = [...this.pending.values()].slice(0, WRITE_BATCH * 4);
        const logs = this.takeLogs();
        try {
          await this.track(
            this.db.transaction(async (q) => {
              if (jobs.length) await this.writeJobs(q, jobs);
              if (logs.length) await this.writeLogs(q, logs);
            }),
          );
          this.written += jobs.length;
          // A job changed again while it was written stays pending in its newer form.
          for (const j of jobs) if (this.pending.get(j.id) === j) this.pending.delete(j.id);
          for (const l of logs) for (const w of l.waiters) w.resolve();
        } catch (err) {
          failed = true;
          for (const l of logs) for (const w of l.waiters) w.reject(err as Error);
        }
      }
      this.flushing = undefined;
      if (this.pending.size || this.logs.size) this.schedule(failed ? RETRY_MS : 0);
    })();
    return this.flushing;
  }

  /** Takes the next batch of kept output off the pending set: LOG_BATCH streams or LOG_BATCH_BYTES, at least one. */
  private takeLogs(): PendingLog[] {
    const out: PendingLog[] = [];
    let bytes = 0;
    for (const [key, l] of this.logs) {
      if (out.length && (out.length >= LOG_BATCH || bytes + l.bytes > LOG_BATCH_BYTES)) break;
      out.push(l);
      bytes += l.bytes;
      this.logs.delete(key);
    }
    return out;
  }

  /** Stops archiving: what is still pending stays in etcd, and the next leader writes it. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await this.flushing?.catch(() => undefined);
    const closing = new Error("the history is closed");
    for (const l of this.logs.values()) for (const w of l.waiters) w.reject(closing);
    this.logs.clear();
    await this.db.close().catch(() => undefined);
  }
}

/** `($1, $2), ($3, $4)` for 2 rows of 2 columns: the VALUES of a multi-row INSERT. */
function placeholders(rows: number, perRow: number): string {
  return Array.from(
    { length: rows },
    (_, r) => `(${Array.from({ length: perRow }, (_, c) => `$${r * perRow + c + 1}`).join(", ")})`,
  ).join(", ");
}

function encodeToken(ms: number, id: string): string {
  return Buffer.from(`${ms}:${id}`).toString("base64url");
}

function decodeToken(token: string): [number, string] {
  const m = /^(\d+):(\d+)$/.exec(Buffer.from(token, "base64url").toString());
  if (!m) throw invalid("page_token is not one this server returned");
  return [Number(m[1]), m[2] as string];
}
