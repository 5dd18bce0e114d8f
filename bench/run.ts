/**
 * crms benchmark harness.
 *
 *   npx tsx bench/run.ts SCENARIO [--size small|default|full] [--jobs N] [--workers W]
 *       [--slots S] [--rate R] [--seconds D] [--keep N] [--timeout SECONDS] [--deadline SECONDS]
 *       [--profile DIR] [--instrumented] [--quiet-wait SECONDS] [--server-args="FLAGS"] [--server-node-args="FLAGS"] [--worker-node-args="FLAGS"] [--worker ts|go]
 *
 * SCENARIO: ceiling | throughput | latency | workers | gocrms | history | real | paced | backlog | fairshare
 * (fairshare also takes --jobs-b N, --delay SECONDS and --fair-first)
 *
 * Every run starts its own etcd (fresh data dir, free loopback ports), the
 * control plane as its own process (`crms server --log-level warn`), and the
 * load in separate processes (bench/sim-workers.ts, bench/submitter.ts,
 * bench/etcd-load.ts, bench/spawner.ts, real `crms worker`s) that report to
 * this one as JSON lines. Progress goes to stderr; stdout gets a table and,
 * as its last line, one JSON object with the scenario, its parameters, the
 * machine and the figures. See bench/README.md.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { Etcd3 } from "etcd3";
import type { CrmsClient } from "../clients/typescript/src/client.js";
import { AdminService } from "../gen/crms/v1/admin_pb.js";
import { JobState } from "../gen/crms/v1/job_pb.js";
import { QueueService } from "../gen/crms/v1/queue_pb.js";
import {
  type ServerProc,
  serverFlags,
  startControlPlane,
  startSimWorkers,
  stopControlPlane,
  sumLatest,
} from "./lib/cluster.js";
import { dbSize, type Etcd, etcdWork, metrics, startEtcd, workDelta } from "./lib/etcd.js";
import {
  CRMS_BIN,
  machineCpu,
  type Proc,
  procStatus,
  REPO_DIR,
  startExe,
  startNode,
  startScript,
  stopAll,
  tempDir,
} from "./lib/procs.js";
import { errorCode, Histogram, machine, nowMs, numFlag, parseFlags, progress, round, sleep } from "./lib/util.js";
import { formatSummary, newestProfile, type ProfileSummary, summarise } from "./profile-top.js";

type Size = "small" | "default" | "full";
type Figures = Record<string, unknown>;

interface Ctx {
  size: Size;
  flags: Map<string, string>;
  profileDir?: string;
  /** Run bench/server-instrumented.ts instead of the CLI, and report its counters. */
  instrumented: boolean;
  /** Seconds the load processes may live at most. */
  maxSeconds: number;
}

interface Outcome {
  params: Figures;
  figures: Figures;
  /** [figure, value, target or reference] rows of the readable table. */
  rows: [string, string, string][];
  /** More tables printed after the main one (header row first). */
  tables?: { title: string; rows: string[][] }[];
  notes: string[];
}

const SCENARIOS = [
  "ceiling",
  "throughput",
  "latency",
  "workers",
  "gocrms",
  "history",
  "real",
  "paced",
  "backlog",
  "fairshare",
] as const;
type Scenario = (typeof SCENARIOS)[number];

// ---------------------------------------------------------------- helpers

/** A size-dependent default, overridable by --name. */
function opt(ctx: Ctx, name: string, small: number, def: number, full = def): number {
  return numFlag(ctx.flags, name, ctx.size === "small" ? small : ctx.size === "full" ? full : def);
}

const fmt = (x: unknown, unit = ""): string =>
  typeof x === "number" ? `${Number.isFinite(x) ? round(x).toLocaleString("en-US") : String(x)}${unit}` : String(x);

async function etcdCeiling(endpoint: string, seconds: number, only: string, maxSeconds: number): Promise<Figures> {
  const p = startScript("etcd-load", "etcd-load.ts", [
    "--endpoint",
    endpoint,
    "--seconds",
    String(seconds),
    "--only",
    only,
  ]);
  const final = await p.waitFor((m) => m.type === "final" || m.type === "error", maxSeconds * 1000, "etcd figures");
  await p.exited;
  if (final.type === "error") throw new Error(`etcd-load failed: ${String(final.error)}`);
  const { type: _t, ...figures } = final;
  if (typeof figures.etcd_puts_c64_per_s === "number") figures.etcd_puts_per_s = figures.etcd_puts_c64_per_s;
  return figures;
}

interface Sims {
  procs: Proc[];
  attachS: number;
  firstHelloAt: number;
  lastWelcomeAt: number;
}

/** Starts the simulated workers and waits until all of them are welcomed. */
async function attachSims(
  ctx: Ctx,
  server: ServerProc,
  workers: number,
  slots: number,
  extra: { deleteKeep?: number; perProcess?: number } = {},
): Promise<Sims> {
  const procs = startSimWorkers(server.address, workers, slots, { maxSeconds: ctx.maxSeconds, ...extra });
  await Promise.all(procs.map((p) => p.waitFor((m) => m.type === "ready", 60_000, "ready")));
  for (const p of procs) p.send({ cmd: "go" });
  const deadline = Date.now() + Math.max(60_000, workers * 20);
  let last = 0;
  for (;;) {
    const welcomed = sumLatest(procs, "progress", ["welcomed"]).welcomed ?? 0;
    if (welcomed >= workers) break;
    if (Date.now() > deadline) throw new Error(`only ${welcomed} of ${workers} workers attached in time`);
    for (const p of [server.proc, ...procs]) if (!p.running) throw new Error(`${p.name} exited:\n${p.lastLines()}`);
    if (Date.now() - last > 1000) {
      progress(`attaching: ${welcomed}/${workers} workers welcomed`);
      last = Date.now();
    }
    await sleep(50);
  }
  const latest = procs.map((p) => [...p.messages].reverse().find((m) => m.type === "progress") ?? {});
  const firstHelloAt = Math.min(...latest.map((m) => Number(m.firstHelloAt)));
  const lastWelcomeAt = Math.max(...latest.map((m) => Number(m.lastWelcomeAt)));
  const attachS = (lastWelcomeAt - firstHelloAt) / 1000;
  progress(`all ${workers} workers attached in ${attachS.toFixed(2)} s`);
  return { procs, attachS, firstHelloAt, lastWelcomeAt };
}

interface SimTotals {
  acks: number;
  assigns: number;
  dupAssigns: number;
  streamErrors: number;
  reattaches: number;
  deletes: number;
  deleteErrors: number;
  firstAssignAt: number;
  lastAssignAt: number;
  lastAckAt: number;
  running: Histogram;
  finished: Histogram;
  errors: Record<string, number>;
  /** Per job owner, starts per 100 ms bucket (ms / 100) of the one clock. */
  starts: Map<string, Map<number, number>>;
  /** Per job owner, when its first job was assigned (ms of the one clock). */
  firstStarts: Map<string, number>;
}

/** Stops the simulated workers and merges their final reports. */
async function stopSims(procs: Proc[]): Promise<SimTotals> {
  for (const p of procs) p.send({ cmd: "stop" });
  const finals = await Promise.all(
    procs.map((p) =>
      p
        .waitFor((m) => m.type === "final", 30_000, "final report")
        .catch((err) => {
          progress(String(err));
          return {} as Record<string, unknown>;
        }),
    ),
  );
  await Promise.all(procs.map((p) => p.stop(5000)));
  const t: SimTotals = {
    acks: 0,
    assigns: 0,
    dupAssigns: 0,
    streamErrors: 0,
    reattaches: 0,
    deletes: 0,
    deleteErrors: 0,
    firstAssignAt: Number.POSITIVE_INFINITY,
    lastAssignAt: 0,
    lastAckAt: 0,
    running: new Histogram(),
    finished: new Histogram(),
    errors: {},
    starts: new Map(),
    firstStarts: new Map(),
  };
  for (const f of finals) {
    for (const k of [
      "acks",
      "assigns",
      "dupAssigns",
      "streamErrors",
      "reattaches",
      "deletes",
      "deleteErrors",
    ] as const) {
      t[k] += Number(f[k] ?? 0);
    }
    if (Number(f.firstAssignAt) > 0) t.firstAssignAt = Math.min(t.firstAssignAt, Number(f.firstAssignAt));
    t.lastAssignAt = Math.max(t.lastAssignAt, Number(f.lastAssignAt ?? 0));
    t.lastAckAt = Math.max(t.lastAckAt, Number(f.lastAckAt ?? 0));
    t.running.merge(Histogram.fromJSON(f.running));
    t.finished.merge(Histogram.fromJSON(f.finished));
    for (const [k, v] of Object.entries((f.errors as Record<string, number>) ?? {}))
      t.errors[k] = (t.errors[k] ?? 0) + v;
    for (const [owner, buckets] of Object.entries((f.starts as Record<string, Record<string, number>>) ?? {})) {
      const mine = t.starts.get(owner) ?? new Map<number, number>();
      t.starts.set(owner, mine);
      for (const [b, n] of Object.entries(buckets)) mine.set(Number(b), (mine.get(Number(b)) ?? 0) + n);
    }
    for (const [owner, at] of Object.entries((f.firstStarts as Record<string, number>) ?? {}))
      t.firstStarts.set(owner, Math.min(at, t.firstStarts.get(owner) ?? at));
  }
  return t;
}

interface JobRun {
  /** The (first) submitter's final report. */
  submitter: Figures;
  /** Every submitter's final report, in the order of `streams`. */
  submitters: Figures[];
  timedOut: boolean;
  finishedSeen: number;
  /** Share of one core each role used during the job phase, in %. */
  cpuPct: Record<string, number>;
}

/** One submitter process of a job phase: its jobs, extra flags (--queue, --owner) and when it starts. */
interface Stream {
  jobs: number;
  args?: string[];
  /** Seconds after the job phase starts that this submitter is told to go. */
  delayS?: number;
}

/** The job phase of the last runJobs, in µs of the monotonic clock (to cut the CPU profile to it). */
let jobPhaseUs: [number, number] | undefined;
const monoUs = () => Number(process.hrtime.bigint() / 1000n);
/** CPU seconds of each role's processes, remembering the last reading of processes that exited. */
class CpuMeter {
  private first = new Map<number, number>();
  private last = new Map<number, number>();
  private roleOf = new Map<number, string>();
  private machine0 = machineCpu();
  private machine1 = this.machine0;
  private self0 = process.cpuUsage();
  private self1 = this.self0;

  constructor(private readonly roles: [string, Proc][]) {
    this.sample();
  }

  sample(): void {
    this.machine1 = machineCpu();
    this.self1 = process.cpuUsage();
    for (const [role, p] of this.roles) {
      if (!p.running || !p.pid) continue;
      // A process's own CPU plus that of the children it reaped (a worker's job processes).
      const u = serverUsage(p.pid);
      const cpu = u.cpuSeconds + u.childCpuSeconds;
      this.roleOf.set(p.pid, role);
      if (!this.first.has(p.pid)) this.first.set(p.pid, cpu);
      this.last.set(p.pid, cpu);
    }
  }

  /** % of one core per role over `seconds`. */
  pct(seconds: number): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [pid, c] of this.last) {
      const role = this.roleOf.get(pid) as string;
      out[role] = (out[role] ?? 0) + c - (this.first.get(pid) ?? c);
    }
    out.harness = (this.self1.user + this.self1.system - this.self0.user - this.self0.system) / 1e6;
    const ours = Object.values(out).reduce((a, b) => a + b, 0);
    // Everything else on the machine (other users' work competes for the same cores).
    out.other = Math.max(0, this.machine1.busySeconds - this.machine0.busySeconds - ours);
    for (const k of Object.keys(out)) out[k] = round(((out[k] as number) / seconds) * 100);
    return out;
  }
}

