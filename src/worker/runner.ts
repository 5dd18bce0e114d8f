/**
 * Runs one assigned job as a real process: its own process group, stdout and
 * stderr written straight to files in its run directory, an optional timeout,
 * and a kill that leaves no process of the group behind. Also reads a run's
 * output files back from offsets, optionally following them while it runs.
 */
import { spawn } from "node:child_process";
import {
  accessSync,
  chownSync,
  closeSync,
  constants,
  fstatSync,
  mkdirSync,
  openSync,
  readSync,
  statSync,
} from "node:fs";
import { type FileHandle, open, readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { WORKER_DEFAULTS } from "../config.js";
import type { RunAs } from "./run-as.js";
import {
  type ExitRecord,
  type PidRecord,
  processAlive,
  type RunUsage,
  readExitRecord,
  readPidRecord,
  type ShimOptions,
  usageOf,
} from "./shim.js";

/** The part of a JobSpec a run needs (a generated JobSpec fits as is). */
export interface RunSpec {
  /** argv; the first element is the program, looked up in PATH. */
  command: readonly string[];
  /** Variables added to the filtered worker environment. */
  env?: Readonly<Record<string, string>>;
  /** Working directory; empty means the run directory. Relative paths are resolved against the run directory. */
  workingDir?: string;
  /** Wall-clock limit in seconds; 0 means none. */
  timeoutSeconds?: number;
  /** Not fenced: the run goes on while its worker is cut off (JobSpec.keep_on_disconnect). */
  keepOnDisconnect?: boolean;
  /** What it asked for; memoryBytes > 0 is enforced as its memory limit (see crms-shim's limits.go). */
  resources?: { memoryBytes?: bigint } | undefined;
}

/** What startRun needs to know. */
export interface RunOptions {
  jobId: string;
  attempt: number;
  spec: RunSpec;
  /** The worker's data directory; the run writes to `<dataDir>/runs/<jobId>.<attempt>/`. */
  dataDir: string;
  /** Name of the worker, given to the job as CRMS_WORKER. */
  workerName: string;
  /** Bytes kept of each stream for the outcome's tails; default WORKER_DEFAULTS.tailBytes (2048). */
  tailBytes?: number;
  /** Base environment before filtering; default process.env. */
  baseEnv?: NodeJS.ProcessEnv;
  /** Seconds between SIGTERM and SIGKILL when the timeout fires; default 5. */
  timeoutGraceSeconds?: number;
  /** Called once the process exists, with its pid (which is also its process group id). */
  onStart?: (pid: number) => void;
  /** Run the job as this account (the worker must be root); the run directory is given to it. */
  runAs?: RunAs;
  /** Run it through the run shim, so it outlives the worker; unset: as a child of the worker. */
  shim?: ShimOptions;
  /** Re-adopt a run an earlier worker process started through the shim (its pid record). */
  adopt?: PidRecord;
  /** GPU indices reserved for the run (Assign.gpu_indices): CUDA_VISIBLE_DEVICES, and gpu_seconds. */
  gpuIndices?: readonly number[];
}

/** How a run ended. */
export interface RunOutcome {
  /** Exit code, when the process exited on its own. */
  exitCode?: number;
  /** Signal name, when a signal ended it; "" otherwise. */
  signal: string;
  /** Why it failed to start or was ended, in one line; "" otherwise. */
  error: string;
  /** Ended because it passed spec.timeoutSeconds. */
  timedOut: boolean;
  /** Ended because of a kill request. */
  killed: boolean;
  /** Ended because the worker was cut off from the control plane for the grace (by the worker or its shim). */
  fenced: boolean;
  /** Last tailBytes bytes of stdout. */
  stdoutTail: Uint8Array;
  /** Last tailBytes bytes of stderr. */
  stderrTail: Uint8Array;
  /** Process id; 0 if it never started. */
  pid: number;
  /**
   * What it used, from the shim's record (wait4 rusage); undefined when it
   * never ran, or ran without the shim (Node cannot measure a child's rusage).
   */
  usage?: RunUsage;
}

/** Which output file. */
export type StreamName = "stdout" | "stderr";

/** Environment variable names the worker never passes on to jobs. */
export const CREDENTIAL_NAME = /TOKEN|SECRET|PASSWORD|KEY|CRMS_/i;

const DEFAULT_TIMEOUT_GRACE_SECONDS = 5;
/** How long leftovers of a group whose leader exited on its own get after SIGTERM. */
const LEFTOVER_GRACE_MS = 2_000;
const GROUP_POLL_MS = 50;
/** Largest chunk readOutput yields (OutputData.data is at most 64 KiB). */
export const MAX_CHUNK_BYTES = 64 * 1024;
const FOLLOW_POLL_MS = 100;
/** The error of a run ended by fencing. */
const FENCED_ERROR = "fenced: the worker was cut off from the control plane for its grace period";
/** How often a re-adopted run's records are checked for its end. */
const ADOPTED_POLL_MS = 200;

/** Directory of one run's output files. Throws for a job id that is not a plain file name. */
export function runDirOf(dataDir: string, jobId: string, attempt: number): string {
  if (!/^[A-Za-z0-9._-]+$/.test(jobId) || jobId === "." || jobId === "..") {
    throw new Error(`invalid job id for a run directory: ${JSON.stringify(jobId)}`);
  }
  return path.join(dataDir, "runs", `${jobId}.${attempt}`);
}

/** The environment of a job: the worker's, minus credentials, plus the spec's, plus CRMS_* identifiers. */
export function jobEnv(
  base: NodeJS.ProcessEnv,
  specEnv: Readonly<Record<string, string>>,
  ids: { jobId: string; attempt: number; workerName: string },
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(base)) {
    if (value !== undefined && !CREDENTIAL_NAME.test(name)) env[name] = value;
  }
  Object.assign(env, specEnv);
  env.CRMS_JOB_ID = ids.jobId;
  env.CRMS_ATTEMPT = String(ids.attempt);
  env.CRMS_WORKER = ids.workerName;
  return env;
}

