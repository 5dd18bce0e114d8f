/**
 * `crms history`: time bounds from the command line, and the job history as a
 * table or CSV. The CSV columns are documented in README.md ("Job history")
 * and must not change order: append new ones at the end.
 */
import { type Timestamp, timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Job } from "../../gen/crms/v1/job_pb.js";
import { queueOf, userOf } from "../scheduler/fair-share.js";
import { jobState, table } from "./format.js";

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 7 * 86400 };

/** A point in time: a duration back from now (90s, 30m, 12h, 7d, 2w) or an ISO 8601 date/time. */
export function parseWhen(text: string, what: string, now = Date.now()): Timestamp {
  const m = /^(\d+(?:\.\d+)?)([smhdw])$/.exec(text);
  if (m) return timestampFromDate(new Date(now - Number(m[1]) * (UNITS[m[2] as string] as number) * 1000));
  const d = new Date(text);
  if (!/^\d{4}-\d{2}-\d{2}/.test(text) || Number.isNaN(d.getTime()))
    throw new Error(
      `${what} must be a duration back from now (30m, 12h, 7d) or an ISO date/time (got ${JSON.stringify(text)})`,
    );
  return timestampFromDate(d);
}

const iso = (ts: Timestamp | undefined) => (ts ? timestampDate(ts).toISOString() : "");
const runtime = (j: Job) =>
  j.startTime && j.endTime
    ? ((timestampDate(j.endTime).getTime() - timestampDate(j.startTime).getTime()) / 1000).toFixed(3)
    : "";
const exit = (j: Job) => (j.exitCode === undefined ? "" : String(j.exitCode));
const labels = (j: Job) =>
  Object.entries(j.spec?.labels ?? {})
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join(";");

/** The CSV columns, in order, with what each holds. */
export const CSV_COLUMNS: Array<[string, (j: Job) => string]> = [
  ["id", (j) => j.id],
  ["name", (j) => j.spec?.name ?? ""],
  ["state", (j) => jobState(j.state)],
  ["owner", userOf],
  ["queue", queueOf],
  ["worker", (j) => j.worker],
  ["labels", labels],
  ["command", (j) => (j.spec?.command ?? []).join(" ")],
  ["submit_time", (j) => iso(j.submitTime)],
  ["start_time", (j) => iso(j.startTime)],
  ["end_time", (j) => iso(j.endTime)],
  ["runtime_seconds", runtime],
  ["exit_code", exit],
  ["signal", (j) => j.signal],
  ["attempts", (j) => String(j.attempts.length)],
  ["array_parent", (j) => j.arrayParent],
  ["error", (j) => j.error],
];

/** One RFC 4180 field: quoted when it holds a comma, quote, CR or LF. */
function field(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

export function csvHeader(): string {
  return `${CSV_COLUMNS.map(([name]) => name).join(",")}\r\n`;
}

export function csvRow(j: Job): string {
  return `${CSV_COLUMNS.map(([, get]) => field(get(j))).join(",")}\r\n`;
}

export function historyTable(jobs: Job[]): string {
  return table(
    ["ID", "NAME", "STATE", "OWNER", "WORKER", "ENDED", "RUNTIME", "EXIT", "ATTEMPTS", "COMMAND"],
    jobs.map((j) => {
      const cmd = (j.spec?.command ?? []).join(" ");
      return [
        j.id,
        j.spec?.name || "-",
        jobState(j.state),
        userOf(j) || "-",
        j.worker || "-",
        iso(j.endTime).replace(/\.\d+Z$/, "Z") || "-",
        runtime(j) ? `${runtime(j)}s` : "-",
        exit(j) || j.signal || "-",
        String(j.attempts.length),
        cmd.length > 40 ? `${cmd.slice(0, 39)}…` : cmd,
      ];
    }),
  );
}
