/**
 * Simulated workers: many WorkerService.Attach streams in one process, spread
 * over a few gRPC channels (each its own HTTP/2 connection). Every assigned
 * job "runs" at once: JobStarted, then JobFinished with exit code 0.
 *
 *   tsx bench/sim-workers.ts --server H:P --workers W [--slots S] [--prefix sim0-]
 *       [--channels C] [--max-seconds T] [--delete-keep K]
 *
 * Waits for {"cmd":"go"} on stdin before attaching; {"cmd":"stop"} (or stdin
 * closing) ends every stream and prints {"type":"final", ...} with counts and
 * latency histograms:
 *   running  = Assign received here − submit time (the job's name carries the
 *              submitter's clock reading; both processes use nowMs())
 *   finished = Ack received here − submit time (the Ack follows the stored
 *              SUCCEEDED record)
 * Starts are also counted per job owner (the crms.io/owner label) in 100 ms
 * buckets of that clock (`starts`: owner → bucket → count, bucket =
 * floor(ms / 100)), for the fairshare scenario's share of starts over time,
 * with each owner's first start (`firstStarts`: owner → ms).
 * With --delete-keep K, acknowledged jobs are deleted with DeleteJob once more
 * than K finished ones are kept by this process (the history scenario's
 * stand-in for server-side retention).
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { channelOptions, ServiceTransport } from "../clients/typescript/src/transport.js";
import { JobService } from "../gen/crms/v1/job_pb.js";
import {
  type AttachRequest,
  AttachRequestSchema,
  type AttachResponse,
  WorkerService,
} from "../gen/crms/v1/worker_pb.js";
import { OWNER_LABEL } from "../src/rpc/names.js";
import {
  commands,
  emit,
  errorCode,
  Histogram,
  hardDeadline,
  nowMs,
  numFlag,
  parseFlags,
  progress,
  sleep,
} from "./lib/util.js";

const { flags } = parseFlags(process.argv.slice(2));
const server = flags.get("server") ?? "127.0.0.1:7070";
const count = numFlag(flags, "workers", 100);
const slots = numFlag(flags, "slots", 1);
const prefix = flags.get("prefix") ?? "sim-";
const nChannels = Math.max(1, numFlag(flags, "channels", Math.ceil(count / 1000)));
const maxSeconds = numFlag(flags, "max-seconds", 600);
const deleteKeep = flags.has("delete-keep") ? numFlag(flags, "delete-keep", 0) : -1;
const attachWindow = numFlag(flags, "attach-window", 1000);
hardDeadline(maxSeconds, `sim-workers ${prefix}`);

// Separate channels must not share one HTTP/2 connection: grpc-js pools
// subchannels by target and options, so each gets a local pool and its own option.
const transports = Array.from(
  { length: nChannels },
  (_, i) =>
    new ServiceTransport(server, grpc.credentials.createInsecure(), {
      ...channelOptions,
      "grpc.use_local_subchannel_pool": 1,
      "crms.bench.channel": `${prefix}${i}`,
    }),
);

type Call = grpc.ClientDuplexStream<AttachRequest, AttachResponse>;

interface SimWorker {
  name: string;
  index: number;
  call?: Call;
  welcomed: boolean;
  helloAt: number;
}

const workers: SimWorker[] = Array.from({ length: count }, (_, i) => ({
  name: `${prefix}${i}`,
  index: i,
  welcomed: false,
  helloAt: 0,
}));

const stats = {
  welcomed: 0,
  attachFailures: 0,
  streamErrors: 0,
  reattaches: 0,
  assigns: 0,
  dupAssigns: 0,
  acks: 0,
  kills: 0,
  heartbeats: 0,
  deletes: 0,
  deleteErrors: 0,
  firstHelloAt: 0,
  lastWelcomeAt: 0,
  firstAssignAt: 0,
  lastAssignAt: 0,
  lastAckAt: 0,
  errors: {} as Record<string, number>,
};
const running = new Histogram();
const finished = new Histogram();
const attachLatency = new Histogram();
/** Per owner, starts (Assigns received) per 100 ms bucket of nowMs(). */
const starts = new Map<string, Map<number, number>>();
const firstStarts = new Map<string, number>();
/** jobId → submit time (ms), from Assign until Ack. */
const inflight = new Map<string, number>();
let heartbeatSeconds = 5;
let stopping = false;
let outstandingHellos = 0;

