/**
 * The worker sessions attached to this replica. It pushes assignments and
 * kills to workers as the job cache changes (whichever replica wrote them),
 * applies workers' reports to the store, and marks a worker DISCONNECTED when
 * its stream ends.
 */

import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type Job, JobState, OutputStreamSchema } from "../../gen/crms/v1/job_pb.js";
import {
  type AttachRequest,
  type AttachResponse,
  type Hello,
  type JobFinished,
  type OutputData,
  type Worker,
  WorkerSchema,
  WorkerState,
} from "../../gen/crms/v1/worker_pb.js";
import { checkWorkerBinding } from "../auth/policy.js";
import { CrmsError, invalid } from "../errors.js";
import { isActive } from "../rpc/states.js";
import { transition } from "../scheduler/job-machine.js";
import { toCrmsError } from "../store/errors.js";
import { AsyncQueue } from "./async-queue.js";
import type { CallContext, ServiceDeps } from "./context.js";
import { checkEnum, checkWorkerName, LIMITS } from "./validate.js";
import { WorkerSession } from "./worker-session.js";

/** How long a start report waits for its run's finish report under load, to write both at once (short jobs). */
const START_DELAY_MS = 5;
/** The down_reason of a worker that StopWorker ended. */
export const STOPPED = "stopped by an operator";
/** How long an Attach stream may stay open without its Hello. */
export const HELLO_TIMEOUT_MS = 5_000;

export class Sessions {
  readonly byName = new Map<string, WorkerSession>();
  private nextRequestId = 1n;
  /** Worker reports (starts, finishes) being written now; none: a start is written without waiting. */
  private reportsWriting = 0;
  private watchdog: NodeJS.Timeout;

  constructor(private readonly deps: ServiceDeps) {
    const { store } = deps;
    store.jobs.on("put", (_id, e) => this.onJob(e.value));
    store.workers.on("put", (name, e) => this.onWorker(name, e.value));
    store.onLeaseRenewed = () => void this.rebindAll();
    store.health.on("restored", () => void this.reconcile());
    this.watchdog = setInterval(() => {
      this.checkHeartbeats();
      void this.reconcile();
    }, 1000);
    this.watchdog.unref();
  }

  close(): void {
    clearInterval(this.watchdog);
    for (const s of this.byName.values()) s.close();
  }

  private get me(): string {
    return this.deps.store.replicaId;
  }

  private onJob(job: Job): void {
    const session = this.byName.get(job.worker);
    if (!session) return;
    if (!isActive(job.state)) {
      // The run is over (ended or requeued): forget it, or a session grows by one entry per job it ever ran.
      session.assigned.delete(job.id);
      session.killed.delete(job.id);
      session.killGrace.delete(job.id);
      return;
    }
    if (!session.open) return;
    if (job.state === JobState.ASSIGNED && session.assigned.get(job.id) !== job.attempt && !job.killRequested) {
      session.assigned.set(job.id, job.attempt);
      session.send({ case: "assign", value: { jobId: job.id, attempt: job.attempt, spec: job.spec } });
    }
    // A kill is sent again when a later KillJob shortened its grace or forced it (the worker keeps the sooner end).
    const grace = job.killForce ? 0 : job.killGraceSeconds || this.deps.options.killGraceSeconds;
    if (job.killRequested && (session.killed.get(job.id) !== job.attempt || session.killGrace.get(job.id) !== grace)) {
      session.killed.set(job.id, job.attempt);
      session.killGrace.set(job.id, grace);
      session.send({
        case: "kill",
        value: { jobId: job.id, attempt: job.attempt, graceSeconds: grace, reason: "killed by request" },
      });
    }
  }

  private onWorker(name: string, w: Worker): void {
    const session = this.byName.get(name);
    if (!session?.open || w.replica !== this.me) return;
    if (w.state === WorkerState.DRAINING && session.state === "ATTACHED") {
      session.to("drain");
      session.send({ case: "drain", value: {} });
    }
    if (w.state === WorkerState.UP && session.state === "DRAINING") {
      session.to("resume");
      session.send({ case: "resume", value: {} });
    }
    if (w.stopRequested) {
      session.send({ case: "shutdown", value: { reason: "stopped by request", keepRuns: w.stopKeepRuns } });
    }
  }

  /** Closes sessions whose heartbeats stopped (a half-open stream). */
  private checkHeartbeats(): void {
    const limit = this.deps.options.heartbeatSeconds * 3000;
    const now = Date.now();
    for (const s of this.byName.values()) {
      if (now - s.lastHeartbeat > limit) {
        this.deps.log.warn("worker heartbeats stopped; detaching", { worker: s.name });
        s.closeReason = "heartbeat timeout";
        s.close();
      }
    }
  }

