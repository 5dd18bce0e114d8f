/**
 * Whether etcd answers, watched by a cheap linearizable read every half second
 * (a stalled member, a paused VM or a lost quorum all fail it). While etcd does
 * not answer, writes are refused at once with UNAVAILABLE and nothing is sent;
 * a write already waiting when etcd stops answering is answered UNAVAILABLE
 * too (its outcome is unknown: a retry with the same request id is safe). The
 * last outage is kept for `crms admin status`.
 */
import { EventEmitter } from "node:events";
import { CrmsError } from "../errors.js";

/** One period during which etcd did not answer. */
export interface Outage {
  lostAt: Date;
  /** Unset while the outage lasts. */
  restoredAt?: Date;
  /** The probe's error when the outage began. */
  error: string;
  /** Whether the replica lease had to be granted again. */
  leaseRenewed: boolean;
  /** Worker records written again after it (re-created, or bound to the new lease). */
  reregistered: number;
  /** The first few of those workers' names. */
  reregisteredNames: string[];
}

export interface HealthEvents {
  lost: [outage: Outage];
  restored: [outage: Outage];
}

export interface HealthOptions {
  /** ms between probes (default 500). */
  intervalMs?: number;
  /** A probe unanswered this long (ms) means etcd is not reachable (default 2000). */
  timeoutMs?: number;
}

/** The answer to a write refused because etcd does not answer: nothing was written. */
export function notReachable(since: Date): CrmsError {
  const seconds = Math.round((Date.now() - since.getTime()) / 1000);
  return new CrmsError("UNAVAILABLE", `etcd is not reachable (for ${seconds}s); nothing was written; retry`);
}

export class EtcdHealth extends EventEmitter<HealthEvents> {
  reachable = true;
  /** The outage in progress, else the last one. */
  last?: Outage;
  private timer?: NodeJS.Timeout;
  private probing = false;
  /** When etcd last answered a probe or a guarded call (ms). */
  private lastAnswer = Date.now();
  /** Rejections of the writes waiting on etcd now. */
  private readonly waiting = new Set<(err: CrmsError) => void>();

  constructor(
    private readonly probe: (timeoutMs: number) => Promise<unknown>,
    private readonly options: HealthOptions = {},
  ) {
    super();
    this.setMaxListeners(0); // each report waiting for etcd's return listens
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.tick(), this.options.intervalMs ?? 500);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private async tick(): Promise<void> {
    if (this.probing) return;
    this.probing = true;
    const timeoutMs = this.options.timeoutMs ?? 2000;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.probe(timeoutMs),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
      this.answered();
    } catch (err) {
      // A slow probe while writes keep landing (a busy etcd) is not an outage.
      if (Date.now() - this.lastAnswer >= timeoutMs) this.failed(err);
    } finally {
      clearTimeout(timer);
      this.probing = false;
    }
  }

  /** etcd answered: ends an outage. */
  answered(): void {
    this.lastAnswer = Date.now();
    if (this.reachable) return;
    this.reachable = true;
    const outage = this.last as Outage;
    outage.restoredAt = new Date();
    this.emit("restored", outage);
  }

  /** etcd did not answer: begins an outage, and answers every waiting write. */
  failed(err: unknown): void {
    if (!this.reachable) return;
    this.reachable = false;
    const outage: Outage = {
      lostAt: new Date(),
      error: err instanceof Error ? err.message : String(err),
      leaseRenewed: false,
      reregistered: 0,
      reregisteredNames: [],
    };
    this.last = outage;
    const unknown = new CrmsError(
      "UNAVAILABLE",
      "etcd is not reachable: it stopped answering during this write, which may still be applied when it returns; retry with the same request id",
    );
    for (const reject of this.waiting) reject(unknown);
    this.waiting.clear();
    this.emit("lost", outage);
  }

  /**
   * Runs a write (or a read it depends on) while etcd answers: refused at once
   * while it does not, answered UNAVAILABLE if etcd stops answering meanwhile.
   */
  guard<T>(fn: () => Promise<T>): Promise<T> {
    if (!this.reachable) return Promise.reject(notReachable(this.last?.lostAt ?? new Date()));
    return new Promise<T>((resolve, reject) => {
      this.waiting.add(reject);
      fn().then(
        (v) => {
          this.waiting.delete(reject);
          this.answered();
          resolve(v);
        },
        (err) => {
          this.waiting.delete(reject);
          reject(err);
        },
      );
    });
  }
}
