import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import test from "ava";
import {
  type OutputChunk,
  processGroupAlive,
  type Run,
  RunNotFoundError,
  type RunOptions,
  readOutput,
  runDirOf,
  startRun,
} from "../src/worker/runner.js";
import { findShim } from "../src/worker/shim.js";

const dirs: string[] = [];

test.after.always(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function dataDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "crms-runner-"));
  dirs.push(dir);
  return dir;
}

async function run(
  command: string[],
  options: Partial<Omit<RunOptions, "spec">> & { spec?: Partial<RunOptions["spec"]> } = {},
): Promise<Run> {
  const { spec, ...rest } = options;
  return startRun({
    jobId: "job1",
    attempt: 1,
    workerName: "w1",
    dataDir: await dataDir(),
    ...rest,
    spec: { command, ...spec },
  });
}

/** Resolves with the pid once the process exists. */
function started(): { onStart: (pid: number) => void; pid: Promise<number> } {
  let resolve!: (pid: number) => void;
  const pid = new Promise<number>((r) => {
    resolve = r;
  });
  return { onStart: (p) => resolve(p), pid };
}

/**
 * No live process left in the group: kill(-pgid, 0) throws ESRCH, or (under
 * a PID 1 that does not reap orphans, as in many containers) every process
 * still listed is a zombie.
 */
