/**
 * The quiet path as a user feels it (GoCRMS's performance test): one client
 * creates jobs at a steady rate, each pinned to a named worker chosen at
 * random, each a real short command, and watches them; create→running is
 * measured from this process's clock to the first watch event that shows the
 * job RUNNING (or already ended). Between two submits it times a plain etcd
 * put from the same process, so the SubmitJob round trip has its reference.
 *
 *   tsx bench/paced-client.ts --server H:P --etcd URL --jobs N --rate R
 *       --workers a,b,c [--command "echo hi"] [--max-seconds T]
 *
 * Waits for {"cmd":"go"}; prints {"type":"final", ...} with histograms (JSON)
 * of every hop: submit RPC, stored (submit_time) → assigned (the attempt's
 * assign_time, the scheduler's clock), assigned → started (start_time, the
 * control plane's clock when it writes the worker's start report: delivery,
 * spawn and the report's way back), started → RUNNING seen by this client.
 */
import { Etcd3 } from "etcd3";
import { CrmsClient } from "../clients/typescript/src/client.js";
import { JobState } from "../gen/crms/v1/job_pb.js";
import { commands, emit, errorCode, Histogram, hardDeadline, nowMs, numFlag, parseFlags, sleep } from "./lib/util.js";

const { flags } = parseFlags(process.argv.slice(2));
const server = flags.get("server") ?? "127.0.0.1:7070";
const etcdEndpoint = flags.get("etcd") ?? "http://127.0.0.1:2379";
const jobs = numFlag(flags, "jobs", 1000);
const rate = Math.max(0.1, numFlag(flags, "rate", 20));
const workers = (flags.get("workers") ?? "").split(",").filter(Boolean);
const command = (flags.get("command") ?? "echo crms").split(" ");
const maxSeconds = numFlag(flags, "max-seconds", 600);
hardDeadline(maxSeconds, "paced-client");
if (workers.length === 0) throw new Error("--workers names at least one worker");

const client = new CrmsClient(server);
const etcd = new Etcd3({ hosts: etcdEndpoint });

const h = {
  createToRunning: new Histogram(),
  submitRpc: new Histogram(),
  etcdPut: new Histogram(),
  sentToStored: new Histogram(),
  storedToAssigned: new Histogram(),
  assignedToStarted: new Histogram(),
  startedToSeen: new Histogram(),
};
/** id → when this process sent its SubmitJob. */
const sentAt = new Map<string, number>();
/** ids whose start was seen before the submit answered (short jobs): their send time is filled in later. */
const early = new Map<string, { seenAt: number; submit: number; assign: number; start: number }>();
let seen = 0;
let submitted = 0;
let failed = 0;
const errors: Record<string, number> = {};

const ms = (t?: { seconds: bigint; nanos: number }): number => (t ? Number(t.seconds) * 1000 + t.nanos / 1e6 : 0);

function record(id: string, sent: number, s: { seenAt: number; submit: number; assign: number; start: number }): void {
  seen++;
  h.createToRunning.record(s.seenAt - sent);
  if (s.submit) h.sentToStored.record(s.submit - sent);
  if (s.submit && s.assign) h.storedToAssigned.record(s.assign - s.submit);
  if (s.assign && s.start) h.assignedToStarted.record(s.start - s.assign);
  if (s.start) h.startedToSeen.record(s.seenAt - s.start);
  sentAt.delete(id);
}

/** One watch over every job: the first event at RUNNING or later is "running" for the client. */
async function watch(): Promise<void> {
  for await (const ev of client.watchJobs([])) {
    const job = ev.job;
    if (!job || job.state < JobState.RUNNING || job.state === JobState.HELD) continue;
    const t = nowMs();
    const attempt = job.attempts.at(-1);
    const s = { seenAt: t, submit: ms(job.submitTime), assign: ms(attempt?.assignTime), start: ms(attempt?.startTime) };
    const sent = sentAt.get(job.id);
    if (sent !== undefined) record(job.id, sent, s);
    else if (!early.has(job.id) && (job.spec?.name ?? "").startsWith("paced-")) early.set(job.id, s);
    if (seen >= jobs) return;
  }
}

async function submitOne(i: number): Promise<void> {
  const worker = workers[Math.floor(Math.random() * workers.length)] as string;
  const t0 = nowMs();
  submitted++;
  try {
    const job = await client.submit({ command, name: `paced-${i}`, targetWorker: worker }, { timeoutMs: 30_000 });
    h.submitRpc.record(nowMs() - t0);
    const e = early.get(job.id);
    if (e) {
      early.delete(job.id);
      record(job.id, t0, e);
    } else sentAt.set(job.id, t0);
  } catch (err) {
    failed++;
    const code = errorCode(err);
    errors[code] = (errors[code] ?? 0) + 1;
  }
}

async function etcdPut(i: number): Promise<void> {
  const t0 = nowMs();
  await etcd.put(`bench/paced/${i % 64}`).value("x".repeat(200));
  h.etcdPut.record(nowMs() - t0);
}

async function run(): Promise<void> {
  const watching = watch();
  // Warm both paths (connections, JIT) before the clock starts.
  await etcdPut(0);
  await client.listWorkers(1);
  const start = nowMs();
  const period = 1000 / rate;
  const inFlight: Promise<void>[] = [];
  for (let i = 0; i < jobs; i++) {
    const due = start + i * period;
    const wait = due - nowMs();
    if (wait > 0) await sleep(wait);
    inFlight.push(submitOne(i));
    // The reference put goes half a period later, so the two never overlap at low rates.
    const half = due + period / 2 - nowMs();
    if (half > 0) await sleep(half);
    inFlight.push(etcdPut(i));
    if (i % Math.max(1, Math.round(rate)) === 0) emit({ type: "progress", submitted, seen, failed });
  }
  await Promise.all(inFlight);
  const deadline = nowMs() + 30_000;
  while (seen + failed < jobs && nowMs() < deadline) await sleep(20);
  emit({
    type: "final",
    jobs,
    rate,
    submitted,
    failed,
    errors,
    seen,
    elapsed_s: (nowMs() - start) / 1000,
    ...Object.fromEntries(Object.entries(h).map(([k, v]) => [k, v.toJSON()])),
  });
  void watching.catch(() => undefined);
  client.close();
  await etcd.close();
  setTimeout(() => process.exit(0), 100);
}

let started = false;
commands(
  (cmd) => {
    if (cmd.cmd !== "go" || started) return;
    started = true;
    run().catch((err) => {
      emit({ type: "error", error: String(err) });
      process.exit(1);
    });
  },
  () => process.exit(0),
);
emit({ type: "ready", jobs, rate, workers: workers.length });
