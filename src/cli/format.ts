/** Output for people (tables) and for scripts (JSON). */
import { type DescMessage, type MessageShape, toJson } from "@bufbuild/protobuf";
import { type Timestamp, timestampDate } from "@bufbuild/protobuf/wkt";
import type { EtcdOutage } from "../../gen/crms/v1/admin_pb.js";
import {
  type ArrayCounts,
  type Job,
  JobSchema,
  JobState,
  type Resources,
  type Usage,
} from "../../gen/crms/v1/job_pb.js";
import { type Worker, WorkerSchema, WorkerState } from "../../gen/crms/v1/worker_pb.js";
import { OWNER_LABEL } from "../rpc/names.js";
import { formatArraySpec } from "../scheduler/arrays.js";
import { conditionWord } from "../scheduler/dependencies.js";
import { DEFAULT_MAX_LOST_RETRIES } from "../scheduler/job-machine.js";
import { stateColour, terminalWidth } from "./output.js";

export interface TableOptions {
  /** The width to fit (the terminal's); columns named in `shrink` give way first, in that order. */
  width?: number;
  shrink?: string[];
  /** Painters of cells by column name (colour), applied after alignment. */
  paint?: Record<string, (text: string) => string>;
}

/** Renders rows as an aligned table with a header, cut to `width` by truncating the `shrink` columns first. */
export function table(header: string[], rows: string[][], options: TableOptions = {}): string {
  // A loop, not Math.max(...rows): a spread of a million rows overflows the stack.
  const widths = header.map((h) => h.length);
  for (const r of rows)
    for (let i = 0; i < widths.length; i++) widths[i] = Math.max(widths[i] ?? 0, (r[i] ?? "").length);
  const total = () => widths.reduce((a, b) => a + b, 0) + 2 * (widths.length - 1);
  const width = options.width ?? Number.POSITIVE_INFINITY;
  for (const name of options.shrink ?? []) {
    const i = header.indexOf(name);
    const over = total() - width;
    if (over <= 0) break;
    if (i >= 0) widths[i] = Math.max(Math.min(name.length + 2, widths[i] ?? 0), (widths[i] ?? 0) - over);
  }
  const cut = (s: string, w: number) => (s.length > w ? `${s.slice(0, Math.max(0, w - 1))}…` : s);
  const line = (cells: string[], paint: boolean) =>
    cells
      .map((c, i) => {
        const w = widths[i] ?? 0;
        const text = cut(c, w);
        const painter = paint ? options.paint?.[header[i] ?? ""] : undefined;
        const shown = painter ? painter(text) : text;
        return i === cells.length - 1 ? shown : shown + " ".repeat(w - text.length);
      })
      .join("  ")
      .trimEnd();
  return [line(header, false)].concat(rows.map((r) => line(r, true))).join("\n");
}

export const jobState = (s: JobState) => JobState[s] ?? String(s);
export const workerState = (s: WorkerState) => WorkerState[s] ?? String(s);

/** A time as ISO 8601 to the second, "-" when unset. */
export function time(ts: Timestamp | undefined): string {
  return ts
    ? timestampDate(ts)
        .toISOString()
        .replace(/\.\d+Z$/, "Z")
    : "-";
}

function ago(ts: Timestamp | undefined): string {
  if (!ts) return "-";
  const s = Math.max(0, Math.round((Date.now() - timestampDate(ts).getTime()) / 1000));
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
}

/** A size for people: GiB, MiB or KiB. */
export function bytes(n: bigint | number): string {
  const x = Number(n);
  return x >= 1 << 30
    ? `${(x / (1 << 30)).toFixed(2)} GiB`
    : x >= 1 << 20
      ? `${(x / (1 << 20)).toFixed(1)} MiB`
      : `${(x / 1024).toFixed(0)} KiB`;
}

/** An etcd outage a replica lived through, in one line for `crms admin status`. */
export function etcdOutage(o: EtcdOutage): string {
  const how = `${o.seconds.toFixed(1)}s`;
  if (!o.restoredTime) return `since ${time(o.lostTime)} (${how} so far): ${o.error}`;
  const names = o.reregisteredWorkers.join(", ");
  const more = o.workersReregistered > o.reregisteredWorkers.length ? ", …" : "";
  return [
    `${time(o.lostTime)} for ${how} (${o.error})`,
    o.leaseRenewed ? "replica lease granted again" : "replica lease kept",
    `${o.workersReregistered} worker record(s) written again${names ? ` (${names}${more})` : ""}`,
  ].join("; ");
}

