/**
 * The crms worker: one Attach session at a time to a control-plane replica,
 * running what it is assigned (see runner.ts) and reporting back. Runs belong
 * to the worker, not to a session: when the stream breaks they keep going, the
 * worker reconnects (cycling through its servers) and reports them in Hello,
 * with every finished report the control plane has not acknowledged yet.
 */
import { randomUUID } from "node:crypto";
import { EventEmitter, once } from "node:events";
import { existsSync } from "node:fs";
import { access, mkdir, readdir, writeFile } from "node:fs/promises";
import { hostname as osHostname } from "node:os";
import path from "node:path";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import { ServiceTransport } from "../../clients/typescript/src/transport.js";
import { OutputStream } from "../../gen/crms/v1/job_pb.js";
import {
  type Assign,
  type AttachRequest,
  AttachRequestSchema,
  type AttachResponse,
  type JobFinished,
  JobFinishedSchema,
  type Kill,
  type OutputRequest,
  type Welcome,
  WorkerService,
} from "../../gen/crms/v1/worker_pb.js";
import { WORKER_DEFAULTS } from "../config.js";
import { createTextLogger, type Logger } from "../log.js";
import { workerNameProblem } from "../rpc/names.js";
import { describeResources, detectResources, type WorkerResources } from "./resources.js";
import type { RunAs } from "./run-as.js";
import { type Run, type RunOutcome, readOutput, runDirOf, startRun } from "./runner.js";
import {
  ACKED_FILE,
  findShim,
  Lease,
  memoryLimitOf,
  type PidRecord,
  readExitRecord,
  readPidRecord,
  SHIM_INSTALL,
} from "./shim.js";
import { shipOutput } from "./ship-output.js";

/** Lifecycle of a worker process (not the control plane's WorkerState, which is its liveness). */
export type WorkerLifecycleState = "INITIALIZED" | "CONNECTING" | "RUNNING" | "DRAINING" | "STOPPING" | "STOPPED";

/**
 * Allowed transitions. CONNECTING means "no accepted session": it is entered
 * at start and whenever a session ends. DRAINING is sticky across reconnects.
 */
export const WORKER_TRANSITIONS: Readonly<Record<WorkerLifecycleState, readonly WorkerLifecycleState[]>> = {
  INITIALIZED: ["CONNECTING", "STOPPED"],
  CONNECTING: ["RUNNING", "DRAINING", "STOPPING"],
  RUNNING: ["CONNECTING", "DRAINING", "STOPPING"],
  DRAINING: ["CONNECTING", "RUNNING", "STOPPING"],
  STOPPING: ["STOPPED"],
  STOPPED: [],
};

/** Thrown when a lifecycle call or transition is not allowed in the current state. */
export class IllegalStateError extends Error {
  constructor(
    readonly from: WorkerLifecycleState,
    readonly to: WorkerLifecycleState | string,
  ) {
    super(`worker cannot go from ${from} to ${to}`);
    this.name = "IllegalStateError";
  }
}

/** The one transition function: returns `to`, or throws IllegalStateError. */
export function nextWorkerState(from: WorkerLifecycleState, to: WorkerLifecycleState): WorkerLifecycleState {
  if (!WORKER_TRANSITIONS[from].includes(to)) throw new IllegalStateError(from, to);
  return to;
}

/** Options of createWorker. */
export interface WorkerOptions {
  /** Unique worker name. */
  name: string;
  /** Parallel slots (the control plane counts them; the worker runs what it is given). */
  slots: number;
  /**
   * What it offers instead of what start() detects (CPUs the process may use,
   * total memory, GPUs from `nvidia-smi -L`), each field on its own; sent in Hello.
   */
  resources?: Partial<WorkerResources>;
  /** Control-plane addresses (host:port), tried in turn on each (re)connect. */
  servers: string[];
  /** Labels matched by job constraints. */
  labels: Record<string, string>;
  /** Where runs keep their output: `<dataDir>/runs/<jobId>.<attempt>/{stdout,stderr}`. */
  dataDir: string;
  /** Worker software version, reported in Hello. */
  version: string;
  /** Host name reported in Hello; default os.hostname(). */
  hostname?: string;
  /** Bytes of each stream sent as tails in JobFinished; default WORKER_DEFAULTS.tailBytes (2048). */
  tailBytes?: number;
  /** Seconds between heartbeats; default 5 (a smaller value in Welcome wins). */
  heartbeatSeconds?: number;
  /**
   * Receives every log line: info for session and lifecycle events, debug per job; default:
   * info and above to stderr, as `<time> worker <name>: <line>`.
   */
  log?: Logger;
  /** First reconnect delay in ms, doubled per failure; default 200. */
  reconnectInitialMs?: number;
  /** Largest reconnect delay in ms; default 5000. */
  reconnectMaxMs?: number;
  /** A session that gets no Welcome within this many ms is dropped; default 10000. */
  welcomeTimeoutMs?: number;
  /** How long stop() waits for Acks of the last reports; default 5000 ms. */
  ackTimeoutMs?: number;
  /** gRPC channel credentials; default insecure. */
  credentials?: grpc.ChannelCredentials;
  /** Metadata sent on Attach (authorization: Bearer of a worker token). */
  metadata?: Record<string, string>;
  /** Run jobs as this account instead of the worker's. */
  runAs?: RunAs;
  /** Bytes of a finished run's output (both streams) shipped to the control plane; default 64 MiB; 0: none. */
  shipOutputBytes?: number;
  /**
   * The run shim (crms-shim) that lets runs outlive this process; default:
   * findShim(). "" runs jobs as children of the worker (they die with it, and
   * a restarted worker cannot re-adopt them).
   */
  shim?: string;
}

