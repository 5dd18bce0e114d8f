/**
 * The worker side of resources and accounting, with real processes: what a
 * run used (measured through the run shim's exit record), memory limits,
 * CUDA_VISIBLE_DEVICES from the reserved GPUs, and what Hello offers.
 */
import { execFileSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { availableParallelism, tmpdir, totalmem } from "node:os";
import path from "node:path";
import test from "ava";
import { parse } from "../src/cmd/flags.js";
import { resourcesOf } from "../src/cmd/worker.js";
import { WORKER_FLAGS } from "../src/config.js";
import { detectGpus } from "../src/worker/resources.js";
import { type RunOptions, startRun } from "../src/worker/runner.js";
import { findShim, readExitRecord, readPidRecord } from "../src/worker/shim.js";
import { createWorker, type WorkerOptions } from "../src/worker/worker.js";
import { FakeControlPlane } from "./helpers/fake-control-plane.js";

const shim = findShim();
const MiB = 1024n * 1024n;
/** The interpreter itself, not a wrapper script (pyenv's shims), so the job's own CPU time is all there is. */
const python = execFileSync("python3", ["-c", "import sys; print(sys.executable)"], { encoding: "utf8" }).trim();

const cleanups: (() => Promise<void> | void)[] = [];
test.after.always(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function dataDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "crms-usage-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Runs `command` as job1 attempt 1 in a new data dir and waits for its outcome. */
async function run(
  command: string[],
  { spec, ...options }: Partial<Omit<RunOptions, "spec">> & { spec?: Partial<RunOptions["spec"]> },
) {
  const ids = { jobId: "job1", attempt: 1, workerName: "w1" };
  const r = startRun({ ...ids, dataDir: await dataDir(), ...options, spec: { ...spec, command } });
  return { run: r, outcome: await r.done };
}

const text = (b: Uint8Array): string => Buffer.from(b).toString("utf8");

/** Burns CPU until its own user+system time (times(2), what /proc/self/stat says) passes 1.5 s, then prints it. */
const BURN = [
  python,
  "-c",
  "import os\nwhile sum(os.times()[:4]) < 1.5:\n    sum(range(10000))\nt = os.times()\nprint(t[0] + t[1] + t[2] + t[3])",
];

/** Prints, then tries to allocate (and touch) 512 MiB. */
const ALLOCATE = [
  python,
  "-c",
  "print('started', flush=True)\nx = bytearray(512 * 1024 * 1024)\nprint('allocated', flush=True)",
];

test("a run through the shim reports the CPU time /proc saw within 10 %, its max RSS and its wall time", async (t) => {
  if (!shim) {
    t.pass("no run shim built");
    return;
  }
  const before = Date.now();
  const { outcome } = await run(BURN, { shim: { path: shim, killGraceSeconds: 5 } });
  const elapsed = (Date.now() - before) / 1000;
  t.is(outcome.exitCode, 0, text(outcome.stderrTail));
  const seen = Number(text(outcome.stdoutTail).trim());
  t.true(seen >= 1.5, `the job saw ${seen} s`);
  const usage = outcome.usage;
  if (!usage) {
    t.fail("no usage");
    return;
  }
  t.log(
    `cpu_seconds ${usage.cpuSeconds} (the job saw ${seen}), max_rss_bytes ${usage.maxRssBytes}, wall ${usage.wallSeconds}`,
  );
  t.true(Math.abs(usage.cpuSeconds - seen) <= 0.1 * seen, `cpu_seconds ${usage.cpuSeconds} against ${seen} from /proc`);
  t.true(usage.maxRssBytes > 1n * MiB, `max_rss_bytes ${usage.maxRssBytes}`);
  // One thread: at least its CPU time (less a tick of rounding), at most the time the test waited.
  t.true(
    usage.wallSeconds >= seen - 0.05 && usage.wallSeconds <= elapsed + 0.05,
    `wall ${usage.wallSeconds}, cpu ${seen}, test ${elapsed}`,
  );
  t.is(usage.gpuSeconds, 0);
});

test("a run without the shim reports no usage (Node cannot measure a child's rusage)", async (t) => {
  const { outcome } = await run(["true"], {});
  t.is(outcome.exitCode, 0);
  t.is(outcome.usage, undefined);
});

test("a job with a 64 MiB reservation that allocates 512 MiB fails, through the shim and without it", async (t) => {
  for (const viaShim of shim ? [true, false] : [false]) {
    const { run: r, outcome } = await run(ALLOCATE, {
      spec: { resources: { memoryBytes: 64n * MiB } },
      ...(viaShim && shim ? { shim: { path: shim, killGraceSeconds: 5 } } : {}),
    });
    const how = viaShim ? "through the shim" : "without the shim";
    t.is(
      text(outcome.stdoutTail),
      "started\n",
      `${how}: it ran, and did not get its 512 MiB (exit ${outcome.exitCode} ${outcome.signal} ${outcome.error}; stderr ${JSON.stringify(text(outcome.stderrTail).slice(-300))})`,
    );
    t.true(outcome.exitCode !== 0, `${how}: ${outcome.exitCode} ${outcome.signal} ${text(outcome.stderrTail)}`);
    if (!viaShim) continue;
    const record = await readExitRecord(r.runDir);
    if (record?.memory_limit === "cgroup") {
      t.is(outcome.signal, "SIGKILL");
      t.regex(outcome.error, /out of memory/);
    } else {
      t.is(record?.memory_limit, "rlimit");
      t.regex(text(outcome.stderrTail), /MemoryError/);
    }
  }
  // The same job without a reservation gets its memory.
  const { outcome } = await run(ALLOCATE, shim ? { shim: { path: shim, killGraceSeconds: 5 } } : {});
  t.is(outcome.exitCode, 0, text(outcome.stderrTail));
  t.is(text(outcome.stdoutTail), "started\nallocated\n");
});

test("a reservation does not change what a missing command reports", async (t) => {
  const { outcome } = await run(["no-such-program-here"], { spec: { resources: { memoryBytes: 64n * MiB } } });
  t.is(outcome.error, "command not found: no-such-program-here");
});

test("reserved GPU indices become CUDA_VISIBLE_DEVICES, and gpu_seconds are GPUs times wall", async (t) => {
  const print = ["sh", "-c", 'echo "$CUDA_VISIBLE_DEVICES"; sleep 0.3'];
  for (const viaShim of shim ? [true, false] : [false]) {
    const { outcome } = await run(print, {
      gpuIndices: [1, 3],
      spec: { env: { CUDA_VISIBLE_DEVICES: "7" } },
      ...(viaShim && shim ? { shim: { path: shim, killGraceSeconds: 5 } } : {}),
    });
    t.is(text(outcome.stdoutTail), "1,3\n", viaShim ? "through the shim" : "without the shim");
    if (viaShim) {
      const usage = outcome.usage;
      t.true((usage?.wallSeconds ?? 0) >= 0.3);
      t.true(
        Math.abs((usage?.gpuSeconds ?? 0) - 2 * (usage?.wallSeconds ?? 0)) < 0.01,
        JSON.stringify(usage, (_, v) => (typeof v === "bigint" ? String(v) : v)),
      );
    }
  }
  const { outcome } = await run(["sh", "-c", "printenv CUDA_VISIBLE_DEVICES || echo unset"], {});
  t.is(text(outcome.stdoutTail), "unset\n", "no GPUs reserved: not set");
});

test("a re-adopted run reports the usage of the shim's record", async (t) => {
  if (!shim) {
    t.pass("no run shim built");
    return;
  }
  const dir = await dataDir();
  const first = startRun({
    jobId: "job1",
    attempt: 1,
    workerName: "w1",
    dataDir: dir,
    spec: { command: ["sh", "-c", "sleep 0.5"] },
    gpuIndices: [0],
    shim: { path: shim, killGraceSeconds: 5 },
  });
  await new Promise((r) => setTimeout(r, 200));
  const pid = await readPidRecord(first.runDir);
  if (!pid) {
    t.fail("no pid record");
    return;
  }
  first.detach(); // the worker process goes; the shim keeps the run
  const adopted = startRun({
    jobId: "job1",
    attempt: 1,
    workerName: "w1",
    dataDir: dir,
    spec: { command: [] },
    adopt: pid,
  });
  const outcome = await adopted.done;
  t.is(outcome.exitCode, 0);
  // The shim's whole run (sleep 0.5; the shim's clock starts after the fork, so 0.498 s has been
  // seen), not the ~0.3 s the adopting process saw from its start 200 ms in.
  t.true((outcome.usage?.wallSeconds ?? 0) >= 0.45, `wall ${outcome.usage?.wallSeconds}`);
  t.true((outcome.usage?.gpuSeconds ?? 0) >= 0.45, "one GPU reserved: gpu_seconds = wall");
});

test("worker flags --cpus --memory --gpus --resource override what is detected", (t) => {
  const flags = (args: string[]) => resourcesOf(parse(args, WORKER_FLAGS).values);
  t.deepEqual(
    flags(["--cpus", "8", "--memory", "32G", "--gpus", "0", "--resource", "license=4", "--resource", "scratch=2"]),
    {
      cpus: 8,
      memoryBytes: 32n * 1024n * MiB,
      gpus: 0,
      named: { license: 4n, scratch: 2n },
    },
  );
  t.deepEqual(flags(["--memory", "1536M"]), { memoryBytes: 1536n * MiB });
  t.deepEqual(flags(["--memory", "1.5G"]), { memoryBytes: 1536n * MiB });
  t.deepEqual(flags(["--memory", "123456"]), { memoryBytes: 123456n });
  t.deepEqual(flags(["--memory", "4KiB"]), { memoryBytes: 4096n });
  t.deepEqual(flags([]), {});
  for (const bad of [
    ["--memory", "lots"],
    ["--memory", "4X"],
    ["--cpus", "-1"],
    ["--gpus", "4294967296"],
    ["--resource", "License=1"],
    ["--resource", "x=y"],
    ["--resource", "x"],
  ]) {
    t.throws(() => flags(bad), { message: /--memory|--cpus|--gpus|--resource/ }, bad.join(" "));
  }
});

async function helloOf(options: Partial<WorkerOptions>) {
  const plane = await new FakeControlPlane().listen();
  const logs: string[] = [];
  const push = (line: string) => {
    logs.push(line);
  };
  const worker = createWorker({
    name: `w-${Math.random().toString(36).slice(2, 8)}`,
    slots: 2,
    servers: [plane.address],
    labels: {},
    dataDir: await dataDir(),
    version: "test",
    log: { debug: push, info: push, warn: push, error: push },
    ...options,
  });
  cleanups.push(async () => {
    if (worker.state !== "STOPPED") await worker.stop({ killRuns: true }).catch(() => undefined);
    plane.stop();
  });
  await worker.start();
  const session = await plane.session(0);
  return { hello: await session.accept(), session, logs, worker };
}

test("Hello carries the detected resources, and the flags' overrides instead", async (t) => {
  const detected = await helloOf({});
  t.is(detected.hello.resources?.cpus, Math.max(availableParallelism(), 2));
  t.is(detected.hello.resources?.memoryBytes, BigInt(totalmem()));
  const gpus = await detectGpus();
  t.is(detected.hello.resources?.gpus, gpus);
  t.is(detected.hello.slots, 2, "slots stay the jobs at once");
  const start = detected.logs.find((l) => l.startsWith("starting:")) ?? "";
  t.regex(
    start,
    new RegExp(
      `^starting: 2 slots, cpus ${Math.max(availableParallelism(), 2)}, memory [\\d.]+ GiB, gpus ${gpus}, servers`,
    ),
  );
  t.true(
    detected.logs.some((l) => /^memory reservations: (cgroup v2 memory.max|address-space limit \(RLIMIT_AS)/.test(l)),
    detected.logs.join("\n"),
  );

  const given = await helloOf({
    resources: { cpus: 3, memoryBytes: 5n * 1024n * MiB, gpus: 2, named: { license: 4n } },
  });
  t.is(given.hello.resources?.cpus, 3);
  t.is(given.hello.resources?.memoryBytes, 5n * 1024n * MiB);
  t.is(given.hello.resources?.gpus, 2);
  t.deepEqual(given.hello.resources?.named, { license: 4n });
  t.truthy(given.logs.find((l) => l.startsWith("starting: 2 slots, cpus 3, memory 5 GiB, gpus 2, license=4, servers")));
});

test("JobFinished carries the run's usage, with gpu_seconds for the GPUs of the Assign", async (t) => {
  if (!shim) {
    t.pass("no run shim built");
    return;
  }
  const { session } = await helloOf({ shim });
  session.send({
    case: "assign",
    value: {
      jobId: "j1",
      attempt: 1,
      spec: { command: ["sh", "-c", 'echo "$CUDA_VISIBLE_DEVICES"; sleep 0.2'] },
      gpuIndices: [0, 2],
    },
  });
  const finished = await session.next("finished", 10_000);
  t.is(finished.exitCode, 0);
  t.is(text(finished.stdoutTail), "0,2\n");
  const usage = finished.usage;
  t.true((usage?.wallSeconds ?? 0) >= 0.2);
  t.true((usage?.maxRssBytes ?? 0n) > 0n);
  t.true(Math.abs((usage?.gpuSeconds ?? 0) - 2 * (usage?.wallSeconds ?? 0)) < 0.01);
});