  /**
   * After the replica lease was renewed, bind every held worker's record to it
   * (or write it again): all of them, not only those the cache shows stale, since
   * a watch may not have delivered the deletions yet.
   */
  private async rebindAll(): Promise<void> {
    while (this.reconciling) await this.reconciling;
    await this.reconcile(true);
  }

  private reconciling?: Promise<void>;

  /**
   * Makes the worker records of the streams held here match them: a record
   * etcd lost (its lease expired while etcd stalled) is written again, one
   * bound to an old lease is bound to the current one. Runs every second, at
   * once when etcd returns and after a lease renewal, so a missed step heals
   * itself; a record another replica wrote since (the worker moved) is left alone.
   */
  reconcile(all = false): Promise<void> {
    const { store } = this.deps;
    if (this.reconciling || !store.health.reachable) return this.reconciling ?? Promise.resolve();
    this.reconciling = (async () => {
      const due: WorkerSession[] = [];
      for (const s of this.byName.values()) {
        const registered = s.registered;
        if (!s.open || !registered) continue;
        const e = store.workers.entries.get(s.name);
        const stale = all && s.boundLease !== store.leaseId;
        const ours = e !== undefined && this.ours(e.value, registered);
        if (stale || !e || (ours && (e.lease !== store.leaseId || this.notLive(e.value)))) due.push(s);
      }
      // Many at once, so that the batcher packs them: 100,000 workers re-register in seconds.
      const done = { recreated: [] as string[], rebound: [] as string[] };
      const failed: string[] = [];
      for (let i = 0; i < due.length && store.health.reachable; i += 1000) {
        await Promise.all(due.slice(i, i + 1000).map((s) => this.reregister(s, done, failed)));
      }
      if (done.recreated.length || done.rebound.length) {
        this.deps.log.info("worker records written again", {
          recreated: done.recreated.length,
          rebound: done.rebound.length,
          workers: [...done.recreated, ...done.rebound].slice(0, 10),
        });
      }
      if (failed.length)
        this.deps.log.warn("re-registering workers failed; retrying in 1s", {
          workers: failed.length,
          error: failed[0],
        });
    })().finally(() => (this.reconciling = undefined));
    return this.reconciling;
  }

  /** Writes a held stream's worker record again: re-created if etcd lost it, else bound to the current lease. */
  private async reregister(
    s: WorkerSession,
    done: { recreated: string[]; rebound: string[] },
    failed: string[],
  ): Promise<void> {
    const registered = s.registered;
    if (!registered || !s.open || this.byName.get(s.name) !== s) return;
    const recreated = !this.deps.store.workers.entries.has(s.name);
    try {
      await this.deps.store.updateWorker(
        s.name,
        (w) => {
          const state = s.state === "DRAINING" ? WorkerState.DRAINING : WorkerState.UP;
          // The stream is held here, so the worker is live whatever the record says.
          if (w) return this.ours(w, registered) ? { ...w, state: this.notLive(w) ? state : w.state } : undefined;
          return { ...registered, state, lastHeartbeat: timestampFromDate(new Date()) };
        },
        true,
      );
      s.boundLease = this.deps.store.workers.entries.get(s.name)?.lease;
      (recreated ? done.recreated : done.rebound).push(s.name);
      this.reregistered(s.name);
    } catch (err) {
      failed.push(`${s.name}: ${String(err)}`);
    }
  }

  /** A record saying the worker is away (written while etcd could not take this replica's word). */
  private notLive(w: Readonly<Worker>): boolean {
    return w.state === WorkerState.DISCONNECTED || w.state === WorkerState.DOWN;
  }

  /** Whether a worker record is the one this replica wrote for this stream (the worker did not move since). */
  private ours(w: Readonly<Worker>, registered: Worker): boolean {
    return (
      w.replica === this.me &&
      w.attachTime?.seconds === registered.attachTime?.seconds &&
      w.attachTime?.nanos === registered.attachTime?.nanos
    );
  }

