/**
 * The last hour of the cluster, per minute, kept in the control plane for the
 * page's overview chart: jobs started and finished, and the most jobs queued
 * (PENDING) and slots used seen in the minute. A ring of 60 minutes in memory
 * on each replica (every replica sees the same job events through its cache);
 * it starts empty when the process starts. Not a metrics system: Prometheus
 * has /metrics for that.
 */
import type { Job } from "../../gen/crms/v1/job_pb.js";
import { JobState } from "../../gen/crms/v1/job_pb.js";
import { WorkerState } from "../../gen/crms/v1/worker_pb.js";
import { isFinal } from "../rpc/states.js";
import type { Entry } from "../store/cache.js";
import type { Store } from "../store/store.js";

export interface ActivityMinute {
  /** The minute's start, in ms since the epoch. */
  minute: number;
  started: number;
  finished: number;
  /** The most PENDING jobs seen in the minute. */
  queued: number;
  /** The most slots in use seen in the minute, of slotsTotal (UP and DRAINING workers). */
  slotsUsed: number;
  slotsTotal: number;
}

const MINUTES = 60;
const SAMPLE_MS = 5000;

export class Activity {
  private readonly ring: ActivityMinute[] = [];
  /** When counting began (ms): minutes before it are unknown, not zero. */
  readonly since = Date.now();
  private readonly timer: ReturnType<typeof setInterval>;
  private readonly onJob: (id: string, e: Entry<Job>, prev: Entry<Job> | undefined) => void;

  constructor(private readonly store: Store) {
    this.onJob = (_id, e, prev) => {
      const job = e.value;
      const slot = this.current();
      // A run started when its attempt gains a start time (a short run may go ASSIGNED -> SUCCEEDED in one write).
      const started = (j: Job) => j.attempts.at(-1)?.startTime !== undefined;
      if (started(job) && !(prev && prev.value.attempt === job.attempt && started(prev.value))) slot.started++;
      if (isFinal(job.state) && !(prev && isFinal(prev.value.state))) slot.finished++;
      this.sample(slot);
    };
    store.jobs.on("put", this.onJob);
    this.timer = setInterval(() => this.sample(this.current()), SAMPLE_MS);
    this.timer.unref();
    this.sample(this.current());
  }

  private current(now = Date.now()): ActivityMinute {
    const minute = now - (now % 60_000);
    let last = this.ring.at(-1);
    if (!last || last.minute !== minute) {
      last = { minute, started: 0, finished: 0, queued: 0, slotsUsed: 0, slotsTotal: 0 };
      this.ring.push(last);
      if (this.ring.length > MINUTES) this.ring.shift();
    }
    return last;
  }

  private sample(slot: ActivityMinute): void {
    const { store } = this;
    slot.queued = Math.max(slot.queued, store.jobIndex.counts.get(JobState.PENDING) ?? 0);
    let used = 0;
    let total = 0;
    for (const e of store.workers.entries.values()) {
      const w = e.value;
      if (w.state !== WorkerState.UP && w.state !== WorkerState.DRAINING) continue;
      total += w.slots;
      used += store.jobIndex.active.get(w.name)?.size ?? 0;
    }
    slot.slotsUsed = Math.max(slot.slotsUsed, used);
    slot.slotsTotal = Math.max(slot.slotsTotal, total);
  }

  /** The last hour, oldest first, one entry per minute (minutes with no record are zero after `since`). */
  snapshot(now = Date.now()): { since: number; minutes: ActivityMinute[] } {
    this.sample(this.current(now));
    const byMinute = new Map(this.ring.map((m) => [m.minute, m]));
    const end = now - (now % 60_000);
    const minutes: ActivityMinute[] = [];
    for (let m = end - (MINUTES - 1) * 60_000; m <= end; m += 60_000) {
      const known = byMinute.get(m);
      if (known) minutes.push({ ...known });
      else if (m + 60_000 > this.since) {
        minutes.push({ minute: m, started: 0, finished: 0, queued: 0, slotsUsed: 0, slotsTotal: 0 });
      }
    }
    return { since: this.since, minutes };
  }

  close(): void {
    clearInterval(this.timer);
    this.store.jobs.off("put", this.onJob);
  }
}