/**
 * Whether any live process is in the group. kill(-pgid, 0) alone also counts
 * zombies, which stay forever under a PID 1 that does not reap orphans (many
 * containers), so on Linux a positive answer is checked against /proc.
 */
export async function processGroupAlive(pgid: number): Promise<boolean> {
  try {
    process.kill(-pgid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ESRCH") return false;
    return true; // EPERM: it exists, but is not ours to signal
  }
  if (process.platform !== "linux") return true;
  let entries: string[];
  try {
    entries = await readdir("/proc");
  } catch {
    return true;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    let statLine: string;
    try {
      statLine = await readFile(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue; // exited meanwhile
    }
    // Fields after the command name (which may hold spaces and parentheses): state ppid pgrp ...
    const fields = statLine.slice(statLine.lastIndexOf(")") + 2).split(" ");
    if (Number(fields[2]) === pgid && fields[0] !== "Z" && fields[0] !== "X") return true;
  }
  return false;
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
  }
}

/** Waits until the group has no live process or the deadline passes; true if it emptied. */
async function waitGroupGone(pgid: number, deadline: number): Promise<boolean> {
  for (;;) {
    if (!(await processGroupAlive(pgid))) return true;
    if (Date.now() >= deadline) return false;
    await sleep(Math.min(GROUP_POLL_MS, Math.max(1, deadline - Date.now())));
  }
}

/** The last `bytes` bytes (a few KiB) of an open file. */
function tailOf(fd: number, bytes: number): Uint8Array {
  const { size } = fstatSync(fd);
  const length = Math.min(size, bytes);
  if (length === 0) return new Uint8Array(0);
  const buf = Buffer.alloc(length);
  const bytesRead = readSync(fd, buf, 0, length, size - length);
  return new Uint8Array(buf.buffer, buf.byteOffset, bytesRead);
}

function errnoOf(value: unknown): string | undefined {
  const code = (value as { code?: unknown } | undefined)?.code;
  return typeof code === "string" ? code : undefined;
}

function spawnError(program: string, code: string | undefined, message: string): string {
  switch (code) {
    case "ENOENT":
      return `command not found: ${program}`;
    case "EACCES":
      return `permission denied: ${program}`;
    default:
      return `cannot start ${program}: ${code ?? message.split("\n")[0]}`;
  }
}

/** Creates (truncates) both output files, opened for reading too so the tails come from the same descriptors. */
function openOutputFiles(runDir: string): [number, number] {
  const stdout = openSync(path.join(runDir, "stdout"), "w+");
  try {
    return [stdout, openSync(path.join(runDir, "stderr"), "w+")];
  } catch (err) {
    closeSync(stdout);
    throw err;
  }
}

/**
 * One run of one job attempt. Created by startRun; `done` resolves (never
 * rejects) once the process and every process of its group are gone.
 */
export class Run {
  readonly jobId: string;
  readonly attempt: number;
  readonly runDir: string;
  /** Process id (and process group id) once started; 0 before or if it never started. */
  pid = 0;
  /** True once `done` has resolved. */
  ended = false;
  /** The outcome, once the run and its group are gone. */
  readonly done: Promise<RunOutcome>;

  #options: RunOptions;
  #killed = false;
  #fenced = false;
  #timedOut = false;
  #killReason = "";
  #killDeadline = 0;
  #killTimer: NodeJS.Timeout | undefined;
  #timeoutTimer: NodeJS.Timeout | undefined;
  #detached = false;
  #unrefs: (() => void)[] = [];

  constructor(options: RunOptions) {
    this.#options = options;
    this.jobId = options.jobId;
    this.attempt = options.attempt;
    this.runDir = path.resolve(runDirOf(options.dataDir, options.jobId, options.attempt));
    if (options.adopt) this.pid = options.adopt.pid;
    this.done = (options.adopt ? this.#watchAdopted(options.adopt) : this.#execute()).then((outcome) => {
      this.ended = true;
      return outcome;
    });
  }

  /** Re-adopted from an earlier worker process. */
  get adopted(): boolean {
    return this.#options.adopt !== undefined;
  }

  /** Whether the worker's fencing ends this run when it is cut off. */
  get fenced(): boolean {
    return !this.#options.spec.keepOnDisconnect;
  }

  /**
   * Lets the run go on without this process (stop --keep-runs): stops
   * watching it and lets the worker exit. `done` never resolves after this.
   */
  detach(): void {
    this.#detached = true;
    clearTimeout(this.#killTimer);
    clearTimeout(this.#timeoutTimer);
    for (const unref of this.#unrefs) unref();
  }

  /** True once kill() was called or the timeout fired. */
  get stopping(): boolean {
    return this.#killDeadline > 0;
  }

  /**
   * Ends the run: SIGTERM to its process group now, SIGKILL to the group after
   * graceSeconds. Before the process exists, it is simply never started.
   * A second call can only shorten the grace.
   */
  kill(graceSeconds: number, reason = "killed"): void {
    if (this.ended) return;
    if (!this.#timedOut && !this.#killed) {
      this.#killed = true;
      this.#killReason = reason;
    }
    this.#terminate(graceSeconds);
  }

  /** Ends the run because the worker is cut off (fencing): like kill, but the outcome says fenced. */
  fence(graceSeconds: number): void {
    if (this.ended) return;
    if (!this.#timedOut && !this.#killed) this.#fenced = true;
    this.#terminate(graceSeconds);
  }

  #terminate(graceSeconds: number): void {
    const deadline = Date.now() + Math.max(0, graceSeconds) * 1000;
    if (this.#killDeadline !== 0 && deadline >= this.#killDeadline) return;
    this.#killDeadline = deadline;
    this.#signalGroup();
  }

  /**
   * SIGTERM to the process group now, SIGKILL at the kill deadline. Before the
   * pid is known it waits: #execute checks the deadline before spawning, and
   * #started signals once the pid arrives (through the shim, that is later
   * than the spawn, so a kill can come in between).
   */
  #signalGroup(): void {
    if (this.pid === 0) return;
    signalGroup(this.pid, "SIGTERM");
    clearTimeout(this.#killTimer);
    this.#killTimer = setTimeout(() => signalGroup(this.pid, "SIGKILL"), Math.max(0, this.#killDeadline - Date.now()));
  }

  async #execute(): Promise<RunOutcome> {
    const { spec, tailBytes = WORKER_DEFAULTS.tailBytes } = this.#options;
    const outcome = (fields: Partial<RunOutcome>): RunOutcome => this.#outcome(fields);
    const program = spec.command[0];
    if (program === undefined || program === "") return outcome({ error: "empty command" });
    // From here to the spawn, the file system calls are synchronous: each is one
    // local syscall of a few microseconds, where the promise form costs a
    // thread-pool round trip and an event-loop turn each, on a busy machine
    // milliseconds before the job starts.
    try {
      mkdirSync(this.runDir, { recursive: true });
      const runAs = this.#options.runAs;
      if (runAs) chownSync(this.runDir, runAs.uid, runAs.gid);
    } catch (err) {
      return outcome({ error: `cannot create run directory ${this.runDir}: ${errnoOf(err) ?? String(err)}` });
    }
    const cwd = spec.workingDir ? path.resolve(this.runDir, spec.workingDir) : this.runDir;
    if (spec.workingDir) {
      try {
        if (!(await stat(cwd)).isDirectory()) return outcome({ error: `working directory is not a directory: ${cwd}` });
      } catch (err) {
        const code = errnoOf(err);
        return outcome({
          error:
            code === "ENOENT"
              ? `working directory does not exist: ${cwd}`
              : `working directory not usable: ${cwd} (${code ?? String(err)})`,
        });
      }
    }
    // Never spawned within the caller's turn: a kill() right after startRun means it never starts.
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (this.#killDeadline !== 0) return outcome({ error: "killed before it started" });

    let files: [number, number];
    try {
      files = openOutputFiles(this.runDir);
    } catch (err) {
      return outcome({ error: `cannot create output files in ${this.runDir}: ${errnoOf(err) ?? String(err)}` });
    }
    const [stdout, stderr] = files;
    try {
      const fields = this.#options.shim
        ? await this.#spawnShimAndWait(this.#options.shim, cwd, stdout, stderr)
        : await this.#spawnAndWait(program, cwd, stdout, stderr);
      return outcome({ ...fields, stdoutTail: tailOf(stdout, tailBytes), stderrTail: tailOf(stderr, tailBytes) });
    } finally {
      closeSync(stdout);
      closeSync(stderr);
    }
  }

  /** The environment of the job's process. */
  #env(): Record<string, string> {
    const { spec, runAs } = this.#options;
    const env = jobEnv(this.#options.baseEnv ?? process.env, spec.env ?? {}, {
      jobId: this.jobId,
      attempt: this.attempt,
      workerName: this.#options.workerName,
    });
    if (runAs) Object.assign(env, { USER: runAs.user, LOGNAME: runAs.user, HOME: runAs.home });
    const gpus = this.#options.gpuIndices ?? [];
    if (gpus.length > 0) env.CUDA_VISIBLE_DEVICES = gpus.join(",");
    return env;
  }

  #started(pid: number): void {
    this.pid = pid;
    if (this.#killDeadline !== 0) this.#signalGroup();
    try {
      this.#options.onStart?.(pid);
    } catch {
      // A failing observer must not lose the run.
    }
  }

  /**
   * Starts the shim (in a session of its own, on the given output fds) and
   * waits for it to exit; it tells the command's pid on fd 3 and records how
   * the run ended in the run directory. The shim enforces the timeout.
   */
  async #spawnShimAndWait(shim: ShimOptions, cwd: string, stdoutFd: number, stderrFd: number) {
    const { spec, runAs } = this.#options;
    // The run directory as an open descriptor (fd 4): a run as another user may not reach it by its path.
    const args = ["-dir-fd", "4", "-notify-fd", "3", "-kill-grace", String(shim.killGraceSeconds)];
    if (shim.leaseFile) args.push("-lease", shim.leaseFile);
    if (spec.keepOnDisconnect) args.push("-keep");
    if ((spec.timeoutSeconds ?? 0) > 0) {
      const grace = this.#options.timeoutGraceSeconds ?? DEFAULT_TIMEOUT_GRACE_SECONDS;
      args.push("-timeout", String(spec.timeoutSeconds), "-timeout-grace", String(grace));
    }
    const memory = spec.resources?.memoryBytes ?? 0n;
    if (memory > 0n) args.push("-memory", String(memory));
    const gpus = this.#options.gpuIndices?.length ?? 0;
    if (gpus > 0) args.push("-gpus", String(gpus));
    args.push("--", ...spec.command);
    let dirFd: number;
    try {
      dirFd = openSync(this.runDir, "r");
    } catch (err) {
      return { error: `cannot open the run directory ${this.runDir}: ${errnoOf(err) ?? String(err)}` };
    }
    let child: ReturnType<typeof spawn>;
    let exited: Promise<{ code: number | null; error?: string }>;
    try {
      child = spawn(shim.path, args, {
        cwd,
        env: this.#env(),
        ...(runAs ? { uid: runAs.uid, gid: runAs.gid } : {}),
        detached: true,
        stdio: ["ignore", stdoutFd, stderrFd, "pipe", dirFd],
      });
      // Listened for before any await: a shim that ends at once (command not found) must not be missed.
      const spawned = child;
      exited = new Promise((resolve) => {
        spawned.once("error", (err) => resolve({ code: null, error: errnoOf(err) ?? err.message }));
        spawned.once("exit", (code) => resolve({ code }));
      });
    } finally {
      closeSync(dirFd);
    }
    this.#unrefs.push(() => {
      child.unref();
      child.stdio[3]?.destroy();
    });
    const notify = child.stdio[3];
    let text = "";
    notify?.on("data", (d: Buffer) => {
      text += d.toString();
      const line = text.split("\n")[0] ?? "";
      const pid = Number(line);
      if (text.includes("\n") && pid > 0 && this.pid === 0) this.#started(pid);
    });
    notify?.on("error", () => undefined);
    const notified = new Promise<void>((resolve) => {
      if (!notify) return resolve();
      notify.once("close", resolve);
      notify.once("end", resolve);
      setTimeout(resolve, 1000).unref();
    });
    const status = await exited;
    // A command that ends at once: the shim's exit can be seen before its pid line is read.
    await notified;
    if (this.pid === 0 && !status.error) {
      const pid = (await readPidRecord(this.runDir))?.pid ?? 0;
      if (pid > 0) this.#started(pid);
    }
    clearTimeout(this.#killTimer);
    if (status.error) {
      return { error: `cannot start the run shim ${shim.path}: ${status.error}` };
    }
    const record = await readExitRecord(this.runDir);
    if (!record) return { error: `the run shim exited (status ${status.code}) without recording how the run ended` };
    return this.#fromRecord(record);
  }

  /** The outcome fields of a shim's exit record, merged with what this worker knows (a kill it sent). */
  #fromRecord(record: ExitRecord): Partial<RunOutcome> {
    if (record.timed_out) this.#timedOut = true;
    if (record.fenced && !this.#timedOut) this.#fenced = true;
    if (record.killed && !this.#timedOut) this.#killed = true;
    let error = record.error ?? "";
    if (!error && this.#killed) error = this.#killReason || "killed";
    if (!error && this.#fenced) error = FENCED_ERROR;
    const usage = usageOf(record);
    return {
      ...(record.exit_code !== undefined ? { exitCode: record.exit_code } : {}),
      signal: record.signal ?? "",
      error,
      ...(usage ? { usage } : {}),
    };
  }

  /** Follows a re-adopted run until its shim records the end (or is found gone without a record). */
  async #watchAdopted(rec: PidRecord): Promise<RunOutcome> {
    const { tailBytes = WORKER_DEFAULTS.tailBytes } = this.#options;
    let fields: Partial<RunOutcome> | undefined;
    for (;;) {
      const record = await readExitRecord(this.runDir);
      if (record) {
        fields = this.#fromRecord(record);
        break;
      }
      const shimAlive = await processAlive(rec.shim);
      const runAlive = await processAlive(rec.pid, rec.start);
      if (!shimAlive) {
        const late = await readExitRecord(this.runDir);
        if (late) {
          fields = this.#fromRecord(late);
          break;
        }
        // The shim was killed: nobody can tell the exit status. End what is left of the group.
        if (runAlive) signalGroup(rec.pid, "SIGKILL");
        fields = { signal: "", error: "the run shim was gone without recording how the run ended" };
        break;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ADOPTED_POLL_MS);
        this.#unrefs.push(() => timer.unref());
        if (this.#detached) timer.unref();
      });
    }
    clearTimeout(this.#killTimer);
    const tails = (["stdout", "stderr"] as const).map((stream) => {
      try {
        const fd = openSync(path.join(this.runDir, stream), "r");
        try {
          return tailOf(fd, tailBytes);
        } finally {
          closeSync(fd);
        }
      } catch {
        return new Uint8Array(0);
      }
    });
    return this.#outcome({ ...fields, stdoutTail: tails[0], stderrTail: tails[1] });
  }

  /** Spawns the process on the given output fds and waits until it and its group are gone. */
  async #spawnAndWait(program: string, cwd: string, stdoutFd: number, stderrFd: number): Promise<Partial<RunOutcome>> {
    const { spec, runAs } = this.#options;
    // Plain spawn on the output files' descriptors (nothing is piped through
    // this process), in a process group of its own. No execa: its hundred-odd
    // modules were a sixth of an idle worker's own memory, and it adds work to
    // every spawn.
    const env = this.#env();
    let argv = [program, ...spec.command.slice(1)];
    const memory = spec.resources?.memoryBytes ?? 0n;
    if (memory > 0n) {
      // Looked up here for the error texts a spawn gives; sh then finds the same program.
      const found = lookPath(program, env.PATH ?? "", cwd);
      if (typeof found !== "string") return { error: spawnError(program, found.code, "") };
      argv = limitedArgv(memory, argv);
    }
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: unknown }>((resolve) => {
      let child: ReturnType<typeof spawn>;
      try {
        child = spawn(argv[0] as string, argv.slice(1), {
          cwd,
          env,
          ...(runAs ? { uid: runAs.uid, gid: runAs.gid } : {}),
          detached: true,
          stdio: ["ignore", stdoutFd, stderrFd],
        });
      } catch (error) {
        resolve({ code: null, signal: null, error });
        return;
      }
      // Listened for before anything else: a command that cannot start reports it here, at once.
      child.once("error", (error) => resolve({ code: null, signal: null, error }));
      child.once("exit", (code, signal) => resolve({ code, signal }));
      if (child.pid !== undefined) this.#spawned(child.pid);
    });
    const result = await exited;
    clearTimeout(this.#timeoutTimer);

    if (this.pid === 0) {
      const err = result.error as Error | undefined;
      return { error: spawnError(program, errnoOf(err), err?.message ?? "") };
    }
    // The leader is gone; no process of its group may outlive the run.
    if (await processGroupAlive(this.pid)) {
      if (this.#killDeadline === 0) signalGroup(this.pid, "SIGTERM");
      const deadline = this.#killDeadline !== 0 ? this.#killDeadline : Date.now() + LEFTOVER_GRACE_MS;
      if (!(await waitGroupGone(this.pid, deadline))) {
        signalGroup(this.pid, "SIGKILL");
        await waitGroupGone(this.pid, Date.now() + 1_000);
      }
    }
    clearTimeout(this.#killTimer);

    let error = "";
    if (this.#timedOut) error = `timed out after ${spec.timeoutSeconds}s`;
    else if (this.#killed) error = this.#killReason;
    else if (this.#fenced) error = FENCED_ERROR;
    return {
      ...(result.code !== null ? { exitCode: result.code } : {}),
      signal: result.signal ?? "",
      error,
    };
  }

  /** The process exists (spawned without the shim): kill or timeout as asked, then tell onStart. */
  #spawned(pid: number): void {
    const { spec } = this.#options;
    this.pid = pid;
    if (this.#killDeadline !== 0) {
      this.#terminate((this.#killDeadline - Date.now()) / 1000);
    } else if ((spec.timeoutSeconds ?? 0) > 0) {
      this.#timeoutTimer = setTimeout(
        () => {
          if (this.#killed || this.ended) return;
          this.#timedOut = true;
          this.#terminate(this.#options.timeoutGraceSeconds ?? DEFAULT_TIMEOUT_GRACE_SECONDS);
        },
        (spec.timeoutSeconds ?? 0) * 1000,
      );
    }
    try {
      this.#options.onStart?.(pid);
    } catch {
      // A failing observer must not lose the run.
    }
  }

  #outcome(fields: Partial<RunOutcome>): RunOutcome {
    return {
      signal: "",
      error: "",
      stdoutTail: new Uint8Array(0),
      stderrTail: new Uint8Array(0),
      ...fields,
      timedOut: this.#timedOut,
      killed: this.#killed,
      fenced: this.#fenced,
      pid: this.pid,
    };
  }
}

/**
 * Where a program is, as execvp would find it in `pathVar` (relative entries
 * against cwd), or the errno why not.
 */
function lookPath(program: string, pathVar: string, cwd: string): string | { code: "ENOENT" | "EACCES" } {
  const candidates = program.includes("/")
    ? [path.resolve(cwd, program)]
    : pathVar.split(":").map((dir) => path.resolve(cwd, dir || ".", program));
  let denied = false;
  for (const candidate of candidates) {
    try {
      if (statSync(candidate).isDirectory()) {
        denied = true;
        continue;
      }
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch (err) {
      if (errnoOf(err) === "EACCES") denied = true;
    }
  }
  return { code: denied ? "EACCES" : "ENOENT" };
}

/**
 * The argv that runs `argv` under an address-space limit of `bytes` without
 * the shim: sh's `ulimit -v`, then exec. Best effort, like the shim's
 * fallback (see crms-shim's limits.go).
 */
function limitedArgv(bytes: bigint, argv: string[]): string[] {
  const kib = String(bytes / 1024n > 0n ? bytes / 1024n : 1n);
  return ["/bin/sh", "-c", 'ulimit -v "$1" || exit 126; shift; exec "$@"', "crms-limit", kib, ...argv];
}

/** Starts one run; see Run. Never throws for a bad command: the outcome says what went wrong. */
export function startRun(options: RunOptions): Run {
  return new Run(options);
}

/** A piece of a run's output. */
export interface OutputChunk {
  stream: StreamName;
  /** At most MAX_CHUNK_BYTES bytes. */
  data: Uint8Array;
  /** Offset of data[0] within its stream's file. */
  offset: number;
}

/** Options of readOutput. */
export interface ReadOutputOptions {
  /** Where to start reading stdout; default 0. */
  stdoutOffset?: number;
  /** Where to start reading stderr; default 0. */
  stderrOffset?: number;
  /** Keep polling for new output until isEnded() says the run is over, then drain and end. */
  follow?: boolean;
  /** Whether the run is over; default: it is (nothing will be written any more). */
  isEnded?: () => boolean;
  /** Stops reading; the generator then ends quietly. */
  signal?: AbortSignal;
  /** Poll interval when following; default 100 ms. */
  pollMs?: number;
  /** Chunk size, at most MAX_CHUNK_BYTES (the default). */
  chunkBytes?: number;
}

/** Thrown by readOutput when the run directory does not exist and the run is not starting. */
export class RunNotFoundError extends Error {
  constructor(runDir: string) {
    super(`no output on this worker: ${runDir} does not exist`);
    this.name = "RunNotFoundError";
  }
}

/** The order index the run shim keeps beside the output files (clients/go/cmd/crms-shim/output.go). */
const ORDER_FILE = "output.order";
const ORDER_RECORD_BYTES = 8;
const ORDER_STREAMS: Record<number, StreamName> = { 1: "stdout", 2: "stderr" };

/**
 * Reads a run's stdout and stderr from the given offsets in chunks, in the
 * order they were written when the run shim kept an order index, else
 * stdout, then stderr. Without follow it ends at the current end of both
 * files; with follow it polls until the run has ended, then reads what is
 * left and ends.
 */
export async function* readOutput(runDir: string, options: ReadOutputOptions = {}): AsyncGenerator<OutputChunk> {
  const isEnded = options.isEnded ?? (() => true);
  const chunkBytes = Math.max(1, Math.min(options.chunkBytes ?? MAX_CHUNK_BYTES, MAX_CHUNK_BYTES));
  const pollMs = options.pollMs ?? FOLLOW_POLL_MS;
  const signal = options.signal;
  const offsets: Record<StreamName, number> = {
    stdout: options.stdoutOffset ?? 0,
    stderr: options.stderrOffset ?? 0,
  };
  const handles: Partial<Record<StreamName | typeof ORDER_FILE, FileHandle>> = {};
  let orderOffset = 0;
  const handleOf = async (name: StreamName | typeof ORDER_FILE): Promise<FileHandle | undefined> => {
    try {
      handles[name] ??= await open(path.join(runDir, name), "r");
    } catch {
      // not created yet (or the run never started, or ran without the shim's index)
    }
    return handles[name];
  };
  const sizeOf = async (stream: StreamName): Promise<number> => (await (await handleOf(stream))?.stat())?.size ?? 0;
  /** The runs of bytes the order index added since the last call: [stream, offset where the run ends]. */
  const newRuns = async (): Promise<[StreamName, number][]> => {
    const order = await handleOf(ORDER_FILE);
    if (!order) return [];
    const { size } = await order.stat();
    const length = Math.floor((size - orderOffset) / ORDER_RECORD_BYTES) * ORDER_RECORD_BYTES;
    if (length <= 0) return [];
    const buf = Buffer.alloc(length);
    const { bytesRead } = await order.read(buf, 0, length, orderOffset);
    const runs: [StreamName, number][] = [];
    for (let i = 0; i + ORDER_RECORD_BYTES <= bytesRead; i += ORDER_RECORD_BYTES) {
      const stream = ORDER_STREAMS[buf[i] ?? 0];
      if (!stream) break; // not a record: read on as if there were no more
      runs.push([stream, (buf[i + 1] ?? 0) * 2 ** 48 + buf.readUIntBE(i + 2, 6)]);
      orderOffset += ORDER_RECORD_BYTES;
    }
    return runs;
  };
  /** Yields stream from its offset up to end. */
  async function* upTo(stream: StreamName, end: number): AsyncGenerator<OutputChunk> {
    const handle = offsets[stream] < end ? await handleOf(stream) : undefined;
    while (handle && offsets[stream] < end && !signal?.aborted) {
      const length = Math.min(chunkBytes, end - offsets[stream]);
      const buf = Buffer.alloc(length);
      const { bytesRead } = await handle.read(buf, 0, length, offsets[stream]);
      if (bytesRead === 0) return; // truncated underneath us
      const offset = offsets[stream];
      offsets[stream] += bytesRead;
      yield { stream, data: new Uint8Array(buf.buffer, buf.byteOffset, bytesRead), offset };
    }
  }
  try {
    for (;;) {
      // Sample "ended" before reading, so a final read always follows the end.
      const endedBefore = isEnded();
      try {
        await stat(runDir);
      } catch {
        if (endedBefore) throw new RunNotFoundError(runDir);
      }
      // The sizes before the index: a byte within them that no record covers
      // yet belongs to the run of bytes being written now, which can only be
      // one stream's (the shim records a run's end before the other stream's
      // next bytes). Without an index this is stdout, then stderr.
      const sizes = { stdout: await sizeOf("stdout"), stderr: await sizeOf("stderr") };
      for (const [stream, end] of await newRuns()) yield* upTo(stream, end);
      yield* upTo("stdout", sizes.stdout);
      yield* upTo("stderr", sizes.stderr);
      if (!options.follow || endedBefore || signal?.aborted) return;
      try {
        await sleep(pollMs, undefined, signal ? { signal } : {});
      } catch {
        return; // aborted
      }
    }
  } finally {
    await Promise.all(Object.values(handles).map((h) => h?.close()));
  }
}
