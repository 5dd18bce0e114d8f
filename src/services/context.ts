/** What the service handlers share: the store, the election and this replica's sessions. */
import type { History } from "../history/history.js";
import type { Admission } from "../store/admission.js";
import type { Election } from "../store/election.js";
import type { Store } from "../store/store.js";

/** A structured log function: a message and fields (job, worker, error...). */
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

const levels = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 } as const;
export type LogLevel = keyof typeof levels;

/** A JSON-lines logger on stderr. */
/** A log level by name; an unknown name is refused, never read as "log everything". */
export function parseLogLevel(name: string): LogLevel {
  if (Object.hasOwn(levels, name)) return name as LogLevel;
  throw new Error(`log level must be one of ${Object.keys(levels).join(", ")} (got ${JSON.stringify(name)})`);
}

export function createLogger(level: LogLevel = "info", base: Record<string, unknown> = {}): Logger {
  const min = levels[parseLogLevel(level)];
  const line = (lvl: Exclude<LogLevel, "silent">) => (msg: string, fields?: Record<string, unknown>) => {
    if (levels[lvl] < min) return;
    process.stderr.write(
      `${JSON.stringify({ time: new Date().toISOString(), level: lvl, msg, ...base, ...fields })}\n`,
    );
  };
  return { debug: line("debug"), info: line("info"), warn: line("warn"), error: line("error") };
}

/** Per-call context given to every handler, free of transport details. */
export interface CallContext {
  /** Aborted when the client goes away. */
  signal: AbortSignal;
  /** Request metadata, lower-case keys. */
  metadata: Record<string, string>;
  /** The peer address. */
  peer: string;
  /** Who calls, once authenticated (undefined when authentication is off). */
  identity?: Identity;
}

/** An authenticated caller: the token's name and role, and for a worker token its worker name. */
export interface Identity {
  name: string;
  role: "admin" | "submitter" | "reader" | "worker";
  worker?: string;
}

export interface ServiceOptions {
  /** Seconds between worker heartbeats (told to workers in Welcome). */
  heartbeatSeconds: number;
  /** Default kill grace in seconds. */
  killGraceSeconds: number;
  /** Seconds a detached worker has before its jobs are LOST (told to workers in Welcome, for fencing). */
  graceSeconds?: number;
  /** Assumed etcd quota in bytes. */
  quotaBytes: number;
  /** Bytes of stdout and of stderr kept with a finished job. */
  tailBytes: number;
}

export interface ServiceDeps {
  store: Store;
  election: Election;
  log: Logger;
  options: ServiceOptions;
  /** The job history database, when the control plane has one. */
  history?: History;
  /** The cap on unfinished jobs (absent: no cap). */
  admission?: Admission;
}
