import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import test from "ava";
import { OutputStream } from "../gen/crms/v1/job_pb.js";
import type { JobFinished, JobStarted, OutputData } from "../gen/crms/v1/worker_pb.js";
import {
  createWorker,
  IllegalStateError,
  nextWorkerState,
  type Worker,
  type WorkerLifecycleState,
  type WorkerOptions,
} from "../src/worker/worker.js";
import { FakeControlPlane, type FakeSession } from "./helpers/fake-control-plane.js";

const cleanups: (() => Promise<void> | void)[] = [];
test.after.always(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function setup(
  servers = 1,
  options: Partial<WorkerOptions> = {},
): Promise<{ planes: FakeControlPlane[]; worker: Worker; logs: string[] }> {
  const planes = await Promise.all(Array.from({ length: servers }, () => new FakeControlPlane().listen()));
  const dataDir = await mkdtemp(path.join(tmpdir(), "crms-worker-"));
  const logs: string[] = [];
  const push = (line: string) => {
    logs.push(line);
  };
  const worker = createWorker({
    name: `w-${Math.random().toString(36).slice(2, 8)}`,
    slots: 4,
    servers: planes.map((p) => p.address),
    labels: { zone: "a" },
    dataDir,
    version: "test",
    heartbeatSeconds: 1,
    reconnectInitialMs: 20,
    reconnectMaxMs: 100,
    ackTimeoutMs: 500,
    log: { debug: push, info: push, warn: push, error: push },
    ...options,
  });
  cleanups.push(async () => {
    if (worker.state !== "STOPPED") await worker.stop({ killRuns: true }).catch(() => undefined);
    for (const p of planes) p.stop();
    await rm(dataDir, { recursive: true, force: true });
  });
  return { planes, worker, logs };
}

const text = (b: Uint8Array): string => Buffer.from(b).toString("utf8");

function states(worker: Worker): WorkerLifecycleState[] {
  const seen: WorkerLifecycleState[] = [worker.state];
  worker.on("state", (s: WorkerLifecycleState) => seen.push(s));
  return seen;
}

test("the lifecycle transition function allows only the documented moves", (t) => {
  t.is(nextWorkerState("INITIALIZED", "CONNECTING"), "CONNECTING");
  t.is(nextWorkerState("CONNECTING", "RUNNING"), "RUNNING");
  t.is(nextWorkerState("RUNNING", "DRAINING"), "DRAINING");
  t.is(nextWorkerState("DRAINING", "CONNECTING"), "CONNECTING");
  t.is(nextWorkerState("DRAINING", "RUNNING"), "RUNNING"); // a Resume from the control plane
  t.is(nextWorkerState("STOPPING", "STOPPED"), "STOPPED");
  t.throws(() => nextWorkerState("INITIALIZED", "RUNNING"), { instanceOf: IllegalStateError });
  t.throws(() => nextWorkerState("DRAINING", "INITIALIZED"), { instanceOf: IllegalStateError });
  t.throws(() => nextWorkerState("STOPPED", "CONNECTING"), { instanceOf: IllegalStateError });
  t.throws(() => nextWorkerState("STOPPING", "RUNNING"), { instanceOf: IllegalStateError });
});

test("lifecycle calls in the wrong state throw", async (t) => {
  const { planes, worker } = await setup();
  await worker.start();
  await t.throwsAsync(worker.start(), { instanceOf: IllegalStateError });
  await (await planes[0]!.session(0)).accept();
  await worker.attached(5_000);
  await worker.stop({ killRuns: true });
  t.is(worker.state, "STOPPED");
  t.throws(() => worker.stop({ killRuns: true }), { instanceOf: IllegalStateError });
});

test("an assigned job is started, reported finished with its tail, and forgotten after Ack", async (t) => {
  const { planes, worker } = await setup();
  const seen = states(worker);
  await worker.start();
  const s = await planes[0]!.session(0);
  const hello = await s.accept();
  t.is(hello.name, worker.name);
  t.is(hello.slots, 4);
  t.deepEqual(hello.labels, { zone: "a" });
  t.is(hello.version, "test");
  t.deepEqual(hello.running, []);
  await worker.attached(5_000);

  s.send({ case: "assign", value: { jobId: "1", attempt: 1, spec: { command: ["sh", "-c", "echo hi; exit 2"] } } });
  const started: JobStarted = await s.next("started");
  t.is(started.jobId, "1");
  t.true(started.pid > 0);
  const finished: JobFinished = await s.next("finished");
  t.is(finished.exitCode, 2);
  t.is(finished.pid, started.pid);
  t.is(text(finished.stdoutTail), "hi\n");
  t.false(finished.killed);
  t.is(worker.unacked, 1);
  s.send({ case: "ack", value: { jobId: "1", attempt: 1 } });
  // Polled: a heartbeat already on its way when the ack arrived says nothing about it.
  for (const end = Date.now() + 3_000; worker.unacked !== 0 && Date.now() < end; )
    await new Promise((r) => setTimeout(r, 20));
  t.is(worker.unacked, 0);

  await worker.stop({ killRuns: false });
  await worker.stopped;
  t.deepEqual(seen, ["INITIALIZED", "CONNECTING", "RUNNING", "STOPPING", "STOPPED"]);
});

test("a repeated Assign of a running attempt starts nothing new", async (t) => {
  const { planes, worker } = await setup();
  await worker.start();
  const s = await planes[0]!.session(0);
  await s.accept();
  const assign = { jobId: "5", attempt: 2, spec: { command: ["sleep", "0.5"] } };
  s.send({ case: "assign", value: assign });
  const first = await s.next("started");
  s.send({ case: "assign", value: assign });
  const again = await s.next("started");
  t.is(again.pid, first.pid);
  t.is(worker.running, 1);
  const finished = await s.next("finished");
  t.is(finished.exitCode, 0);
  s.send({ case: "assign", value: assign });
  const resent = await s.next("finished");
  t.is(resent.pid, first.pid);
  t.is(worker.running, 0);
});

test("Kill ends a running job; Kill of an unknown attempt is reported as killed before it started", async (t) => {
  const { planes, worker } = await setup();
  await worker.start();
  const s = await planes[0]!.session(0);
  await s.accept();
  s.send({ case: "assign", value: { jobId: "7", attempt: 1, spec: { command: ["sh", "-c", "sleep 60 & sleep 60"] } } });
  await s.next("started");
  const t0 = Date.now();
  s.send({ case: "kill", value: { jobId: "7", attempt: 1, graceSeconds: 5, reason: "killed by request" } });
  const finished = await s.next("finished");
  t.true(Date.now() - t0 < 2_000);
  t.true(finished.killed);
  t.is(finished.signal, "SIGTERM");
  t.is(finished.error, "killed by request");
  t.is(finished.exitCode, undefined);

  s.send({ case: "kill", value: { jobId: "8", attempt: 3, graceSeconds: 5 } });
  const never = await s.next("finished");
  t.is(never.jobId, "8");
  t.is(never.attempt, 3);
  t.true(never.killed);
  t.is(never.error, "killed before it started");
  t.is(never.pid, 0);
});

test("after the stream breaks the worker reconnects to the next server and reports its runs and unacked reports", async (t) => {
  const { planes, worker } = await setup(2);
  const seen = states(worker);
  await worker.start();
  const a = await planes[0]!.session(0);
  await a.accept();
  a.send({ case: "assign", value: { jobId: "9", attempt: 1, spec: { command: ["sleep", "1"] } } });
  const started = await a.next("started");
  a.call.end(); // the replica goes away; the run must keep going

  const b = await planes[1]!.session(0);
  const hello = await b.accept();
  t.deepEqual(
    hello.running.map((r) => [r.jobId, r.attempt, r.pid]),
    [["9", 1, started.pid]],
  );
  const finished = await b.next("finished");
  t.is(finished.exitCode, 0);
  b.call.end(); // gone again before it acknowledged

  const a2 = await planes[0]!.session(1);
  const hello2 = await a2.accept();
  t.deepEqual(hello2.running, []);
  t.deepEqual(
    hello2.finished.map((f) => [f.jobId, f.attempt, f.exitCode]),
    [["9", 1, 0]],
  );
  a2.send({ case: "ack", value: { jobId: "9", attempt: 1 } });
  await a2.next("heartbeat", 3_000);
  t.is(worker.unacked, 0);
  t.deepEqual(seen.slice(0, 6), ["INITIALIZED", "CONNECTING", "RUNNING", "CONNECTING", "RUNNING", "CONNECTING"]);
});

test("Drain puts the worker in DRAINING, which survives a reconnect", async (t) => {
  const { planes, worker } = await setup();
  await worker.start();
  const s = await planes[0]!.session(0);
  await s.accept();
  await worker.attached(5_000);
  s.send({ case: "drain", value: {} });
  await s.next("heartbeat", 3_000);
  t.is(worker.state, "DRAINING");
  s.call.end();
  const s2 = await planes[0]!.session(1);
  await s2.accept(false);
  await s2.next("heartbeat", 3_000);
  t.is(worker.state, "DRAINING");
});

test("Welcome with draining starts the worker in DRAINING", async (t) => {
  const { planes, worker } = await setup();
  await worker.start();
  await (await planes[0]!.session(0)).accept(true);
  await worker.attached(5_000);
  t.is(worker.state, "DRAINING");
});

async function collectOutput(s: FakeSession, requestId: bigint): Promise<OutputData[]> {
  const out: OutputData[] = [];
  for (;;) {
    const m = await s.next("output");
    if (m.requestId !== requestId) throw new Error(`unexpected request id ${m.requestId}`);
    out.push(m);
    if (m.eof) return out;
  }
}

test("OutputRequest with follow streams output as it is written, then eof", async (t) => {
  const { planes, worker } = await setup();
  await worker.start();
  const s = await planes[0]!.session(0);
  await s.accept();
  s.send({
    case: "assign",
    value: { jobId: "11", attempt: 1, spec: { command: ["sh", "-c", "echo a; sleep 0.5; echo b; echo e >&2"] } },
  });
  await s.next("started");
  s.send({ case: "outputRequest", value: { requestId: 42n, jobId: "11", attempt: 1, follow: true } });
  const chunks = await collectOutput(s, 42n);
  const last = chunks.at(-1);
  t.true(last?.eof);
  t.is(last?.error, "");
  const of = (stream: OutputStream): string =>
    chunks
      .filter((c) => !c.eof && c.stream === stream)
      .map((c) => text(c.data))
      .join("");
  t.is(of(OutputStream.STDOUT), "a\nb\n");
  t.is(of(OutputStream.STDERR), "e\n");
  t.true(chunks.filter((c) => !c.eof && c.stream === OutputStream.STDOUT).length >= 2);

  s.send({ case: "outputRequest", value: { requestId: 43n, jobId: "404", attempt: 1, follow: false } });
  const missing = await collectOutput(s, 43n);
  t.is(missing.length, 1);
  t.true(missing[0]?.eof);
  t.regex(missing[0]?.error ?? "", /no output/);
});

test("OutputCancel stops a follow", async (t) => {
  const { planes, worker } = await setup();
  await worker.start();
  const s = await planes[0]!.session(0);
  await s.accept();
  s.send({ case: "assign", value: { jobId: "12", attempt: 1, spec: { command: ["sh", "-c", "echo x; sleep 60"] } } });
  await s.next("started");
  s.send({ case: "outputRequest", value: { requestId: 1n, jobId: "12", attempt: 1, follow: true } });
  const first = await s.next("output");
  t.is(text(first.data), "x\n");
  s.send({ case: "outputCancel", value: { requestId: 1n } });
  await new Promise((r) => setTimeout(r, 400));
  t.false(s.messages.some((m) => m.msg.case === "output"));
});

test("Shutdown kills the runs, reports them and stops the worker", async (t) => {
  const { planes, worker } = await setup();
  await worker.start();
  const s = await planes[0]!.session(0);
  await s.accept();
  s.send({ case: "assign", value: { jobId: "13", attempt: 1, spec: { command: ["sleep", "60"] } } });
  await s.next("started");
  s.send({ case: "shutdown", value: { reason: "worker stopped by admin" } });
  const finished = await s.next("finished");
  t.true(finished.killed);
  t.is(finished.error, "worker stopped by admin");
  s.send({ case: "ack", value: { jobId: "13", attempt: 1 } });
  await worker.stopped;
  t.is(worker.state, "STOPPED");
  t.is(worker.unacked, 0);
});

test("an unreachable first server is skipped", async (t) => {
  const plane = await new FakeControlPlane().listen();
  const dead = await new FakeControlPlane().listen();
  dead.stop();
  const { worker } = await setup(0, { servers: [dead.address, plane.address] });
  cleanups.push(() => plane.stop());
  await worker.start();
  await (await plane.session(0)).accept();
  await worker.attached(5_000);
  t.is(worker.attachedTo, plane.address);
});
