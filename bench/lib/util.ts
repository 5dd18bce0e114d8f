/**
 * Shared helpers of the benchmark processes: one wall clock, a mergeable
 * latency histogram, JSON lines to the parent, the machine's description.
 */
import { readFileSync } from "node:fs";
import { cpus } from "node:os";
import { createInterface } from "node:readline";

/**
 * Wall-clock milliseconds with sub-millisecond resolution. Every bench process
 * uses this one clock, so timestamps taken in different processes on this
 * machine can be subtracted.
 */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A JSON line on stdout: how a load process reports figures to the parent. */
export function emit(obj: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

/** A progress line on stderr. */
export function progress(msg: string): void {
  const t = new Date().toISOString().slice(11, 23);
  process.stderr.write(`[bench ${t}] ${msg}\n`);
}

/** The machine as the JSON line reports it. */
export function machine(): { cpu: string; cores: number; node: string } {
  let cpu = cpus()[0]?.model ?? "unknown";
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"));
    if (m?.[1]) cpu = m[1].trim();
  } catch {
    // not Linux
  }
  return { cpu, cores: cpus().length, node: process.version };
}

/** --key value / --flag command-line options into a map (numbers stay strings). */
export function parseFlags(argv: string[]): { positionals: string[]; flags: Map<string, string> } {
  const positionals: string[] = [];
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (!a.startsWith("--")) {
      positionals.push(a);
      continue;
    }
    const eq = a.indexOf("=");
    if (eq > 0) {
      flags.set(a.slice(2, eq), a.slice(eq + 1));
    } else if (i + 1 < argv.length && !(argv[i + 1] as string).startsWith("--")) {
      flags.set(a.slice(2), argv[++i] as string);
    } else {
      flags.set(a.slice(2), "true");
    }
  }
  return { positionals, flags };
}

export function numFlag(flags: Map<string, string>, name: string, fallback: number): number {
  const v = flags.get(name);
  if (v === undefined) return fallback;
  const n = Number(v.replaceAll("_", ""));
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a number ≥ 0 (got ${v})`);
  return n;
}

/**
 * A latency histogram with ~1 % relative precision (log buckets from 1 µs),
 * cheap to record into and to merge across processes as JSON.
 */
export class Histogram {
  private static readonly BASE = Math.log(1.01);
  counts = new Map<number, number>();
  n = 0;
  max = 0;
  min = Number.POSITIVE_INFINITY;
  sum = 0;

  record(ms: number): void {
    const v = Math.max(ms, 0.001);
    const b = Math.floor(Math.log(v * 1000) / Histogram.BASE);
    this.counts.set(b, (this.counts.get(b) ?? 0) + 1);
    this.n++;
    this.sum += ms;
    if (ms > this.max) this.max = ms;
    if (ms < this.min) this.min = ms;
  }

  /** The value below which a fraction q of the samples fall (bucket midpoint; max for q=1). */
  quantile(q: number): number {
    if (this.n === 0) return Number.NaN;
    if (q >= 1) return this.max;
    const rank = Math.ceil(q * this.n);
    let seen = 0;
    for (const b of [...this.counts.keys()].sort((x, y) => x - y)) {
      seen += this.counts.get(b) as number;
      if (seen >= rank) {
        const mid = Math.exp((b + 0.5) * Histogram.BASE) / 1000;
        return Math.min(Math.max(mid, this.min), this.max);
      }
    }
    return this.max;
  }

  get mean(): number {
    return this.n ? this.sum / this.n : Number.NaN;
  }

  toJSON(): { c: [number, number][]; n: number; max: number; min: number; sum: number } {
    return { c: [...this.counts], n: this.n, max: this.max, min: this.min, sum: this.sum };
  }

  static fromJSON(j: unknown): Histogram {
    const h = new Histogram();
    const o = j as ReturnType<Histogram["toJSON"]> | undefined;
    if (!o) return h;
    h.counts = new Map(o.c);
    h.n = o.n;
    h.max = o.max;
    h.min = o.min ?? Number.POSITIVE_INFINITY;
    h.sum = o.sum;
    return h;
  }

  merge(other: Histogram): this {
    for (const [b, c] of other.counts) this.counts.set(b, (this.counts.get(b) ?? 0) + c);
    this.n += other.n;
    this.sum += other.sum;
    this.max = Math.max(this.max, other.max);
    this.min = Math.min(this.min, other.min);
    return this;
  }
}

/** Rounds for display and JSON: 3 significant decimals below 10, else 1 or 0. */
export function round(x: number): number {
  if (!Number.isFinite(x)) return x;
  const a = Math.abs(x);
  const d = a >= 1000 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3;
  return Number(x.toFixed(d));
}

/**
 * Commands from the parent, one JSON object per stdin line. When stdin ends
 * (the parent went away) `onEnd` runs, so no load process outlives its parent.
 */
export function commands(onCommand: (cmd: Record<string, unknown>) => void, onEnd: () => void): void {
  const rl = createInterface({ input: process.stdin });
  rl.on("line", (line) => {
    if (!line.trim()) return;
    try {
      onCommand(JSON.parse(line) as Record<string, unknown>);
    } catch (err) {
      progress(`bad command line ${JSON.stringify(line)}: ${String(err)}`);
    }
  });
  rl.on("close", onEnd);
}

/** Exits the process after `seconds` whatever happens (every load process has one). */
export function hardDeadline(seconds: number, what: string): void {
  setTimeout(() => {
    progress(`${what}: hard deadline of ${seconds}s reached; exiting`);
    process.exit(3);
  }, seconds * 1000).unref();
}

/** gRPC error → short code name for counting. */
export function errorCode(err: unknown): string {
  const e = err as { code?: number; details?: string; message?: string };
  const names: Record<number, string> = {
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
  };
  return typeof e?.code === "number" ? (names[e.code] ?? `CODE_${e.code}`) : "ERROR";
}
