/**
 * What the page knows live, shared by every view: workers (WatchWorkers),
 * job changes (WatchJobs, changes only: the page never loads every job),
 * per-second job rates for the chart, and the cluster status (GetClusterStatus
 * every few seconds, sooner after job changes while a view wants counts).
 * Streams reconnect with back-off; the job watch resumes from its last revision.
 *
 * One tab leads: the tabs of the page share the two long streams. The tab that
 * holds the Web Lock "crms-live-leader" watches and passes every event to the
 * others over a BroadcastChannel; when it closes, the lock passes to another
 * tab, which opens the streams. So ten tabs hold two long HTTP/1.1 streams,
 * not twenty (Chromium allows six connections per host). Without Web Locks
 * (an insecure context: plain http to a host other than localhost) each tab
 * watches for itself, as before.
 */
import type { GetClusterStatusResponse } from "../../gen/crms/v1/admin_pb.js";
import { type Job, JobState, WatchEventType } from "../../gen/crms/v1/job_pb.js";
import type { Worker } from "../../gen/crms/v1/worker_pb.js";
import { adminService, Code, codeOf, errorText, jobService, workerService } from "./api.js";
import { isActive, isFinal } from "./format.js";

/** A batch of job changes: the latest record of each changed job, and deleted ids. */
export interface JobBatch {
  put: Map<string, Job>;
  deleted: Set<string>;
}

export type StreamState = "connecting" | "live" | "retrying";

/** Per-second counts over a sliding window, in a ring. */
export class RateRing {
  private readonly counts: Uint32Array;
  private readonly stamps: Float64Array;

  constructor(readonly seconds = 300) {
    this.counts = new Uint32Array(seconds);
    this.stamps = new Float64Array(seconds).fill(-1);
  }

  add(sec = Math.floor(Date.now() / 1000), n = 1): void {
    const i = sec % this.seconds;
    if (this.stamps[i] !== sec) {
      this.stamps[i] = sec;
      this.counts[i] = 0;
    }
    this.counts[i] = (this.counts[i] as number) + n;
  }

  /** Counts for each second from now - seconds + 1 to now, oldest first. */
  series(now = Math.floor(Date.now() / 1000)): number[] {
    const out: number[] = [];
    for (let sec = now - this.seconds + 1; sec <= now; sec++) {
      const i = sec % this.seconds;
      out.push(this.stamps[i] === sec ? (this.counts[i] as number) : 0);
    }
    return out;
  }
}

/** A job id that cannot exist: watching only it gives the store revision and nothing else. */
const NO_SUCH_JOB = "9999999999999999";
const BATCH_MS = 200;
const STATUS_EVERY_MS = 5000;

type Listener<T> = (value: T) => void;

/** What the leading tab tells the others. */
type Shared =
  | { kind: "hello" }
  | { kind: "workers"; list: Worker[] }
  | { kind: "worker"; type: WatchEventType; worker: Worker }
  | { kind: "job"; type: WatchEventType; job: Job; revision: bigint }
  | { kind: "revision"; revision: bigint }
  | { kind: "conn"; jobState: StreamState; workerState: StreamState; lastError: string };

function listeners<T>() {
  const set = new Set<Listener<T>>();
  return {
    add(fn: Listener<T>): () => void {
      set.add(fn);
      return () => set.delete(fn);
    },
    emit(value: T): void {
      for (const fn of set) fn(value);
    },
    get size() {
      return set.size;
    },
  };
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    });
  });

export class Live {
  /** Workers by name, as the last WatchWorkers events left them. */
  readonly workers = new Map<string, Worker>();
  /** Ids of ASSIGNED or RUNNING jobs per worker, kept current by job events. */
  readonly active = new Map<string, Set<string>>();
  workersSynced = false;
  jobState: StreamState = "connecting";
  workerState: StreamState = "connecting";
  lastError = "";
  /** Jobs reaching RUNNING and reaching a final state, per second. */
  readonly started = new RateRing();
  readonly finished = new RateRing();
  /** When the page began counting. */
  readonly since = Date.now();
  status?: GetClusterStatusResponse;
  statusError = "";

  private readonly jobs = listeners<JobBatch>();
  private readonly workerChanges = listeners<void>();
  private readonly conn = listeners<void>();
  private readonly statusChanges = listeners<void>();
  private pending: JobBatch = { put: new Map(), deleted: new Set() };
  private flushTimer?: ReturnType<typeof setTimeout>;
  private statusTimer?: ReturnType<typeof setTimeout>;
  private statusInFlight = false;
  private activeChanged = false;
  private lastStatusAt = 0;
  private readonly stop = new AbortController();
  private channel?: BroadcastChannel;
  /** True in the tab that holds the streams (every tab without Web Locks). */
  leader = false;
  /**
   * The job watch's revision: a follower keeps the leader's, so that when it
   * takes over it resumes from there and misses no change made in between.
   */
  private revision = 0n;