function commandLine(job: Job, max = 40): string {
  const s = (job.spec?.command ?? []).map((a) => (/[\s"'$]/.test(a) ? JSON.stringify(a) : a)).join(" ");
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** One JSON value for scripts. */
export function json<T extends DescMessage>(schema: T, value: MessageShape<T>): unknown {
  return toJson(schema, value, { alwaysEmitImplicit: false });
}

/** "3 running, 10 succeeded, 987 pending of 1000" (only the non-zero counts). */
export function arrayCountsText(c: ArrayCounts | undefined): string {
  if (!c) return "-";
  const parts = (["running", "pending", "held", "succeeded", "failed", "killed", "lost"] as const)
    .filter((k) => c[k] > 0)
    .map((k) => `${c[k]} ${k}`);
  return `${parts.join(", ") || "none"} of ${c.total}`;
}

/** The state column: a parent's state with its task counts (short: tasks ended of the total). */
function stateText(j: Job, wide = true): string {
  if (!j.spec?.array) return jobState(j.state);
  if (!wide) {
    const c = j.arrayCounts;
    const ended = c ? c.succeeded + c.failed + c.killed + c.lost : 0;
    return `${jobState(j.state)} ${ended}/${c?.total ?? 0}`;
  }
  return `${jobState(j.state)} [${arrayCountsText(j.arrayCounts)}]`;
}

function dependenciesText(j: Job): string {
  return (j.spec?.after ?? []).map((d) => `${d.jobId}:${conditionWord(d.condition)}`).join(", ");
}

/** Table options for a terminal: its width, COMMAND (then REASON, NAME) truncated first, coloured states. */
function screen(shrink: string[]): TableOptions {
  return { width: terminalWidth(), shrink, paint: { STATE: stateColour() } };
}

export function jobsTable(
  jobs: Job[],
  wide = false,
  options = screen(["COMMAND", "REASON", "NAME", "LABELS"]),
): string {
  const header = wide
    ? ["ID", "NAME", "STATE", "WORKER", "ATTEMPT", "EXIT", "QUEUE", "USER", "SUBMITTED", "COMMAND", "REASON"]
    : ["ID", "NAME", "STATE", "WORKER", "AGE", "COMMAND"];
  const rows = jobs.map((j) =>
    wide
      ? [
          j.id,
          j.spec?.name || "-",
          stateText(j),
          j.worker || "-",
          String(j.attempt),
          j.exitCode === undefined ? (j.signal ? j.signal : "-") : String(j.exitCode),
          queueName(j),
          userName(j) || "-",
          time(j.submitTime),
          commandLine(j, 60),
          j.error || j.pendingReason || "",
        ]
      : [j.id, j.spec?.name || "-", stateText(j, false), j.worker || "-", ago(j.submitTime), commandLine(j)],
  );
  return table(header, rows, options);
}

/** The queue a job is in (Job.queue, else what its spec asked for). */
const queueName = (j: Job) => j.queue || j.spec?.queue || "default";

/** Who a job is counted against (Job.user, else its owner label). */
const userName = (j: Job) => j.user || j.spec?.labels[OWNER_LABEL] || "";

/** "2 cpus, 4.00 GiB memory, 1 gpu, license=1"; unset: the default, 1 cpu. */
export function resourcesText(r: Resources | undefined): string {
  if (!r) return "1 cpu (default)";
  const n = (k: number, one: string) => `${k} ${one}${k === 1 ? "" : "s"}`;
  return [
    n(r.cpus || 1, "cpu"),
    ...(r.memoryBytes ? [`${bytes(r.memoryBytes)} memory`] : []),
    ...(r.gpus ? [n(r.gpus, "gpu")] : []),
    ...Object.entries(r.named).map(([k, v]) => `${k}=${v}`),
  ].join(", ");
}

/** "cpu 12.3 s, max RSS 45.6 MiB, wall 10.0 s, gpu 0.0 s". */
export function usageText(u: Usage): string {
  return `cpu ${u.cpuSeconds.toFixed(1)} s, max RSS ${bytes(u.maxRssBytes)}, wall ${u.wallSeconds.toFixed(1)} s, gpu ${u.gpuSeconds.toFixed(1)} s`;
}

/** Retries used of the budget: the last failed run of a job that ran out is not a retry. */
function retriesText(j: Job): string {
  const max = j.spec?.maxRetries ?? 0;
  const lostMax = j.spec?.maxLostRetries || DEFAULT_MAX_LOST_RETRIES;
  return (
    `${Math.min(j.failures, max)} of ${max} used (${j.failures} failed runs); ` +
    `lost runs ${j.lostCount}, requeued ${Math.min(j.lostCount, lostMax)} of ${lostMax} (not counted as retries)`
  );
}

export function jobDetail(j: Job): string {
  const position: Array<[string, string]> =
    j.state === JobState.PENDING
      ? [["Queue position", j.queuePosition ? `${j.queuePosition} (1 = next)` : "- (not known on this replica)"]]
      : [];
  const lines: Array<[string, string]> = [
    ["ID", j.id],
    ["Name", j.spec?.name || "-"],
    ["State", jobState(j.state)],
    ["Command", commandLine(j, 1000)],
    ["Worker", j.worker || "-"],
    ["Attempt", String(j.attempt)],
    ["PID", j.pid ? String(j.pid) : "-"],
    ["Exit code", j.exitCode === undefined ? "-" : String(j.exitCode)],
    ["Signal", j.signal || "-"],
    ["Error", j.error || "-"],
    ["Pending reason", j.pendingReason || "-"],
    ...position,
    ["Queue", `${queueName(j)}${j.spec?.preemptible ? " (preemptible)" : ""}`],
    ["User", userName(j) || "-"],
    ["Resources", resourcesText(j.spec?.resources)],
    ["Priority", String(j.spec?.priority ?? 0)],
    ["Retries", retriesText(j)],
    ["Timeout", j.spec?.timeoutSeconds ? `${j.spec.timeoutSeconds}s` : "-"],
    ["Requeued", j.requeues ? `${j.requeues} time(s)` : "-"],
    ["Submitted", time(j.submitTime)],
    ["Started", time(j.startTime)],
    ["Ended", time(j.endTime)],
  ];
  if (j.usage) lines.push(["Usage", usageText(j.usage)]);
  if (j.preemptions || j.preemptRequested) {
    const now = j.preemptRequested ? "; being preempted now" : "";
    lines.push(["Preemptions", `${j.preemptions} (counted on no retry budget${now})`]);
  }
  if (j.spec?.targetWorker) lines.push(["Target worker", j.spec.targetWorker]);
  if (j.runOn) lines.push(["Run on", `${j.runOn} (RunJob)`]);
  if (j.spec?.array) {
    lines.push(["Array", formatArraySpec(j.spec.array)]);
    lines.push(["Tasks", `${arrayCountsText(j.arrayCounts)} (${j.arrayCreated} created; crms jobs --array ${j.id})`]);
  }
  if (j.arrayParent) lines.push(["Array task", `index ${j.arrayIndex} of array ${j.arrayParent}`]);
  if (j.spec?.after.length) lines.push(["After", dependenciesText(j)]);
  const kv = (m: { [k: string]: string } | undefined) =>
    Object.entries(m ?? {})
      .map(([k, v]) => `${k}=${v}`)
      .join(",");
  if (Object.keys(j.spec?.labels ?? {}).length) lines.push(["Labels", kv(j.spec?.labels)]);
  if (Object.keys(j.spec?.constraints ?? {}).length) lines.push(["Constraints", kv(j.spec?.constraints)]);
  const w = Math.max(...lines.map(([k]) => k.length));
  let out = lines.map(([k, v]) => `${`${k}:`.padEnd(w + 2)}${v}`).join("\n");
  if (j.attempts.length) {
    out += `\n\nAttempts:\n${table(
      ["#", "WORKER", "ASSIGNED", "STARTED", "ENDED", "OUTCOME", "DETAIL"],
      j.attempts.map((a) => [
        String(a.number),
        a.worker,
        time(a.assignTime),
        time(a.startTime),
        time(a.endTime),
        a.outcome ? `${jobState(a.outcome)}${a.timedOut ? " (timeout)" : ""}` : "running",
        a.error ||
          (a.outcome === JobState.PREEMPTED
            ? "preempted (no retry charged)"
            : a.exitCode !== undefined
              ? `exit ${a.exitCode}`
              : ""),
      ]),
    )}`;
  }
  return out;
}

export function workersTable(workers: Worker[], options = screen(["LABELS", "HOST"])): string {
  return table(
    ["NAME", "STATE", "SLOTS", "USED", "LABELS", "HOST", "HEARTBEAT"],
    workers.map((w) => [
      w.name,
      w.downReason && w.state !== WorkerState.UP && w.state !== WorkerState.DRAINING
        ? `${workerState(w.state)} (${w.downReason})`
        : workerState(w.state),
      String(w.slots),
      String(w.usedSlots),
      Object.entries(w.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(",") || "-",
      w.hostname || "-",
      ago(w.lastHeartbeat),
    ]),
    options,
  );
}

export function workerDetail(w: Worker): string {
  return [
    `Name:        ${w.name}`,
    `State:       ${workerState(w.state)}`,
    `Slots:       ${w.usedSlots}/${w.slots} used`,
    `Labels:      ${
      Object.entries(w.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(",") || "-"
    }`,
    `Host:        ${w.hostname || "-"}`,
    `Version:     ${w.version || "-"}`,
    `Attached:    ${time(w.attachTime)}`,
    `Heartbeat:   ${ago(w.lastHeartbeat)} ago`,
    `Replica:     ${w.replica || "-"}`,
    `Running:     ${w.runningJobs.join(", ") || "-"}`,
    ...(w.state === WorkerState.DOWN || w.state === WorkerState.DISCONNECTED
      ? [
          `Detached:    ${time(w.disconnectTime)}`,
          `Down since:  ${time(w.downTime)}`,
          `Why:         ${w.downReason || "-"}`,
          `Had jobs:    ${w.lastJobs.join(", ") || "-"}`,
        ]
      : []),
  ].join("\n");
}

export { JobSchema, WorkerSchema };
