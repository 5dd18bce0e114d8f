/** How the page writes states, times, sizes and command lines. */
import { type Timestamp, timestampDate } from "@bufbuild/protobuf/wkt";
import {
  type ArrayCounts,
  type Dependency,
  DependencyCondition,
  JobState,
  type Resources,
  type Usage,
} from "../../gen/crms/v1/job_pb.js";
import { WorkerState } from "../../gen/crms/v1/worker_pb.js";
import { h } from "./dom.js";

/** Every state a stored job can be in, in life order. */
export const JOB_STATES: JobState[] = [
  JobState.PENDING,
  JobState.HELD,
  JobState.ASSIGNED,
  JobState.RUNNING,
  JobState.SUCCEEDED,
  JobState.FAILED,
  JobState.KILLED,
  JobState.LOST,
];

/** The state's name as the contract spells it (RUNNING). */
/**
 * Environment names whose values the page masks until "Reveal": the worker's
 * own credential pattern (CREDENTIAL_NAME in src/worker/runner.ts; a test
 * checks they agree).
 */
export const SECRET_NAME = /TOKEN|SECRET|PASSWORD|KEY|CRMS_/i;

export function stateName(state: JobState): string {
  return JobState[state] ?? String(state);
}

/** Parses a state name (any case); undefined if it is not one. */
export function parseState(name: string): JobState | undefined {
  const s = (JobState as unknown as Record<string, JobState>)[name.toUpperCase()];
  return typeof s === "number" && s !== JobState.UNSPECIFIED ? s : undefined;
}

export function isFinal(state: JobState): boolean {
  return (
    state === JobState.SUCCEEDED || state === JobState.FAILED || state === JobState.KILLED || state === JobState.LOST
  );
}

export function isActive(state: JobState): boolean {
  return state === JobState.ASSIGNED || state === JobState.RUNNING;
}

/** An array's tasks in words: "2 running · 5 succeeded / 10" (zero counts left out). */
export function arrayCountsText(c: ArrayCounts): string {
  const named: Array<[string, number]> = [
    ["running", c.running],
    ["pending", c.pending],
    ["held", c.held],
    ["succeeded", c.succeeded],
    ["failed", c.failed],
    ["killed", c.killed],
    ["lost", c.lost],
  ];
  const parts = named.filter(([, n]) => n > 0).map(([k, n]) => `${n} ${k}`);
  return `${parts.join(" · ") || "no tasks"} / ${c.total}`;
}

/** "succeeded", "failed" or "finished" (what a dependency waits for). */
export function conditionName(d: Dependency): string {
  if (d.condition === DependencyCondition.FAILED) return "failed";
  if (d.condition === DependencyCondition.FINISHED) return "finished";
  return "succeeded";
}

/** A state badge: colour and the word, so colour is never the only cue. */
export function stateBadge(state: JobState): HTMLElement {
  const name = stateName(state);
  return h("span", { class: `badge s-${name.toLowerCase()}` }, name);
}

export function workerStateName(state: WorkerState): string {
  return WorkerState[state] ?? String(state);
}

export function workerBadge(state: WorkerState, stopRequested = false): HTMLElement {
  const name = workerStateName(state);
  return h(
    "span",
    { class: `badge w-${name.toLowerCase()}` },
    name,
    stopRequested ? h("span", { class: "badge-note" }, " · stopping") : null,
  );
}

export function toDate(ts: Timestamp | undefined): Date | undefined {
  return ts && (ts.seconds !== 0n || ts.nanos !== 0) ? timestampDate(ts) : undefined;
}

const pad = (n: number) => String(n).padStart(2, "0");

