/**
 * `crms server`: one control-plane replica (and, with --http, the web page
 * and Connect API), until SIGINT or SIGTERM.
 */
import { etcdSecurity } from "../auth/server-security.js";
import { SERVER_DEFAULTS as D, SERVER_FLAGS } from "../config.js";
import { parseLogLevel } from "../log.js";
import { type ServerOptions, startServer } from "../server/server.js";
import { startHttp } from "../web/http.js";
import { CliError, cliParse, fraction, int, parse, untilSignal } from "./flags.js";
import { setHeapGrowth } from "./heap.js";
import { defaultDataDir } from "./paths.js";

/** The control plane's options from `crms server`'s arguments; every mistake a usage error. */
export function optionsOf(v: Record<string, unknown>): ServerOptions {
  const logLevel = cliParse(() => parseLogLevel((v["log-level"] as string | undefined) ?? D.logLevel));
  const str = (k: string) => (v[k] as string | undefined) || undefined;
  const etcdTls = cliParse(() =>
    etcdSecurity({
      etcdCa: str("etcd-ca"),
      etcdCert: str("etcd-cert"),
      etcdKey: str("etcd-key"),
      etcdUser: str("etcd-user"),
      etcdPassword: process.env.CRMS_ETCD_PASSWORD,
    }),
  );
  return {
    tlsCert: str("tls-cert"),
    tlsKey: str("tls-key"),
    clientCa: str("client-ca"),
    insecure: v.insecure as boolean | undefined,
    adminTokenFile: str("admin-token-file"),
    etcdTls,
    listen: (v.listen as string) ?? D.listen,
    etcd: ((v.etcd as string) ?? D.etcd).split(","),
    prefix: v.prefix as string | undefined,
    graceSeconds: int(v.grace, "--grace", D.graceSeconds),
    heartbeatSeconds: int(v.heartbeat, "--heartbeat", D.heartbeatSeconds) || D.heartbeatSeconds,
    logLevel,
    compactionIntervalSeconds: int(v["compaction-interval"], "--compaction-interval", D.compactionIntervalSeconds),
    retentionAgeSeconds: int(v["retention-age"], "--retention-age", D.retentionAgeSeconds),
    retentionCount: int(v["retention-count"], "--retention-count", D.retentionCount),
    retentionIntervalSeconds: int(v["retention-interval"], "--retention-interval", D.retentionIntervalSeconds),
    compactionRevisions: int(v["compaction-revisions"], "--compaction-revisions", D.compactionRevisions),
    compactionKeepRevisions: int(
      v["compaction-keep-revisions"],
      "--compaction-keep-revisions",
      D.compactionKeepRevisions,
    ),
    compactionDbFraction: fraction(v["compaction-db-fraction"], "--compaction-db-fraction", D.compactionDbFraction),
    quotaBytes: int(v["quota-bytes"], "--quota-bytes", D.quotaBytes),
    tailBytes: int(v["tail-bytes"], "--tail-bytes", D.tailBytes),
    ...historyOptions(v),
    outputCapBytes: int(v["output-cap"], "--output-cap", D.outputCapBytes),
    logsRetentionAgeSeconds: int(v["logs-retention-age"], "--logs-retention-age", D.logsRetentionAgeSeconds),
    logsRetentionBytes: int(v["logs-retention-bytes"], "--logs-retention-bytes", D.logsRetentionBytes),
    maxJobs: v["max-jobs"] === undefined ? undefined : int(v["max-jobs"], "--max-jobs", 0),
    maxJobsPerUser: int(v["max-jobs-per-user"], "--max-jobs-per-user", D.maxJobsPerUser),
    fairShareHalfLifeSeconds: int(v["fair-share-half-life"], "--fair-share-half-life", D.fairShareHalfLifeSeconds),
    preemptGraceSeconds: int(v["preempt-grace"], "--preempt-grace", D.preemptGraceSeconds),
  };
}

/** --history URL (PostgreSQL), else embedded under --data-dir (default: the state dir's "server"). */
function historyOptions(v: Record<string, unknown>): { dataDir?: string; history?: string } {
  const url = v.history as string | undefined;
  if (v["no-history"]) {
    if (url) throw new CliError("--history and --no-history exclude each other", 2);
    return {};
  }
  if (url !== undefined && !/^postgres(ql)?:\/\/\S+$/.test(url))
    throw new CliError(
      `--history must be a postgres:// URL (got ${JSON.stringify(url)}); without it the history is embedded under --data-dir`,
      2,
    );
  return { dataDir: (v["data-dir"] as string | undefined) ?? defaultDataDir("server"), history: url };
}

/** Runs `crms server ARGS` until a signal; the exit code. */
export async function server(args: string[]): Promise<number> {
  const { values: v } = parse(args, SERVER_FLAGS);
  const options = optionsOf(v);
  const growth = int(v["heap-growth"], "--heap-growth", D.heapGrowthPercent);
  const cp = await startServer(options);
  // After the load: a load builds the whole live set at once, and with a fixed growth it
  // collects the heap again and again on the way (see heap.ts).
  setHeapGrowth(growth);
  // Over capacity there is nothing loaded to show: the page and /metrics stay off, every call says why.
  const web = v.http && !cp.overCapacity ? await startHttp(cp, v.http as string) : undefined;
  if (web) cp.log.info("web dashboard and Connect API serving", { url: web.url });
  await untilSignal();
  await web?.close();
  await cp.stop();
  return 0;
}