/**
 * Submits `jobs` jobs (or each stream's, by its own submitter) and waits until
 * the simulated workers have had them all acknowledged (or `timeoutS`
 * passes). `tick` runs about every second.
 */
async function runJobs(
  ctx: Ctx,
  server: ServerProc,
  sims: Proc[],
  o: {
    jobs: number;
    rate?: number;
    concurrency?: number;
    timeoutS: number;
    tick?: () => Promise<void>;
    etcd?: Etcd;
    /** Several submitters instead of one with `jobs` (then `jobs` is ignored). */
    streams?: Stream[];
  },
): Promise<JobRun> {
  const streams = o.streams ?? [{ jobs: o.jobs }];
  const jobs = streams.reduce((n, s) => n + s.jobs, 0);
  const subs = streams.map((s, i) => {
    const args = ["--server", server.address, "--jobs", String(s.jobs), "--max-seconds", String(ctx.maxSeconds)];
    if (o.rate) args.push("--rate", String(o.rate));
    args.push("--concurrency", String(o.concurrency ?? (o.rate ? 20_000 : 1024)), ...(s.args ?? []));
    return startScript(streams.length > 1 ? `submitter${i}` : "submitter", "submitter.ts", args);
  });
  await Promise.all(subs.map((sub) => sub.waitFor((m) => m.type === "ready", 60_000, "ready")));
  const base = sumLatest(sims, "progress", ["acks"]).acks as number;
  const roles: [string, Proc][] = [
    ["server", server.proc],
    ...subs.map((p): [string, Proc] => ["submitter", p]),
    ...sims.map((p): [string, Proc] => ["sim-workers", p]),
  ];
  if (o.etcd) roles.push(["etcd", o.etcd.proc]);
  const meter = new CpuMeter(roles);
  const wall0 = nowMs();
  const phaseStart = monoUs();
  const start = Date.now();
  const goAt = streams.map((s) => start + (s.delayS ?? 0) * 1000);
  const gone = subs.map(() => false);
  const deadline = start + o.timeoutS * 1000;
  let lastLog = 0;
  let lastAcks = 0;
  let timedOut = false;
  let acks = 0;
  for (;;) {
    subs.forEach((sub, i) => {
      if (!gone[i] && Date.now() >= (goAt[i] as number)) {
        sub.send({ cmd: "go" });
        gone[i] = true;
      }
    });
    acks = (sumLatest(sims, "progress", ["acks"]).acks as number) - base;
    if (acks >= jobs) break;
    if (Date.now() > deadline) {
      timedOut = true;
      progress(`timeout: ${acks} of ${jobs} jobs finished after ${o.timeoutS} s; stopping`);
      break;
    }
    for (const p of [server.proc, ...subs, ...sims]) {
      if (!p.running && !(subs.includes(p) && p.messages.some((m) => m.type === "final"))) {
        throw new Error(`${p.name} exited early:\n${p.lastLines()}`);
      }
    }
    if (Date.now() - lastLog >= 1000) {
      meter.sample();
      const s = { submitted: 0, failed: 0, errors: {} as Record<string, number> };
      for (const sub of subs) {
        const m = [...sub.messages].reverse().find((m) => m.type === "progress" || m.type === "final") ?? {};
        s.submitted += Number(m.submitted ?? 0);
        s.failed += Number(m.failed ?? 0);
        for (const [k, v] of Object.entries((m.errors as Record<string, number>) ?? {}))
          s.errors[k] = (s.errors[k] ?? 0) + v;
      }
      const dt = (Date.now() - lastLog) / 1000;
      progress(
        `submitted ${s.submitted}/${jobs} (failed ${s.failed}${s.failed ? ` ${JSON.stringify(s.errors)}` : ""}), finished ${acks}` +
          (lastLog ? ` (${Math.round((acks - lastAcks) / dt)}/s)` : ""),
      );
      lastLog = Date.now();
      lastAcks = acks;
      await o.tick?.();
    }
    await sleep(20);
  }
  meter.sample();
  jobPhaseUs = [phaseStart, monoUs()];
  const cpuPct = meter.pct((nowMs() - wall0) / 1000);
  const submitters = await Promise.all(
    subs.map(async (sub) => {
      let f: Figures;
      try {
        f = await sub.waitFor((m) => m.type === "final", timedOut ? 2000 : 30_000, "submitter final");
      } catch (err) {
        progress(String(err));
        f = [...sub.messages].reverse().find((m) => m.type === "progress") ?? {};
      }
      await sub.stop(3000);
      return f;
    }),
  );
  return { submitter: submitters[0] as Figures, submitters, timedOut, finishedSeen: acks, cpuPct };
}

function cpuText(pct: Record<string, number>): string {
  return Object.entries(pct)
    .map(([k, v]) => `${k} ${fmt(v)}`)
    .join(", ");
}

function latencyFigures(h: Histogram, prefix: string): Figures {
  return {
    [`${prefix}p50_ms`]: round(h.quantile(0.5)),
    [`${prefix}p90_ms`]: round(h.quantile(0.9)),
    [`${prefix}p99_ms`]: round(h.quantile(0.99)),
    [`${prefix}max_ms`]: round(h.max),
    [`${prefix}mean_ms`]: round(h.mean),
  };
}

async function withEtcdAndServer<T>(
  ctx: Ctx,
  etcdFlags: string[],
  fn: (etcd: Etcd, server: ServerProc) => Promise<T>,
  before?: (etcd: Etcd) => Promise<void>,
  serverArgs: string[] = [],
): Promise<T> {
  const etcd = await startEtcd(etcdFlags);
  progress(`etcd up at ${etcd.endpoint}`);
  await before?.(etcd);
  const server = await startControlPlane(etcd.endpoint, {
    profileDir: ctx.profileDir,
    instrumented: ctx.instrumented,
    args: [...serverArgs, ...(ctx.flags.get("server-args")?.split(" ").filter(Boolean) ?? [])],
    nodeArgs: ctx.flags.get("server-node-args")?.split(" ").filter(Boolean),
  });
  try {
    return await fn(etcd, server);
  } finally {
    await stopControlPlane(server);
    await etcd.proc.stop(5000);
  }
}

function serverUsage(pid: number): ReturnType<typeof procStatus> {
  try {
    return procStatus(pid);
  } catch {
    return { rssBytes: 0, anonBytes: 0, cpuSeconds: 0, childCpuSeconds: 0 };
  }
}

/** Batch figures: what etcd saw during the job phase (from its /metrics). */
function batchFigures(work: ReturnType<typeof etcdWork>, jobs: number): Figures {
  return {
    etcd_txns: work.txns,
    etcd_puts: work.puts,
    etcd_txns_per_job: round(work.txns / Math.max(1, jobs)),
    etcd_puts_per_job: round(work.puts / Math.max(1, jobs)),
    puts_per_txn: round(work.puts / Math.max(1, work.txns)),
    etcd_fsyncs_per_job: round(work.fsyncs / Math.max(1, jobs)),
    etcd_fsync_mean_ms: round((work.fsyncSeconds * 1000) / Math.max(1, work.fsyncs)),
    etcd_txn_mean_ms: round((work.txnSeconds * 1000) / Math.max(1, work.txns)),
  };
}

/** The instrumented server's counters (only with --instrumented). */
function serverStats(server: ServerProc): Figures | undefined {
  const last = [...server.proc.messages].reverse().find((m) => m.type === "stats");
  if (!last) return undefined;
  const b = last.batcher as Record<string, number>;
  const txn = Histogram.fromJSON(last.txnMs);
  const batch = Histogram.fromJSON(last.batch);
  const placed = Histogram.fromJSON(last.placedMs);
  const loop = last.loopDelayMs as Record<string, number>;
  return {
    txns: b.txns,
    transitions: b.transitions,
    conflicts: b.conflicts,
    retries: b.retries,
    largest_batch: b.largest,
    mean_batch: round(batch.mean),
    txn_p50_ms: round(txn.quantile(0.5)),
    txn_p99_ms: round(txn.quantile(0.99)),
    txn_max_ms: round(txn.max),
    placed_p50_ms: round(placed.quantile(0.5)),
    placed_p99_ms: round(placed.quantile(0.99)),
    loop_delay_p50_ms: round(loop.p50 ?? 0),
    loop_delay_p99_ms: round(loop.p99 ?? 0),
    loop_delay_max_ms: round(loop.max ?? 0),
    scheduler: last.scheduler,
  };
}

/** The instrumented server's latest process.memoryUsage(), or undefined. */
function serverMemory(server: ServerProc): NodeJS.MemoryUsage | undefined {
  const last = [...server.proc.messages].reverse().find((m) => m.type === "stats");
  return last?.memory as NodeJS.MemoryUsage | undefined;
}

// ---------------------------------------------------------------- scenarios

async function ceiling(ctx: Ctx): Promise<Outcome> {
  const seconds = opt(ctx, "seconds", 1, 3);
  const etcd = await startEtcd();
  try {
    const f = await etcdCeiling(etcd.endpoint, seconds, "seq,c64,txn100,txn100c4", ctx.maxSeconds);
    const figures: Figures = {
      etcd_puts_per_s: round(f.etcd_puts_per_s as number),
      etcd_puts_seq_per_s: round(f.etcd_puts_seq_per_s as number),
      etcd_puts_c64_per_s: round(f.etcd_puts_c64_per_s as number),
      txn100_keys_per_s: round(f.txn100_keys_per_s as number),
      txn100_c4_keys_per_s: round(f.txn100_c4_keys_per_s as number),
      batch_gain: round((f.txn100_keys_per_s as number) / (f.etcd_puts_per_s as number)),
    };
    return {
      params: { seconds, value_bytes: 200 },
      figures,
      rows: [
        ["etcd puts/s, 1 at a time", fmt(figures.etcd_puts_seq_per_s), ""],
        ["etcd puts/s, 64 in flight (etcd_puts_per_s)", fmt(figures.etcd_puts_c64_per_s), "ref ~5,000"],
        ["keys/s in 100-key Txns, 1 at a time", fmt(figures.txn100_keys_per_s), "ref ~48,000"],
        ["keys/s in 100-key Txns, 4 in flight", fmt(figures.txn100_c4_keys_per_s), ""],
        ["batch gain (txn100 / puts)", fmt(figures.batch_gain, "×"), ""],
      ],
      notes: ["etcd_puts_per_s is the 64-in-flight rate: the best a client gets from etcd without batching."],
    };
  } finally {
    await etcd.proc.stop(5000);
  }
}

