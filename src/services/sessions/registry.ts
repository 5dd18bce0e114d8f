/**
 * The worker sessions attached to this replica, by worker name. It runs each
 * Attach stream (hello, heartbeats, reports, output), pushes assignments and
 * kills as the caches change, and marks a worker DISCONNECTED when its stream
 * ends. The report applier, the watchdog, hello reconciliation and the output
 * relay are its parts, each in a file of its own.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Job } from "../../../gen/crms/v1/job_pb.js";
import {
  type AttachRequest,
  type AttachResponse,
  type Hello,
  type OutputData,
  type Worker,
  WorkerSchema,
  WorkerState,
} from "../../../gen/crms/v1/worker_pb.js";
import { checkWorkerBinding } from "../../auth/policy.js";
import { CrmsError, invalid } from "../../errors.js";
import type { CallContext } from "../../rpc/context.js";
import { transition } from "../../scheduler/job-machine.js";
import { toCrmsError } from "../../store/errors.js";
import type { AsyncQueue } from "../async-queue.js";
import type { ServiceDeps } from "../context.js";
import { checkResources, checkWorkerName, LIMITS } from "../validate.js";
import { WorkerSession } from "../worker-session.js";
import { pushJob, pushWorker } from "./pushes.js";
import { reconcileHello } from "./reconcile.js";
import { OutputRelay } from "./relay.js";
import { ReportApplier } from "./reports.js";
import { Watchdog } from "./watchdog.js";

/** The down_reason of a worker that StopWorker ended. */
export const STOPPED = "stopped by an operator";
/** How long an Attach stream may stay open without its Hello. */
export const HELLO_TIMEOUT_MS = 5_000;

export class Sessions {
  readonly byName = new Map<string, WorkerSession>();
  private readonly reports: ReportApplier;
  private readonly relay = new OutputRelay();
  private readonly watchdog: Watchdog;

  constructor(private readonly deps: ServiceDeps) {
    const { store } = deps;
    store.jobs.on("put", (_id, e) => this.onJob(e.value));
    store.workers.on("put", (name, e) => this.onWorker(name, e.value));
    this.reports = new ReportApplier(deps, (s) => s.open && this.byName.get(s.name) === s);
    this.watchdog = new Watchdog(deps, this.byName);
  }

  close(): void {
    this.watchdog.close();
    for (const s of this.byName.values()) s.close();
  }

  /** Workers whose Attach stream this replica holds (a closing one until it is detached). */
  get attachedCount(): number {
    return this.byName.size;
  }

  /** Open streams: worker Attach streams, and output requests relayed from workers. */
  openStreams(): { attach: number; output: number } {
    let attach = 0;
    let output = 0;
    for (const s of this.byName.values()) {
      if (s.open) attach++;
      output += s.outputs.size;
    }
    return { attach, output };
  }

  private get me(): string {
    return this.deps.store.replicaId;
  }

  private onJob(job: Job): void {
    const session = this.byName.get(job.worker);
    if (session) pushJob(session, job, this.deps.options.killGraceSeconds);
  }

  private onWorker(name: string, w: Worker): void {
    const session = this.byName.get(name);
    if (session?.open && w.replica === this.me) pushWorker(session, w);
  }

  /** Handles one Attach stream: returns the messages to send to the worker. */
  attach(requests: AsyncIterable<AttachRequest>, ctx: CallContext): AsyncIterable<AttachResponse> {
    const session = new WorkerSession();
    session.identity = ctx.identity;
    void this.run(session, requests, ctx);
    return session.out;
  }

