/** A fresh one-member etcd on free loopback ports, and its Prometheus metrics. */
import { join } from "node:path";
// One free-port helper for the tests and the benchmarks.
import { freePort } from "../../test/helpers/etcd.js";
import { type Proc, startExe, tempDir } from "./procs.js";
import { sleep } from "./util.js";

export { freePort };

export interface Etcd {
  endpoint: string;
  dataDir: string;
  proc: Proc;
  flags: string[];
}

/** Starts etcd with a fresh data directory; `extra` flags are passed on (quota, compaction). */
export async function startEtcd(extra: string[] = []): Promise<Etcd> {
  const dir = tempDir("etcd");
  const dataDir = join(dir, "data");
  const [client, peer] = [await freePort(), await freePort()];
  const endpoint = `http://127.0.0.1:${client}`;
  const bin = process.env.ETCD_BIN ?? "/usr/bin/etcd";
  const proc = startExe(
    "etcd",
    bin,
    [
      "--name",
      "bench",
      "--data-dir",
      dataDir,
      "--listen-client-urls",
      endpoint,
      "--advertise-client-urls",
      endpoint,
      "--listen-peer-urls",
      `http://127.0.0.1:${peer}`,
      "--initial-advertise-peer-urls",
      `http://127.0.0.1:${peer}`,
      "--initial-cluster",
      `bench=http://127.0.0.1:${peer}`,
      "--log-level",
      "error",
      // Per-method gRPC handling-time histograms (Txn time as etcd sees it).
      "--metrics",
      "extensive",
      ...extra,
    ],
    join(dir, "etcd.log"),
  );
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      const res = await fetch(`${endpoint}/health`);
      if (res.ok) break;
    } catch {
      // not up yet
    }
    if (!proc.running || Date.now() > deadline) {
      await proc.stop(1000);
      throw new Error(`etcd did not start:\n${proc.lastLines()}`);
    }
    await sleep(50);
  }
  return { endpoint, dataDir, proc, flags: extra };
}

/** Prometheus text → map of "name{labels}" and bare "name" (summed over labels) to values. */
export async function metrics(endpoint: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${endpoint}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const sp = line.lastIndexOf(" ");
    const key = line.slice(0, sp);
    const value = Number(line.slice(sp + 1));
    if (!Number.isFinite(value)) continue;
    out.set(key, value);
    const brace = key.indexOf("{");
    if (brace > 0) {
      const bare = key.slice(0, brace);
      out.set(bare, (out.get(bare) ?? 0) + value);
    }
  }
  return out;
}

/** What etcd did between two scrapes: Txn calls, puts, deletes, ranges, fsyncs. */
export interface EtcdWork {
  txns: number;
  puts: number;
  deletes: number;
  ranges: number;
  fsyncs: number;
  fsyncSeconds: number;
  /** Seconds etcd spent handling Txn calls (needs --metrics extensive). */
  txnSeconds: number;
  proposals: number;
}

export function etcdWork(m: Map<string, number>): EtcdWork {
  return {
    txns:
      m.get(
        'grpc_server_handled_total{grpc_code="OK",grpc_method="Txn",grpc_service="etcdserverpb.KV",grpc_type="unary"}',
      ) ?? 0,
    puts: m.get("etcd_mvcc_put_total") ?? m.get("etcd_debugging_mvcc_put_total") ?? 0,
    deletes: m.get("etcd_mvcc_delete_total") ?? m.get("etcd_debugging_mvcc_delete_total") ?? 0,
    ranges: m.get("etcd_mvcc_range_total") ?? m.get("etcd_debugging_mvcc_range_total") ?? 0,
    fsyncs: m.get("etcd_disk_wal_fsync_duration_seconds_count") ?? 0,
    fsyncSeconds: m.get("etcd_disk_wal_fsync_duration_seconds_sum") ?? 0,
    txnSeconds:
      m.get('grpc_server_handling_seconds_sum{grpc_method="Txn",grpc_service="etcdserverpb.KV",grpc_type="unary"}') ??
      0,
    proposals: m.get("etcd_server_proposals_committed_total") ?? 0,
  };
}

export function workDelta(a: EtcdWork, b: EtcdWork): EtcdWork {
  return {
    txns: b.txns - a.txns,
    puts: b.puts - a.puts,
    deletes: b.deletes - a.deletes,
    ranges: b.ranges - a.ranges,
    fsyncs: b.fsyncs - a.fsyncs,
    fsyncSeconds: b.fsyncSeconds - a.fsyncSeconds,
    txnSeconds: b.txnSeconds - a.txnSeconds,
    proposals: b.proposals - a.proposals,
  };
}

/** Backend size figures from /metrics. */
export async function dbSize(endpoint: string): Promise<{ size: number; inUse: number; quota: number }> {
  const m = await metrics(endpoint);
  return {
    size: m.get("etcd_mvcc_db_total_size_in_bytes") ?? m.get("etcd_debugging_mvcc_db_total_size_in_bytes") ?? 0,
    inUse: m.get("etcd_mvcc_db_total_size_in_use_in_bytes") ?? 0,
    quota: m.get("etcd_server_quota_backend_bytes") ?? 0,
  };
}
