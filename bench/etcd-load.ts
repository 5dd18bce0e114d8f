/**
 * etcd's own ceiling, measured with the etcd3 client the store uses:
 * unbatched puts awaited one after another, unbatched puts 64 at a time, and
 * Txns of 100 puts (one at a time, and 4 at a time as the batcher sends them).
 *
 *   tsx bench/etcd-load.ts --endpoint URL [--seconds 3] [--value-bytes 200]
 *
 * Prints one JSON line per measurement, then {"type":"final", ...}.
 */
import { Etcd3 } from "etcd3";
import { emit, hardDeadline, nowMs, numFlag, parseFlags, progress } from "./lib/util.js";

const { flags } = parseFlags(process.argv.slice(2));
const endpoint = flags.get("endpoint") ?? "http://127.0.0.1:2379";
const seconds = numFlag(flags, "seconds", 3);
const valueBytes = numFlag(flags, "value-bytes", 200);
const only = (flags.get("only") ?? "seq,c64,txn100,txn100c4").split(",");
hardDeadline(seconds * 4 * 3 + 30, "etcd-load");

const etcd = new Etcd3({ hosts: [endpoint], dialTimeout: 5000 });
const value = Buffer.alloc(valueBytes, "x");
let seq = 0;
const key = (run: string) => Buffer.from(`bench/${run}/${String(seq++).padStart(10, "0")}`);

/** Runs `workers` loops of `op` for `seconds`; returns operations and keys per second. */
async function measure(name: string, workers: number, keysPerOp: number, op: () => Promise<unknown>) {
  // Warm the connection first.
  for (let i = 0; i < 20; i++) await op();
  const start = nowMs();
  const end = start + seconds * 1000;
  let ops = 0;
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (nowMs() < end) {
        await op();
        ops++;
      }
    }),
  );
  const elapsed = (nowMs() - start) / 1000;
  const result = {
    type: "measure",
    name,
    concurrency: workers,
    ops,
    seconds: elapsed,
    ops_per_s: ops / elapsed,
    keys_per_s: (ops * keysPerOp) / elapsed,
  };
  progress(`etcd ${name}: ${Math.round(result.keys_per_s)} keys/s (${ops} ops in ${elapsed.toFixed(2)} s)`);
  emit(result);
  return result;
}

const put = () => etcd.put(key("put")).value(value).exec();
const txn100 = () =>
  etcd.kv.txn({
    compare: [],
    success: Array.from({ length: 100 }, () => ({ request_put: { key: key("txn"), value } })),
    failure: [],
  });

const out: Record<string, number> = {};
try {
  if (only.includes("seq")) out.etcd_puts_seq_per_s = (await measure("put-sequential", 1, 1, put)).keys_per_s;
  if (only.includes("c64")) out.etcd_puts_c64_per_s = (await measure("put-concurrency-64", 64, 1, put)).keys_per_s;
  if (only.includes("txn100")) out.txn100_keys_per_s = (await measure("txn100-sequential", 1, 100, txn100)).keys_per_s;
  if (only.includes("txn100c4")) {
    out.txn100_c4_keys_per_s = (await measure("txn100-concurrency-4", 4, 100, txn100)).keys_per_s;
  }
  // Leave etcd as it was found: the measured keys would count in later size figures.
  await etcd.delete().prefix("bench/").exec();
  emit({ type: "final", ...out });
} catch (err) {
  emit({ type: "error", error: String(err) });
  process.exitCode = 1;
} finally {
  etcd.close();
}