async function throughput(ctx: Ctx): Promise<Outcome> {
  const jobs = opt(ctx, "jobs", 2000, 20_000);
  const workers = opt(ctx, "workers", 20, 200);
  const slots = opt(ctx, "slots", 8, 8);
  const concurrency = opt(ctx, "concurrency", 1024, 1024);
  const seconds = opt(ctx, "seconds", 1, 2);
  let before: Figures = {};
  return withEtcdAndServer(
    ctx,
    [],
    async (etcd, server) => {
      const sims = await attachSims(ctx, server, workers, slots);
      const m0 = etcdWork(await metrics(etcd.endpoint));
      const u0 = serverUsage(server.proc.pid);
      const t0 = nowMs();
      const run = await runJobs(ctx, server, sims.procs, {
        jobs,
        concurrency,
        timeoutS: opt(ctx, "timeout", 60, 120),
        etcd,
      });
      const u1 = serverUsage(server.proc.pid);
      const m1 = etcdWork(await metrics(etcd.endpoint));
      const wall = (nowMs() - t0) / 1000;
      const t = await stopSims(sims.procs);
      // etcd's put rate again, right after (the disk of a shared machine varies from minute to minute).
      progress("measuring etcd's unbatched put rate again");
      const after = await etcdCeiling(etcd.endpoint, seconds, "c64", ctx.maxSeconds);
      const firstSubmit = Number(run.submitter.firstSubmitAt);
      const totalS = (t.lastAckAt - firstSubmit) / 1000;
      const done = Math.min(t.acks, jobs);
      const jobsPerS = done / totalS;
      const etcdPuts = ((before.etcd_puts_per_s as number) + (after.etcd_puts_per_s as number)) / 2;
      const figures: Figures = {
        jobs_per_s: round(jobsPerS),
        etcd_puts_per_s: round(etcdPuts),
        ratio: round(jobsPerS / etcdPuts),
        etcd_puts_before_per_s: round(before.etcd_puts_per_s as number),
        etcd_puts_after_per_s: round(after.etcd_puts_per_s as number),
        total_s: round(totalS),
        finished: done,
        completed: !run.timedOut && done >= jobs,
        submit_per_s: round(run.submitter.submit_per_s as number),
        submit_failed: run.submitter.failed ?? 0,
        submit_errors: run.submitter.errors ?? {},
        ...batchFigures(workDelta(m0, m1), jobs),
        server_cpu_pct: round(((u1.cpuSeconds - u0.cpuSeconds) / wall) * 100),
        cpu_pct: run.cpuPct,
        server_rss_mb: round(u1.rssBytes / 2 ** 20),
        ...latencyFigures(t.running, ""),
        ...latencyFigures(t.finished, "finished_"),
        attach_s: round(sims.attachS),
        dup_assigns: t.dupAssigns,
        stream_errors: t.streamErrors,
        ...(serverStats(server) ? { server_stats: serverStats(server) } : {}),
      };
      const cpu = cpuText(run.cpuPct);
      return {
        params: { jobs, workers, slots, concurrency },
        figures,
        rows: [
          ["jobs/s (first submit → last finish)", fmt(figures.jobs_per_s), "≥ 5,000"],
          [
            "etcd unbatched puts/s, same run (before/after)",
            `${fmt(figures.etcd_puts_per_s)} (${fmt(figures.etcd_puts_before_per_s)}/${fmt(figures.etcd_puts_after_per_s)})`,
            "ref ~5,000",
          ],
          ["ratio jobs/s ÷ etcd puts/s", fmt(figures.ratio, "×"), "≥ 1.0×"],
          ["total time", fmt(figures.total_s, " s"), ""],
          ["etcd Txns per job", fmt(figures.etcd_txns_per_job), ""],
          ["etcd puts per job", fmt(figures.etcd_puts_per_job), ""],
          ["puts per Txn (server batch size)", fmt(figures.puts_per_txn), "≤ 128"],
          ["etcd WAL fsync mean", fmt(figures.etcd_fsync_mean_ms, " ms"), ""],
          ["etcd Txn handling mean (etcd side)", fmt(figures.etcd_txn_mean_ms, " ms"), ""],
          ["CPU % of one core during the run", cpu, "2 cores = 200 %"],
          ["submit→running p50 / p99 (saturated)", `${fmt(figures.p50_ms)} / ${fmt(figures.p99_ms)} ms`, ""],
          ["references", "GoCRMS ~340, Slurm 500, Nomad C1M ~3,750, C2M ~1,500 jobs/s", ""],
        ],
        notes: [
          "etcd_puts_per_s: unbatched puts, 64 in flight, with the store's etcd3 client, measured before and after the jobs in this run (mean).",
          "Batch figures come from etcd's /metrics (gRPC Txn calls and mvcc puts during the job phase); they include the server's",
          "other etcd writes (worker records, id blocks), so puts/Txn is the server's mean group-commit size.",
        ],
      };
    },
    async (etcd) => {
      before = await etcdCeiling(etcd.endpoint, seconds, "c64", ctx.maxSeconds);
    },
  );
}

async function latency(ctx: Ctx): Promise<Outcome> {
  const rate = opt(ctx, "rate", 1000, 1000);
  const seconds = opt(ctx, "seconds", 3, 20);
  const workers = opt(ctx, "workers", 20, 100);
  const slots = opt(ctx, "slots", 32, 32);
  const jobs = opt(ctx, "jobs", rate * seconds, rate * seconds);
  return withEtcdAndServer(ctx, [], async (etcd, server) => {
    const sims = await attachSims(ctx, server, workers, slots);
    const u0 = serverUsage(server.proc.pid);
    const t0 = nowMs();
    const run = await runJobs(ctx, server, sims.procs, { jobs, rate, timeoutS: jobs / rate + 60, etcd });
    const u1 = serverUsage(server.proc.pid);
    const wall = (nowMs() - t0) / 1000;
    const t = await stopSims(sims.procs);
    const rpc = Histogram.fromJSON(run.submitter.rpc);
    const figures: Figures = {
      offered_rate: rate,
      achieved_submit_rate: round(run.submitter.submit_per_s as number),
      finished: Math.min(jobs, t.acks),
      completed: !run.timedOut && t.acks >= jobs,
      ...latencyFigures(t.running, ""),
      ...latencyFigures(t.finished, "finished_"),
      submit_rpc_p50_ms: round(rpc.quantile(0.5)),
      submit_rpc_p99_ms: round(rpc.quantile(0.99)),
      max_backlog: run.submitter.maxBacklog ?? 0,
      server_cpu_pct: round(((u1.cpuSeconds - u0.cpuSeconds) / wall) * 100),
      cpu_pct: run.cpuPct,
      dup_assigns: t.dupAssigns,
      ...(serverStats(server) ? { server_stats: serverStats(server) } : {}),
    };
    return {
      params: { rate, seconds, jobs, workers, slots },
      figures,
      rows: [
        ["offered / achieved submit rate", `${fmt(rate)} / ${fmt(figures.achieved_submit_rate)} per s`, ""],
        [
          "submit→running p50 / p90 / p99 / max",
          `${fmt(figures.p50_ms)} / ${fmt(figures.p90_ms)} / ${fmt(figures.p99_ms)} / ${fmt(figures.max_ms)} ms`,
          "p99 ≤ 20 ms",
        ],
        [
          "submit→finished p50 / p90 / p99 / max",
          `${fmt(figures.finished_p50_ms)} / ${fmt(figures.finished_p90_ms)} / ${fmt(figures.finished_p99_ms)} / ${fmt(figures.finished_max_ms)} ms`,
          "",
        ],
        ["SubmitJob RPC p50 / p99", `${fmt(figures.submit_rpc_p50_ms)} / ${fmt(figures.submit_rpc_p99_ms)} ms`, ""],
        ["CPU % of one core during the run", cpuText(run.cpuPct), "2 cores = 200 %"],
        ["reference", "GoCRMS mean submit→running 24 ms", ""],
      ],
      notes: [
        "running = Assign received by the simulated worker (it sends JobStarted at once) − SubmitJob send time;",
        "finished = Ack received (sent after the SUCCEEDED record is stored) − SubmitJob send time. One wall clock (performance.timeOrigin + now).",
      ],
    };
  });
}

async function workersScenario(ctx: Ctx): Promise<Outcome> {
  const workers = opt(ctx, "workers", 2000, 10_000, 100_000);
  const slots = opt(ctx, "slots", 1, 1);
  const idle = opt(ctx, "seconds", 3, 10);
  return withEtcdAndServer(ctx, [], async (_etcd, server) => {
    await sleep(1000);
    const b0 = serverUsage(server.proc.pid);
    await sleep(idle * 200);
    const b1 = serverUsage(server.proc.pid);
    const baselinePct = ((b1.cpuSeconds - b0.cpuSeconds) / (idle * 0.2)) * 100;
    const rss0 = b1.rssBytes;
    const mem0 = serverMemory(server);
    const sims = await attachSims(ctx, server, workers, slots, { perProcess: 12_000 });
    await sleep(2000);
    const a1 = serverUsage(server.proc.pid);
    const mem1 = serverMemory(server);
    const hb0 = sumLatest(sims.procs, "progress", ["heartbeats"]).heartbeats as number;
    const c0 = nowMs();
    await sleep(idle * 1000);
    const a2 = serverUsage(server.proc.pid);
    const hb1 = sumLatest(sims.procs, "progress", ["heartbeats"]).heartbeats as number;
    const secs = (nowMs() - c0) / 1000;
    const status = await server.client.clusterStatus({ timeoutMs: 10_000 });
    const t = await stopSims(sims.procs);
    const cpuS = a2.cpuSeconds - a1.cpuSeconds;
    const hbPerS = (hb1 - hb0) / secs;
    const figures: Figures = {
      attach_s: round(sims.attachS),
      attach_per_s: round(workers / sims.attachS),
      workers_up: status.workersUp,
      bytes_per_worker: Math.round((a1.rssBytes - rss0) / workers),
      bytes_per_worker_after_idle: Math.round((a2.rssBytes - rss0) / workers),
      // --instrumented only: where the RSS goes (V8 heap in use vs. memory outside it: buffers, nghttp2).
      ...(mem0 && mem1
        ? {
            heap_used_bytes_per_worker: Math.round((mem1.heapUsed - mem0.heapUsed) / workers),
            heap_total_bytes_per_worker: Math.round((mem1.heapTotal - mem0.heapTotal) / workers),
            external_bytes_per_worker: Math.round((mem1.external - mem0.external) / workers),
          }
        : {}),
      server_rss_mb: round(a2.rssBytes / 2 ** 20),
      server_rss_before_mb: round(rss0 / 2 ** 20),
      heartbeat_cpu_pct: round((cpuS / secs) * 100),
      idle_cpu_pct_before_attach: round(baselinePct),
      heartbeats_per_s: round(hbPerS),
      cpu_us_per_heartbeat: round((cpuS * 1e6) / Math.max(1, hb1 - hb0)),
      stream_errors: t.streamErrors,
      reattaches: t.reattaches,
    };
    return {
      params: { workers, slots, idle_seconds: idle, heartbeat_seconds: 5 },
      figures,
      rows: [
        ["time to attach all", fmt(figures.attach_s, " s"), ""],
        ["attach rate", fmt(figures.attach_per_s, " workers/s"), ""],
        ["replica memory per worker (RSS delta)", fmt(figures.bytes_per_worker, " B"), "≤ 4,096 B"],
        ["… after the idle period", fmt(figures.bytes_per_worker_after_idle, " B"), ""],
        ["server CPU with all attached, idle", fmt(figures.heartbeat_cpu_pct, " %"), ""],
        ["heartbeats/s received", fmt(figures.heartbeats_per_s), ""],
        ["CPU per heartbeat", fmt(figures.cpu_us_per_heartbeat, " µs"), ""],
        ["workers UP (GetClusterStatus)", fmt(figures.workers_up), `${workers}`],
      ],
      notes: [
        "Memory is the server process's VmRSS (includes V8 heap not yet collected) before attaching and 2 s after the last Welcome.",
        `Heartbeat cost: utime+stime from /proc/<pid>/stat over ${idle} s with every worker attached and no jobs.`,
      ],
    };
  });
}