async function groupGone(pgid: number): Promise<boolean> {
  try {
    process.kill(-pgid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ESRCH";
  }
  return !(await processGroupAlive(pgid));
}

const text = (bytes: Uint8Array): string => Buffer.from(bytes).toString("utf8");

test("echo output lands in the stdout file and the tails", async (t) => {
  const s = started();
  const r = await run(["sh", "-c", "echo hello; echo oops >&2"], { onStart: s.onStart });
  const outcome = await r.done;
  t.is(outcome.exitCode, 0);
  t.is(outcome.error, "");
  t.is(outcome.signal, "");
  t.false(outcome.killed);
  t.false(outcome.timedOut);
  t.true(outcome.pid > 0);
  t.is(await s.pid, outcome.pid);
  t.true(r.ended);
  t.is(await readFile(path.join(r.runDir, "stdout"), "utf8"), "hello\n");
  t.is(await readFile(path.join(r.runDir, "stderr"), "utf8"), "oops\n");
  t.is(text(outcome.stdoutTail), "hello\n");
  t.is(text(outcome.stderrTail), "oops\n");
});

test("the run directory is <dataDir>/runs/<jobId>.<attempt> and is the default cwd", async (t) => {
  const dir = await dataDir();
  const r = startRun({ jobId: "42", attempt: 3, workerName: "w", dataDir: dir, spec: { command: ["pwd"] } });
  const outcome = await r.done;
  t.is(r.runDir, path.join(dir, "runs", "42.3"));
  t.is(text(outcome.stdoutTail).trim(), r.runDir);
  t.throws(() => runDirOf(dir, "../etc", 1));
});

test("tails keep only the last tailBytes bytes", async (t) => {
  const r = await run(["sh", "-c", "printf abcdefgh; printf 12345678 >&2"], { tailBytes: 4 });
  const outcome = await r.done;
  t.is(text(outcome.stdoutTail), "efgh");
  t.is(text(outcome.stderrTail), "5678");
});

test("exit 3 gives exit code 3", async (t) => {
  const outcome = await (await run(["sh", "-c", "exit 3"])).done;
  t.is(outcome.exitCode, 3);
  t.is(outcome.signal, "");
  t.is(outcome.error, "");
});

test("an unknown command gives a clear error and no exit code", async (t) => {
  let startCalls = 0;
  const outcome = await (await run(["no-such-command-crms-xyz", "arg"], { onStart: () => startCalls++ })).done;
  t.is(outcome.error, "command not found: no-such-command-crms-xyz");
  t.is(outcome.exitCode, undefined);
  t.is(outcome.pid, 0);
  t.is(startCalls, 0);
});

test("a missing working directory gives a clear error", async (t) => {
  const outcome = await (await run(["true"], { spec: { workingDir: "/nonexistent/crms-dir" } })).done;
  t.is(outcome.error, "working directory does not exist: /nonexistent/crms-dir");
  t.is(outcome.exitCode, undefined);
});

test("kill of a running job ends its process group within the grace period", async (t) => {
  const s = started();
  const r = await run(["sh", "-c", "sleep 60 & sleep 60"], { onStart: s.onStart });
  const pgid = await s.pid;
  await new Promise((resolve) => setTimeout(resolve, 200)); // let sh start both sleeps
  const t0 = Date.now();
  r.kill(5, "killed by request");
  const outcome = await r.done;
  t.true(Date.now() - t0 < 2_000, `took ${Date.now() - t0} ms`);
  t.true(outcome.killed);
  t.false(outcome.timedOut);
  t.is(outcome.signal, "SIGTERM");
  t.is(outcome.error, "killed by request");
  t.true(await groupGone(pgid), "a process of the job's group is still alive");
});

test("kill escalates to SIGKILL after the grace when the group ignores SIGTERM", async (t) => {
  const s = started();
  const r = await run(["sh", "-c", "trap '' TERM; sleep 60 & sleep 60"], { onStart: s.onStart });
  const pgid = await s.pid;
  await new Promise((resolve) => setTimeout(resolve, 200));
  const t0 = Date.now();
  r.kill(1);
  const outcome = await r.done;
  const took = Date.now() - t0;
  t.true(took >= 900 && took < 3_000, `took ${took} ms`);
  t.is(outcome.signal, "SIGKILL");
  t.true(outcome.killed);
  t.true(await groupGone(pgid));
});

test("background processes do not outlive a job that exits on its own", async (t) => {
  const s = started();
  const r = await run(["sh", "-c", "sleep 60 & echo done"], { onStart: s.onStart });
  const pgid = await s.pid;
  const t0 = Date.now();
  const outcome = await r.done;
  t.is(outcome.exitCode, 0);
  t.false(outcome.killed);
  t.true(Date.now() - t0 < 3_000);
  t.true(await groupGone(pgid));
});

test("kill before the process exists means it never starts", async (t) => {
  let startCalls = 0;
  const r = await run(["sleep", "60"], { onStart: () => startCalls++ });
  r.kill(10);
  const outcome = await r.done;
  t.true(outcome.killed);
  t.is(outcome.error, "killed before it started");
  t.is(outcome.pid, 0);
  t.is(startCalls, 0);
});

test("a timeout of 1 s ends the run and marks it timed out", async (t) => {
  const t0 = Date.now();
  const outcome = await (await run(["sleep", "30"], { spec: { timeoutSeconds: 1 } })).done;
  const took = Date.now() - t0;
  t.true(outcome.timedOut);
  t.false(outcome.killed);
  t.is(outcome.signal, "SIGTERM");
  t.is(outcome.error, "timed out after 1s");
  t.true(took >= 900 && took < 3_000, `took ${took} ms`);
});

test("the job env has CRMS_JOB_ID and the spec env, and no credential of the worker", async (t) => {
  process.env.MY_SECRET_TOKEN = "hunter2";
  try {
    const r = await run(["env"], { jobId: "77", attempt: 2, workerName: "w9", spec: { env: { FOO: "bar" } } });
    await r.done;
    const lines = (await readFile(path.join(r.runDir, "stdout"), "utf8")).split("\n");
    t.true(lines.includes("CRMS_JOB_ID=77"));
    t.true(lines.includes("CRMS_ATTEMPT=2"));
    t.true(lines.includes("CRMS_WORKER=w9"));
    t.true(lines.includes("FOO=bar"));
    t.true(lines.some((l) => l.startsWith("PATH=")));
    t.false(lines.some((l) => l.startsWith("MY_SECRET_TOKEN=")));
  } finally {
    delete process.env.MY_SECRET_TOKEN;
  }
});

async function collect(chunks: AsyncIterable<OutputChunk>): Promise<(OutputChunk & { at: number })[]> {
  const out: (OutputChunk & { at: number })[] = [];
  for await (const c of chunks) out.push({ ...c, at: Date.now() });
  return out;
}

const joined = (chunks: OutputChunk[], stream: "stdout" | "stderr"): string =>
  chunks
    .filter((c) => c.stream === stream)
    .map((c) => text(c.data))
    .join("");

test("reading output with follow sees data written after the read started", async (t) => {
  const s = started();
  const r = await run(["sh", "-c", "echo one; sleep 0.5; echo two; sleep 0.5; echo three >&2"], {
    onStart: s.onStart,
  });
  await s.pid;
  const readStart = Date.now();
  const chunks = await collect(readOutput(r.runDir, { follow: true, isEnded: () => r.ended }));
  const outcome = await r.done;
  t.is(outcome.exitCode, 0);
  t.is(joined(chunks, "stdout"), "one\ntwo\n");
  t.is(joined(chunks, "stderr"), "three\n");
  const two = chunks.find((c) => text(c.data).includes("two"));
  t.truthy(two);
  t.true((two?.at ?? 0) - readStart >= 300, "'two' should arrive after the read started");
  t.is(two?.offset, 4);
});

test("reading output from offsets without follow returns what is there in chunks of at most 64 KiB", async (t) => {
  const r = await run(["sh", "-c", "head -c 200000 /dev/zero; echo tail-of-stderr >&2"]);
  await r.done;
  const chunks = await collect(readOutput(r.runDir));
  const stdout = chunks.filter((c) => c.stream === "stdout");
  t.true(stdout.every((c) => c.data.byteLength <= 64 * 1024));
  let next = 0;
  for (const c of stdout) {
    t.is(c.offset, next);
    next += c.data.byteLength;
  }
  t.is(next, 200_000);
  const fromOffset = await collect(readOutput(r.runDir, { stdoutOffset: 199_990, stderrOffset: 5 }));
  t.is(
    fromOffset.filter((c) => c.stream === "stdout").reduce((n, c) => n + c.data.byteLength, 0),
    10,
  );
  t.is(joined(fromOffset, "stderr"), "of-stderr\n");
});

test("reading the output of an unknown run fails", async (t) => {
  const dir = await dataDir();
  await t.throwsAsync(collect(readOutput(runDirOf(dir, "nope", 1))), { instanceOf: RunNotFoundError });
});

test("an aborted follow ends quietly", async (t) => {
  const s = started();
  const r = await run(["sleep", "60"], { onStart: s.onStart });
  await s.pid;
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 300);
  const t0 = Date.now();
  await collect(readOutput(r.runDir, { follow: true, isEnded: () => r.ended, signal: ac.signal }));
  t.true(Date.now() - t0 < 1_000);
  r.kill(0);
  t.true((await r.done).killed);
});

