/**
 * Submits no-op jobs over a few gRPC channels, many in flight, either as fast
 * as possible or at a fixed offered rate (open loop: jobs are due at
 * start + i/rate whatever the server does; only --concurrency bounds them).
 *
 *   tsx bench/submitter.ts --server H:P --jobs N [--rate R] [--concurrency C]
 *       [--channels K] [--command /bin/true] [--max-seconds T] [--queue Q] [--owner USER]
 *
 * Each job's name is "b<t0>", t0 being nowMs() just before the request is
 * sent, so a simulated worker can compute submit→running itself. The final
 * report counts answers per 100 ms bucket (`answers`: floor(ms / 100) → n). Waits for
 * {"cmd":"go"}; prints progress lines and {"type":"final", ...} when every
 * submit has been answered. --queue puts the jobs in queue Q; --owner sets
 * their crms.io/owner label (the user, on an open server).
 */
import * as grpc from "@grpc/grpc-js";
import { channelOptions, ServiceTransport } from "../clients/typescript/src/transport.js";
import { JobService } from "../gen/crms/v1/job_pb.js";
import { OWNER_LABEL } from "../src/rpc/names.js";
import { commands, emit, errorCode, Histogram, hardDeadline, nowMs, numFlag, parseFlags, sleep } from "./lib/util.js";

const { flags } = parseFlags(process.argv.slice(2));
const server = flags.get("server") ?? "127.0.0.1:7070";
const jobs = numFlag(flags, "jobs", 1000);
const rate = numFlag(flags, "rate", 0);
const concurrency = Math.max(1, numFlag(flags, "concurrency", 512));
const nChannels = Math.max(1, numFlag(flags, "channels", 4));
const command = (flags.get("command") ?? "true").split(" ");
const maxSeconds = numFlag(flags, "max-seconds", 600);
const rpcTimeoutMs = numFlag(flags, "rpc-timeout-ms", 60_000);
const queue = flags.get("queue") ?? "";
const owner = flags.get("owner");
const labels: Record<string, string> = owner ? { [OWNER_LABEL]: owner } : {};
hardDeadline(maxSeconds, "submitter");

const transports = Array.from(
  { length: nChannels },
  (_, i) =>
    new ServiceTransport(server, grpc.credentials.createInsecure(), {
      ...channelOptions,
      "grpc.use_local_subchannel_pool": 1,
      "crms.bench.channel": `submit-${i}`,
    }),
);

const rpc = new Histogram();
/** Answers per 100 ms bucket of nowMs() (bucket = floor(ms / 100)). */
const answers = new Map<number, number>();
const stats = {
  submitted: 0,
  answered: 0,
  ok: 0,
  failed: 0,
  firstSubmitAt: 0,
  lastSubmitAt: 0,
  firstAnswerAt: 0,
  lastAnswerAt: 0,
  /** Most jobs that were due but held back by --concurrency (rate mode). */
  maxBacklog: 0,
  errors: {} as Record<string, number>,
};
let inFlight = 0;
let started = false;
let finished = false;

function submitOne(i: number): void {
  const t0 = nowMs();
  if (!stats.firstSubmitAt) stats.firstSubmitAt = t0;
  stats.lastSubmitAt = t0;
  stats.submitted++;
  inFlight++;
  const transport = transports[i % nChannels] as ServiceTransport;
  transport
    .unary(
      JobService.method.submitJob,
      { spec: { command, name: `b${t0.toFixed(3)}`, queue, labels } },
      { timeoutMs: rpcTimeoutMs },
    )
    .then(
      () => {
        stats.ok++;
      },
      (err) => {
        stats.failed++;
        const code = errorCode(err);
        stats.errors[code] = (stats.errors[code] ?? 0) + 1;
      },
    )
    .finally(() => {
      const t = nowMs();
      rpc.record(t - t0);
      stats.answered++;
      if (!stats.firstAnswerAt) stats.firstAnswerAt = t;
      stats.lastAnswerAt = t;
      const b = Math.floor(t / 100);
      answers.set(b, (answers.get(b) ?? 0) + 1);
      inFlight--;
      if (!rate) pump();
      if (stats.answered === jobs) done();
    });
}

/** As fast as possible: keep `concurrency` submits in flight. */
function pump(): void {
  while (inFlight < concurrency && stats.submitted < jobs) submitOne(stats.submitted);
}

/** Fixed rate: every millisecond or so, send what is due. */
async function paced(): Promise<void> {
  const start = nowMs();
  while (stats.submitted < jobs && !finished) {
    const due = Math.min(jobs, Math.floor(((nowMs() - start) * rate) / 1000) + 1);
    stats.maxBacklog = Math.max(stats.maxBacklog, due - stats.submitted);
    while (stats.submitted < due && inFlight < concurrency) submitOne(stats.submitted);
    const next = start + ((stats.submitted + 0) * 1000) / rate;
    const wait = next - nowMs();
    await sleep(wait > 1 ? Math.min(wait, 50) : 0);
  }
}

const progressTimer = setInterval(() => emit({ type: "progress", inFlight, ...stats }), 250);

function done(): void {
  if (finished) return;
  finished = true;
  clearInterval(progressTimer);
  const elapsed = (stats.lastAnswerAt - stats.firstSubmitAt) / 1000;
  emit({
    type: "final",
    jobs,
    rate,
    concurrency,
    ...stats,
    submit_per_s: stats.submitted / Math.max(1e-9, (stats.lastSubmitAt - stats.firstSubmitAt) / 1000),
    answered_per_s: stats.answered / Math.max(1e-9, elapsed),
    rpc: rpc.toJSON(),
    answers: Object.fromEntries(answers),
  });
  for (const t of transports) t.close();
  setTimeout(() => process.exit(0), 100);
}

commands(
  (cmd) => {
    if (cmd.cmd !== "go" || started) return;
    started = true;
    if (jobs === 0) return done();
    if (rate > 0) void paced();
    else pump();
  },
  () => done(),
);
emit({ type: "ready", jobs, rate, concurrency });
