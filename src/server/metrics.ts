/**
 * Operator metrics of one control-plane replica in the Prometheus text format.
 *
 * Job counters and the submit-to-running histogram come from the job cache,
 * which every replica keeps for the whole cluster: they are a cluster-wide view
 * as seen by this replica (do not sum them across replicas). Scheduling latency
 * is observed only by the replica that leads (crms_scheduler_leader 1); etcd
 * Txn metrics are this replica's own writes. Counters count from the moment
 * the metrics were created, never from records that already existed then.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { type Job, JobState } from "../../gen/crms/v1/job_pb.js";
import { WorkerState } from "../../gen/crms/v1/worker_pb.js";
import { DEFAULT_QUOTA_BYTES } from "../config.js";
import { isArrayParent, isFinal } from "../rpc/states.js";
import { queueOf } from "../scheduler/fair-share.js";
import type { Entry } from "../store/cache.js";
import { memberStatus } from "../store/status.js";
import type { ControlPlane } from "./server.js";

/** The metrics of a replica and the handler that serves them. */
export interface Metrics {
  registry: Registry;
  /** Answers a scrape (GET or HEAD) with the text format. */
  handle(req: IncomingMessage, res: ServerResponse): Promise<void>;
  /** Stops observing (its listeners unsubscribed) and empties the registry. */
  close(): void;
}

/** How often a scrape may ask etcd for member status, and how long it waits. */
const STATUS_EVERY_MS = 5000;
const STATUS_TIMEOUT_MS = 3000;

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];
const TXN_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128];

const jobStates = Object.values(JobState).filter(
  (s): s is JobState => typeof s === "number" && s !== JobState.UNSPECIFIED,
);
const workerStates = Object.values(WorkerState).filter(
  (s): s is WorkerState => typeof s === "number" && s !== WorkerState.UNSPECIFIED,
);
const KNOWN_ALARMS = ["NOSPACE", "CORRUPT"];

function alarmName(raw: string): string {
  if (raw === "1" || raw.toUpperCase() === "NOSPACE") return "NOSPACE";
  if (raw === "2" || raw.toUpperCase() === "CORRUPT") return "CORRUPT";
  return raw.toUpperCase();
}

