/**
 * The control plane with its counters on stdout, for diagnosis only
 * (`bench/run.ts ... --instrumented`): the same startServer() the CLI's
 * `server` command runs, plus one JSON line a second with Batcher.stats,
 * Scheduler.stats, the distribution of Txn durations and batch sizes, and the
 * event loop's delay. It subscribes to the batcher's `txn` and the
 * scheduler's `placed` events; it changes nothing else.
 *
 *   tsx bench/server-instrumented.ts --listen H:P --etcd URL
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import { startServer } from "../src/server/server.js";
import { emit, Histogram, parseFlags } from "./lib/util.js";

const { flags } = parseFlags(process.argv.slice(2));
const cp = await startServer({
  listen: flags.get("listen") ?? "127.0.0.1:0",
  etcd: (flags.get("etcd") ?? "http://127.0.0.1:2379").split(","),
  logLevel: "warn",
});

const txnMs = new Histogram();
const batch = new Histogram();
const placed = new Histogram();
cp.store.batcher.events.on("txn", (seconds, size) => {
  txnMs.record(seconds * 1000);
  batch.record(size);
});
cp.scheduler.events.on("placed", (seconds) => placed.record(seconds * 1000));
const loop = monitorEventLoopDelay({ resolution: 10 });
loop.enable();
/** The same, reset every second. */
const recent = monitorEventLoopDelay({ resolution: 10 });
recent.enable();
let cpu = process.cpuUsage();
let cpuAt = performance.now();

const timer = setInterval(() => {
  emit({
    type: "stats",
    at: Date.now(),
    batcher: { ...cp.store.batcher.stats },
    scheduler: { ...cp.scheduler.stats },
    txnMs: txnMs.toJSON(),
    batch: batch.toJSON(),
    placedMs: placed.toJSON(),
    loopDelayMs: {
      p50: loop.percentile(50) / 1e6,
      p99: loop.percentile(99) / 1e6,
      max: loop.max / 1e6,
      mean: loop.mean / 1e6,
    },
    recentLoopDelayMs: { p50: recent.percentile(50) / 1e6, p99: recent.percentile(99) / 1e6, max: recent.max / 1e6 },
    recentCpuPct: cpuPct(),
    sessions: cp.sessions.byName.size,
    memory: process.memoryUsage(),
  });
  recent.reset();
}, 1000);

function cpuPct(): number {
  const now = performance.now();
  const used = process.cpuUsage(cpu);
  const pct = ((used.user + used.system) / 1000 / (now - cpuAt)) * 100;
  cpu = process.cpuUsage();
  cpuAt = now;
  return Math.round(pct);
}

const stop = async () => {
  clearInterval(timer);
  await cp.stop();
  process.exit(0);
};
process.once("SIGTERM", () => void stop());
process.once("SIGINT", () => void stop());