/** Options of Worker.stop. */
export interface StopOptions {
  /** Kill running jobs (SIGTERM, SIGKILL after 10 s) instead of waiting for them to end. */
  killRuns: boolean;
  /** Why, for the log and the killed runs' error. */
  reason?: string;
  /**
   * Exit at once leaving the runs going (they need the run shim), for the
   * next worker started with the same name and data directory to re-adopt.
   */
  keepRuns?: boolean;
}

/** Seconds a Shutdown or stop({killRuns: true}) gives runs between SIGTERM and SIGKILL. */
export const SHUTDOWN_GRACE_SECONDS = 10;

type AttachCall = grpc.ClientDuplexStream<AttachRequest, AttachResponse>;
type AttachRequestInit = MessageInitShape<typeof AttachRequestSchema>;

/** One Attach stream. */
interface Session {
  readonly id: number;
  readonly target: string;
  readonly call: AttachCall;
  welcomed: boolean;
  closed: boolean;
  /** Reports produced between Hello and Welcome, sent once welcomed. */
  pending: AttachRequest[];
  heartbeat?: NodeJS.Timeout;
  welcomeTimer?: NodeJS.Timeout;
  /** Open OutputRequests by request id. */
  outputs: Map<bigint, AbortController>;
  /** Aborted when the session ends (stops output streams waiting for 'drain'). */
  ended: AbortController;
}

const keyOf = (jobId: string, attempt: number): string => `${jobId}#${attempt}`;
const label = (jobId: string, attempt: number): string => `job ${jobId} attempt ${attempt}`;

/** Attach answers that retrying cannot change. */
const FINAL_CODES = new Set<number>([3 /* INVALID_ARGUMENT */, 7 /* PERMISSION_DENIED */]);

function errorText(err: unknown): string {
  if (err && typeof err === "object" && "details" in err && typeof err.details === "string" && err.details) {
    const code = "code" in err ? ` (code ${String(err.code)})` : "";
    return `${err.details}${code}`;
  }
  return err instanceof Error ? err.message : String(err);
}

function describe(outcome: RunOutcome): string {
  const parts: string[] = [];
  if (outcome.exitCode !== undefined) parts.push(`exit ${outcome.exitCode}`);
  if (outcome.signal) parts.push(`signal ${outcome.signal}`);
  if (outcome.error) parts.push(outcome.error);
  return parts.join(", ") || "ended";
}

/**
 * A worker with an explicit lifecycle (WORKER_TRANSITIONS). Events: "state"
 * (state, previous), "attached" (target, replica), "stopped".
 */
export class Worker extends EventEmitter {
  readonly name: string;
  /** Resolves once the worker is STOPPED (by stop() or a Shutdown from the control plane). */
  readonly stopped: Promise<void>;
  /**
   * Set when Attach was answered INVALID_ARGUMENT or PERMISSION_DENIED (a bad
   * name or slots, a token for another worker): retrying cannot help, so the
   * worker stops and says why here.
   */
  refusal: string | undefined;

  readonly #options: WorkerOptions;
  readonly #log: Logger;
  #state: WorkerLifecycleState = "INITIALIZED";
  #drainRequested = false;
  #closing = false;
  #stopping: Promise<void> | undefined;
  #resolveStopped!: () => void;

  readonly #runs = new Map<string, Run>();
  readonly #unacked = new Map<string, JobFinished>();
  readonly #transports = new Map<string, ServiceTransport>();
  #session: Session | undefined;
  #sessionCount = 0;
  #serverIndex = 0;
  #failures = 0;
  #reconnectTimer: NodeJS.Timeout | undefined;
  /** Random id of this process, sent in every Hello (a restarted worker has a new one). */
  readonly #incarnation = randomUUID();
  readonly #shim: string | undefined;
  /** What the worker offers (Hello.resources), known once start() ran. */
  #resources: WorkerResources | undefined;
  readonly #lease: Lease;
  /** The control plane's grace (Welcome); 0 until known: no fencing. */
  #graceSeconds = 0;
  #fenceTimer: NodeJS.Timeout | undefined;
  /** Runs being looked up in their run directory (an Assign for a directory that exists). */
  readonly #recovering = new Set<string>();
  /** Called after anything a waitFor predicate may depend on changes. */
  #waiters = new Set<() => void>();