const write = (w: SimWorker, msg: MessageInitShape<typeof AttachRequestSchema>["msg"]) => {
  w.call?.write(create(AttachRequestSchema, { msg }));
};

function attach(w: SimWorker): void {
  const transport = transports[w.index % nChannels] as ServiceTransport;
  const call = transport.bidiStream(WorkerService.method.attach) as Call;
  w.call = call;
  w.welcomed = false;
  w.helloAt = nowMs();
  if (!stats.firstHelloAt) stats.firstHelloAt = w.helloAt;
  outstandingHellos++;
  let helloPending = true;
  const helloDone = () => {
    if (helloPending) {
      helloPending = false;
      outstandingHellos--;
    }
  };
  call.on("data", (res: AttachResponse) => onMessage(w, res, helloDone));
  call.on("error", (err) => {
    helloDone();
    if (stopping) return;
    stats.streamErrors++;
    const code = errorCode(err);
    stats.errors[code] = (stats.errors[code] ?? 0) + 1;
    if (stats.streamErrors <= 5) progress(`sim ${w.name}: stream error ${code}: ${(err as Error).message}`);
  });
  call.on("status", () => {
    helloDone();
    if (w.welcomed) stats.welcomed--;
    w.welcomed = false;
    if (stopping || w.call !== call) return;
    // A real worker reconnects; do the same after a pause.
    stats.reattaches++;
    setTimeout(() => !stopping && attach(w), 1000 + Math.random() * 1000).unref();
  });
  write(w, { case: "hello", value: { name: w.name, slots, hostname: "bench", version: "bench" } });
}

function onMessage(w: SimWorker, res: AttachResponse, helloDone: () => void): void {
  const msg = res.msg;
  switch (msg.case) {
    case "welcome": {
      helloDone();
      const t = nowMs();
      if (!w.welcomed) stats.welcomed++;
      w.welcomed = true;
      stats.lastWelcomeAt = t;
      attachLatency.record(t - w.helloAt);
      if (msg.value.heartbeatSeconds > 0) heartbeatSeconds = msg.value.heartbeatSeconds;
      return;
    }
    case "assign": {
      const t = nowMs();
      const { jobId, attempt } = msg.value;
      stats.assigns++;
      if (!stats.firstAssignAt) stats.firstAssignAt = t;
      stats.lastAssignAt = t;
      const name = msg.value.spec?.name ?? "";
      const t0 = name.startsWith("b") ? Number(name.slice(1)) : Number.NaN;
      if (inflight.has(jobId)) stats.dupAssigns++;
      else if (Number.isFinite(t0)) running.record(t - t0);
      inflight.set(jobId, t0);
      countStart(msg.value.spec?.labels[OWNER_LABEL] ?? "", t);
      write(w, { case: "started", value: { jobId, attempt, pid: 4242 } });
      write(w, { case: "finished", value: { jobId, attempt, exitCode: 0, pid: 4242 } });
      return;
    }
    case "ack": {
      const t = nowMs();
      stats.acks++;
      stats.lastAckAt = t;
      const { jobId } = msg.value;
      const t0 = inflight.get(jobId);
      inflight.delete(jobId);
      if (t0 !== undefined && Number.isFinite(t0)) finished.record(t - t0);
      if (deleteKeep >= 0) retire(jobId);
      return;
    }
    case "kill": {
      stats.kills++;
      const { jobId, attempt } = msg.value;
      write(w, { case: "finished", value: { jobId, attempt, signal: "SIGTERM", killed: true, pid: 4242 } });
      return;
    }
    case "outputRequest":
      write(w, { case: "output", value: { requestId: msg.value.requestId, eof: true } });
      return;
    case "shutdown":
      w.call?.end();
      return;
    default:
      return;
  }
}