  private async run(session: WorkerSession, requests: AsyncIterable<AttachRequest>, ctx: CallContext): Promise<void> {
    ctx.signal.addEventListener("abort", () => session.close(), { once: true });
    const helloTimer = setTimeout(() => {
      if (session.state !== "AWAITING_HELLO") return;
      session.out.fail(
        new CrmsError("DEADLINE_EXCEEDED", `no hello within ${HELLO_TIMEOUT_MS / 1000}s of opening the Attach stream`),
      );
      session.close();
    }, HELLO_TIMEOUT_MS);
    helloTimer.unref();
    try {
      for await (const req of requests) {
        if (session.state === "CLOSED") break;
        await this.handle(session, req);
      }
    } catch (err) {
      const e = toCrmsError(err);
      if (session.state === "AWAITING_HELLO" || e.code === "INVALID_ARGUMENT" || e.code === "ALREADY_EXISTS") {
        session.out.fail(e);
      } else {
        this.deps.log.warn("worker stream failed", { worker: session.name, error: e.message });
      }
    } finally {
      clearTimeout(helloTimer);
      session.close();
      await this.detached(session);
    }
  }

  private async handle(session: WorkerSession, req: AttachRequest): Promise<void> {
    const msg = req.msg;
    if (session.state === "AWAITING_HELLO" && msg.case !== "hello") throw invalid("the first message must be hello");
    switch (msg.case) {
      case "hello":
        return this.hello(session, msg.value);
      case "heartbeat":
        session.lastHeartbeat = Date.now();
        if (session.heartbeatAcks) session.send({ case: "heartbeatAck", value: {} });
        return;
      case "started":
        session.lastHeartbeat = Date.now();
        return this.reports.started(session, msg.value);
      case "finished":
        session.lastHeartbeat = Date.now();
        return this.reports.finished(session, msg.value);
      case "output":
        return this.relay.deliver(session, msg.value);
      default:
        return;
    }
  }

  private async hello(session: WorkerSession, hello: Hello): Promise<void> {
    checkWorkerName(hello.name);
    checkWorkerBinding(session.identity, hello.name);
    if (hello.slots < 1 || hello.slots > LIMITS.slots) {
      throw invalid(`slots must be between 1 and ${LIMITS.slots} (got ${hello.slots | 0})`);
    }
    if (hello.resources) checkResources(hello.resources, "worker resources");
    const old = this.byName.get(hello.name);
    if (old?.open) {
      if (Date.now() - old.lastHeartbeat < this.deps.options.heartbeatSeconds * 2000) {
        throw new CrmsError("ALREADY_EXISTS", `worker ${hello.name} is already attached to this replica`);
      }
      old.close();
    }
    session.name = hello.name;
    session.heartbeatAcks = hello.heartbeatAcks;
    session.to("hello");
    this.byName.set(hello.name, session);
    const now = timestampFromDate(session.attachedAt);
    let restarted = false;
    const written = await this.deps.store.updateWorker(
      hello.name,
      (prev) => {
        // A new process under this name: what it does not report, it does not have.
        restarted = hello.incarnation !== "" && prev?.incarnation !== hello.incarnation;
        return create(WorkerSchema, {
          name: hello.name,
          slots: hello.slots,
          labels: hello.labels,
          capacity: hello.resources,
          hostname: hello.hostname,
          version: hello.version,
          state: prev?.state === WorkerState.DRAINING ? WorkerState.DRAINING : WorkerState.UP,
          attachTime: now,
          lastHeartbeat: now,
          replica: this.me,
          incarnation: hello.incarnation,
        });
      },
      true,
    );
    session.registered = written;
    session.boundLease = this.deps.store.workers.entries.get(hello.name)?.lease;
    const draining = written?.state === WorkerState.DRAINING;
    if (draining) session.to("drain");
    session.send({
      case: "welcome",
      value: {
        replica: this.me,
        heartbeatSeconds: this.deps.options.heartbeatSeconds,
        draining,
        graceSeconds: this.deps.options.graceSeconds ?? 0,
      },
    });
    this.deps.log.info("worker attached", {
      worker: hello.name,
      slots: hello.slots,
      running: hello.running.length,
      adopted: hello.running.filter((r) => r.adopted).length,
      ended: hello.finished.length,
      restarted,
    });
    await this.carryOutHello(session, hello, restarted);
  }