  constructor(options: WorkerOptions) {
    super();
    // The server's rule, checked before anything is created (the data directory is named after it).
    const problem = workerNameProblem(options.name);
    if (problem) throw new Error(`worker name ${JSON.stringify(options.name)} ${problem}`);
    if (!Number.isInteger(options.slots) || options.slots < 1) throw new Error(`invalid slots: ${options.slots}`);
    if (options.servers.length === 0) throw new Error("no server address given");
    this.#options = options;
    this.name = options.name;
    this.#log = options.log ?? createTextLogger("info", `worker ${options.name}`);
    this.stopped = new Promise<void>((resolve) => {
      this.#resolveStopped = resolve;
    });
    this.#shim = options.shim === "" ? undefined : findShim(options.shim);
    this.#lease = new Lease(options.dataDir);
  }

  /** The current lifecycle state. */
  get state(): WorkerLifecycleState {
    return this.#state;
  }

  /** Number of runs in progress. */
  get running(): number {
    return this.#runs.size;
  }

  /** Number of finished reports not yet acknowledged by the control plane. */
  get unacked(): number {
    return this.#unacked.size;
  }

  /** The server of the current accepted session, if any. */
  get attachedTo(): string | undefined {
    return this.#session?.welcomed ? this.#session.target : undefined;
  }