async function gocrms(ctx: Ctx): Promise<Outcome> {
  const cases =
    ctx.size === "small"
      ? [{ jobs: 11_000, workers: 1_100 }]
      : ctx.size === "full"
        ? [
            { jobs: 110_000, workers: 11_000 },
            { jobs: 330_000, workers: 33_000 },
          ]
        : [{ jobs: 110_000, workers: 11_000 }];
  if (ctx.flags.has("jobs") || ctx.flags.has("workers")) {
    cases.splice(0, cases.length, {
      jobs: opt(ctx, "jobs", 11_000, 110_000),
      workers: opt(ctx, "workers", 1100, 11_000),
    });
  }
  const figures: Figures = {};
  const rows: [string, string, string][] = [];
  const results: Figures[] = [];
  for (const c of cases) {
    progress(`GoCRMS case: ${c.jobs} jobs on ${c.workers} workers (1 slot each)`);
    const r = await withEtcdAndServer(ctx, [], async (etcd, server) => {
      const sims = await attachSims(ctx, server, c.workers, 1, { perProcess: 12_000 });
      // Default size: the real shape (11,000 workers) for a bounded time; full: every job.
      const timeoutS = opt(ctx, "timeout", 60, 30, 3600);
      const run = await runJobs(ctx, server, sims.procs, { jobs: c.jobs, timeoutS, etcd });
      const t = await stopSims(sims.procs);
      const first = Number(run.submitter.firstSubmitAt);
      const done = Math.min(c.jobs, t.acks);
      const totalS = (t.lastAckAt - first) / 1000;
      return {
        jobs: c.jobs,
        workers: c.workers,
        finished: done,
        completed: !run.timedOut && done >= c.jobs,
        total_s: round(totalS),
        jobs_per_s: round(done / totalS),
        to_last_start_s: round((t.lastAssignAt - first) / 1000),
        attach_s: round(sims.attachS),
        total_s_projected: round(c.jobs / (done / totalS)),
        mean_running_ms: round(t.running.mean),
        p99_ms: round(t.running.quantile(0.99)),
        cpu_pct: run.cpuPct,
      };
    });
    results.push(r);
    rows.push([
      `${fmt(c.jobs)} jobs on ${fmt(c.workers)} workers`,
      r.completed
        ? `${fmt(r.total_s)} s, ${fmt(r.jobs_per_s)} jobs/s`
        : `PARTIAL: ${fmt(r.finished)} in ${fmt(r.total_s)} s, ${fmt(r.jobs_per_s)} jobs/s (all: ~${fmt(r.total_s_projected)} s)`,
      c.jobs === 110_000 ? "GoCRMS 321 s, ~340 jobs/s" : c.jobs === 330_000 ? "GoCRMS: etcd NOSPACE" : "",
    ]);
    rows.push([
      "  attach / mean submit→running",
      `${fmt(r.attach_s)} s / ${fmt(r.mean_running_ms)} ms`,
      "GoCRMS mean 24 ms",
    ]);
  }
  const main = results[0] as Figures;
  Object.assign(figures, {
    total_s: main.total_s,
    total_s_projected: main.total_s_projected,
    jobs_per_s: main.jobs_per_s,
    completed: main.completed,
    finished: main.finished,
    to_last_start_s: main.to_last_start_s,
    mean_running_ms: main.mean_running_ms,
    attach_s: main.attach_s,
    cases: results,
  });
  const notes = [
    "Jobs are submitted as fast as the server takes them (1,024 in flight); total_s runs from the first submit to the last Ack.",
    "GoCRMS's own figure ran to the last start (to_last_start_s here); its mean submit→running was measured at a lower offered rate.",
  ];
  if (main.completed === false) {
    notes.push(
      "The run hit its time budget before all jobs finished: jobs_per_s is over the jobs finished; use --size full for the whole case.",
    );
  }
  return { params: { cases: cases.map((c) => `${c.jobs}/${c.workers}`), slots: 1 }, figures, rows, notes };
}

async function history(ctx: Ctx): Promise<Outcome> {
  const jobs = opt(ctx, "jobs", 20_000, 40_000, 1_000_000);
  const workers = opt(ctx, "workers", 50, 100);
  const slots = opt(ctx, "slots", 16, 16);
  // Server-side retention and compaction when this checkout's CLI has them, else the harness stands in.
  const cli = serverFlags();
  const mode = ctx.flags.get("retention") ?? "auto";
  if (!["auto", "server", "harness"].includes(mode)) throw new Error("--retention must be auto, server or harness");
  const serverRetention =
    mode === "server" || (mode === "auto" && cli.has("--retention-count") && cli.has("--compaction-interval"));
  const keep = opt(ctx, "keep", 2_000, 10_000, 100_000);
  const compactionS = opt(ctx, "compaction-interval", 5, 10, 300);
  // The revision and db-size triggers (and the retention interval) when this server has them.
  const triggers = cli.has("--compaction-revisions");
  const compactionRevisions = opt(ctx, "compaction-revisions", 200, 500, 100_000);
  const keepRevisions = opt(ctx, "compaction-keep-revisions", 50, 100, 10_000);
  const retentionIntervalS = opt(ctx, "retention-interval", 5, 5, 30);
  const serverArgs = serverRetention
    ? [
        ...["--retention-count", String(keep), "--compaction-interval", String(compactionS)],
        ...(triggers
          ? [
              ...["--compaction-revisions", String(compactionRevisions)],
              ...["--compaction-keep-revisions", String(keepRevisions)],
              ...["--retention-interval", String(retentionIntervalS)],
            ]
          : []),
      ]
    : [];
  // The job history: embedded (the server's default, under its temp dir) or --history-url postgres://...
  const historyUrl = ctx.flags.get("history-url");
  if (historyUrl && cli.has("--history")) serverArgs.push("--history", historyUrl);
  const etcdFlags = serverRetention
    ? []
    : ["--auto-compaction-mode", "revision", "--auto-compaction-retention", "1000"];
  return withEtcdAndServer(
    ctx,
    etcdFlags,
    async (etcd, server) => {
      let retention = serverRetention ? "server" : "harness";
      if (serverRetention) {
        try {
          await server.client.transport.unary(AdminService.method.runRetention, {}, { timeoutMs: 30_000 });
        } catch (err) {
          retention = `server (RunRetention ${errorCode(err)})`;
        }
      }
      progress(`history: retention ${retention}, keeping ${keep} finished jobs`);
      const sims = await attachSims(ctx, server, workers, slots, retention === "harness" ? { deleteKeep: keep } : {});
      const direct = new Etcd3({ hosts: [etcd.endpoint] });
      const samples: { t: number; size: number; inUse: number }[] = [];
      const alarms = new Set<string>();
      const start = nowMs();
      let harnessCompactions = 0;
      let retentionCalls = 0;
      let retentionBusy = false;
      // Job records in etcd at the busiest sample: keep + unfinished + what retention has not deleted yet.
      let maxJobsKept = 0;
      // The history database's lag behind finished jobs, at its worst during the run.
      let historyLagMaxS = 0;
      let historyPendingMax = 0;
      const head = async () =>
        Number((await direct.kv.range({ key: Buffer.from("crms/idseq"), count_only: true })).header.revision);
      const sample = async () => {
        const s = await dbSize(etcd.endpoint);
        samples.push({ t: round((nowMs() - start) / 1000), size: s.size, inUse: s.inUse });
        try {
          const st = await server.client.clusterStatus({ timeoutMs: 5000 });
          for (const a of st.alarms) alarms.add(a);
          maxJobsKept = Math.max(
            maxJobsKept,
            st.jobs.reduce((n, j) => n + Number(j.count), 0),
          );
          if (st.history) {
            historyLagMaxS = Math.max(historyLagMaxS, st.history.lagSeconds);
            historyPendingMax = Math.max(historyPendingMax, Number(st.history.pendingJobs));
          }
        } catch (err) {
          alarms.add(`status:${errorCode(err)}`);
        }
        if (retention === "harness") {
          // etcd's revision auto-compaction acts every 5 minutes only: compact to head − 1000 here.
          const rev = await head();
          if (rev > 1000) {
            await direct.kv.compact({ revision: String(rev - 1000), physical: false }).catch(() => undefined);
            harnessCompactions++;
          }
        } else if (ctx.size !== "full" && samples.length % 5 === 0) {
          // The server runs retention every 30 s; a short run asks for it more often (`crms admin gc`).
          if (!retentionBusy) {
            retentionCalls++;
            retentionBusy = true;
            void server.client.transport
              .unary(AdminService.method.runRetention, {}, { timeoutMs: 60_000 })
              .catch(() => undefined)
              .finally(() => (retentionBusy = false));
          }
        }
      };
      let run: JobRun;
      try {
        run = await runJobs(ctx, server, sims.procs, {
          jobs,
          timeoutS: opt(ctx, "timeout", 60, 40, 4 * 3600),
          tick: sample,
          etcd,
        });
        if (retention === "harness") {
          for (let i = 0; i < 100; i++) {
            const pending = sumLatest(sims.procs, "progress", ["deletesPending"]).deletesPending as number;
            if (pending <= 0) break;
            await sleep(100);
          }
        } else {
          await server.client.transport
            .unary(AdminService.method.runRetention, {}, { timeoutMs: 60_000 })
            .catch(() => undefined);
        }
        await sample();
      } catch (err) {
        direct.close();
        throw err;
      }
      const t = await stopSims(sims.procs);
      const historyFigures = await historyAfterRun(server, jobs, historyUrl);
      const status = await server.client.clusterStatus({ timeoutMs: 10_000 });
      let retained = 0;
      for (const j of status.jobs) retained += Number(j.count);
      const live = await dbSize(etcd.endpoint);
      const beforeFinal = await metrics(etcd.endpoint);
      const compactedTo = beforeFinal.get("etcd_debugging_mvcc_compact_revision") ?? -1;
      const headRev = beforeFinal.get("etcd_debugging_mvcc_current_revision") ?? 0;
      // What the kept records cost by themselves: compact to head and defragment, then measure.
      const rev = await head();
      await direct.kv.compact({ revision: String(rev), physical: true }).catch(() => undefined);
      await direct.maintenance.defragment({}).catch((err) => progress(`defragment failed: ${String(err)}`));
      const compacted = await dbSize(etcd.endpoint);
      let valueBytes = 0;
      let keyBytes = 0;
      let records = 0;
      for (let from = Buffer.from("crms/jobs/"); ; ) {
        const res = await direct.kv.range({ key: from, range_end: Buffer.from("crms/jobs0"), limit: 5000 });
        for (const kv of res.kvs) {
          valueBytes += kv.value.length;
          keyBytes += kv.key.length;
          records++;
        }
        const last = res.kvs.at(-1);
        if (!res.more || !last) break;
        from = Buffer.concat([last.key, Buffer.from([0])]);
      }
      direct.close();
      const m = await metrics(etcd.endpoint);
      const putBytes = m.get("etcd_debugging_mvcc_total_put_size_in_bytes") ?? 0;
      const puts = m.get("etcd_mvcc_put_total") ?? 1;
      const maxSize = Math.max(...samples.map((x) => x.size), live.size);
      const bytesPerJob = Math.round(compacted.size / Math.max(1, retained));
      const figures: Figures = {
        finished: Math.min(jobs, t.acks),
        completed: !run.timedOut && t.acks >= jobs,
        jobs_per_s: round(t.acks / ((t.lastAckAt - Number(run.submitter.firstSubmitAt)) / 1000)),
        retention,
        retained_jobs: retained,
        max_jobs_kept: maxJobsKept,
        deleted_jobs: retention === "harness" ? t.deletes : Math.max(0, t.acks - retained),
        delete_errors: t.deleteErrors,
        db_size_bytes: live.size,
        db_size_in_use_bytes: live.inUse,
        db_size_max_bytes: maxSize,
        db_size_compacted_bytes: compacted.size,
        quota_bytes: live.quota,
        bytes_per_job: bytesPerJob,
        bytes_per_job_live: Math.round(live.inUse / Math.max(1, retained)),
        job_record_value_bytes: Math.round(valueBytes / Math.max(1, records)),
        job_record_key_bytes: Math.round(keyBytes / Math.max(1, records)),
        mean_put_bytes: Math.round(putBytes / puts),
        projected_db_bytes_1m_retained: bytesPerJob * 1_000_000,
        alarms: [...alarms],
        harness_compactions: harnessCompactions,
        head_revision: headRev,
        compacted_revision_at_end: compactedTo,
        harness_retention_calls: retentionCalls,
        cpu_pct: run.cpuPct,
        history_lag_max_s: round(historyLagMaxS),
        history_pending_max_jobs: historyPendingMax,
        ...historyFigures,
        samples: samples.length > 60 ? samples.filter((_, i) => i % Math.ceil(samples.length / 60) === 0) : samples,
      };
      return {
        params: {
          jobs,
          workers,
          slots,
          keep,
          compaction_interval_s: compactionS,
          server_args: serverArgs.join(" "),
          etcd_flags: etcdFlags.join(" "),
        },
        figures,
        rows: [
          [
            "jobs through etcd",
            `${fmt(figures.finished)} of ${fmt(jobs)} (${fmt(figures.jobs_per_s)}/s)`,
            "1,000,000 without NOSPACE",
          ],
          ["alarms seen", (figures.alarms as string[]).join(", ") || "none", "none"],
          ["db size end / max / quota", `${mb(live.size)} / ${mb(maxSize)} / ${mb(live.quota)}`, ""],
          ["db size in use at end", mb(live.inUse), ""],
          ["revision at end / compacted to", `${fmt(headRev)} / ${fmt(compactedTo)}`, ""],
          ["jobs retained", fmt(retained), ""],
          ["db size after compact + defrag", mb(compacted.size), ""],
          ["bytes per retained job (compacted ÷ jobs)", fmt(bytesPerJob, " B"), "≤ 512 B"],
          ["… live (in use at end ÷ jobs)", fmt(figures.bytes_per_job_live, " B"), ""],
          [
            "job record: value / key bytes",
            `${fmt(figures.job_record_value_bytes)} / ${fmt(figures.job_record_key_bytes)} B`,
            "",
          ],
          ["1M retained jobs would take", mb(bytesPerJob * 1_000_000), "< 2 GiB quota"],
          ["retention", retention, ""],
          [
            "history: kind / max lag (jobs, s) / catch-up after the run",
            `${historyFigures.history_kind} / ${fmt(historyPendingMax)} jobs, ${round(historyLagMaxS)} s / ${historyFigures.history_catchup_s} s`,
            "keeps up",
          ],
          [
            "history: jobs held / bytes per job",
            `${fmt(historyFigures.history_jobs)} / ${fmt(historyFigures.history_bytes_per_job, " B")}`,
            "",
          ],
        ],
        notes: [
          retention === "harness"
            ? `retention: "harness" — ${mode === "harness" ? "forced by --retention harness" : "this server's CLI has no retention flags"}: the simulated workers delete finished jobs with DeleteJob (keeping the newest ${keep}); etcd runs with ${etcdFlags.join(" ")} and, as that acts every 5 min, the harness compacts to head−1000 every second (one revision per group-committed Txn, so 1,000 revisions hold ~100,000 writes).`
            : `retention by the server (${serverArgs.join(" ")})${ctx.size === "full" ? "" : "; a short run also calls AdminService.RunRetention every 5 s (the server's own timer runs every 30 s)"}.`,
          "bytes_per_job = db size after a final compaction to head and defragmentation ÷ jobs kept; bytes_per_job_live = bytes in use before that ÷ jobs kept.",
        ],
      };
    },
    undefined,
    serverArgs,
  );
}

