/**
 * A control-plane replica: store, election, scheduler, worker sessions and the
 * gRPC services, with an explicit lifecycle (STARTING, SERVING, STOPPING, STOPPED).
 */
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { join } from "node:path";
import { getHeapStatistics } from "node:v8";
import * as grpc from "@grpc/grpc-js";
import type { HealthImplementation } from "grpc-health-check";
import { AdminService } from "../../gen/crms/v1/admin_pb.js";
import { type Job, JobService } from "../../gen/crms/v1/job_pb.js";
import { QueueService } from "../../gen/crms/v1/queue_pb.js";
import { WorkerService } from "../../gen/crms/v1/worker_pb.js";
import { Authorizer } from "../auth/policy.js";
import { bootstrapAdminToken, exposure, type SecurityOptions, serverCredentials } from "../auth/server-security.js";
import { StreamLimiter } from "../auth/stream-limit.js";
import { createTokenService } from "../auth/token-service.js";
import { Tokens } from "../auth/tokens.js";
import { SERVER_DEFAULTS as D } from "../config.js";
import { History } from "../history/history.js";
import { createLogger, type Logger, type LogLevel } from "../log.js";
import type { ServiceHandlers } from "../rpc/handlers.js";
import { arrayIndex } from "../scheduler/arrays.js";
import { FairShare } from "../scheduler/fair-share.js";
import { Scheduler } from "../scheduler/scheduler.js";
import { createAdminService } from "../services/admin-service.js";
import type { ServiceDeps } from "../services/context.js";
import { createJobService } from "../services/job-service.js";
import { createLogService } from "../services/log-service.js";
import { createQueueService } from "../services/queue-service.js";
import { readOnlyJobHandlers } from "../services/read-only-jobs.js";
import { Sessions } from "../services/sessions/index.js";
import { createWorkerService } from "../services/worker-service.js";
import { Admission, defaultMaxJobs } from "../store/admission.js";
import { OverCapacity } from "../store/capacity.js";
import { Election } from "../store/election.js";
import { activeAlarms, Compactor } from "../store/maintenance.js";
import { Retention } from "../store/retention.js";
import { ReadOnlyJobs, Store, type StoreOptions } from "../store/store.js";
import { startWatchChecks } from "../store/watch-check.js";
import { addService } from "./grpc.js";
import { addIntrospection, SERVICE_NAMES, WRITES_HEALTH } from "./introspection.js";
import { delegating, overCapacityHandlers } from "./over-capacity.js";
import type { Authorize } from "./pipeline.js";

export interface ServerOptions extends SecurityOptions {
  /** Streams one client (token identity, else IP) may hold open at once (default 1000). */
  maxStreamsPerClient?: number;
  /** host:port to listen on; port 0 picks a free one. */
  listen: string;
  /** etcd client URLs. */
  etcd: string[];
  /** etcd key prefix (default "crms/"). */
  prefix?: string;
  /** Seconds a detached worker keeps its jobs (default 10). */
  graceSeconds?: number;
  /** Seconds between worker heartbeats (default 5). */
  heartbeatSeconds?: number;
  /** Replica lease TTL in seconds (default 10). */
  leaseTtl?: number;
  /** etcd backend quota assumed, bytes (default 2 GiB). */
  quotaBytes?: number;
  /** Seconds between compactions by the leader (default 300); 0 turns it off. */
  compactionIntervalSeconds?: number;
  /** Compact when the revision advanced by more than this since the last compaction (default 100,000); 0 off. */
  compactionRevisions?: number;
  /** Newest revisions a triggered compaction keeps for watchers (default 10,000). */
  compactionKeepRevisions?: number;
  /** Compact and run retention when etcd's db in use passes this fraction of quotaBytes (default 0.5); 0 off. */
  compactionDbFraction?: number;
  /** Finished jobs kept this long, seconds (default 24 h); 0: no age limit. */
  retentionAgeSeconds?: number;
  /** Finished jobs kept at most (default 100,000); 0: no count limit. */
  retentionCount?: number;
  /** Seconds between retention runs by the leader (default 30); 0 turns it off. */
  retentionIntervalSeconds?: number;
  /** DOWN worker records kept this long, seconds (default 7 days); 0: no age limit. */
  downWorkerRetentionSeconds?: number;
  /** DOWN worker records kept at most, newest first (default 1,000); 0: no count limit. */
  downWorkerRetentionCount?: number;
  /** Bytes of stdout and of stderr kept with a finished job (default 2048 each). */
  tailBytes?: number;
  /**
   * The control plane's data directory: the embedded job history lives in
   * <dataDir>/history unless `history` names a PostgreSQL server.
   */
  dataDir?: string;
  /** Bytes of a finished run's output (both streams) kept with the history (default 64 MiB); more is cut, marked. */
  outputCapBytes?: number;
  /** Kept output is deleted this long after it was stored, seconds (default 30 days); 0: no age limit. */
  logsRetentionAgeSeconds?: number;
  /** Kept output (compressed) is deleted oldest first beyond this many bytes (default 10 GiB); 0: no limit. */
  logsRetentionBytes?: number;
  /** The job history: a postgres:// URL, or a directory for the embedded database. Unset with no dataDir: no history. */
  history?: string;
  /** Unfinished jobs allowed, array tasks included (default: derived from V8's heap limit, defaultMaxJobs); 0: no cap. */
  maxJobs?: number;
  /** Unfinished jobs allowed per owner (default 0: no cap). */
  maxJobsPerUser?: number;
  /** Job records this replica can load (default: from the heap limit); with more in etcd it serves only the reason. */
  holdableJobs?: number;
  /** Over capacity, how often the records are counted again (default 30 s). */
  capacityRecheckMs?: number;
  /** Half-life of users' decayed usage in fair share, seconds (default 1 day). */
  fairShareHalfLifeSeconds?: number;
  /** Seconds between SIGTERM and SIGKILL of a preempted run (default 10). */
  preemptGraceSeconds?: number;
  logLevel?: LogLevel;
  log?: Logger;
}

