/**
 * `crms usage`: what finished jobs used (GetUsage, from the job history),
 * summed per user, queue or worker, as a table or the CLI's JSON/YAML.
 */
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { CrmsClient } from "../../clients/typescript/src/client.js";
import { type GetUsageResponse, UsageGrouping } from "../../gen/crms/v1/job_pb.js";
import { CliError, cliParse, parse } from "../cmd/flags.js";
import { table } from "./format.js";
import { parseWhen } from "./history-format.js";
import { emit, type Output } from "./output.js";

const BY: Record<string, UsageGrouping> = {
  user: UsageGrouping.USER,
  queue: UsageGrouping.QUEUE,
  worker: UsageGrouping.WORKER,
};

/** Runs `fn` with a client made from the command's global options (main's withClient). */
export type WithClient = (v: Record<string, unknown>, fn: (c: CrmsClient) => Promise<number>) => Promise<number>;

/** The CLI's JSON form: plain numbers, the bound as an ISO time. */
export function usageJson(r: GetUsageResponse, by: string): unknown {
  return {
    since: r.since ? timestampDate(r.since).toISOString() : "",
    by,
    rows: r.rows.map((u) => ({
      key: u.key,
      jobs: Number(u.jobs),
      succeeded: Number(u.succeeded),
      failed: Number(u.failed),
      killed: Number(u.killed),
      cpuHours: u.cpuHours,
      gpuHours: u.gpuHours,
      wallHours: u.wallHours,
      maxRssBytes: Number(u.maxRssBytes),
    })),
  };
}

const rss = (b: bigint) => {
  const n = Number(b);
  return n === 0 ? "-" : n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : `${(n / 2 ** 20).toFixed(1)} MiB`;
};

export function usageTable(r: GetUsageResponse): string {
  return table(
    ["KEY", "JOBS", "SUCCEEDED", "FAILED", "KILLED", "CPU-HOURS", "GPU-HOURS", "WALL-HOURS", "MAX-RSS"],
    r.rows.map((u) => [
      u.key || "-",
      String(u.jobs),
      String(u.succeeded),
      String(u.failed),
      String(u.killed),
      u.cpuHours.toFixed(2),
      u.gpuHours.toFixed(2),
      u.wallHours.toFixed(2),
      rss(u.maxRssBytes),
    ]),
  );
}

/** `crms usage [--since 7d] [--by user|queue|worker] [-o json|yaml]`. */
export async function usage(args: string[], withClient: WithClient): Promise<number> {
  const { values: v, positionals } = parse(args, { since: { type: "string" }, by: { type: "string" } });
  if (positionals.length) throw new CliError(`unexpected argument ${positionals[0]}`, 2);
  const by = (v.by as string | undefined) ?? "user";
  const groupBy = BY[by];
  if (groupBy === undefined) throw new CliError(`--by must be user, queue or worker (got ${JSON.stringify(by)})`, 2);
  const since = v.since ? cliParse(() => parseWhen(v.since as string, "--since")) : undefined;
  return withClient(v, async (c) => {
    const r = await c.getUsage({ since, groupBy });
    const out = v.output as Output | undefined;
    if (out === undefined || out === "table" || out === "wide") {
      const from = r.since
        ? timestampDate(r.since)
            .toISOString()
            .replace(/\.\d+Z$/, "Z")
        : "?";
      process.stderr.write(`finished jobs since ${from}, by ${by}\n`);
    }
    emit(
      out,
      usageJson(r, by),
      r.rows.map((u) => u.key),
      () => usageTable(r),
    );
    return 0;
  });
}