/**
 * History figures once the jobs are in: how long the history took to write
 * what was still pending, how many jobs it holds (paged through ListHistory,
 * up to 200,000) and its size per job (the embedded database's directory, or
 * the PostgreSQL table's size through `pg`, with --history-url).
 */
async function historyAfterRun(server: ServerProc, jobs: number, historyUrl?: string) {
  const none = {
    history_kind: "none",
    history_catchup_s: 0,
    history_jobs: 0,
    history_bytes_per_job: 0,
    history_bytes: 0,
  };
  const first = await server.client.clusterStatus({ timeoutMs: 10_000 }).catch(() => undefined);
  const h = first?.history;
  if (!h) return none;
  const start = nowMs();
  for (;;) {
    const st = await server.client.clusterStatus({ timeoutMs: 10_000 }).catch(() => undefined);
    if (!st?.history || Number(st.history.pendingJobs) === 0 || nowMs() - start > 120_000) break;
    await sleep(200);
  }
  const catchup = round((nowMs() - start) / 1000);
  let held = 0;
  let pageToken = "";
  do {
    const page = await server.client.listHistory({ pageSize: 1000, pageToken }, { timeoutMs: 60_000 });
    held += page.jobs.length;
    pageToken = page.nextPageToken;
  } while (pageToken && held < Math.min(jobs, 200_000));
  let bytes = 0;
  if (h.kind === "embedded") {
    bytes = Number(execFileSync("du", ["-sb", h.location]).toString().split(/\s/)[0]);
  } else {
    const { default: pg } = await import("pg");
    const c = new pg.Client({ connectionString: historyUrl });
    try {
      await c.connect();
      const r = await c.query("SELECT pg_total_relation_size('jobs') AS n");
      bytes = Number(r.rows[0]?.n ?? 0);
    } catch {
      bytes = 0;
    } finally {
      await c.end().catch(() => undefined);
    }
  }
  return {
    history_kind: h.kind,
    history_catchup_s: catchup,
    history_jobs: held,
    history_bytes: bytes,
    history_bytes_per_job: held ? Math.round(bytes / held) : 0,
  };
}

