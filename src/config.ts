/**
 * Defaults and command-line flags, defined once: the launchers in src/cmd
 * parse with these tables, the control plane and the worker fall back to these
 * values, the CLI's usage text and completion print them, and
 * test/config.test.ts holds README's flag table to them. A leaf: imports
 * nothing of crms.
 */
import type { ParseArgsConfig } from "node:util";

/** The crms version, reported by `crms --version` and in each worker's Hello. */
export const VERSION = "0.1.0";

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const DAY = 24 * 3600;

/** Bytes of stdout and of stderr kept with a finished job (control plane) and sent as tails (worker). */
export const DEFAULT_TAIL_BYTES = 2048;
/** The etcd backend quota assumed: etcd's own default `--quota-backend-bytes`. */
export const DEFAULT_QUOTA_BYTES = 2 * GiB;
/** Bytes of a finished run's output (both streams) a worker ships and the control plane keeps. */
export const DEFAULT_OUTPUT_CAP = 64 * MiB;

/** The control plane's defaults: `crms server` flags and ServerOptions. */
export const SERVER_DEFAULTS = {
  listen: "localhost:7070",
  etcd: "http://127.0.0.1:2379",
  logLevel: "info",
  graceSeconds: 10,
  heartbeatSeconds: 5,
  quotaBytes: DEFAULT_QUOTA_BYTES,
  tailBytes: DEFAULT_TAIL_BYTES,
  compactionIntervalSeconds: 300,
  compactionRevisions: 100_000,
  compactionKeepRevisions: 10_000,
  compactionDbFraction: 0.5,
  retentionAgeSeconds: DAY,
  retentionCount: 100_000,
  retentionIntervalSeconds: 30,
  outputCapBytes: DEFAULT_OUTPUT_CAP,
  logsRetentionAgeSeconds: 30 * DAY,
  logsRetentionBytes: 10 * GiB,
  maxJobsPerUser: 0,
  fairShareHalfLifeSeconds: DAY,
  preemptGraceSeconds: 10,
  /** Heap growth after a full collection, percent of what survived (see src/cmd/heap.ts); 0: V8's own. */
  heapGrowthPercent: 30,
} as const;

/**
 * A worker's defaults (`crms worker`; slots default to the machine's CPUs;
 * --cpus, --memory and --gpus to what it detects: CPUs, total memory,
 * `nvidia-smi -L`).
 */
export const WORKER_DEFAULTS = {
  shipOutputBytes: DEFAULT_OUTPUT_CAP,
  tailBytes: DEFAULT_TAIL_BYTES,
} as const;

/** `crms dev`'s ports. */
export const DEV_DEFAULTS = { port: "7070", httpPort: "7080", etcdPort: "23790" } as const;

export type Flags = NonNullable<ParseArgsConfig["options"]>;

/** Options every command takes: where the server is, TLS, token, output, help. */
export const COMMON_FLAGS = {
  server: { type: "string" },
  ca: { type: "string" },
  cert: { type: "string" },
  key: { type: "string" },
  tls: { type: "boolean" },
  token: { type: "string" },
  "token-file": { type: "string" },
  output: { type: "string", short: "o" },
  help: { type: "boolean", short: "h" },
  "connect-timeout": { type: "string" },
} satisfies Flags;

/** `crms server`'s own options (in the order completion offers them). */
export const SERVER_FLAGS = {
  listen: { type: "string" },
  etcd: { type: "string" },
  prefix: { type: "string" },
  grace: { type: "string" },
  heartbeat: { type: "string" },
  "log-level": { type: "string" },
  http: { type: "string" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  "client-ca": { type: "string" },
  insecure: { type: "boolean" },
  "admin-token-file": { type: "string" },
  "etcd-ca": { type: "string" },
  "etcd-cert": { type: "string" },
  "etcd-key": { type: "string" },
  "etcd-user": { type: "string" },
  "compaction-interval": { type: "string" },
  "compaction-revisions": { type: "string" },
  "compaction-keep-revisions": { type: "string" },
  "compaction-db-fraction": { type: "string" },
  "retention-interval": { type: "string" },
  "retention-age": { type: "string" },
  "retention-count": { type: "string" },
  "quota-bytes": { type: "string" },
  "tail-bytes": { type: "string" },
  "max-jobs": { type: "string" },
  "max-jobs-per-user": { type: "string" },
  "fair-share-half-life": { type: "string" },
  "preempt-grace": { type: "string" },
  "data-dir": { type: "string" },
  history: { type: "string" },
  "no-history": { type: "boolean" },
  "output-cap": { type: "string" },
  "logs-retention-age": { type: "string" },
  "logs-retention-bytes": { type: "string" },
  "heap-growth": { type: "string" },
} satisfies Flags;

/** `crms worker`'s own options. */
export const WORKER_FLAGS = {
  name: { type: "string" },
  slots: { type: "string" },
  label: { type: "string", multiple: true },
  "data-dir": { type: "string" },
  "run-as": { type: "string" },
  "output-cap": { type: "string" },
  shim: { type: "string" },
  cpus: { type: "string" },
  memory: { type: "string" },
  gpus: { type: "string" },
  resource: { type: "string", multiple: true },
} satisfies Flags;

/** `crms dev`'s options. */
export const DEV_FLAGS = {
  port: { type: "string", default: DEV_DEFAULTS.port },
  "http-port": { type: "string", default: DEV_DEFAULTS.httpPort },
  "etcd-port": { type: "string", default: DEV_DEFAULTS.etcdPort },
  slots: { type: "string" },
  "data-dir": { type: "string" },
} satisfies Flags;

/** `--name` for each flag of a table (completion). */
export function flagNames(flags: Flags): string[] {
  return Object.keys(flags).map((name) => `--${name}`);
}