  start(): void {
    const locks = (navigator as Navigator & { locks?: LockManager }).locks;
    if (typeof BroadcastChannel === "undefined" || !locks) this.lead();
    else {
      const channel = new BroadcastChannel("crms-live");
      this.channel = channel;
      channel.onmessage = (e: MessageEvent<Shared>) => this.onShared(e.data);
      const { signal } = this.stop;
      locks
        .request("crms-live-leader", { signal }, () => {
          this.lead();
          return new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve()));
        })
        .catch(() => {});
      channel.postMessage({ kind: "hello" } satisfies Shared);
    }
    void this.pollStatus();
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) void this.pollStatus();
    });
  }

  close(): void {
    this.stop.abort();
    this.channel?.close();
  }

  private lead(): void {
    this.leader = true;
    void this.watchJobs();
    void this.watchWorkers();
  }

  private share(msg: Shared): void {
    if (this.leader) this.channel?.postMessage(msg);
  }

  private shareConn(): void {
    this.share({ kind: "conn", jobState: this.jobState, workerState: this.workerState, lastError: this.lastError });
  }

  /** Another tab's news: the leader's events, applied as if this tab had watched them. */
  private onShared(msg: Shared): void {
    if (msg.kind === "hello") {
      if (this.leader && this.workersSynced) {
        this.share({ kind: "workers", list: [...this.workers.values()] });
      }
      if (this.leader) {
        this.shareConn();
        if (this.revision) this.share({ kind: "revision", revision: this.revision });
      }
      return;
    }
    if (this.leader) return;
    switch (msg.kind) {
      case "workers":
        this.workers.clear();
        this.active.clear();
        for (const w of msg.list) this.putWorker(w.name, w);
        this.workersSynced = true;
        this.workerChanges.emit();
        return;
      case "worker":
        if (msg.type === WatchEventType.DELETED) {
          this.workers.delete(msg.worker.name);
          this.active.delete(msg.worker.name);
        } else this.putWorker(msg.worker.name, msg.worker);
        if (this.workersSynced) this.workerChanges.emit();
        return;
      case "job":
        if (msg.revision > this.revision) this.revision = msg.revision;
        this.applyJob(msg.type, msg.job);
        return;
      case "revision":
        if (msg.revision > this.revision) this.revision = msg.revision;
        return;
      case "conn":
        this.jobState = msg.jobState;
        this.workerState = msg.workerState;
        if (msg.lastError) this.lastError = msg.lastError;
        this.conn.emit();
        return;
    }
  }

  /** Job changes, batched every 200 ms. */
  onJobs(fn: Listener<JobBatch>): () => void {
    return this.jobs.add(fn);
  }

  onWorkers(fn: () => void): () => void {
    return this.workerChanges.add(fn);
  }

  onConnection(fn: () => void): () => void {
    return this.conn.add(fn);
  }

  /** Status updates; while anyone listens, job changes bring a refresh within ~2 s. */
  onStatus(fn: () => void): () => void {
    const off = this.statusChanges.add(fn);
    if (Date.now() - this.lastStatusAt > 2000) void this.pollStatus();
    return off;
  }

  /** Slots in use on a worker, from live job events. */
  usedSlots(w: Worker): number {
    return this.active.get(w.name)?.size ?? w.usedSlots;
  }

  private setConn(kind: "jobs" | "workers", state: StreamState, error = ""): void {
    if (kind === "jobs") this.jobState = state;
    else this.workerState = state;
    if (error) this.lastError = error;
    this.conn.emit();
    this.shareConn();
  }

  private async watchWorkers(): Promise<void> {
    const signal = this.stop.signal;
    let delay = 500;
    while (!signal.aborted) {
      try {
        const fresh = new Map<string, Worker>();
        let synced = false;
        for await (const ev of workerService.watchWorkers({}, { signal })) {
          const w = ev.worker;
          if (ev.type === WatchEventType.EXISTING && w) fresh.set(w.name, w);
          else if (ev.type === WatchEventType.SYNCED) {
            synced = true;
            this.workers.clear();
            this.active.clear();
            for (const [name, worker] of fresh) this.putWorker(name, worker);
            this.workersSynced = true;
            delay = 500;
            this.setConn("workers", "live");
            this.workerChanges.emit();
            this.share({ kind: "workers", list: [...this.workers.values()] });
          } else if (ev.type === WatchEventType.PUT && w) {
            this.putWorker(w.name, w);
            if (synced) this.workerChanges.emit();
            if (synced) this.share({ kind: "worker", type: ev.type, worker: w });
          } else if (ev.type === WatchEventType.DELETED && w) {
            this.workers.delete(w.name);
            this.active.delete(w.name);
            if (synced) this.workerChanges.emit();
            if (synced) this.share({ kind: "worker", type: ev.type, worker: w });
          }
        }
        if (signal.aborted) return;
        this.setConn("workers", "retrying", "worker watch ended");
      } catch (err) {
        if (signal.aborted) return;
        this.setConn("workers", "retrying", errorText(err));
      }
      await sleep(delay, signal);
      delay = Math.min(delay * 2, 15_000);
    }
  }

  private putWorker(name: string, w: Worker): void {
    this.workers.set(name, w);
    this.active.set(name, new Set(w.runningJobs));
  }

  /** The revision the job cache is at: a watch of a job that cannot exist answers only SYNCED. */
  private async jobRevision(signal: AbortSignal): Promise<bigint> {
    const ctl = new AbortController();
    const abort = () => ctl.abort();
    signal.addEventListener("abort", abort);
    try {
      for await (const ev of jobService.watchJobs({ ids: [NO_SUCH_JOB] }, { signal: ctl.signal })) {
        if (ev.type === WatchEventType.SYNCED) return ev.revision;
      }
      throw new Error("job watch ended before it synced");
    } finally {
      signal.removeEventListener("abort", abort);
      ctl.abort();
    }
  }

  private async watchJobs(): Promise<void> {
    const signal = this.stop.signal;
    let delay = 500;
    while (!signal.aborted) {
      try {
        if (this.revision === 0n) {
          this.revision = await this.jobRevision(signal);
          this.share({ kind: "revision", revision: this.revision });
        }
        const stream = jobService.watchJobs({ afterRevision: this.revision }, { signal });
        this.setConn("jobs", "live");
        delay = 500;
        for await (const ev of stream) {
          if (ev.revision > this.revision) this.revision = ev.revision;
          if (ev.job) {
            this.applyJob(ev.type, ev.job);
            this.share({ kind: "job", type: ev.type, job: ev.job, revision: this.revision });
          }
        }
        if (signal.aborted) return;
        this.setConn("jobs", "retrying", "job watch ended");
      } catch (err) {
        if (signal.aborted) return;
        // Compacted away, or a replica behind the one we watched before: start afresh.
        const code = codeOf(err);
        if (code === Code.OutOfRange || code === Code.InvalidArgument) this.revision = 0n;
        this.setConn("jobs", "retrying", errorText(err));
      }
      await sleep(delay, signal);
      delay = Math.min(delay * 2, 15_000);
    }
  }

  private applyJob(type: WatchEventType, job: Job): void {
    const sec = Math.floor(Date.now() / 1000);
    if (type === WatchEventType.DELETED) {
      this.pending.put.delete(job.id);
      this.pending.deleted.add(job.id);
      if (this.active.get(job.worker)?.delete(job.id)) this.activeChanged = true;
    } else {
      this.pending.deleted.delete(job.id);
      this.pending.put.set(job.id, job);
      if (job.state === JobState.RUNNING) this.started.add(sec);
      else if (isFinal(job.state)) this.finished.add(sec);
      if (job.worker) {
        if (isActive(job.state)) {
          let set = this.active.get(job.worker);
          if (!set) this.active.set(job.worker, (set = new Set()));
          if (!set.has(job.id)) {
            set.add(job.id);
            this.activeChanged = true;
          }
        } else if (this.active.get(job.worker)?.delete(job.id)) {
          this.activeChanged = true;
        }
      }
    }
    this.flushTimer ??= setTimeout(() => this.flush(), BATCH_MS);
  }

  private flush(): void {
    this.flushTimer = undefined;
    const batch = this.pending;
    this.pending = { put: new Map(), deleted: new Set() };
    this.jobs.emit(batch);
    // Slots in use changed with the jobs: worker figures follow.
    if (this.activeChanged) {
      this.activeChanged = false;
      this.workerChanges.emit();
    }
    if (this.statusChanges.size && Date.now() - this.lastStatusAt > 2000) void this.pollStatus();
  }

  /** Fetches the cluster status now, then every 5 s while the page is visible. */
  async pollStatus(): Promise<void> {
    if (this.statusInFlight || this.stop.signal.aborted) return;
    clearTimeout(this.statusTimer);
    this.statusInFlight = true;
    try {
      this.status = await adminService.getClusterStatus({}, { signal: this.stop.signal, timeoutMs: 10_000 });
      this.statusError = "";
    } catch (err) {
      this.statusError = errorText(err);
    } finally {
      this.statusInFlight = false;
      this.lastStatusAt = Date.now();
    }
    this.statusChanges.emit();
    if (!document.hidden) this.statusTimer = setTimeout(() => void this.pollStatus(), STATUS_EVERY_MS);
  }
}

/** The page's one live state. */
export const live = new Live();