function mb(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

async function real(ctx: Ctx): Promise<Outcome> {
  const jobs = opt(ctx, "jobs", 200, 1000);
  const workers = opt(ctx, "workers", 1, 2);
  const slots = opt(ctx, "slots", 4, 4);
  const concurrency = workers * slots;
  const kind = workerKind(ctx);
  return withEtcdAndServer(ctx, [], async (etcd, server) => {
    const names = Array.from({ length: workers }, (_, i) => `real-${i}`);
    const procs = startWorkers(ctx, kind, names, slots, server.address);
    await waitWorkersUp(server.client, workers, procs);
    progress(`${workers} real ${kind === "go" ? "Go" : "TypeScript"} workers attached`);
    const spawner = startScript("spawner", "spawner.ts", [
      "--jobs",
      String(jobs),
      "--concurrency",
      String(concurrency),
    ]);
    const raw = await spawner.waitFor(
      (m) => m.type === "final" || m.type === "error",
      ctx.maxSeconds * 1000,
      "spawn rate",
    );
    await spawner.exited;
    if (raw.type === "error") throw new Error(`spawner failed: ${String(raw.error)}`);
    const sub = startScript("submitter", "submitter.ts", [
      "--server",
      server.address,
      "--jobs",
      String(jobs),
      "--command",
      "/bin/true",
      "--concurrency",
      "256",
      "--max-seconds",
      String(ctx.maxSeconds),
    ]);
    await sub.waitFor((m) => m.type === "ready", 60_000, "ready");
    const meter = new CpuMeter([
      ["server", server.proc],
      ["submitter", sub],
      ["etcd", etcd.proc],
      ...procs.map((p): [string, Proc] => ["workers", p]),
    ]);
    const wall0 = nowMs();
    sub.send({ cmd: "go" });
    const deadline = Date.now() + opt(ctx, "timeout", 60, 120) * 1000;
    let ended = 0;
    let failed = 0;
    let lastLog = 0;
    for (;;) {
      const st = await server.client.clusterStatus({ timeoutMs: 5000 });
      ended = 0;
      failed = 0;
      for (const j of st.jobs) {
        if (j.state === JobState.SUCCEEDED || j.state === JobState.FAILED || j.state === JobState.KILLED) {
          ended += Number(j.count);
        }
        if (j.state === JobState.FAILED) failed += Number(j.count);
      }
      if (ended >= jobs || Date.now() > deadline) break;
      meter.sample();
      if (Date.now() - lastLog > 1000) {
        progress(`real: ${ended}/${jobs} jobs ended`);
        lastLog = Date.now();
      }
      await sleep(100);
    }
    meter.sample();
    const cpuPct = meter.pct((nowMs() - wall0) / 1000);
    const subFinal = await sub
      .waitFor((m) => m.type === "final", 10_000, "submitter final")
      .catch(() => ({}) as Figures);
    await sub.stop(2000);
    // The exact end: the latest end_time over the jobs.
    let lastEnd = 0;
    for await (const job of server.client.jobs({ pageSize: 1000 })) {
      if (job.endTime) lastEnd = Math.max(lastEnd, Number(job.endTime.seconds) * 1000 + job.endTime.nanos / 1e6);
    }
    const firstSubmit = Number((subFinal as Figures).firstSubmitAt ?? 0);
    const jobsPerS = ended / ((lastEnd - firstSubmit) / 1000);
    await Promise.all(procs.map((p) => p.stop(5000)));
    const rawSpawn = raw.raw_spawn_per_s as number;
    const figures: Figures = {
      jobs_per_s: round(jobsPerS),
      raw_spawn_per_s: round(rawSpawn),
      raw_execa_per_s: round(raw.raw_execa_per_s as number),
      ratio: round(jobsPerS / rawSpawn),
      ratio_vs_execa: round(jobsPerS / (raw.raw_execa_per_s as number)),
      ended,
      failed,
      completed: ended >= jobs,
      cpu_pct: cpuPct,
    };
    return {
      params: { jobs, workers, slots, concurrency, worker: kind, command: "/bin/true" },
      figures,
      rows: [
        ["/bin/true through crms (submit → last end)", fmt(figures.jobs_per_s, " jobs/s"), ""],
        [`raw spawn, ${concurrency} at a time (child_process)`, fmt(figures.raw_spawn_per_s, " /s"), ""],
        ["raw spawn with execa (the runner's way)", fmt(figures.raw_execa_per_s, " /s"), ""],
        ["ratio crms ÷ raw spawn", fmt(Number(figures.ratio) * 100, " %"), "≥ 80 %"],
        ["jobs failed", fmt(failed), "0"],
        ["CPU % of one core during the run", cpuText(cpuPct), "2 cores = 200 %"],
      ],
      notes: [
        "Raw spawn runs in its own process before the crms run, at the same concurrency (workers × slots); the ratio uses child_process.spawn with stdio ignored.",
      ],
    };
  });
}

/** Builds the Go worker into a temporary directory (go is needed; the message names the install step). */
function buildGoWorker(): string {
  const out = join(tempDir("goworker"), "crms-worker-go");
  try {
    execFileSync("go", ["build", "-o", out, "./cmd/crms-worker-go"], {
      cwd: join(REPO_DIR, "clients", "go"),
      stdio: ["ignore", "ignore", "pipe"],
    });
  } catch (err) {
    throw new Error(`building the Go worker failed (install Go: apt-get install golang): ${String(err)}`);
  }
  return out;
}

/** `--worker ts|go`: which worker a scenario runs (the TypeScript `crms worker` by default). */
function workerKind(ctx: Ctx): "ts" | "go" {
  const kind = ctx.flags.get("worker") ?? "ts";
  if (kind !== "ts" && kind !== "go") throw new Error(`--worker is ts or go (got ${kind})`);
  return kind;
}

/** Starts one real worker process per name: `crms worker`, or the Go worker built for the run. */
function startWorkers(ctx: Ctx, kind: "ts" | "go", names: string[], slots: number, server: string): Proc[] {
  const goBin = kind === "go" ? buildGoWorker() : "";
  return names.map((name) => {
    const args = ["--name", name, "--slots", String(slots), "--server", server, "--data-dir", tempDir(name)];
    return kind === "go"
      ? startExe("worker", goBin, args)
      : startNode("worker", [CRMS_BIN, "worker", ...args], {
          nodeArgs: ctx.flags.get("worker-node-args")?.split(" ").filter(Boolean),
        });
  });
}

/**
 * GoCRMS's performance test, the path one user feels first: real workers
 * (TypeScript, or the Go worker with --worker go), jobs created one at a time
 * at a steady rate, each pinned to a named worker chosen at random, each a
 * real `echo`; create→running as the client sees it, with each hop.
 */
async function paced(ctx: Ctx): Promise<Outcome> {
  const jobs = opt(ctx, "jobs", 100, 1000);
  const rate = opt(ctx, "rate", 20, 20);
  const workers = opt(ctx, "workers", 4, 20);
  const slots = opt(ctx, "slots", 4, 4);
  const kind = workerKind(ctx);
  return withEtcdAndServer(ctx, [], async (etcd, server) => {
    const names = Array.from({ length: workers }, (_, i) => `paced-${i}`);
    const procs = startWorkers(ctx, kind, names, slots, server.address);
    await waitWorkersUp(server.client, workers, procs);
    progress(`${workers} ${kind} workers attached`);
    await sleep(2000);
    const rss = (ps: Proc[]) => ps.map((p) => serverUsage(p.pid).rssBytes).filter((b) => b > 0);
    const idleRss = rss(procs);
    const idleAnon = procs.map((p) => serverUsage(p.pid).anonBytes).filter((b) => b > 0);
    const client = startScript("paced-client", "paced-client.ts", [
      "--server",
      server.address,
      "--etcd",
      etcd.endpoint,
      "--jobs",
      String(jobs),
      "--rate",
      String(rate),
      "--workers",
      names.join(","),
      "--max-seconds",
      String(ctx.maxSeconds),
    ]);
    await client.waitFor((m) => m.type === "ready", 60_000, "ready");
    const meter = new CpuMeter([
      ["server", server.proc],
      ["client", client],
      ["etcd", etcd.proc],
      ...procs.map((p): [string, Proc] => ["workers", p]),
    ]);
    const cpu0 = serverUsage(server.proc.pid).cpuSeconds;
    const wall0 = nowMs();
    client.send({ cmd: "go" });
    let last = 0;
    client.on("message", (m: Figures) => {
      if (m.type === "progress" && Date.now() - last > 2000) {
        last = Date.now();
        progress(`paced: submitted ${m.submitted}/${jobs}, running seen ${m.seen}, failed ${m.failed}`);
      }
    });
    const final = await client.waitFor(
      (m) => m.type === "final" || m.type === "error",
      (jobs / rate + 60) * 1000,
      "paced client final",
    );
    if (final.type === "error") throw new Error(`paced client failed: ${String(final.error)}`);
    meter.sample();
    const cpuMsPerJob = ((serverUsage(server.proc.pid).cpuSeconds - cpu0) * 1000) / Math.max(1, jobs);
    const cpuPct = meter.pct((nowMs() - wall0) / 1000);
    const endRss = rss(procs);
    await client.stop(2000);
    await Promise.all(procs.map((p) => p.stop(5000)));
    const hist = (k: string) => Histogram.fromJSON(final[k]);
    const c2r = hist("createToRunning");
    const rpc = hist("submitRpc");
    const put = hist("etcdPut");
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
    const figures: Figures = {
      ...latencyFigures(c2r, ""),
      submit_rpc_p50_ms: round(rpc.quantile(0.5)),
      submit_rpc_p99_ms: round(rpc.quantile(0.99)),
      etcd_put_p50_ms: round(put.quantile(0.5)),
      etcd_put_p99_ms: round(put.quantile(0.99)),
      submit_vs_put_p50: round(rpc.quantile(0.5) / put.quantile(0.5)),
      hop_sent_to_stored_p50_ms: round(hist("sentToStored").quantile(0.5)),
      hop_stored_to_assigned_p50_ms: round(hist("storedToAssigned").quantile(0.5)),
      hop_assigned_to_started_p50_ms: round(hist("assignedToStarted").quantile(0.5)),
      hop_started_to_seen_p50_ms: round(hist("startedToSeen").quantile(0.5)),
      // Means too: the p50s above are histogram buckets (1–5 ms wide here), too coarse to compare builds.
      hop_sent_to_stored_mean_ms: round(hist("sentToStored").mean),
      hop_stored_to_assigned_mean_ms: round(hist("storedToAssigned").mean),
      hop_assigned_to_started_mean_ms: round(hist("assignedToStarted").mean),
      hop_started_to_seen_mean_ms: round(hist("startedToSeen").mean),
      hop_stored_to_assigned_p99_ms: round(hist("storedToAssigned").quantile(0.99)),
      hop_assigned_to_started_p99_ms: round(hist("assignedToStarted").quantile(0.99)),
      hop_started_to_seen_p99_ms: round(hist("startedToSeen").quantile(0.99)),
      server_cpu_ms_per_job: round(cpuMsPerJob),
      worker_rss_idle_mb: round(mean(idleRss) / 2 ** 20),
      worker_rss_anon_idle_mb: round(mean(idleAnon) / 2 ** 20),
      worker_rss_end_mb: round(mean(endRss) / 2 ** 20),
      seen: final.seen,
      failed: final.failed,
      completed: final.seen === jobs,
      cpu_pct: cpuPct,
    };
    return {
      params: { jobs, rate, workers, slots, worker: kind, command: "echo crms" },
      figures,
      rows: [
        ["create → RUNNING seen, mean", fmt(figures.mean_ms, " ms"), "≤ 13 ms (GoCRMS here: 13.8)"],
        ["create → RUNNING seen, p99", fmt(figures.p99_ms, " ms"), "≤ 20 ms (GoCRMS here: 26)"],
        ["create → RUNNING seen, max", fmt(figures.max_ms, " ms"), "(GoCRMS here: 48)"],
        [
          "SubmitJob RPC p50 / plain etcd put p50",
          `${fmt(figures.submit_rpc_p50_ms)} / ${fmt(figures.etcd_put_p50_ms)} ms`,
          "≤ 2×",
        ],
        ["hop p50: sent → stored (submit_time)", fmt(figures.hop_sent_to_stored_p50_ms, " ms"), ""],
        ["hop p50: stored → assigned", fmt(figures.hop_stored_to_assigned_p50_ms, " ms"), ""],
        [
          "hop p50: assigned → process started (delivery + spawn)",
          fmt(figures.hop_assigned_to_started_p50_ms, " ms"),
          "",
        ],
        ["hop p50: started → RUNNING seen by the client", fmt(figures.hop_started_to_seen_p50_ms, " ms"), ""],
        ["control-plane CPU per job", fmt(figures.server_cpu_ms_per_job, " ms"), "≤ 1 ms"],
        [
          `${kind} worker RSS idle / at end`,
          `${fmt(figures.worker_rss_idle_mb)} / ${fmt(figures.worker_rss_end_mb)} MB`,
          "≤ 30 MB (GoCRMS: 13)",
        ],
        [`${kind} worker RssAnon idle (its own pages)`, fmt(figures.worker_rss_anon_idle_mb, " MB"), ""],
        ["CPU % of one core during the run", cpuText(cpuPct), "2 cores = 200 %"],
      ],
      notes: [
        "Hops use the job record's timestamps against the client's clock (all on one machine, one clock): submit_time, the attempt's assign_time and start_time are the control plane's, start_time taken when it writes the worker's start report (so assigned → started is delivery, spawn, the report's trip back and any wait before it is written).",
      ],
    };
  });
}

// ---------------------------------------------------------------- backlog

/**
 * A backlog submitted job by job (#23): N jobs, one SubmitJob each, no worker
 * while they pile up. Bytes of replica memory per pending job (RSS growth over
 * the empty replica, and a fresh replica's RSS over the same set), the submit
 * rate by tenth of the run, control-plane CPU per placed job with one 4-slot
 * simulated worker at about N/100 and about N pending, restart-to-serving
 * seconds over the full set, and --max-jobs N refusing the next submit.
 */
async function backlog(ctx: Ctx): Promise<Outcome> {
  const n = opt(ctx, "jobs", 5_000, 200_000, 1_000_000);
  const concurrency = opt(ctx, "concurrency", 32, 64, 64);
  const window = Math.max(10, Math.min(500, Math.floor(n / 400)));
  const flagsKnown = serverFlags();
  const capped = flagsKnown.has("--max-jobs");
  // Without the embedded job history: its database (WASM) dominates the replica's RSS and start-up,
  // and this scenario measures the job cache and the queue.
  const serverArgs = [
    ...(capped ? ["--max-jobs", String(n)] : []),
    ...(flagsKnown.has("--no-history") ? ["--no-history"] : []),
  ];
  const etcd = await startEtcd();
  progress(`etcd up at ${etcd.endpoint}`);
  let server = await startControlPlane(etcd.endpoint, {
    profileDir: ctx.profileDir,
    args: serverArgs,
    nodeArgs: ctx.flags.get("server-node-args")?.split(" ").filter(Boolean),
  });
  try {
    const rssEmpty = serverUsage(server.proc.pid).rssBytes;
    let submitted = 0;
    let submitSeconds = 0;
    const tenthRates: number[] = [];
    let tenthStart = nowMs();
    let tenthSeconds = 0;
    const errors: Record<string, number> = {};
    /** Submits until `upTo` jobs were submitted in all, `concurrency` at a time. */
    const submitUpTo = async (upTo: number) => {
      let next = submitted;
      const started = nowMs();
      tenthStart = started;
      const one = async (): Promise<void> => {
        while (next < upTo) {
          next++;
          try {
            await server.client.submit({ command: ["true"], name: "backlog" }, { timeoutMs: 60_000 });
          } catch (err) {
            const code = errorCode(err);
            errors[code] = (errors[code] ?? 0) + 1;
            if (Object.values(errors).reduce((a, b) => a + b, 0) > 100) throw err;
            continue;
          }
          submitted++;
          if (submitted % Math.ceil(n / 10) === 0 || submitted === n) {
            const now = nowMs();
            tenthSeconds += (now - tenthStart) / 1000;
            tenthRates.push(Math.round(Math.ceil(n / 10) / tenthSeconds));
            progress(`backlog: ${submitted}/${n} submitted (${tenthRates.at(-1)}/s this tenth)`);
            tenthStart = now;
            tenthSeconds = 0;
          }
        }
      };
      await Promise.all(Array.from({ length: concurrency }, one));
      const ended = nowMs();
      tenthSeconds += (ended - tenthStart) / 1000;
      submitSeconds += (ended - started) / 1000;
    };
    const pendingNow = async () =>
      Number(
        (await server.client.clusterStatus({ timeoutMs: 30_000 })).jobs.find((j) => j.state === JobState.PENDING)
          ?.count ?? 0n,
      );
    /**
     * Control-plane CPU ms per placed job while one 4-slot simulated worker takes
     * `window` jobs (or all there are, when it drains the queue first): CPU from
     * just before the worker attaches until its acknowledgements reach the window
     * or stop growing.
     */
    const placementCost = async (): Promise<{ pending: number; cpuMsPerPlaced: number; placed: number }> => {
      const pending = await pendingNow();
      const cpu0 = serverUsage(server.proc.pid).cpuSeconds;
      const sims = await attachSims(ctx, server, 1, 4);
      const deadline = Date.now() + 120_000;
      let acks = 0;
      let changedAt = Date.now();
      let cpu1 = cpu0;
      for (;;) {
        await sleep(50);
        const now = sumLatest(sims.procs, "progress", ["acks"]).acks ?? 0;
        if (now !== acks) {
          acks = now;
          changedAt = Date.now();
          cpu1 = serverUsage(server.proc.pid).cpuSeconds;
        }
        if (acks >= window || Date.now() > deadline || (acks > 0 && Date.now() - changedAt > 2000)) break;
      }
      const totals = await stopSims(sims.procs);
      if (acks === 0) progress(`backlog: no placed job acknowledged (${JSON.stringify(totals.errors)})`);
      return { pending, placed: acks, cpuMsPerPlaced: round(((cpu1 - cpu0) * 1000) / Math.max(1, acks)) };
    };

    await submitUpTo(Math.floor(n / 100) + 2 * window);
    const small = await placementCost();
    progress(`backlog: ${fmt(small.cpuMsPerPlaced)} ms CPU per placed job at ${small.pending} pending`);
    await submitUpTo(n);
    const pendingFull = await pendingNow();
    const rssFull = serverUsage(server.proc.pid).rssBytes;
    // The same replica at rest: its lowest RSS sampled each second for 30 s (10 s small); V8
    // gives back the pages of the submits' garbage only after some idle seconds.
    const settleStart = nowMs();
    let rssSettled = rssFull;
    while (nowMs() - settleStart < (ctx.size === "small" ? 10_000 : 30_000)) {
      await sleep(1000);
      rssSettled = Math.min(rssSettled, serverUsage(server.proc.pid).rssBytes);
    }
    const settledS = round((nowMs() - settleStart) / 1000);
    const large = await placementCost();
    progress(`backlog: ${fmt(large.cpuMsPerPlaced)} ms CPU per placed job at ${large.pending} pending`);

    // Restart: a fresh replica over the whole set, until it answers with a scheduler leader.
    await stopControlPlane(server);
    const restartAt = nowMs();
    server = await startControlPlane(etcd.endpoint, { args: serverArgs });
    const restartS = (nowMs() - restartAt) / 1000;
    const pendingRestart = await pendingNow();
    const rssRestart = serverUsage(server.proc.pid).rssBytes;
    // Empty replica for comparison: a fresh replica over an empty prefix of the same etcd.
    const empty = await startControlPlane(etcd.endpoint, { args: [...serverArgs, "--prefix", "empty/"] });
    const rssFreshEmpty = serverUsage(empty.proc.pid).rssBytes;
    await stopControlPlane(empty);

    // The cap: fill up to it, then the next submit must be refused.
    let refusal = { code: capped ? "none" : "no --max-jobs in this server", details: "" };
    let filled = 0;
    if (capped) {
      for (let i = 0; i < 2 * n; i++) {
        try {
          await server.client.submit({ command: ["true"], name: "backlog-fill" }, { timeoutMs: 60_000 });
          filled++;
        } catch (err) {
          refusal = { code: errorCode(err), details: (err as { details?: string }).details ?? String(err) };
          break;
        }
      }
    }
    const unfinished = Number((await server.client.clusterStatus()).unfinishedJobs ?? 0n);

    const perJob = (bytes: number, pending: number) => Math.round(bytes / Math.max(1, pending));
    const figures: Figures = {
      jobs: n,
      pending_at_n: pendingFull,
      bytes_per_pending_job: perJob(rssFull - rssEmpty, pendingFull),
      bytes_per_pending_job_settled: perJob(rssSettled - rssEmpty, pendingFull),
      settled_after_s: settledS,
      bytes_per_pending_job_fresh_replica: perJob(rssRestart - rssFreshEmpty, pendingRestart),
      rss_empty_mb: round(rssEmpty / 2 ** 20),
      rss_at_n_mb: round(rssFull / 2 ** 20),
      rss_fresh_replica_mb: round(rssRestart / 2 ** 20),
      submit_per_s: Math.round(n / submitSeconds),
      submit_per_s_by_tenth: tenthRates,
      submit_errors: errors,
      cpu_ms_per_placed_small: small.cpuMsPerPlaced,
      pending_small: small.pending,
      placed_small: small.placed,
      cpu_ms_per_placed_large: large.cpuMsPerPlaced,
      pending_large: large.pending,
      placed_large: large.placed,
      cpu_per_placed_ratio: round(large.cpuMsPerPlaced / Math.max(0.001, small.cpuMsPerPlaced)),
      restart_to_serving_s: round(restartS),
      cap: capped ? n : 0,
      cap_filled_before_refusal: filled,
      unfinished_after_refusal: unfinished,
      cap_refusal_code: refusal.code,
      cap_refusal: refusal.details,
    };
    return {
      params: { jobs: n, concurrency, placement_window: window },
      figures,
      rows: [
        ["bytes of replica RSS per pending job", fmt(figures.bytes_per_pending_job, " B"), "≤ 1,024 B (was 2,800)"],
        [`  same, at rest (${fmt(settledS)} s later)`, fmt(figures.bytes_per_pending_job_settled, " B"), ""],
        ["  same, fresh replica over the set", fmt(figures.bytes_per_pending_job_fresh_replica, " B"), ""],
        ["submit rate, whole run", fmt(figures.submit_per_s, "/s"), "(was 2,400/s at 100k)"],
        ["submit rate by tenth", tenthRates.map((r) => fmt(r)).join(" "), "flat"],
        [
          `CPU per placed job at ${fmt(small.pending)} / ${fmt(large.pending)} pending`,
          `${fmt(small.cpuMsPerPlaced)} / ${fmt(large.cpuMsPerPlaced)} ms`,
          "ratio ≤ 1.2 (was 3.75 / 8.4 ms at 2k / 60k)",
        ],
        ["restart to serving", fmt(figures.restart_to_serving_s, " s"), "≤ 10 s at 1M"],
        ["next submit at the cap", `${refusal.code} after ${filled} more`, "RESOURCE_EXHAUSTED"],
      ],
      notes: [
        "RSS growth includes garbage not yet collected (the at-rest figure: the lowest RSS sampled each second for 30 s, 10 s at small size); the fresh-replica figure (RSS over the loaded set minus a fresh replica over an empty prefix) is the steadier one. The server runs with --no-history (the history database's memory and start-up are not this scenario's).",
        `CPU per placed job: control-plane CPU while one simulated 4-slot worker takes ${window} jobs, over the jobs it acknowledged.`,
        `cap refusal: ${refusal.details}`,
      ],
    };
  } finally {
    await stopControlPlane(server).catch(() => undefined);
    await etcd.proc.stop(5000);
  }
}

// ---------------------------------------------------------------- fairshare

/** Counts per one-second window from `anchor` (ms): window k holds [anchor + k s, anchor + k + 1 s). */
function bySecond(buckets: Iterable<[number, number]>, anchor: number): Map<number, number> {
  const out = new Map<number, number>();
  // Buckets are 100 ms: the windows start at the bucket border nearest the anchor.
  const a = Math.round(anchor / 100);
  for (const [b, n] of buckets) {
    const k = Math.floor((b - a) / 10);
    out.set(k, (out.get(k) ?? 0) + n);
  }
  return out;
}

/**
 * B's share of the starts in the 100 ms buckets at whose start B had jobs
 * waiting (its submits answered so far minus its jobs started so far).
 */
function shareWhileWaiting(
  a: Map<number, number>,
  b: Map<number, number>,
  answers: Record<string, number> | undefined,
): number {
  const answered = new Map(Object.entries(answers ?? {}).map(([k, n]) => [Number(k), Number(n)]));
  const keys = [...answered.keys(), ...b.keys()];
  let waiting = 0;
  let na = 0;
  let nb = 0;
  for (let k = Math.min(...keys); k <= Math.max(...keys); k++) {
    if (waiting > 0) {
      na += a.get(k) ?? 0;
      nb += b.get(k) ?? 0;
    }
    waiting += (answered.get(k) ?? 0) - (b.get(k) ?? 0);
  }
  return nb / Math.max(1, na + nb);
}

interface ShareRun {
  jobsPerS: number;
  totalS: number;
  finished: number;
  completed: boolean;
  /** B's first start − B's first submit, ms. */
  bFirstStartMs: number;
  /** B's last start − B's first submit, s. */
  bAllStartedS: number;
  /** B's first submit answered − B's first submit, ms. */
  bFirstAnswerMs: number;
  /** B's last submit answered − B's first submit, s. */
  bSubmitS: number;
  /** Seconds relative to B's first submit: A's and B's starts in each, B's jobs waiting at its end. */
  seconds: { t: number; a: number; b: number; share: number; waiting: number }[];
  /** End of the first second from which B's share stays within ±band of 50 % while B has jobs to start. */
  inBandByS: (band: number) => number | null;
  bShareMean: number;
  /** B's share of starts in the 100 ms buckets B began with jobs waiting. */
  bShareWaiting: number;
  cpuPct: Record<string, number>;
  submitFailed: number;
}

/**
 * Fair share between two queues (#17): user A floods queue "a" with N no-op
 * jobs; `--delay` seconds later user B submits N/10 to queue "b" (both weight
 * 1). The same load then runs with every job in "default" (one queue, the same
 * two users): its jobs/s is the baseline. Each run gets its own etcd and
 * control plane.
 */
async function fairshare(ctx: Ctx): Promise<Outcome> {
  const jobsA = opt(ctx, "jobs", 4000, 20_000);
  const jobsB = opt(ctx, "jobs-b", Math.round(jobsA / 10), Math.round(jobsA / 10));
  const delay = opt(ctx, "delay", 1, 5);
  const workers = opt(ctx, "workers", 20, 200);
  const slots = opt(ctx, "slots", 8, 8);
  const concurrency = opt(ctx, "concurrency", 1024, 1024);
  const timeoutS = opt(ctx, "timeout", 60, 120);
  const users = ["user-a", "user-b"] as const;

  const one = (queues: [string, string] | undefined): Promise<ShareRun> =>
    withEtcdAndServer(ctx, [], async (etcd, server) => {
      for (const name of queues ?? []) {
        await server.client.transport.unary(
          QueueService.method.createQueue,
          { queue: { name, weight: 1 } },
          { timeoutMs: 10_000 },
        );
      }
      const sims = await attachSims(ctx, server, workers, slots);
      const streams = users.map((user, i) => ({
        jobs: i === 0 ? jobsA : jobsB,
        args: ["--owner", user, ...(queues ? ["--queue", queues[i] as string] : [])],
        delayS: i === 0 ? 0 : delay,
      }));
      progress(`${queues ? `queues ${queues.join(", ")}` : "one queue (default)"}: ${jobsA} + ${jobsB} jobs`);
      const run = await runJobs(ctx, server, sims.procs, { jobs: jobsA + jobsB, concurrency, timeoutS, etcd, streams });
      const t = await stopSims(sims.procs);
      const [subA, subB] = run.submitters as [Figures, Figures];
      const firstA = Number(subA.firstSubmitAt);
      const firstB = Number(subB.firstSubmitAt);
      const totalS = (t.lastAckAt - firstA) / 1000;
      const finished = Math.min(t.acks, jobsA + jobsB);
      const a = bySecond(t.starts.get(users[0]) ?? [], firstB);
      const b = bySecond(t.starts.get(users[1]) ?? [], firstB);
      const answered = bySecond(
        Object.entries(subB.answers ?? {}).map(([k, n]) => [Number(k), Number(n)]),
        firstB,
      );
      const ks = [...a.keys(), ...b.keys()];
      const seconds: ShareRun["seconds"] = [];
      let waiting = 0;
      for (let k = Math.min(...ks); k <= Math.max(...ks); k++) {
        const na = a.get(k) ?? 0;
        const nb = b.get(k) ?? 0;
        waiting += (answered.get(k) ?? 0) - nb;
        seconds.push({ t: k, a: na, b: nb, share: na + nb ? nb / (na + nb) : 0, waiting });
      }
      // B has jobs to start in the whole seconds before the one of its last start.
      const bLast = Math.max(...b.keys());
      const active = seconds.filter((s) => s.t >= 0 && (s.t < bLast || bLast === 0));
      const inBandByS = (band: number): number | null => {
        let from: number | null = null;
        for (const s of active) {
          if (Math.abs(s.share - 0.5) <= band) from ??= s.t;
          else from = null;
        }
        return from === null ? null : from + 1;
      };
      const shareOf = (ss: ShareRun["seconds"]) =>
        ss.reduce((n, s) => n + s.b, 0) /
        Math.max(
          1,
          ss.reduce((n, s) => n + s.a + s.b, 0),
        );
      const bStarts = [...(t.starts.get(users[1]) ?? new Map<number, number>()).keys()];
      return {
        jobsPerS: finished / totalS,
        totalS,
        finished,
        completed: !run.timedOut && finished >= jobsA + jobsB,
        bFirstStartMs: (t.firstStarts.get(users[1]) ?? Number.NaN) - firstB,
        bAllStartedS: ((Math.max(...bStarts) + 1) * 100 - firstB) / 1000,
        bFirstAnswerMs: Number(subB.firstAnswerAt) - firstB,
        bSubmitS: (Number(subB.lastAnswerAt) - firstB) / 1000,
        seconds,
        inBandByS,
        bShareMean: shareOf(active),
        bShareWaiting: shareWhileWaiting(
          t.starts.get(users[0]) ?? new Map(),
          t.starts.get(users[1]) ?? new Map(),
          subB.answers as Record<string, number> | undefined,
        ),
        cpuPct: run.cpuPct,
        submitFailed: Number(subA.failed ?? 0) + Number(subB.failed ?? 0),
      };
    });

  // --fair-first: the two-queue run first (the first run of a process may pay for warming up).
  const fairFirst = ctx.flags.has("fair-first");
  const fair0 = fairFirst ? await one(["a", "b"]) : undefined;
  const fifo = await one(undefined);
  const fair = fair0 ?? (await one(["a", "b"]));
  const ratio = fair.jobsPerS / fifo.jobsPerS;
  const inBand = fair.inBandByS(0.1);
  const figures: Figures = {
    jobs_per_s: round(fair.jobsPerS),
    fifo_jobs_per_s: round(fifo.jobsPerS),
    throughput_ratio: round(ratio),
    throughput_goal_met: ratio >= 0.9,
    b_first_start_ms: round(fair.bFirstStartMs),
    fifo_b_first_start_ms: round(fifo.bFirstStartMs),
    b_share_in_band_by_s: inBand,
    b_share_in_band5_by_s: fair.inBandByS(0.05),
    share_goal_met: inBand !== null && inBand <= 5,
    b_share_mean: round(fair.bShareMean),
    fifo_b_share_mean: round(fifo.bShareMean),
    b_share_when_waiting: round(fair.bShareWaiting),
    fifo_b_share_when_waiting: round(fifo.bShareWaiting),
    b_all_started_s: round(fair.bAllStartedS),
    fifo_b_all_started_s: round(fifo.bAllStartedS),
    b_first_submit_answered_ms: round(fair.bFirstAnswerMs),
    b_submit_s: round(fair.bSubmitS),
    fifo_b_first_submit_answered_ms: round(fifo.bFirstAnswerMs),
    fifo_b_submit_s: round(fifo.bSubmitS),
    total_s: round(fair.totalS),
    fifo_total_s: round(fifo.totalS),
    finished: fair.finished,
    fifo_finished: fifo.finished,
    completed: fair.completed && fifo.completed,
    submit_failed: fair.submitFailed + fifo.submitFailed,
    cpu_pct: fair.cpuPct,
    fifo_cpu_pct: fifo.cpuPct,
    // One entry per second from B's first submit (t < 0: before it): [t, A's starts, B's starts, B's jobs waiting at its end].
    starts_per_s: fair.seconds.map((s) => [s.t, s.a, s.b, s.waiting]),
    fifo_starts_per_s: fifo.seconds.map((s) => [s.t, s.a, s.b, s.waiting]),
  };
  const pct = (x: number) => `${fmt(x * 100)} %`;
  const fairByT = new Map(fair.seconds.map((s) => [s.t, s]));
  const fifoByT = new Map(fifo.seconds.map((s) => [s.t, s]));
  const ts = [...new Set([...fairByT.keys(), ...fifoByT.keys()])].sort((x, y) => x - y);
  const cells = (s: ShareRun["seconds"][number] | undefined) =>
    s ? [fmt(s.a), fmt(s.b), pct(s.share), fmt(s.waiting)] : ["", "", "", ""];
  const perSecond = [
    ["t (s)", "a: A", "b: B", "B share", "B waiting", "default: A", "default: B", "B share", "B waiting"],
    ...ts.map((t) => [String(t), ...cells(fairByT.get(t)), ...cells(fifoByT.get(t))]),
  ];
  return {
    params: {
      jobs: jobsA,
      jobs_b: jobsB,
      delay_s: delay,
      workers,
      slots,
      concurrency,
      queues: "a=1,b=1",
      order: fairFirst ? "two queues, one queue" : "one queue, two queues",
    },
    figures,
    rows: [
      ["jobs/s, two queues / one queue", `${fmt(figures.jobs_per_s)} / ${fmt(figures.fifo_jobs_per_s)}`, ""],
      ["throughput ratio", fmt(ratio, "×"), "≥ 0.9×"],
      [
        "B's first start after its first submit, two queues / one queue",
        `${fmt(figures.b_first_start_ms)} / ${fmt(figures.fifo_b_first_start_ms)} ms`,
        "",
      ],
      [
        "B's share of starts within 40–60 % (45–55 %) from",
        `${inBand === null ? "never" : `${inBand} s`} (${figures.b_share_in_band5_by_s === null ? "never" : `${figures.b_share_in_band5_by_s} s`})`,
        "≤ 5 s",
      ],
      [
        "B's share of starts while it had jobs to start, two / one queue",
        `${pct(fair.bShareMean)} / ${pct(fifo.bShareMean)}`,
        "50 %",
      ],
      [
        "B's share in the 100 ms it began with jobs waiting, two / one queue",
        `${pct(fair.bShareWaiting)} / ${pct(fifo.bShareWaiting)}`,
        "",
      ],
      [
        "all of B's jobs started after, two / one queue",
        `${fmt(figures.b_all_started_s)} / ${fmt(figures.fifo_b_all_started_s)} s`,
        "",
      ],
      [
        "B's first / last submit answered after, two / one queue",
        `${fmt(figures.b_first_submit_answered_ms)} ms / ${fmt(figures.b_submit_s)} s; ${fmt(figures.fifo_b_first_submit_answered_ms)} ms / ${fmt(figures.fifo_b_submit_s)} s`,
        "",
      ],
      ["CPU % of one core, two queues", cpuText(fair.cpuPct), "2 cores = 200 %"],
      ["CPU % of one core, one queue", cpuText(fifo.cpuPct), ""],
    ],
    tables: [
      {
        title: "starts per second by user, t from B's first submit (queues a and b | one queue, default)",
        rows: perSecond,
      },
    ],
    notes: [
      `Two runs, each with its own etcd and control plane: one queue (every job in "default", users user-a and user-b by the crms.io/owner label) and queues a and b of weight 1, in the order of the parameters (--fair-first swaps them).`,
      "Within one queue the scheduler still orders users by decayed usage, so the one-queue run is the throughput baseline, not a strict FIFO.",
      "Starts are Assigns received by the simulated workers, counted in 100 ms buckets; a second's B share is B's starts over all starts in it. B has jobs to start in every whole second before the one of its last start; B waiting = B's submits answered − B's jobs started, at the end of the second.",
    ],
  };
}

async function waitWorkersUp(client: CrmsClient, n: number, procs: Proc[]): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const st = await client.clusterStatus({ timeoutMs: 5000 }).catch(() => undefined);
    if (st && st.workersUp >= n) return;
    for (const p of procs) if (!p.running) throw new Error(`worker exited:\n${p.lastLines()}`);
    if (Date.now() > deadline) throw new Error(`only ${st?.workersUp ?? 0} of ${n} workers attached`);
    await sleep(100);
  }
}