/** The service handlers of a replica, keyed by service. */
export interface Handlers {
  job: ReturnType<typeof createJobService>;
  worker: ReturnType<typeof createWorkerService> & ReturnType<typeof createLogService>;
  admin: ReturnType<typeof createAdminService> & ReturnType<typeof createTokenService>;
  queue: ReturnType<typeof createQueueService>;
}

/** What the port's services call: the handlers, or handlers that delegate to them. */
interface ServiceImpls {
  job: ServiceHandlers<typeof JobService>;
  worker: ServiceHandlers<typeof WorkerService>;
  admin: ServiceHandlers<typeof AdminService>;
  queue: ServiceHandlers<typeof QueueService>;
}

/** The calls a replica over capacity still serves (from etcd). */
const READS_OVER_CAPACITY = new Set(["JobService.GetJob", "JobService.ListJobs"]);

export type ReplicaState = "STARTING" | "SERVING" | "STOPPING" | "STOPPED";

/** The replica lifecycle: each state may only move forward. */
export function replicaTransition(state: ReplicaState, to: ReplicaState): ReplicaState {
  const order: ReplicaState[] = ["STARTING", "SERVING", "STOPPING", "STOPPED"];
  if (order.indexOf(to) <= order.indexOf(state)) throw new Error(`replica cannot go from ${state} to ${to}`);
  return to;
}

/** Server-side keepalive, agreed with the clients' channelOptions (no too_many_pings). */
export const serverOptions: grpc.ServerOptions = {
  "grpc.keepalive_time_ms": 10_000,
  "grpc.keepalive_timeout_ms": 5_000,
  "grpc.keepalive_permit_without_calls": 1,
  "grpc.http2.min_ping_interval_without_data_ms": 5_000,
  "grpc.max_receive_message_length": 16 * 1024 * 1024,
  "grpc.max_send_message_length": 16 * 1024 * 1024,
};