/** Local date and time, to the second: 2026-11-28 14:03:07. */
export function formatTime(d: Date | undefined): string {
  if (!d) return "—";
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A <time> element with the full timestamp as its machine value and title. */
export function timeEl(ts: Timestamp | undefined): HTMLElement | string {
  const d = toDate(ts);
  if (!d) return "—";
  return h("time", { datetime: d.toISOString(), title: d.toISOString() }, formatTime(d));
}

/** A duration in ms as 850 ms, 12.3 s, 4 min 05 s, 2 h 03 min. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${pad(Math.floor(s % 60))} s`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours} h ${pad(m % 60)} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** How long ago, for heartbeats: "2 s ago". */
export function formatAgo(d: Date | undefined, now = Date.now()): string {
  if (!d) return "never";
  const ms = now - d.getTime();
  if (ms < 1000) return "just now";
  return `${formatDuration(ms)} ago`;
}

/** Bytes as KiB, MiB, GiB. */
export function formatBytes(n: number | bigint): string {
  const v = Number(n);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let x = v;
  while (x >= 1024 && i < units.length - 1) {
    x /= 1024;
    i++;
  }
  return `${i === 0 ? x : x.toFixed(x < 10 ? 2 : 1)} ${units[i]}`;
}

export function formatCount(n: number | bigint): string {
  return Number(n).toLocaleString("en-US");
}

/** An argv as a shell would need it typed: words quoted only where needed. */
export function shellQuote(argv: readonly string[]): string {
  return argv
    .map((a) => (a !== "" && /^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`))
    .join(" ");
}

/** key=value pairs, sorted by key. */
export function formatMap(m: { [k: string]: string }): string {
  return Object.keys(m)
    .sort()
    .map((k) => `${k}=${m[k]}`)
    .join(", ");
}

/**
 * Parses "k=v, k2=v2" or one pair per line into a map; throws on a pair
 * without '='. With linesOnly, commas belong to values (environment variables).
 */
export function parsePairs(text: string, what: string, linesOnly = false): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split(linesOnly ? /\n/ : /[\n,]/)) {
    const item = raw.trim();
    if (!item) continue;
    const i = item.indexOf("=");
    if (i <= 0) throw new Error(`${what}: "${item}" is not KEY=VALUE`);
    out[item.slice(0, i).trim()] = item.slice(i + 1).trim();
  }
  return out;
}

/** A fraction as a percentage: 0.333 -> "33.3 %". */
export function formatPercent(frac: number): string {
  if (!Number.isFinite(frac)) return "—";
  const p = frac * 100;
  return `${p.toFixed(p > 0 && p < 10 ? 1 : 0)} %`;
}

/** The figures of a Resources message. */
export type Amounts = Pick<Resources, "cpus" | "memoryBytes" | "gpus" | "named">;

/**
 * Resources in words: "2 cpus · 4.00 GiB · 1 gpu · license=1". With `of`, each
 * figure as used of offered ("1/4 cpus"). Zero memory, gpus and names are left out
 * unless `of` offers them.
 */
export function formatResources(r: Amounts | undefined, of?: Amounts): string {
  const plural = (n: number, word: string) => `${word}${n === 1 ? "" : "s"}`;
  const parts: string[] = [];
  const cpus = r?.cpus ?? 0;
  parts.push(of ? `${cpus}/${of.cpus} ${plural(of.cpus, "cpu")}` : `${cpus} ${plural(cpus, "cpu")}`);
  const mem = r?.memoryBytes ?? 0n;
  if (of?.memoryBytes) parts.push(`${formatBytes(mem)}/${formatBytes(of.memoryBytes)}`);
  else if (mem) parts.push(formatBytes(mem));
  const gpus = r?.gpus ?? 0;
  if (of?.gpus) parts.push(`${gpus}/${of.gpus} ${plural(of.gpus, "gpu")}`);
  else if (gpus) parts.push(`${gpus} ${plural(gpus, "gpu")}`);
  const names = new Set([...Object.keys(r?.named ?? {}), ...Object.keys(of?.named ?? {})]);
  for (const k of [...names].sort()) {
    const v = r?.named[k] ?? 0n;
    parts.push(of ? `${k}=${v}/${of.named[k] ?? 0n}` : `${k}=${v}`);
  }
  return parts.join(" · ");
}

/** What a run used: "cpu 12.3 s · max RSS 120 MiB · wall 10.0 s · gpu 20.0 s" (gpu only when any). */
export function formatUsage(u: Usage): string {
  const s = (sec: number) => formatDuration(sec * 1000);
  const parts = [`cpu ${s(u.cpuSeconds)}`, `max RSS ${formatBytes(u.maxRssBytes)}`, `wall ${s(u.wallSeconds)}`];
  if (u.gpuSeconds > 0) parts.push(`gpu ${s(u.gpuSeconds)}`);
  return parts.join(" · ");
}