function countStart(owner: string, t: number): void {
  let buckets = starts.get(owner);
  if (!buckets) {
    starts.set(owner, (buckets = new Map()));
    firstStarts.set(owner, t);
  }
  const b = Math.floor(t / 100);
  buckets.set(b, (buckets.get(b) ?? 0) + 1);
}

// ---- harness retention (history scenario) ----

const finishedFifo: string[] = [];
let fifoHead = 0;
let deletesInFlight = 0;
const DELETE_CONCURRENCY = 64;

function retire(jobId: string): void {
  finishedFifo.push(jobId);
  pumpDeletes();
}

function pumpDeletes(): void {
  const transport = transports[0] as ServiceTransport;
  while (finishedFifo.length - fifoHead > deleteKeep && deletesInFlight < DELETE_CONCURRENCY) {
    const id = finishedFifo[fifoHead++] as string;
    deletesInFlight++;
    transport
      .unary(JobService.method.deleteJob, { id }, { timeoutMs: 30_000 })
      .then(
        () => stats.deletes++,
        (err) => {
          stats.deleteErrors++;
          const code = `delete:${errorCode(err)}`;
          stats.errors[code] = (stats.errors[code] ?? 0) + 1;
        },
      )
      .finally(() => {
        deletesInFlight--;
        if (fifoHead > 100_000) {
          finishedFifo.splice(0, fifoHead);
          fifoHead = 0;
        }
        pumpDeletes();
      });
  }
}

// ---- heartbeats: a ticker that walks the workers round robin ----

let hbCursor = 0;
const TICK_MS = 250;
const hbTimer = setInterval(() => {
  if (stopping) return;
  // Every worker once per heartbeat period, as a real worker does.
  const perTick = Math.ceil((count * TICK_MS) / (heartbeatSeconds * 1000));
  for (let i = 0; i < perTick && count > 0; i++) {
    const w = workers[hbCursor] as SimWorker;
    hbCursor = (hbCursor + 1) % count;
    if (w.welcomed) {
      write(w, { case: "heartbeat", value: { running: 0 } });
      stats.heartbeats++;
    }
  }
}, TICK_MS);

// ---- reporting and control ----

function snapshot(type: string): Record<string, unknown> {
  return {
    type,
    prefix,
    workers: count,
    channels: nChannels,
    inflight: inflight.size,
    deletesPending: finishedFifo.length - fifoHead - Math.max(0, deleteKeep),
    ...stats,
  };
}

const progressTimer = setInterval(() => emit(snapshot("progress")), 250);

async function go(): Promise<void> {
  for (const w of workers) {
    while (outstandingHellos >= attachWindow && !stopping) await sleep(2);
    if (stopping) return;
    attach(w);
  }
}

async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  clearInterval(hbTimer);
  clearInterval(progressTimer);
  const until = nowMs() + 10_000;
  while (deletesInFlight > 0 && nowMs() < until) await sleep(10);
  emit({
    ...snapshot("final"),
    running: running.toJSON(),
    finished: finished.toJSON(),
    attach: attachLatency.toJSON(),
    starts: Object.fromEntries([...starts].map(([owner, b]) => [owner, Object.fromEntries(b)])),
    firstStarts: Object.fromEntries(firstStarts),
  });
  for (const w of workers) w.call?.end();
  await sleep(200);
  for (const t of transports) t.close();
  process.exit(0);
}

commands(
  (cmd) => {
    if (cmd.cmd === "go") void go();
    else if (cmd.cmd === "stop") void stop();
    else if (cmd.cmd === "snapshot") emit(snapshot("snapshot"));
  },
  () => void stop(),
);
emit({ type: "ready", prefix, workers: count });