// ---------------------------------------------------------------- main

/** A markdown-style table with padded columns (header row first). */
function tableLines(rows: string[][]): string[] {
  const w = (rows[0] as string[]).map((_, i) => Math.max(...rows.map((r) => r[i]?.length ?? 0)));
  const line = (r: string[]) => `| ${w.map((n, i) => (r[i] ?? "").padEnd(n)).join(" | ")} |`;
  return [line(rows[0] as string[]), `|${w.map((n) => "-".repeat(n + 2)).join("|")}|`, ...rows.slice(1).map(line)];
}

function printTable(scenario: string, o: Outcome, m: ReturnType<typeof machine>): void {
  const out = [
    "",
    `crms bench: ${scenario} — ${m.cpu}, ${m.cores} cores, node ${m.node}`,
    `parameters: ${Object.entries(o.params)
      .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(",") : String(v)}`)
      .join(" ")}`,
    "",
    ...tableLines([["figure", "value", "target / reference"], ...o.rows]),
    "",
    ...(o.tables ?? []).flatMap((t) => [`${t.title}:`, "", ...tableLines(t.rows), ""]),
    ...o.notes.map((n) => `note: ${n}`),
    "",
  ];
  process.stdout.write(out.join("\n"));
}

async function main(): Promise<number> {
  const { positionals, flags } = parseFlags(process.argv.slice(2));
  const scenario = positionals[0] as Scenario | undefined;
  if (!scenario || !SCENARIOS.includes(scenario)) {
    process.stderr.write(
      `usage: npx tsx bench/run.ts SCENARIO [--size small|default|full] [--jobs N --workers W --slots S --rate R --seconds D]\n` +
        `       [--profile DIR] [--instrumented] [--quiet-wait SECONDS] [--server-args="FLAGS"] [--server-node-args="FLAGS"] [--worker-node-args="FLAGS"] [--worker ts|go (real, paced)]\n` +
        `  SCENARIO: ${SCENARIOS.join(" | ")}\n`,
    );
    return 2;
  }
  const size = (flags.get("size") ?? "default") as Size;
  if (!["small", "default", "full"].includes(size)) throw new Error(`--size must be small, default or full`);
  const profileDir = flags.get("profile");
  if (profileDir) mkdirSync(profileDir, { recursive: true });
  const ctx: Ctx = {
    size,
    flags,
    profileDir,
    instrumented: flags.has("instrumented"),
    maxSeconds: size === "full" ? 7200 : 600,
  };
  const m = machine();
  // A run that hangs is stopped: every process goes, and the exit code says so.
  const limit = numFlag(flags, "deadline", size === "full" ? 7200 : size === "small" ? 180 : 300);
  const watchdog = setTimeout(() => {
    progress(`scenario ${scenario} exceeded ${limit} s; stopping everything`);
    process.stdout.write(`${JSON.stringify({ scenario, size, machine: m, error: `exceeded ${limit} s` })}\n`);
    process.exit(1);
  }, limit * 1000);
  watchdog.unref();
  // --quiet-wait S: on a shared machine, wait up to S seconds for other work to calm down first.
  const quietWait = numFlag(flags, "quiet-wait", 0);
  let busyBefore = 0;
  for (const until = Date.now() + quietWait * 1000; ; ) {
    const a = machineCpu().busySeconds;
    await sleep(1000);
    busyBefore = round((machineCpu().busySeconds - a) * 100);
    if (quietWait === 0 || busyBefore < 50 || Date.now() > until) break;
    progress(`machine busy at ${busyBefore} % of one core before the run; waiting (--quiet-wait)`);
  }
  const started = Date.now();
  const loadAtStart = machineCpu().load1;
  progress(`scenario ${scenario}, size ${size} (load average ${loadAtStart} on ${m.cores} cores)`);
  const run: Record<Scenario, (c: Ctx) => Promise<Outcome>> = {
    ceiling,
    throughput,
    latency,
    workers: workersScenario,
    gocrms,
    history,
    real,
    paced,
    backlog,
    fairshare,
  };
  let outcome: Outcome;
  try {
    outcome = await run[scenario](ctx);
  } finally {
    await stopAll();
  }
  let profile: ProfileSummary | undefined;
  if (profileDir) {
    const file = newestProfile(profileDir);
    if (file) {
      profile = summarise(file, 25, jobPhaseUs);
      process.stdout.write(`\n${formatSummary(profile)}\n`);
    }
  }
  printTable(scenario, outcome, m);
  const result = {
    scenario,
    size,
    ...outcome.params,
    machine: { cpu: m.cpu, cores: m.cores, node: m.node },
    ...outcome.figures,
    load_avg_1m_at_start: loadAtStart,
    machine_busy_pct_before: busyBefore,
    ...(profile ? { profile: join(profile.file), profile_top: profile.top.slice(0, 10) } : {}),
    wall_s: round((Date.now() - started) / 1000),
    date: new Date().toISOString(),
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
    setTimeout(() => process.exit(code), 200).unref();
  },
  (err) => {
    progress(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exit(1);
  },
);