export class ControlPlane {
  state: ReplicaState = "STARTING";
  port = 0;
  readonly replicaId: string;
  store!: Store;
  election!: Election;
  scheduler!: Scheduler;
  sessions!: Sessions;
  private server = new grpc.Server(serverOptions);
  retention!: Retention;
  compactor!: Compactor;
  /** The job history database, when configured. */
  history?: History;
  /** The history being opened beside the store's load (openStore), until serveLoaded takes it. */
  private historyOpening?: Promise<History | undefined>;
  /** Runs log retention now (the leader also runs it every retention interval); deleted streams. */
  logRetention?: () => Promise<number>;
  private logRetentionTimer?: NodeJS.Timeout;
  alarms: string[] = [];
  private health?: HealthImplementation;
  private alarmTimer?: NodeJS.Timeout;
  private stopWatchChecks?: () => void;
  /** The transport-free handlers, for other transports (the web gateway) to serve too. */
  handlers!: Handlers;
  /** The API tokens (watched copy). */
  tokens!: Tokens;
  /** The one authorization check, for every transport. */
  authorize!: Authorize;
  /** The per-client cap on open streams. */
  streams!: StreamLimiter;
  /** The cap on unfinished jobs and their count. */
  admission!: Admission;
  /** Set while etcd holds more jobs than this replica can load: it then serves only the reason. */
  overCapacity?: OverCapacity;
  /** Over capacity: what GetJob and ListJobs read from etcd. */
  private readOnly?: ReadOnlyJobs;
  private recheck?: NodeJS.Timeout;
  private rechecking = false;
  /** Fair share's books, built from the store's load. */
  fairShare!: FairShare;
  readonly log: Logger;