  /** Prepares the data directory and starts connecting. Throws IllegalStateError unless INITIALIZED. */
  async start(): Promise<void> {
    this.#transition("CONNECTING");
    try {
      await mkdir(path.join(this.#options.dataDir, "runs"), { recursive: true });
    } catch (err) {
      if (this.#state === "CONNECTING") {
        this.#transition("STOPPING");
        this.#finishStop();
      }
      throw err;
    }
    this.#resources = await detectResources(this.#options.resources, this.#options.slots);
    this.#log.info(
      `starting: ${this.#options.slots} slots, ${describeResources(this.#resources)}, servers ${this.#options.servers.join(", ")}`,
    );
    this.#log.info(
      `memory reservations: ${
        this.#shim
          ? ((await memoryLimitOf(this.#shim)) ?? "the run shim cannot tell how it limits memory")
          : "address-space limit (RLIMIT_AS, sh ulimit -v), best effort: no run shim"
      }`,
    );
    if (this.#shim) {
      const { adopted, ended } = await this.#recover();
      this.#log.info(`re-adopted ${adopted} runs, reported ${ended} ended`);
    } else {
      this.#log.info(`no run shim (${SHIM_INSTALL}): runs end with this process and cannot be re-adopted`);
    }
    if (this.#state === "CONNECTING") this.#connect();
  }

  /**
   * Finds the runs an earlier process of this worker left in the data
   * directory: adopts the live ones, and reads how the others ended, to
   * report them in Hello. A run directory without records (the worker died
   * before the shim started the command) is left alone: the control plane
   * records that attempt LOST, as it never ran.
   */
  async #recover(): Promise<{ adopted: number; ended: number }> {
    const runsDir = path.join(this.#options.dataDir, "runs");
    let adopted = 0;
    let ended = 0;
    const undecided: [string, number][] = [];
    for (const name of await readdir(runsDir)) {
      const dot = name.lastIndexOf(".");
      const jobId = name.slice(0, dot);
      const attempt = Number(name.slice(dot + 1));
      if (dot <= 0 || !Number.isInteger(attempt)) continue;
      const dir = path.join(runsDir, name);
      if (
        await access(path.join(dir, ACKED_FILE)).then(
          () => true,
          () => false,
        )
      )
        continue;
      const found = await this.#recoverRun(jobId, attempt);
      if (found === "none") undecided.push([jobId, attempt]);
      else if (found === "live") adopted++;
      else ended++;
    }
    if (undecided.length > 0) {
      // A shim started just before the old worker died may still be writing its records.
      await new Promise((r) => setTimeout(r, 1_000));
      for (const [jobId, attempt] of undecided) {
        const found = await this.#recoverRun(jobId, attempt);
        if (found === "live") adopted++;
        else if (found === "ended") ended++;
        else {
          this.#log.debug(
            `${label(jobId, attempt)} never started (its worker stopped first); left to the control plane`,
          );
          await writeFile(path.join(runDirOf(this.#options.dataDir, jobId, attempt), ACKED_FILE), "").catch(() => {});
        }
      }
    }
    return { adopted, ended };
  }

  /**
   * Re-adopts the run of an attempt from its run directory: "live" when it
   * goes on (now in #runs), "ended" once its end is reported, or "none" when
   * the directory holds no records.
   */
  async #recoverRun(jobId: string, attempt: number): Promise<"live" | "ended" | "none"> {
    const key = keyOf(jobId, attempt);
    if (this.#runs.has(key)) return "live";
    const dir = runDirOf(this.#options.dataDir, jobId, attempt);
    const [pid, exit] = await Promise.all([readPidRecord(dir), readExitRecord(dir)]);
    if (!pid && !exit) return "none";
    if (this.#runs.has(key)) return "live";
    const record: PidRecord = pid ?? { pid: 0, start: 0, shim: 0, started_ms: 0 };
    const run = this.#track(
      startRun({
        jobId,
        attempt,
        spec: { command: [] },
        dataDir: this.#options.dataDir,
        workerName: this.name,
        ...(this.#options.tailBytes !== undefined ? { tailBytes: this.#options.tailBytes } : {}),
        adopt: record,
      }),
    );
    if (exit) {
      await run.done;
      return "ended";
    }
    this.#log.debug(`${label(jobId, attempt)} re-adopted, pid ${record.pid}`);
    return "live";
  }

  /** Resolves when a session is accepted (now, if one is); rejects after timeoutMs if given. */
  attached(timeoutMs?: number): Promise<void> {
    return this.#waitFor(() => this.#session?.welcomed === true, timeoutMs).then((ok) => {
      if (!ok) throw new Error(`worker ${this.name} not attached after ${timeoutMs} ms`);
    });
  }

  /**
   * Stops the worker: takes no new jobs, kills runs if asked (else waits for
   * them), reports their ends, waits briefly for Acks, closes the stream.
   * While STOPPING it returns the same promise (killRuns then escalates);
   * once STOPPED it throws IllegalStateError.
   */
  stop(options: StopOptions = { killRuns: false }): Promise<void> {
    const reason = options.reason ?? "worker stopping";
    if (this.#state === "STOPPING" && this.#stopping) {
      if (options.killRuns) this.#killAll(reason);
      return this.#stopping;
    }
    if (this.#state === "INITIALIZED") {
      this.#transition("STOPPED");
      this.#resolveStopped();
      this.emit("stopped");
      return Promise.resolve();
    }
    this.#transition("STOPPING");
    if (options.keepRuns && this.#shim) {
      this.#log.info(`stopping (${reason}), leaving ${this.#runs.size} runs to the next worker named ${this.name}`);
      this.#stopping = this.#leave();
      return this.#stopping;
    }
    this.#log.info(`stopping (${reason})${options.killRuns ? `, killing ${this.#runs.size} runs` : ""}`);
    this.#stopping = this.#stop(options.killRuns, reason);
    return this.#stopping;
  }

  /** Exits without touching the runs: their shims keep them, the next process re-adopts them. */
  async #leave(): Promise<void> {
    for (const run of this.#runs.values()) run.detach();
    this.#runs.clear();
    this.#closing = true;
    clearTimeout(this.#reconnectTimer);
    const session = this.#session;
    if (session && !session.closed) {
      session.call.cancel();
      await this.#waitFor(() => session.closed, 1_000);
    }
    this.#finishStop();
  }

  async #stop(killRuns: boolean, reason: string): Promise<void> {
    if (killRuns) this.#killAll(reason);
    if (this.#runs.size > 0) this.#log.info(`waiting for ${this.#runs.size} runs to end`);
    await this.#waitFor(() => this.#runs.size === 0);
    const acked = await this.#waitFor(() => this.#unacked.size === 0, this.#options.ackTimeoutMs ?? 5_000);
    if (!acked) this.#log.info(`${this.#unacked.size} finished reports were not acknowledged`);
    this.#closing = true;
    clearTimeout(this.#reconnectTimer);
    const session = this.#session;
    if (session && !session.closed) {
      session.call.end();
      const timer = setTimeout(() => session.call.cancel(), 1_000);
      await this.#waitFor(() => session.closed);
      clearTimeout(timer);
    }
    this.#finishStop();
  }

  #finishStop(): void {
    this.#closing = true;
    clearTimeout(this.#reconnectTimer);
    clearInterval(this.#fenceTimer);
    for (const transport of this.#transports.values()) transport.close();
    this.#transports.clear();
    this.#transition("STOPPED");
    this.#log.info("stopped");
    this.#resolveStopped();
    this.emit("stopped");
  }

  #killAll(reason: string): void {
    for (const run of this.#runs.values()) run.kill(SHUTDOWN_GRACE_SECONDS, reason);
  }

  #transition(to: WorkerLifecycleState): void {
    const from = this.#state;
    this.#state = nextWorkerState(from, to);
    this.emit("state", to, from);
    this.#notify();
  }

  // --- waiting -------------------------------------------------------------

  #notify(): void {
    for (const waiter of [...this.#waiters]) waiter();
  }

  /** Resolves true once predicate() holds, or false when timeoutMs passes first. */
  #waitFor(predicate: () => boolean, timeoutMs?: number): Promise<boolean> {
    if (predicate()) return Promise.resolve(true);
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const waiter = (): void => {
        if (!predicate()) return;
        this.#waiters.delete(waiter);
        clearTimeout(timer);
        resolve(true);
      };
      this.#waiters.add(waiter);
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          this.#waiters.delete(waiter);
          resolve(predicate());
        }, timeoutMs);
      }
    });
  }

  // --- session -------------------------------------------------------------

  #wantsConnection(): boolean {
    return !this.#closing && !this.refusal && this.#state !== "INITIALIZED" && this.#state !== "STOPPED";
  }