  /** Carries out the steps of reconcileHello, one after another, each seeing the store as the ones before left it. */
  private async carryOutHello(session: WorkerSession, hello: Hello, restarted: boolean): Promise<void> {
    const { store } = this.deps;
    const view = {
      job: (id: string) => store.job(id),
      active: () => store.jobIndex.active.get(hello.name) ?? [],
      sent: (id: string) => session.assigned.get(id),
      restarted,
    };
    for (const step of reconcileHello(hello, view)) {
      switch (step.do) {
        case "finish":
          await this.reports.finish(session, step.report);
          break;
        case "adopt":
          session.assigned.set(step.jobId, step.attempt);
          if (step.startPid !== undefined) {
            const { jobId, attempt, startPid: pid } = step;
            await store
              .updateJob(jobId, (j) =>
                transition(j, { type: "started", worker: hello.name, attempt, pid, now: new Date() }),
              )
              .catch((err) => this.reports.refuse(session, jobId, attempt, err));
          }
          break;
        case "refuse":
          this.reports.refuse(session, step.jobId, step.attempt, new CrmsError("FAILED_PRECONDITION", step.reason));
          break;
        case "lose": {
          const { jobId, attempt, reason } = step;
          await store
            .updateJob(jobId, (j) =>
              transition(j, { type: "lost", worker: hello.name, attempt, reason, now: new Date() }),
            )
            .catch(() => undefined);
          break;
        }
        case "push":
          this.onJob(step.job);
          break;
      }
    }
  }

  private async detached(session: WorkerSession): Promise<void> {
    if (!session.name || this.byName.get(session.name) !== session) return;
    this.byName.delete(session.name);
    this.deps.log.info("worker detached", { worker: session.name });
    const attachTime = timestampFromDate(session.attachedAt);
    await this.deps.store
      .updateWorker(session.name, (w) => {
        if (
          !w ||
          w.replica !== this.me ||
          w.attachTime?.seconds !== attachTime.seconds ||
          w.attachTime?.nanos !== attachTime.nanos
        )
          return undefined;
        const disconnected = {
          state: WorkerState.DISCONNECTED,
          disconnectTime: timestampFromDate(new Date()),
          lastHeartbeat: timestampFromDate(new Date(session.lastHeartbeat)),
        };
        // stop --keep-runs: its runs go on, for the next process under this name to re-adopt within the grace.
        if (w.stopKeepRuns) {
          return {
            ...w,
            ...disconnected,
            stopRequested: false,
            stopKeepRuns: false,
            downReason: "stopped keeping its runs",
          };
        }
        return { ...w, ...disconnected, downReason: w.stopRequested ? STOPPED : session.closeReason || "stream ended" };
      })
      .catch((err) =>
        this.deps.log.warn("could not mark worker disconnected", { worker: session.name, error: String(err) }),
      );
    const w = this.deps.store.workers.entries.get(session.name);
    if (w?.value.stopRequested && (this.deps.store.jobIndex.active.get(session.name)?.size ?? 0) === 0) {
      await this.markStoppedDown(session.name).catch((err) =>
        this.deps.log.warn("could not mark stopped worker down", { worker: session.name, error: String(err) }),
      );
    }
  }

  /** A worker stopped by an operator with nothing left running is DOWN at once (no grace to wait for). */
  private markStoppedDown(name: string): Promise<unknown> {
    return this.deps.store.updateWorkerUnbound(name, (w) =>
      w?.state === WorkerState.DISCONNECTED && w.stopRequested
        ? { ...w, state: WorkerState.DOWN, downTime: timestampFromDate(new Date()), lastJobs: [], replica: "" }
        : undefined,
    );
  }

  /** Asks the worker holding a run for its output; yields chunks until eof. */
  requestOutput(
    worker: string,
    jobId: string,
    attempt: number,
    follow: boolean,
    signal: AbortSignal,
  ): AsyncQueue<OutputData> | undefined {
    const session = this.byName.get(worker);
    if (!session?.open) return undefined;
    return this.relay.request(session, jobId, attempt, follow, signal);
  }
}