function seconds(ts: { seconds: bigint; nanos: number }): number {
  return Number(ts.seconds) + ts.nanos / 1e9;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** Creates the metrics of a started control plane. */
export function createMetrics(cp: ControlPlane): Metrics {
  const { store, scheduler, sessions } = cp;
  const registry = new Registry();
  const registers = [registry];
  collectDefaultMetrics({ register: registry });
  let closed = false;

  // ---- jobs, from the job cache ----

  const submitted = new Counter({
    name: "crms_jobs_submitted_total",
    help: "New job records seen in the job cache (cluster-wide).",
    registers,
  });
  const finished = new Counter({
    name: "crms_jobs_finished_total",
    help: "Jobs that reached a final state (SUCCEEDED, FAILED, KILLED, or LOST with no retries left), once per job.",
    labelNames: ["state"],
    registers,
  });
  for (const s of jobStates) if (isFinal(s)) finished.inc({ state: JobState[s] }, 0);
  const submitToRunning = new Histogram({
    name: "crms_submit_to_running_seconds",
    help: "Seconds from a job's submit time to the start of a run (each run that starts).",
    buckets: LATENCY_BUCKETS,
    registers,
  });
  new Gauge({
    name: "crms_jobs",
    help: "Jobs in the job cache by state.",
    labelNames: ["state"],
    registers,
    collect() {
      for (const s of jobStates) this.set({ state: JobState[s] }, store.jobIndex.counts.get(s) ?? 0);
    },
  });
  new Gauge({
    name: "crms_jobs_pending",
    help: "Jobs waiting for a slot (PENDING).",
    registers,
    collect() {
      this.set(store.jobIndex.counts.get(JobState.PENDING) ?? 0);
    },
  });
  new Gauge({
    name: "crms_jobs_unfinished",
    help: "Unfinished jobs, array tasks included (also those not created yet): what --max-jobs caps.",
    registers,
    collect() {
      this.set(cp.admission.count);
    },
  });
  new Gauge({
    name: "crms_jobs_max",
    help: "Unfinished jobs allowed (--max-jobs); 0: no cap.",
    registers,
    collect() {
      this.set(cp.admission.limits.maxJobs);
    },
  });
  new Counter({
    name: "crms_submits_refused_total",
    help: "Submits this replica refused with RESOURCE_EXHAUSTED under --max-jobs or --max-jobs-per-user.",
    registers,
    collect() {
      this.reset();
      this.inc(cp.admission.refused);
    },
  });
  new Gauge({
    name: "crms_jobs_running",
    help: "Jobs running on a worker (RUNNING).",
    registers,
    collect() {
      this.set(store.jobIndex.counts.get(JobState.RUNNING) ?? 0);
    },
  });

  // ---- queues: what finished jobs used (Job.usage, every run summed), and fair share's loads ----

  const queueFinished = new Counter({
    name: "crms_queue_jobs_finished_total",
    help: "Jobs of each queue that reached a final state, once per job (array parents not counted).",
    labelNames: ["queue", "state"],
    registers,
  });
  const queueUsage = (name: string, help: string) => new Counter({ name, help, labelNames: ["queue"], registers });
  const queueCpu = queueUsage(
    "crms_queue_cpu_seconds_total",
    "CPU seconds (user + system) of the finished jobs of each queue, every run.",
  );
  const queueGpu = queueUsage(
    "crms_queue_gpu_seconds_total",
    "GPUs reserved times wall seconds of the finished jobs of each queue.",
  );
  const queueWall = queueUsage("crms_queue_wall_seconds_total", "Wall seconds of the finished jobs of each queue.");
  const queueLoad = (name: string, what: "running" | "pending", help: string) =>
    new Gauge({
      name,
      help,
      labelNames: ["queue"],
      registers,
      collect() {
        const fairShare = scheduler.fairShare;
        this.reset();
        for (const q of store.queues.list()) this.set({ queue: q.name }, Number(fairShare.status(q.name)[what]));
      },
    });
  queueLoad("crms_queue_running", "running", "Jobs of each queue holding a worker (ASSIGNED or RUNNING).");
  queueLoad("crms_queue_pending", "pending", "Jobs of each queue waiting to be placed (PENDING).");

  /** Counts a job that just reached a final state against its queue. */
  const finishedInQueue = (job: Job): void => {
    if (isArrayParent(job)) return;
    const queue = queueOf(job);
    queueFinished.inc({ queue, state: JobState[job.state] });
    queueCpu.inc({ queue }, job.usage?.cpuSeconds ?? 0);
    queueGpu.inc({ queue }, job.usage?.gpuSeconds ?? 0);
    queueWall.inc({ queue }, job.usage?.wallSeconds ?? 0);
  };

  const onJob = (_id: string, e: Entry<Job>, prev: Entry<Job> | undefined): void => {
    const job = e.value;
    if (!prev) submitted.inc();
    if (isFinal(job.state) && !(prev && isFinal(prev.value.state))) {
      finished.inc({ state: JobState[job.state] });
      finishedInQueue(job);
    }
    // A run started when its attempt gains a start time: a short run's start and end can be one
    // write (ASSIGNED -> SUCCEEDED), so the RUNNING state itself may never be seen.
    const started = (j: Job) => j.attempts.at(-1)?.startTime !== undefined;
    const newRun =
      started(job) &&
      (prev ? !(prev.value.attempt === job.attempt && started(prev.value)) : job.state === JobState.RUNNING);
    if (newRun && job.startTime && job.submitTime) {
      submitToRunning.observe(Math.max(0, seconds(job.startTime) - seconds(job.submitTime)));
    }
  };
  store.jobs.on("put", onJob);

  // ---- scheduler and etcd writes, from their events ----

  const schedulingLatency = new Histogram({
    name: "crms_scheduling_latency_seconds",
    help: "Seconds from submit to assignment of each job this replica placed as leader.",
    buckets: LATENCY_BUCKETS,
    registers,
  });
  const unsubscribe = [scheduler.events.on("placed", (s) => schedulingLatency.observe(Math.max(0, s)))];

  const txnSeconds = new Histogram({
    name: "crms_etcd_txn_seconds",
    help: "Duration of each etcd Txn sent by the group-commit batcher.",
    buckets: TXN_BUCKETS,
    registers,
  });
  const txnBatch = new Histogram({
    name: "crms_etcd_txn_batch_size",
    help: "Transitions packed into each etcd Txn.",
    buckets: BATCH_BUCKETS,
    registers,
  });
  unsubscribe.push(
    store.batcher.events.on("txn", (s, size) => {
      txnSeconds.observe(s);
      txnBatch.observe(size);
    }),
  );

  // ---- workers and streams ----

  new Gauge({
    name: "crms_workers_attached",
    help: "Workers with a live Attach stream to this replica.",
    registers,
    collect() {
      this.set(sessions.attachedCount);
    },
  });
  new Gauge({
    name: "crms_workers",
    help: "Worker records by state (cluster-wide).",
    labelNames: ["state"],
    registers,
    collect() {
      const n = new Map<WorkerState, number>();
      for (const e of store.workers.entries.values()) n.set(e.value.state, (n.get(e.value.state) ?? 0) + 1);
      for (const s of workerStates) this.set({ state: WorkerState[s] }, n.get(s) ?? 0);
    },
  });
  new Gauge({
    name: "crms_streams_open",
    help: "Open streams on this replica: worker Attach streams, and output streams relayed from workers (watch streams are not counted).",
    labelNames: ["kind"],
    registers,
    collect() {
      const { attach, output } = sessions.openStreams();
      this.set({ kind: "attach" }, attach);
      this.set({ kind: "output" }, output);
    },
  });

  new Counter({
    name: "crms_watch_relists_total",
    help: "Relists of a replica cache after its first listing: a compacted or failed watch, or a watch silent while its prefix changed.",
    labelNames: ["cache"],
    registers,
    collect() {
      this.reset();
      this.inc({ cache: "jobs" }, Math.max(0, store.jobs.relists - 1));
      this.inc({ cache: "workers" }, Math.max(0, store.workers.relists - 1));
    },
  });

  // ---- maintenance (leader) ----

  new Counter({
    name: "crms_compactions_total",
    help: "etcd compactions done by this replica while leading.",
    registers,
    collect() {
      this.reset();
      this.inc(cp.compactor.runs);
    },
  });
  new Counter({
    name: "crms_retention_runs_total",
    help: "Retention runs done by this replica.",
    registers,
    collect() {
      this.reset();
      this.inc(cp.retention.runs);
    },
  });
  new Counter({
    name: "crms_retention_deleted_total",
    help: "Finished jobs deleted by retention on this replica.",
    registers,
    collect() {
      this.reset();
      this.inc(cp.retention.deleted);
    },
  });
  new Gauge({
    name: "crms_retention_waiting_for_history",
    help: "1 while retention deletes nothing because the history database cannot confirm the jobs, else 0.",
    registers,
    collect() {
      this.set(cp.retention.waiting ? 1 : 0);
    },
  });
  if (cp.history) {
    const history = cp.history;
    new Gauge({
      name: "crms_history_up",
      help: "1 if the job history database answered the last call, else 0.",
      registers,
      collect() {
        this.set(history.status().up ? 1 : 0);
      },
    });
    new Gauge({
      name: "crms_history_pending_jobs",
      help: "Finished jobs waiting to be written to the history database (on the scheduler leader).",
      registers,
      collect() {
        this.set(history.status().pending);
      },
    });
    new Gauge({
      name: "crms_history_lag_seconds",
      help: "Seconds since the oldest finished job still waiting for the history database ended; 0 when none wait.",
      registers,
      collect() {
        this.set(history.status().lagSeconds);
      },
    });
  }
  new Gauge({
    name: "crms_scheduler_leader",
    help: "1 if this replica is the scheduler leader, else 0.",
    registers,
    collect() {
      this.set(cp.election.isLeader ? 1 : 0);
    },
  });

  // ---- etcd space and alarms ----

  const dbSize = new Gauge({
    name: "crms_etcd_db_size_bytes",
    help: "Size of each etcd member's backend database (refreshed at most every 5 s).",
    labelNames: ["member"],
    registers,
    collect: () => refreshStatus(),
  });
  const dbInUse = new Gauge({
    name: "crms_etcd_db_size_in_use_bytes",
    help: "Bytes of each etcd member's backend database in use (the rest is freed by defragmentation).",
    labelNames: ["member"],
    registers,
    collect: () => refreshStatus(),
  });
  new Gauge({
    name: "crms_etcd_quota_bytes",
    help: "The etcd backend quota this replica assumes (--quota-backend-bytes of the members).",
    registers,
    collect() {
      this.set(cp.options.quotaBytes ?? DEFAULT_QUOTA_BYTES);
    },
  });
  new Gauge({
    name: "crms_etcd_alarm",
    help: "1 while an etcd alarm is active (as last checked by this replica).",
    labelNames: ["alarm"],
    registers,
    collect() {
      this.reset();
      for (const a of KNOWN_ALARMS) this.set({ alarm: a }, 0);
      for (const a of cp.alarms) this.set({ alarm: alarmName(a) }, 1);
    },
  });

  let statusAt = 0;
  let statusRun: Promise<void> | undefined;
  function refreshStatus(): Promise<void> {
    if (closed || Date.now() - statusAt < STATUS_EVERY_MS) return Promise.resolve();
    statusRun ??= (async () => {
      try {
        const { members } = await withTimeout(memberStatus(store), STATUS_TIMEOUT_MS);
        dbSize.reset();
        dbInUse.reset();
        for (const m of members) {
          if (m.error) continue;
          const member = m.name || m.id;
          dbSize.set({ member }, Number(m.dbSize));
          dbInUse.set({ member }, Number(m.dbSizeInUse));
        }
      } catch (err) {
        // Keep the last values; etcd may be busy or away. The next try waits the interval.
        cp.log.debug("metrics: etcd member status failed", { error: String(err) });
      } finally {
        statusAt = Date.now();
        statusRun = undefined;
      }
    })();
    return statusRun;
  }

  return {
    registry,

    async handle(req, res) {
      if (req.method !== "GET" && req.method !== "HEAD") {
        res.writeHead(405, { Allow: "GET, HEAD", "Content-Type": "text/plain; charset=utf-8" }).end("GET only\n");
        return;
      }
      try {
        const text = await registry.metrics();
        res.writeHead(200, { "Content-Type": registry.contentType, "Cache-Control": "no-store" });
        res.end(req.method === "HEAD" ? undefined : text);
      } catch (err) {
        cp.log.warn("metrics: collecting failed", { error: String(err) });
        if (!res.headersSent) res.writeHead(500, { "Content-Type": "text/plain; charset=utf-8" });
        res.end("collecting metrics failed\n");
      }
    },

    close() {
      if (closed) return;
      closed = true;
      store.jobs.off("put", onJob);
      for (const off of unsubscribe) off();
      registry.clear();
    },
  };
}
