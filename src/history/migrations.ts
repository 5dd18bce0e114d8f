/**
 * Versioned schema migrations, applied in order at start inside one
 * transaction each; `history_schema` records the versions applied. Never edit
 * a released migration: add the next one.
 */
import type { SqlDb } from "./sql.js";

export const MIGRATIONS: { version: number; name: string; sql: string }[] = [
  {
    version: 1,
    name: "jobs",
    sql: `
CREATE TABLE jobs (
  id bigint PRIMARY KEY,
  name text NOT NULL,
  owner text NOT NULL,
  state text NOT NULL,
  queue text,
  labels jsonb NOT NULL DEFAULT '{}',
  worker text NOT NULL,
  command text NOT NULL,
  submit_time timestamptz,
  start_time timestamptz,
  end_time timestamptz NOT NULL,
  exit_code integer,
  signal text NOT NULL DEFAULT '',
  attempts integer NOT NULL,
  array_parent bigint,
  cpu_seconds double precision,
  memory_peak_bytes bigint,
  record bytea NOT NULL,
  archived_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_end ON jobs (end_time DESC, id DESC);
CREATE INDEX jobs_owner_end ON jobs (owner, end_time DESC);
CREATE INDEX jobs_worker_end ON jobs (worker, end_time DESC);
CREATE INDEX jobs_labels ON jobs USING gin (labels jsonb_path_ops);
`,
  },
  {
    version: 2,
    name: "job_logs",
    sql: `
CREATE TABLE job_logs (
  job_id bigint NOT NULL,
  stream smallint NOT NULL,
  attempt integer NOT NULL,
  size bigint NOT NULL,
  cut_bytes bigint NOT NULL DEFAULT 0,
  data bytea NOT NULL,
  stored_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (job_id, stream)
);
CREATE INDEX job_logs_stored ON job_logs (stored_at, job_id)
`,
  },
  {
    // Accounting (GetUsage): what each job used, summed over its runs; rows written before keep NULLs,
    // which the usage query reads as 0 (and a NULL queue as "default"). The usage query scans jobs_end
    // by end time; jobs_queue_end serves ListHistory's queue filter now that the queue is filled.
    // Array parents (records that never run) are marked, the ones already kept included, so they
    // are not counted as jobs of their own.
    version: 3,
    name: "usage",
    sql: `
ALTER TABLE jobs RENAME COLUMN memory_peak_bytes TO max_rss_bytes;
ALTER TABLE jobs ADD COLUMN wall_seconds double precision;
ALTER TABLE jobs ADD COLUMN gpu_seconds double precision;
ALTER TABLE jobs ADD COLUMN is_array boolean NOT NULL DEFAULT false;
UPDATE jobs SET is_array = true WHERE id IN (SELECT DISTINCT array_parent FROM jobs WHERE array_parent IS NOT NULL);
CREATE INDEX jobs_queue_end ON jobs (queue, end_time DESC)
`,
  },
  {
    // Small outputs are kept as they are (gzip's set-up costs more than it saves on a few bytes);
    // rows written before were all compressed.
    version: 4,
    name: "job_logs_packed",
    sql: "ALTER TABLE job_logs ADD COLUMN packed boolean NOT NULL DEFAULT true",
  },
];

/** Applies the migrations not yet applied (up to `upTo`: tests build an older schema); returns the schema version now. */
export async function migrate(db: SqlDb, upTo = Number.POSITIVE_INFINITY): Promise<number> {
  await db.query(
    "CREATE TABLE IF NOT EXISTS history_schema (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
  );
  for (const m of MIGRATIONS.filter((m) => m.version <= upTo)) {
    await db.transaction(async (q) => {
      // Several replicas may start at once on one PostgreSQL: one applies, the others see it applied.
      if (db.kind === "postgres") await q("LOCK TABLE history_schema IN EXCLUSIVE MODE");
      const { rows } = await q("SELECT 1 FROM history_schema WHERE version = $1", [m.version]);
      if (rows.length) return;
      for (const stmt of m.sql
        .split(";")
        .map((s) => s.trim())
        .filter(Boolean))
        await q(stmt);
      await q("INSERT INTO history_schema (version, name) VALUES ($1, $2)", [m.version, m.name]);
    });
  }
  const { rows } = await db.query<{ v: number | null }>("SELECT max(version) AS v FROM history_schema");
  return rows[0]?.v ?? 0;
}