/** The run shim that scripts/setup.sh builds; a test needing it fails with the install step. */
function shimPath(): string {
  const shim = findShim();
  if (!shim)
    throw new Error("bin/crms-shim is missing: run `bash scripts/setup.sh` (it builds the shim with go build)");
  return shim;
}

test("through the shim, a kill that comes after the spawn but before the pid is known still ends the run", async (t) => {
  // A shim that takes a second to start the command: the kill lands while the worker waits for the pid.
  const dir = await dataDir();
  const slow = path.join(dir, "slow-shim");
  await writeFile(slow, `#!/bin/sh\nsleep 1\nexec ${shimPath()} "$@"\n`);
  await chmod(slow, 0o755);
  const s = started();
  const r = await run(["sleep", "60"], { onStart: s.onStart, shim: { path: slow, killGraceSeconds: 2 } });
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.is(r.pid, 0, "the pid is not known yet");
  const t0 = Date.now();
  r.kill(1, "killed by request");
  const outcome = await Promise.race([
    r.done,
    new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 15_000)),
  ]);
  t.truthy(outcome, `the run still went on ${Date.now() - t0} ms after the kill`);
  t.true(outcome?.killed);
  t.true((await s.pid) > 0, "it was reported started");
  t.true(await groupGone(await s.pid));
});

test("through the shim, a command that ends at once is still reported started with its pid", async (t) => {
  const shim = shimPath();
  for (let i = 0; i < 20; i++) {
    let startCalls = 0;
    const r = await run(["true"], { onStart: () => startCalls++, shim: { path: shim, killGraceSeconds: 2 } });
    const outcome = await r.done;
    t.is(outcome.exitCode, 0);
    t.is(startCalls, 1, `run ${i}: onStart was called ${startCalls} times`);
    t.true(outcome.pid > 0);
  }
});

/**
 * Each write waits until the one before reached its file (the job's cwd is
 * the run directory): the shim keeps the order it read in, which is the
 * order written only for writes further apart than it takes to read them.
 */
const INTERLEAVED = [
  "sh",
  "-c",
  "w() { while [ $(cat stdout stderr | wc -c) -lt $1 ]; do sleep 0.01; done; }; echo a; w 2; echo b >&2; w 4; echo c; w 6; echo d >&2",
];
const chunkList = (chunks: OutputChunk[]) => chunks.map((c) => [c.stream, text(c.data), c.offset]);

test("through the shim, output is read back in the order it was written, finished or followed", async (t) => {
  const s = started();
  const r = await run(INTERLEAVED, { onStart: s.onStart, shim: { path: shimPath(), killGraceSeconds: 2 } });
  await s.pid;
  const followed = collect(readOutput(r.runDir, { follow: true, isEnded: () => r.ended }));
  t.is((await r.done).exitCode, 0);
  const want = [
    ["stdout", "a\n", 0],
    ["stderr", "b\n", 0],
    ["stdout", "c\n", 2],
    ["stderr", "d\n", 2],
  ];
  t.deepEqual(chunkList(await collect(readOutput(r.runDir))), want);
  t.deepEqual(chunkList(await followed), want);
  // From offsets: what is left of each stream, still in order.
  t.deepEqual(chunkList(await collect(readOutput(r.runDir, { stdoutOffset: 2, stderrOffset: 1 }))), [
    ["stderr", "\n", 1],
    ["stdout", "c\n", 2],
    ["stderr", "d\n", 2],
  ]);
});

test("without the shim's order index, output is read as stdout, then stderr", async (t) => {
  const r = await run(INTERLEAVED);
  await r.done;
  t.deepEqual(chunkList(await collect(readOutput(r.runDir))), [
    ["stdout", "a\nc\n", 0],
    ["stderr", "b\nd\n", 0],
  ]);
});