  /** Counts a re-registration against the etcd outage in progress or just ended (for admin status). */
  private reregistered(name: string): void {
    const outage = this.deps.store.health.last;
    if (!outage || (outage.restoredAt && Date.now() - outage.restoredAt.getTime() > 60_000)) return;
    if (outage.reregisteredNames.includes(name)) return;
    outage.reregistered++;
    if (outage.reregisteredNames.length < 10) outage.reregisteredNames.push(name);
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
      // Reports are applied concurrently, not one after another: the store keeps the
      // writes of one job in order, and a worker's jobs are independent of each other.
      // Under load (other reports being written) a start is written START_DELAY_MS later: if
      // its run's finish arrives by then (a short job), one transition records both (3 writes
      // per job instead of 4). Idle, it waits only for the messages already received.
      case "started": {
        session.lastHeartbeat = Date.now();
        const { jobId, attempt, pid } = msg.value;
        session.starting.set(jobId, { attempt, pid });
        const write = () => {
          if (session.starting.get(jobId)?.attempt !== attempt) return;
          session.starting.delete(jobId);
          void this.writing(this.started(session, jobId, attempt, pid)).catch((err) =>
            this.reportFailed(session, jobId, err),
          );
        };
        if (this.reportsWriting > 0) setTimeout(write, START_DELAY_MS);
        else setImmediate(write);
        return;
      }
      case "finished": {
        session.lastHeartbeat = Date.now();
        const { jobId, attempt } = msg.value;
        const start = session.starting.get(jobId);
        const pid = start?.attempt === attempt ? start.pid : undefined;
        if (pid !== undefined) session.starting.delete(jobId);
        void this.writing(this.finished(session, msg.value, pid)).catch((err) =>
          this.reportFailed(session, jobId, err),
        );
        return;
      }
      case "output":
        return this.output(session, msg.value);
      default:
        return;
    }
  }

  /** Counts a report's write in reportsWriting while it lasts. */
  private writing(write: Promise<void>): Promise<void> {
    this.reportsWriting++;
    return write.finally(() => this.reportsWriting--);
  }

  private reportFailed(session: WorkerSession, jobId: string, err: unknown): void {
    this.deps.log.error("applying a worker report failed", { worker: session.name, job: jobId, error: String(err) });
  }

  private async started(session: WorkerSession, jobId: string, attempt: number, pid: number): Promise<void> {
    try {
      await this.deps.store.updateJob(jobId, (job) =>
        transition(job, { type: "started", worker: session.name, attempt, pid, now: new Date() }),
      );
    } catch (err) {
      const e = toCrmsError(err);
      if (e.code === "FAILED_PRECONDITION" || e.code === "NOT_FOUND") return this.refuse(session, jobId, attempt, err);
      this.retryLater(session, "start", jobId, e.message, () => this.started(session, jobId, attempt, pid));
    }
  }

  /**
   * A report etcd could not take (NOSPACE, unavailable): try again in 2 s while
   * the session lasts (waiting quietly while etcd does not answer, then at once
   * when it does); a new session gets the report again in its hello.
   */
  private retryLater(
    session: WorkerSession,
    what: string,
    jobId: string,
    error: string,
    again: () => Promise<void>,
    quiet = false,
  ) {
    if (!quiet) this.deps.log.warn(`could not record ${what}; will retry`, { job: jobId, worker: session.name, error });
    const health = this.deps.store.health;
    const retry = () => {
      health.off("restored", retry);
      clearTimeout(timer);
      if (!session.open || this.byName.get(session.name) !== session) return;
      if (!health.reachable) return this.retryLater(session, what, jobId, error, again, true);
      void again().catch((err) => this.reportFailed(session, jobId, err));
    };
    const timer = setTimeout(retry, 2000);
    timer.unref();
    if (!health.reachable) health.once("restored", retry);
  }

  /** A report for a run that is no longer current: tell the worker to end that run. */
  private refuse(session: WorkerSession, jobId: string, attempt: number, err: unknown): void {
    const e = toCrmsError(err);
    if (e.code !== "FAILED_PRECONDITION" && e.code !== "NOT_FOUND") throw err;
    this.deps.log.info("refused stale report; killing that run", {
      job: jobId,
      worker: session.name,
      attempt,
      error: e.message,
    });
    session.send({
      case: "kill",
      value: { jobId, attempt, graceSeconds: 1, reason: `attempt superseded: ${e.message}` },
    });
  }

  /** Records a finish report; with `startedPid`, the run's start (not yet written) in the same transition. */
  private async finished(session: WorkerSession, report: JobFinished, startedPid?: number): Promise<void> {
    const cap = this.deps.options.tailBytes;
    report.stdoutTail = report.stdoutTail.subarray(Math.max(0, report.stdoutTail.length - cap));
    report.stderrTail = report.stderrTail.subarray(Math.max(0, report.stderrTail.length - cap));
    try {
      const job = await this.deps.store.updateJob(report.jobId, (job) => {
        const now = new Date();
        const worker = session.name;
        const started =
          startedPid === undefined
            ? job
            : (transition(job, { type: "started", worker, attempt: report.attempt, pid: startedPid, now }) ?? job);
        if (report.fenced) {
          // Ended by its worker's fencing (cut off for the grace): the run was lost, not failed.
          const reason = report.error || `worker ${worker} was cut off for the grace period`;
          return transition(started, { type: "lost", worker, attempt: report.attempt, reason, now }) ?? started;
        }
        return transition(started, { type: "finished", worker, report, now });
      });
      this.deps.log.debug("job finished", { job: job.id, worker: session.name, state: JobState[job.state] });
    } catch (err) {
      const e = toCrmsError(err);
      if (e.code !== "FAILED_PRECONDITION" && e.code !== "NOT_FOUND") {
        // Not written and not refused for a reason (etcd away or full, contention): not
        // acknowledged, so the worker keeps the report, and tried again until it lands.
        return this.retryLater(session, "finish", report.jobId, e.message, () =>
          this.finished(session, report, startedPid),
        );
      }
      this.deps.log.info("refused stale finish report", {
        job: report.jobId,
        worker: session.name,
        attempt: report.attempt,
        error: e.message,
      });
    }
    session.send({ case: "ack", value: { jobId: report.jobId, attempt: report.attempt } });
  }

  private output(session: WorkerSession, data: OutputData): void {
    checkEnum("output stream", data.stream, OutputStreamSchema);
    const q = session.outputs.get(data.requestId);
    if (!q) return;
    q.push(data);
    if (data.eof) {
      session.outputs.delete(data.requestId);
      q.end();
    }
  }

  private async hello(session: WorkerSession, hello: Hello): Promise<void> {
    checkWorkerName(hello.name);
    checkWorkerBinding(session.identity, hello.name);
    if (hello.slots < 1 || hello.slots > LIMITS.slots) {
      throw invalid(`slots must be between 1 and ${LIMITS.slots} (got ${hello.slots | 0})`);
    }
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
    for (const report of hello.finished) await this.finished(session, report);
    // By attempt: a report of an older attempt says nothing about the current one.
    const reported = new Set<string>(hello.finished.map((f) => `${f.jobId}#${f.attempt}`));
    for (const run of hello.running) {
      reported.add(`${run.jobId}#${run.attempt}`);
      const job = this.deps.store.job(run.jobId);
      if (job && isActive(job.state) && job.worker === hello.name && job.attempt === run.attempt) {
        session.assigned.set(job.id, job.attempt);
        if (job.state === JobState.ASSIGNED) {
          await this.deps.store
            .updateJob(job.id, (j) =>
              transition(j, {
                type: "started",
                worker: hello.name,
                attempt: run.attempt,
                pid: run.pid,
                now: new Date(),
              }),
            )
            .catch((err) => this.refuse(session, run.jobId, run.attempt, err));
        }
      } else {
        this.refuse(session, run.jobId, run.attempt, new CrmsError("FAILED_PRECONDITION", "run is no longer current"));
      }
    }
    for (const id of [...(this.deps.store.jobIndex.active.get(hello.name) ?? [])]) {
      const job = this.deps.store.job(id);
      // Sent to this session meanwhile (placed while the hello was handled): it is this process's own.
      if (!job || reported.has(`${id}#${job.attempt}`) || session.assigned.get(id) === job.attempt) continue;
      if (job.state === JobState.RUNNING || (restarted && job.state === JobState.ASSIGNED)) {
        // The worker does not have it (it restarted): that run is lost. An ASSIGNED attempt is
        // never sent to a new process again: the old one may have started it (at most once).
        await this.deps.store
          .updateJob(id, (j) =>
            transition(j, {
              type: "lost",
              worker: hello.name,
              attempt: job.attempt,
              reason:
                job.state === JobState.ASSIGNED
                  ? `worker ${hello.name} restarted (new process) without reporting attempt ${job.attempt}`
                  : `worker ${hello.name} restarted without it`,
              now: new Date(),
            }),
          )
          .catch(() => undefined);
      } else {
        this.onJob(job);
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
    const requestId = this.nextRequestId++;
    const q = new AsyncQueue<OutputData>();
    session.outputs.set(requestId, q);
    session.send({ case: "outputRequest", value: { requestId, jobId, attempt, follow } });
    signal.addEventListener(
      "abort",
      () => {
        if (session.outputs.delete(requestId)) session.send({ case: "outputCancel", value: { requestId } });
        q.end();
      },
      { once: true },
    );
    return q;
  }
}
