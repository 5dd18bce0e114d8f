/**
 * The two SQL engines the history runs on, behind one small interface: PGlite
 * (PostgreSQL compiled to WASM, embedded in the control plane, files under its
 * data directory) and a PostgreSQL server through `pg`. Both speak the same
 * dialect, so one schema and one set of queries serve both.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface SqlDb {
  /** "embedded" (PGlite) or "postgres" (a server). */
  readonly kind: "embedded" | "postgres";
  /** Where it is: the data directory, or the URL without its password. */
  readonly where: string;
  query<R = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<{ rows: R[] }>;
  /** Runs statements in one transaction. */
  transaction<T>(fn: (q: SqlDb["query"]) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** Whether a process with this pid is alive. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Takes `<dir>/crms.lock` for this process: PGlite does not guard its files,
 * and two processes on one directory would corrupt it. A lock left by a dead
 * process is taken over.
 */
function lockDir(dir: string): () => void {
  const file = join(dir, "crms.lock");
  for (let tries = 0; tries < 2; tries++) {
    try {
      writeFileSync(file, String(process.pid), { flag: "wx" });
      return () => rmSync(file, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const holder = Number(readFileSync(file, "utf8").trim());
      if (holder && alive(holder)) throw new Error(`the embedded history in ${dir} is in use by process ${holder}`);
      rmSync(file, { force: true });
    }
  }
  throw new Error(`cannot lock the embedded history in ${dir}`);
}

/** PGlite in `dir` (created if missing, locked for this process); with no dir, in memory. */
export async function openEmbedded(dir?: string): Promise<SqlDb> {
  const { PGlite } = await import("@electric-sql/pglite");
  let unlock = () => {};
  if (dir) {
    mkdirSync(dir, { recursive: true });
    unlock = lockDir(dir);
  }
  try {
    const db = dir ? await PGlite.create(dir) : await PGlite.create();
    return {
      kind: "embedded",
      where: dir ?? "memory",
      query: (sql, params) => db.query(sql, params) as never,
      transaction: (fn) => db.transaction((tx) => fn((sql, params) => tx.query(sql, params) as never)),
      close: () => db.close().finally(unlock),
    };
  } catch (err) {
    unlock();
    throw err;
  }
}

/** A pool of connections to a PostgreSQL server at `url` (postgres://user:pass@host:port/db). */
export async function openPostgres(url: string): Promise<SqlDb> {
  const { default: pg } = await import("pg");
  const pool = new pg.Pool({ connectionString: url, max: 4, connectionTimeoutMillis: 5000, query_timeout: 15_000 });
  // An idle connection dropped by the server (a restart) must not crash the process.
  pool.on("error", () => undefined);
  const where = url.replace(/\/\/([^:@/]+):[^@/]*@/, "//$1:***@");
  return {
    kind: "postgres",
    where,
    query: (sql, params) => pool.query(sql, params) as never,
    async transaction(fn) {
      const c = await pool.connect();
      try {
        await c.query("BEGIN");
        const out = await fn((sql, params) => c.query(sql, params) as never);
        await c.query("COMMIT");
        return out;
      } catch (err) {
        await c.query("ROLLBACK").catch(() => undefined);
        throw err;
      } finally {
        c.release();
      }
    },
    // pool.end() can wait forever for a client whose server went away under it
    // (node-postgres): a replica stopping must not hang on a dead database.
    close: () =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 5000);
        timer.unref();
        pool.end().then(
          () => {
            clearTimeout(timer);
            resolve();
          },
          () => {
            clearTimeout(timer);
            resolve();
          },
        );
      }),
  };
}