  constructor(readonly options: ServerOptions) {
    this.replicaId = `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
    this.log = options.log ?? createLogger(options.logLevel ?? D.logLevel, { replica: this.replicaId });
  }

  /** The address clients use (host:port). */
  get address(): string {
    const host = this.options.listen.slice(0, this.options.listen.lastIndexOf(":"));
    return `${host}:${this.port}`;
  }

  async start(): Promise<this> {
    try {
      this.store = await this.openStore();
    } catch (err) {
      if (!(err instanceof OverCapacity)) throw err;
      return this.serveOverCapacity(err);
    }
    await this.serveLoaded();
    return this;
  }

  /** Serves the loaded store: tokens, history, scheduler, services, then the port. */
  private async serveLoaded(): Promise<void> {
    this.tokens = new Tokens(this.store.tokens);
    try {
      await bootstrapAdminToken(this.tokens, this.options, this.log);
    } catch (err) {
      await this.dropHistory();
      await this.store.close();
      throw err;
    }
    const exposed = exposure(this.options, this.tokens.size);
    if (exposed.refuse) {
      await this.dropHistory();
      await this.store.close();
      throw new Error(exposed.refuse);
    }
    // With a bootstrap token file, tokens are on from the start (not once the watch shows it).
    try {
      this.history = await this.historyOpening;
      this.historyOpening = undefined;
    } catch (err) {
      await this.store.close();
      throw err;
    }
    const required = exposed.requireTokens || !!this.options.adminTokenFile;
    const authorizer = new Authorizer({ tokens: this.tokens, exposed: required });
    this.authorize = (method, metadata) => authorizer.check(method, metadata);
    this.election = new Election(this.store);
    this.scheduler = new Scheduler(this.store, this.election, {
      graceSeconds: this.options.graceSeconds,
      log: this.log,
      fairShare: this.fairShare,
      preemptGraceSeconds: this.options.preemptGraceSeconds ?? D.preemptGraceSeconds,
    });
    this.log.info("admission control", {
      maxJobs: this.admission.limits.maxJobs,
      maxJobsPerUser: this.admission.limits.maxJobsPerUser,
      unfinishedJobs: this.admission.count,
      heapLimitBytes: getHeapStatistics().heap_size_limit,
    });
    const { maxJobs } = this.admission.limits;
    if (maxJobs > 0 && this.admission.count > maxJobs) {
      this.log.warn("more unfinished jobs than --max-jobs: every submit is refused until enough of them end", {
        unfinishedJobs: this.admission.count,
        maxJobs,
      });
    }
    const deps: ServiceDeps = {
      admission: this.admission,
      fairShare: this.scheduler.fairShare,
      place: (job) => this.scheduler.placeAtSubmit(job),
      store: this.store,
      election: this.election,
      log: this.log,
      options: {
        heartbeatSeconds: this.options.heartbeatSeconds ?? D.heartbeatSeconds,
        killGraceSeconds: 10,
        graceSeconds: this.options.graceSeconds ?? D.graceSeconds,
        quotaBytes: this.options.quotaBytes ?? D.quotaBytes,
        tailBytes: this.options.tailBytes ?? D.tailBytes,
      },
      history: this.history,
    };
    this.sessions = new Sessions(deps);
    const o = this.options;
    this.retention = new Retention(
      this.store,
      {
        maxAgeSeconds: o.retentionAgeSeconds ?? D.retentionAgeSeconds,
        maxCount: o.retentionCount ?? D.retentionCount,
        downWorkerAgeSeconds: o.downWorkerRetentionSeconds,
        downWorkerCount: o.downWorkerRetentionCount,
        confirm: this.history ? (jobs) => (this.history as History).confirm(jobs) : undefined,
      },
      (o.retentionIntervalSeconds ?? D.retentionIntervalSeconds) * 1000,
      this.log,
    );
    this.compactor = new Compactor(
      this.store,
      {
        intervalMs: (o.compactionIntervalSeconds ?? D.compactionIntervalSeconds) * 1000,
        revisions: o.compactionRevisions ?? D.compactionRevisions,
        keepRevisions: o.compactionKeepRevisions ?? D.compactionKeepRevisions,
        dbFraction: o.compactionDbFraction ?? D.compactionDbFraction,
        quotaBytes: deps.options.quotaBytes,
      },
      () => this.retention.runNow(),
      this.log,
    );
    if (this.history) {
      archiveOnLeader(this.store, this.election, this.history, this.log);
      const every = (o.retentionIntervalSeconds ?? D.retentionIntervalSeconds) * 1000;
      ({ run: this.logRetention, timer: this.logRetentionTimer } = logRetentionOnLeader(
        this.election,
        this.history,
        o,
        every,
        this.log,
      ));
    }
    this.election.on("elected", () => {
      this.retention.start();
      this.compactor.start();
    });
    this.election.on("deposed", () => {
      this.retention.stop();
      this.compactor.stop();
    });
    this.handlers = {
      job: createJobService(deps, this.sessions),
      worker: {
        ...createWorkerService(deps, this.sessions),
        ...createLogService(deps, o.outputCapBytes ?? D.outputCapBytes),
      },
      admin: {
        ...createAdminService(deps, this.retention),
        ...createTokenService(this.tokens, this.log, () => !authorizer.enabled),
      },
      queue: createQueueService(deps),
    };
    if (this.overCapacity) {
      // Loaded after an over-capacity start: the services on the port call these handlers from now on.
      this.overCapacity = undefined;
      for (const name of ["", ...SERVICE_NAMES]) this.health?.setStatus(name, "SERVING");
    } else {
      this.health = this.addServices(this.handlers, this.authorize);
    }
    this.alarmTimer = setInterval(() => void this.checkAlarms(), 5000);
    this.alarmTimer.unref();
    this.stopWatchChecks = startWatchChecks([this.store.jobs, this.store.workers], {}, this.log);
    if (!this.port) await this.bind();
    this.election.on("elected", () => this.log.info("elected scheduler leader"));
    this.election.on("deposed", () => this.log.warn("no longer scheduler leader"));
    this.election.start();
    if (this.state === "STARTING") this.state = replicaTransition(this.state, "SERVING");
    this.log.info("control plane serving", { address: this.address, etcd: this.options.etcd });
  }

  private storeOptions(): StoreOptions {
    return {
      endpoints: this.options.etcd,
      prefix: this.options.prefix,
      replicaId: this.replicaId,
      leaseTtl: this.options.leaseTtl,
      etcd: this.options.etcdTls,
      holdableJobs: this.options.holdableJobs,
    };
  }

  private async openStore(): Promise<Store> {
    let history: Promise<History | undefined> | undefined;
    try {
      const store = await Store.open(this.storeOptions(), (store) => {
        // Built from the load's events: no second pass over (and decode of) every job.
        arrayIndex(store);
        this.fairShare = new FairShare(store, this.options.fairShareHalfLifeSeconds ?? D.fairShareHalfLifeSeconds);
        this.admission = new Admission(store.jobs, {
          maxJobs: this.options.maxJobs ?? defaultMaxJobs(),
          maxJobsPerUser: this.options.maxJobsPerUser ?? D.maxJobsPerUser,
        });
        // The history opens while the jobs load: the embedded one's start is seconds of CPU, and
        // the load spends part of its time waiting for etcd (a restart over a million jobs).
        history = openHistory(store, this.options, this.log);
        history.catch(() => undefined); // awaited (and its error thrown) by serveLoaded
      });
      this.historyOpening = history;
      return store;
    } catch (err) {
      void history?.then((h) => h?.close()).catch(() => undefined);
      throw err;
    }
  }

  /** Closes the history openStore began, for a start that ends before serving. */
  private async dropHistory(): Promise<void> {
    const history = await this.historyOpening?.catch(() => undefined);
    this.historyOpening = undefined;
    await history?.close();
  }

  /** etcd holds more jobs than this replica can load: it says why to every caller and in health, and stays up. */
  private async serveOverCapacity(reason: OverCapacity): Promise<this> {
    this.overCapacity = reason;
    this.log.error("over capacity: serving no jobs", {
      reason: reason.message,
      jobRecords: reason.records,
      holdable: reason.holdable,
      heapLimitBytes: reason.heapLimit,
    });
    // GetJob and ListJobs read from etcd, checked against the token records like any replica's.
    const reads = await this.openReads(() => (this.overCapacity ?? reason).message);
    // Registered once: they refuse while over capacity and serve once the records are loaded.
    const refuse = overCapacityHandlers(() => this.overCapacity ?? reason, reads?.handlers);
    const now =
      <K extends keyof Handlers>(k: K) =>
      () =>
        (this.overCapacity ? refuse[k] : this.handlers[k]) as never;
    const authorize: Authorize = (method, metadata) => {
      if (!this.overCapacity) return this.authorize(method, metadata);
      return reads && READS_OVER_CAPACITY.has(method) ? reads.authorize(method, metadata) : undefined;
    };
    const health = this.addServices(
      {
        job: delegating(JobService, now("job")),
        worker: delegating(WorkerService, now("worker")),
        admin: delegating(AdminService, now("admin")),
        queue: delegating(QueueService, now("queue")),
      },
      authorize,
    );
    this.health = health;
    for (const name of ["", ...SERVICE_NAMES]) health.setStatus(name, "NOT_SERVING");
    await this.bind();
    this.state = replicaTransition(this.state, "SERVING");
    this.recheck = setInterval(() => void this.recheckCapacity(), this.options.capacityRecheckMs ?? 30_000);
    this.recheck.unref();
    return this;
  }

  /**
   * The reads a replica over capacity serves (see services/read-only-jobs.ts),
   * with its own check of callers; undefined when etcd cannot be read or the
   * exposure rules refuse (then every call gets the reason).
   */
  private async openReads(reason: () => string) {
    let jobs: ReadOnlyJobs;
    try {
      jobs = await ReadOnlyJobs.open(this.storeOptions());
    } catch (err) {
      this.log.warn("over capacity: cannot read jobs from etcd either", { error: String(err) });
      return undefined;
    }
    const tokens = new Tokens(jobs.tokens);
    const exposed = exposure(this.options, tokens.size);
    if (exposed.refuse) {
      await jobs.close();
      return undefined;
    }
    this.readOnly = jobs;
    const authorizer = new Authorizer({ tokens, exposed: exposed.requireTokens || !!this.options.adminTokenFile });
    const authorize: Authorize = (method, metadata) => authorizer.check(method, metadata);
    return { handlers: readOnlyJobHandlers(jobs, reason), authorize };
  }

  /**
   * Over capacity, counts again now and then: once the records fit (jobs ended and retention
   * removed them), this replica loads them and serves as any other, on the same port.
   */
  private async recheckCapacity(): Promise<void> {
    if (this.rechecking || this.state !== "SERVING" || !this.overCapacity) return;
    this.rechecking = true;
    let store: Store;
    try {
      store = await this.openStore();
    } catch (err) {
      if (err instanceof OverCapacity) this.overCapacity = err;
      else this.log.warn("counting the job records failed", { error: String(err) });
      return;
    } finally {
      this.rechecking = false;
    }
    if (this.state !== "SERVING") {
      await this.dropHistory();
      return void (await store.close());
    }
    clearInterval(this.recheck);
    this.log.info("the job records fit now: serving them", { jobRecords: store.jobs.entries.size });
    void this.readOnly?.close();
    this.readOnly = undefined;
    this.store = store;
    await this.serveLoaded();
  }

  /** Registers the four services and health on the port, with what `impl` gives each. */
  private addServices(impl: ServiceImpls, authorize: Authorize): HealthImplementation {
    this.streams = new StreamLimiter(this.options.maxStreamsPerClient);
    addService(this.server, JobService, impl.job, this.log, authorize, this.streams);
    addService(this.server, WorkerService, impl.worker, this.log, authorize, this.streams);
    addService(this.server, AdminService, impl.admin, this.log, authorize, this.streams);
    addService(this.server, QueueService, impl.queue, this.log, authorize, this.streams);
    return addIntrospection(this.server);
  }

  private async bind(): Promise<void> {
    this.port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(this.options.listen, serverCredentials(this.options), (err, port) =>
        err ? reject(err) : resolve(port),
      ),
    );
  }

  /** Watches etcd alarms: with NOSPACE, writes are NOT_SERVING in health (reads go on). */
  async checkAlarms(): Promise<string[]> {
    try {
      this.alarms = await activeAlarms(this.store);
    } catch {
      return this.alarms;
    }
    this.health?.setStatus(WRITES_HEALTH, this.alarms.includes("NOSPACE") ? "NOT_SERVING" : "SERVING");
    return this.alarms;
  }

  /** Stops serving: workers see their streams end and reconnect elsewhere. */
  async stop(): Promise<void> {
    if (this.state === "STOPPING" || this.state === "STOPPED") return;
    this.state = replicaTransition(this.state, "STOPPING");
    clearInterval(this.recheck);
    this.scheduler?.stop();
    this.retention?.stop();
    this.compactor?.stop();
    clearInterval(this.logRetentionTimer);
    await this.history?.close();
    clearInterval(this.alarmTimer);
    this.stopWatchChecks?.();
    this.sessions?.close();
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, 2000);
      this.server.tryShutdown(() => {
        clearTimeout(t);
        resolve();
      });
    });
    await this.election?.stop();
    await this.store?.close();
    await this.readOnly?.close();
    this.state = replicaTransition(this.state, "STOPPED");
  }
}

/** The flag that moves the history to a server: named whenever embedded history is refused. */
const HISTORY_FLAG = "--history postgres://USER:PASSWORD@HOST:PORT/DB";

/**
 * Opens the job history the options ask for (none without `history` or
 * `dataDir`). Embedded history belongs to one replica: with other replicas
 * live (after waiting out a lease, in case one is this server's previous
 * process), the start is refused, naming the flag for a shared PostgreSQL.
 */
async function openHistory(store: Store, options: ServerOptions, log: Logger): Promise<History | undefined> {
  const target = options.history || (options.dataDir ? join(options.dataDir, "history") : "");
  if (!target) return undefined;
  if (!/^postgres(ql)?:\/\//.test(target)) {
    const deadline = Date.now() + ((options.leaseTtl ?? 10) + 2) * 1000;
    let others = await store.otherReplicas();
    while (others.length && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500));
      others = await store.otherReplicas();
    }
    if (others.length)
      throw new Error(
        `refusing to start: replica ${others.join(", ")} is running on this etcd and this one keeps its job history embedded (${target}), which one replica alone may do; run every replica with ${HISTORY_FLAG}`,
      );
  }
  const history = await History.open(target, log);
  log.info("job history open", { kind: history.db.kind, where: history.db.where, schema: history.schemaVersion });
  return history;
}

/** The leader writes every job that reaches a final state to the history; a new leader first catches up. */
function archiveOnLeader(store: Store, election: Election, history: History, log: Logger): void {
  store.jobs.on("put", (_id: string, e: { value: Job }) => {
    if (election.isLeader) history.enqueue(e.value);
  });
  election.on("elected", () => {
    history
      // Only finished jobs matter here: read those (not every pending job, kept encoded in the cache).
      .sweep(
        Array.from(store.jobIndex.finished, (id) => store.jobs.entries.get(id)?.value).filter(
          (j): j is Job => j !== undefined,
        ),
      )
      .catch((err) => log.warn("history catch-up failed; retention writes what it deletes", { error: String(err) }));
  });
}

/** Log retention by age and total size, run by the leader every interval; returns the run-now function. */
function logRetentionOnLeader(
  election: Election,
  history: History,
  o: ServerOptions,
  intervalMs: number,
  log: Logger,
): { run: () => Promise<number>; timer?: NodeJS.Timeout } {
  const run = async () => {
    const n = await history.pruneLogs(
      o.logsRetentionAgeSeconds ?? D.logsRetentionAgeSeconds,
      o.logsRetentionBytes ?? D.logsRetentionBytes,
    );
    if (n) log.info("log retention deleted kept output", { streams: n });
    return n;
  };
  if (intervalMs <= 0) return { run };
  const timer = setInterval(() => {
    if (election.isLeader) run().catch(() => undefined);
  }, intervalMs);
  timer.unref();
  return { run, timer };
}

/** Starts a control-plane replica. */
export function startServer(options: ServerOptions): Promise<ControlPlane> {
  return new ControlPlane(options).start();
}