  /** The control plane refused this worker for good: no reconnect, stop (killing runs), keep the reason. */
  #refused(session: Session, err: unknown): void {
    if (this.refusal) return;
    this.refusal = `${session.target} refused this worker: ${errorText(err)}; not retrying`;
    this.#log.info(this.refusal);
    if (this.#state !== "STOPPING" && this.#state !== "STOPPED") {
      void this.stop({ killRuns: true, reason: "refused by the control plane" });
    }
  }

  #transportFor(target: string): ServiceTransport {
    let transport = this.#transports.get(target);
    if (!transport) {
      transport = new ServiceTransport(target, this.#options.credentials, undefined, this.#options.metadata);
      this.#transports.set(target, transport);
    }
    return transport;
  }

  #connect(): void {
    this.#reconnectTimer = undefined;
    if (!this.#wantsConnection() || this.#session) return;
    const servers = this.#options.servers;
    const target = servers[this.#serverIndex++ % servers.length] as string;
    let call: AttachCall;
    try {
      call = this.#transportFor(target).bidiStream(WorkerService.method.attach);
    } catch (err) {
      this.#log.info(`cannot open a stream to ${target}: ${errorText(err)}`);
      this.#scheduleReconnect();
      return;
    }
    const session: Session = {
      id: ++this.#sessionCount,
      target,
      call,
      welcomed: false,
      closed: false,
      pending: [],
      outputs: new Map(),
      ended: new AbortController(),
    };
    this.#session = session;
    call.on("data", (msg: AttachResponse) => {
      try {
        this.#onMessage(session, msg);
      } catch (err) {
        this.#log.info(`error handling ${msg.msg.case ?? "empty"} message: ${errorText(err)}`);
      }
    });
    call.on("error", (err) => {
      if (FINAL_CODES.has((err as { code?: number }).code ?? -1)) this.#refused(session, err);
      this.#onSessionEnd(session, errorText(err));
    });
    call.on("end", () => this.#onSessionEnd(session, "stream ended by the server"));
    session.welcomeTimer = setTimeout(() => {
      this.#log.info(`no Welcome from ${target} within ${this.#welcomeTimeoutMs()} ms`);
      call.cancel();
    }, this.#welcomeTimeoutMs());

    const running = [...this.#runs.values()].map((run) => ({
      jobId: run.jobId,
      attempt: run.attempt,
      pid: run.pid,
      adopted: run.adopted,
    }));
    this.#write(session, {
      msg: {
        case: "hello",
        value: {
          name: this.name,
          slots: this.#options.slots,
          ...(this.#resources ? { resources: this.#resources } : {}),
          labels: this.#options.labels,
          hostname: this.#options.hostname ?? osHostname(),
          version: this.#options.version,
          running,
          finished: [...this.#unacked.values()],
          incarnation: this.#incarnation,
          heartbeatAcks: true,
        },
      },
    });
    this.#log.debug(
      `connecting to ${target} (${running.length} running, ${this.#unacked.size} unacknowledged reports)`,
    );
  }

  #welcomeTimeoutMs(): number {
    return this.#options.welcomeTimeoutMs ?? 10_000;
  }

  #scheduleReconnect(): void {
    if (!this.#wantsConnection() || this.#reconnectTimer) return;
    const initial = this.#options.reconnectInitialMs ?? 200;
    const max = this.#options.reconnectMaxMs ?? 5_000;
    const base = Math.min(max, initial * 2 ** Math.min(this.#failures, 30));
    this.#failures++;
    // Jitter in [base/2, base): workers cut off together do not return together.
    const delay = Math.round(base / 2 + (Math.random() * base) / 2);
    this.#reconnectTimer = setTimeout(() => this.#connect(), delay);
  }

  #onSessionEnd(session: Session, why: string): void {
    if (session.closed) return;
    session.closed = true;
    clearInterval(session.heartbeat);
    clearTimeout(session.welcomeTimer);
    session.ended.abort();
    for (const request of session.outputs.values()) request.abort();
    session.outputs.clear();
    try {
      session.call.cancel();
    } catch {
      // already closed
    }
    if (this.#session === session) this.#session = undefined;
    if (!this.#closing) this.#log.info(`disconnected from ${session.target}: ${why}`);
    if (this.#state === "RUNNING" || this.#state === "DRAINING") this.#transition("CONNECTING");
    this.#notify();
    this.#scheduleReconnect();
  }

  /** Sends a report on the current session: queued until Welcome, dropped without a session (Hello covers it). */
  #send(init: AttachRequestInit): void {
    const session = this.#session;
    if (!session || session.closed) return;
    if (session.welcomed) this.#write(session, init);
    else session.pending.push(create(AttachRequestSchema, init));
  }

  #write(session: Session, message: AttachRequestInit | AttachRequest): boolean {
    if (session.closed) return true;
    try {
      return session.call.write(create(AttachRequestSchema, message as AttachRequestInit));
    } catch (err) {
      this.#log.info(`write to ${session.target} failed: ${errorText(err)}`);
      return true;
    }
  }

  #onMessage(session: Session, response: AttachResponse): void {
    if (session.closed) return;
    const { msg } = response;
    switch (msg.case) {
      case "welcome":
        this.#onWelcome(session, msg.value);
        break;
      case "assign":
        this.#onAssign(msg.value);
        break;
      case "kill":
        this.#onKill(msg.value);
        break;
      case "ack": {
        const key = keyOf(msg.value.jobId, msg.value.attempt);
        if (this.#unacked.delete(key)) {
          this.#notify();
          if (this.#shim) this.#markAcked(msg.value.jobId, msg.value.attempt);
        }
        break;
      }
      case "heartbeatAck":
        this.#extendLease();
        break;
      case "drain":
        this.#drainRequested = true;
        if (this.#state === "RUNNING") {
          this.#log.info("draining: no new jobs");
          this.#transition("DRAINING");
        }
        break;
      case "resume":
        this.#drainRequested = false;
        if (this.#state === "DRAINING") {
          this.#log.info("resumed: taking new jobs");
          this.#transition("RUNNING");
        }
        break;
      case "shutdown":
        this.#log.info(`shutdown requested${msg.value.reason ? `: ${msg.value.reason}` : ""}`);
        if (this.#state !== "STOPPING" && this.#state !== "STOPPED") {
          const reason = msg.value.reason || "worker shut down";
          this.stop({ killRuns: !msg.value.keepRuns, keepRuns: msg.value.keepRuns, reason }).catch((err: unknown) =>
            this.#log.info(`stop failed: ${errorText(err)}`),
          );
        }
        break;
      case "outputRequest":
        this.#onOutputRequest(session, msg.value);
        break;
      case "outputCancel":
        session.outputs.get(msg.value.requestId)?.abort();
        session.outputs.delete(msg.value.requestId);
        break;
      default:
        this.#log.debug("ignoring an empty message from the server");
    }
  }

  #onWelcome(session: Session, welcome: Welcome): void {
    if (session.welcomed) return;
    session.welcomed = true;
    clearTimeout(session.welcomeTimer);
    this.#failures = 0;
    if (welcome.draining) this.#drainRequested = true;
    if (this.#state === "CONNECTING") this.#transition(this.#drainRequested ? "DRAINING" : "RUNNING");
    this.#log.info(
      `attached to ${session.target}${welcome.replica ? ` (replica ${welcome.replica})` : ""}${this.#drainRequested ? ", draining" : ""}`,
    );
    this.#graceSeconds = welcome.graceSeconds;
    this.#extendLease();
    if (this.#graceSeconds > 0 && !this.#fenceTimer) {
      this.#fenceTimer = setInterval(() => this.#fenceIfCutOff(), 500);
      this.#fenceTimer.unref();
    }
    const own = this.#options.heartbeatSeconds ?? 5;
    let seconds = welcome.heartbeatSeconds > 0 ? Math.min(own, welcome.heartbeatSeconds) : own;
    // The lease moves with acknowledged heartbeats: several per grace, so one late ack does not fence.
    if (this.#graceSeconds > 0) seconds = Math.min(seconds, this.#graceSeconds / 4);
    session.heartbeat = setInterval(
      () => this.#write(session, { msg: { case: "heartbeat", value: { running: this.#runs.size } } }),
      Math.max(0.05, seconds) * 1000,
    );
    for (const message of session.pending) this.#write(session, message);
    session.pending = [];
    this.emit("attached", session.target, welcome.replica);
    this.#notify();
  }

  // --- fencing -------------------------------------------------------------

  /** The control plane heard us: runs may go on until now + grace. */
  #extendLease(): void {
    if (this.#graceSeconds <= 0) return;
    try {
      this.#lease.extend(Date.now() + this.#graceSeconds * 1000, this.#shim !== undefined);
    } catch (err) {
      this.#log.info(`cannot write the lease file ${this.#lease.file}: ${errorText(err)}`);
    }
  }

  /**
   * Cut off from every replica since the last acknowledged heartbeat for the
   * grace: the control plane is about to rerun our jobs elsewhere, so end
   * them first (the shims do the same from the lease file, also without us).
   */
  #fenceIfCutOff(): void {
    // An expired lease alone says cut off: a half-open stream still looks welcomed.
    if (this.#graceSeconds <= 0) return;
    const deadline = this.#lease.deadline;
    if (deadline === 0 || Date.now() <= deadline) return;
    for (const run of this.#runs.values()) {
      // A re-adopted run's shim knows whether to fence it (keep_on_disconnect), and does.
      if (!run.fenced || run.stopping || run.adopted) continue;
      this.#log.info(
        `fencing ${label(run.jobId, run.attempt)}: cut off from the control plane for ${this.#graceSeconds}s`,
      );
      run.fence(SHUTDOWN_GRACE_SECONDS);
    }
  }

  #markAcked(jobId: string, attempt: number): void {
    let dir: string;
    try {
      dir = runDirOf(this.#options.dataDir, jobId, attempt);
    } catch {
      return;
    }
    void writeFile(path.join(dir, ACKED_FILE), "").catch(() => {});
  }

  // --- runs ----------------------------------------------------------------

  /** Keeps a run in #runs until it ends, then reports it. */
  #track(run: Run): Run {
    const key = keyOf(run.jobId, run.attempt);
    this.#runs.set(key, run);
    this.#notify();
    run.done.then(
      (outcome) => this.#onRunEnd(key, run, outcome),
      // Run.done does not reject; this is a safety net so a run never stays forever.
      (err: unknown) =>
        this.#onRunEnd(key, run, {
          signal: "",
          error: `worker error: ${errorText(err)}`,
          timedOut: false,
          killed: false,
          fenced: false,
          stdoutTail: new Uint8Array(0),
          stderrTail: new Uint8Array(0),
          pid: run.pid,
        }),
    );
    return run;
  }

  /** An Assign for an attempt whose run directory exists: never run it again; adopt or report it. */
  async #assignedAgain(jobId: string, attempt: number): Promise<void> {
    const key = keyOf(jobId, attempt);
    if (this.#recovering.has(key)) return;
    this.#recovering.add(key);
    try {
      const found = await this.#recoverRun(jobId, attempt);
      if (found === "live") {
        const run = this.#runs.get(key);
        this.#log.info(`${label(jobId, attempt)} already has a run here; adopted, not started again`);
        if (run?.pid) this.#send({ msg: { case: "started", value: { jobId, attempt, pid: run.pid } } });
      } else if (found === "none") {
        this.#log.info(`${label(jobId, attempt)} already has a run directory here; not started again`);
        this.#report(
          create(JobFinishedSchema, {
            jobId,
            attempt,
            error: "this attempt already has a run directory on the worker",
          }),
        );
      } else {
        this.#log.info(`${label(jobId, attempt)} already ran here; its end reported again`);
      }
    } finally {
      this.#recovering.delete(key);
    }
  }

  #onAssign(assign: Assign): void {
    const { jobId, attempt } = assign;
    const key = keyOf(jobId, attempt);
    const existing = this.#runs.get(key);
    if (existing) {
      // A repeated Assign means the control plane may have missed JobStarted.
      this.#log.info(`${label(jobId, attempt)} is already running; assignment ignored`);
      if (existing.pid) this.#send({ msg: { case: "started", value: { jobId, attempt, pid: existing.pid } } });
      return;
    }
    const finished = this.#unacked.get(key);
    if (finished) {
      this.#log.info(`${label(jobId, attempt)} already ended; assignment ignored, report sent again`);
      this.#send({ msg: { case: "finished", value: finished } });
      return;
    }
    if (this.#state === "STOPPING" || this.#state === "STOPPED") {
      // Not refused with a report: once the stream closes the job is LOST and requeued, which is what happened.
      this.#log.info(`${label(jobId, attempt)} assigned while stopping; not started`);
      return;
    }
    if (this.#state === "DRAINING") this.#log.info(`${label(jobId, attempt)} assigned while draining; running it`);
    if (this.#recovering.has(key)) return;
    let runDir: string;
    try {
      runDir = runDirOf(this.#options.dataDir, jobId, attempt);
    } catch (err) {
      this.#report(create(JobFinishedSchema, { jobId, attempt, error: `cannot run: ${errorText(err)}` }));
      return;
    }
    if (this.#shim && existsSync(runDir)) {
      void this.#assignedAgain(jobId, attempt);
      return;
    }
    if (this.#runs.size >= this.#options.slots) {
      this.#log.info(`${label(jobId, attempt)} exceeds ${this.#options.slots} slots; running it anyway`);
    }
    const spec = assign.spec ?? { command: [], env: {}, workingDir: "", timeoutSeconds: 0, keepOnDisconnect: false };
    let run: Run;
    try {
      run = startRun({
        jobId,
        attempt,
        spec,
        dataDir: this.#options.dataDir,
        workerName: this.name,
        ...(this.#options.tailBytes !== undefined ? { tailBytes: this.#options.tailBytes } : {}),
        ...(this.#options.runAs ? { runAs: this.#options.runAs } : {}),
        gpuIndices: assign.gpuIndices,
        ...(this.#shim
          ? {
              shim: {
                path: this.#shim,
                killGraceSeconds: SHUTDOWN_GRACE_SECONDS,
                ...(this.#graceSeconds > 0 ? { leaseFile: this.#lease.file } : {}),
              },
            }
          : {}),
        onStart: (pid) => {
          this.#log.debug(`${label(jobId, attempt)} started, pid ${pid}`);
          this.#send({ msg: { case: "started", value: { jobId, attempt, pid } } });
        },
      });
    } catch (err) {
      this.#report(create(JobFinishedSchema, { jobId, attempt, error: `cannot run: ${errorText(err)}` }));
      return;
    }
    this.#track(run);
  }

  #onRunEnd(key: string, run: Run, outcome: RunOutcome): void {
    this.#runs.delete(key);
    this.#log.debug(`${label(run.jobId, run.attempt)} finished: ${describe(outcome)}`);
    this.#report(
      create(JobFinishedSchema, {
        jobId: run.jobId,
        attempt: run.attempt,
        ...(outcome.exitCode !== undefined ? { exitCode: outcome.exitCode } : {}),
        signal: outcome.signal,
        error: outcome.error,
        stdoutTail: outcome.stdoutTail,
        stderrTail: outcome.stderrTail,
        timedOut: outcome.timedOut,
        killed: outcome.killed,
        fenced: outcome.fenced,
        pid: outcome.pid,
        ...(outcome.usage ? { usage: outcome.usage } : {}),
      }),
    );
    this.#shipOutput(run.jobId, run.attempt);
  }

  /** Sends the run's full output to the control plane it is attached to (best effort, logged). */
  #shipOutput(jobId: string, attempt: number): void {
    const cap = this.#options.shipOutputBytes ?? WORKER_DEFAULTS.shipOutputBytes;
    const target = this.attachedTo;
    if (cap <= 0 || !target) return;
    const runDir = runDirOf(this.#options.dataDir, jobId, attempt);
    shipOutput(this.#transportFor(target), jobId, attempt, runDir, cap).catch((err) =>
      this.#log.debug(`${label(jobId, attempt)} output not kept by the control plane: ${errorText(err)}`),
    );
  }

  /** Keeps a finished report until it is acknowledged, and sends it. */
  #report(finished: JobFinished): void {
    this.#unacked.set(keyOf(finished.jobId, finished.attempt), finished);
    this.#send({ msg: { case: "finished", value: finished } });
    this.#notify();
  }

  #onKill(kill: Kill): void {
    const { jobId, attempt } = kill;
    const key = keyOf(jobId, attempt);
    const run = this.#runs.get(key);
    if (run) {
      this.#log.info(
        `killing ${label(jobId, attempt)} (grace ${kill.graceSeconds}s)${kill.reason ? `: ${kill.reason}` : ""}`,
      );
      run.kill(kill.graceSeconds, kill.reason || "killed");
      return;
    }
    const finished = this.#unacked.get(key);
    if (finished) {
      this.#send({ msg: { case: "finished", value: finished } });
      return;
    }
    this.#log.info(`kill for ${label(jobId, attempt)}, which is not running here`);
    this.#report(create(JobFinishedSchema, { jobId, attempt, killed: true, error: "killed before it started" }));
  }

  // --- output --------------------------------------------------------------

  #onOutputRequest(session: Session, request: OutputRequest): void {
    const { requestId, jobId, attempt, follow } = request;
    const abort = new AbortController();
    session.outputs.get(requestId)?.abort();
    session.outputs.set(requestId, abort);
    const key = keyOf(jobId, attempt);
    const eof = (error = ""): void => {
      if (!abort.signal.aborted) {
        this.#write(session, { msg: { case: "output", value: { requestId, eof: true, error } } });
      }
    };
    void (async () => {
      try {
        const runDir = runDirOf(this.#options.dataDir, jobId, attempt);
        const chunks = readOutput(runDir, {
          follow,
          isEnded: () => this.#runs.get(key)?.ended ?? true,
          signal: abort.signal,
        });
        for await (const chunk of chunks) {
          if (abort.signal.aborted) break;
          const ok = this.#write(session, {
            msg: {
              case: "output",
              value: {
                requestId,
                stream: chunk.stream === "stdout" ? OutputStream.STDOUT : OutputStream.STDERR,
                data: chunk.data,
                offset: BigInt(chunk.offset),
              },
            },
          });
          if (!ok) await once(session.call, "drain", { signal: session.ended.signal });
        }
        eof();
      } catch (err) {
        if (!abort.signal.aborted && !session.closed) eof(errorText(err));
      } finally {
        if (session.outputs.get(requestId) === abort) session.outputs.delete(requestId);
      }
    })();
  }
}

/** Creates a worker; call start() to connect. */
export function createWorker(options: WorkerOptions): Worker {
  return new Worker(options);
}
