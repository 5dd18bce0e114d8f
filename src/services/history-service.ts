/** JobService.ListHistory, GetUsage and the history side of GetJob: reads from the job history database. */
import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  type GetUsageRequest,
  GetUsageResponseSchema,
  type Job,
  JobState,
  type ListHistoryRequest,
  UsageGrouping,
  UsageRowSchema,
} from "../../gen/crms/v1/job_pb.js";
import { CrmsError, invalid, precondition } from "../errors.js";
import type { History, UsageKey, UsageSums } from "../history/history.js";
import { isFinal } from "../rpc/states.js";
import type { ServiceDeps } from "./context.js";
import { checkWorkerName, pageSize } from "./validate.js";

/** Any database failure reads as UNAVAILABLE, naming the history; domain errors pass through. */
export function unavailable(history: History, err: unknown): CrmsError {
  if (err instanceof CrmsError) return err;
  return new CrmsError(
    "UNAVAILABLE",
    `history database (${history.db.kind} ${history.db.where}) is not available: ${(err as Error).message || String(err)}`,
  );
}

/** A finished job from the history, or undefined (also when the history is off or down). */
export async function historyJob(deps: ServiceDeps, id: string): Promise<Job | undefined> {
  return (await lookUp(deps, id)).job;
}

/** A finished job from the history, and why it could not be asked (empty when it answered or is off). */
export async function lookUp(deps: ServiceDeps, id: string): Promise<{ job?: Job; error: string }> {
  if (!deps.history) return { error: "" };
  try {
    return { job: await deps.history.get(id), error: "" };
  } catch (err) {
    deps.log.warn("history lookup failed", { job: id, error: String(err) });
    return { error: `the history database is not available (${(err as Error).message || String(err)})` };
  }
}

/** GetUsage's default window: the last 7 days. */
const USAGE_WINDOW_MS = 7 * 24 * 3600 * 1000;
const GROUPINGS: Record<number, UsageKey> = {
  [UsageGrouping.UNSPECIFIED]: "user",
  [UsageGrouping.USER]: "user",
  [UsageGrouping.QUEUE]: "queue",
  [UsageGrouping.WORKER]: "worker",
};

/** The history, or FAILED_PRECONDITION naming how to start the control plane with one. */
function historyOf(deps: ServiceDeps): History {
  if (deps.history) return deps.history;
  throw precondition(
    "this control plane runs without a history database (start it with --data-dir or --history postgres://...)",
  );
}

export function createHistoryService(deps: ServiceDeps) {
  return {
    async getUsage(req: GetUsageRequest) {
      const history = historyOf(deps);
      const by = GROUPINGS[req.groupBy];
      if (!by) throw invalid(`group_by ${req.groupBy} is not a UsageGrouping`);
      const since = req.since ? timestampDate(req.since) : new Date(Date.now() - USAGE_WINDOW_MS);
      if (Number.isNaN(since.getTime())) throw invalid("since is not a valid time");
      let sums: UsageSums[];
      try {
        sums = await history.usage(since, by);
      } catch (err) {
        throw unavailable(history, err);
      }
      const hours = (s: number) => s / 3600;
      return create(GetUsageResponseSchema, {
        since: timestampFromDate(since),
        rows: sums.map((r) =>
          create(UsageRowSchema, {
            key: r.key,
            jobs: BigInt(r.jobs),
            succeeded: BigInt(r.succeeded),
            failed: BigInt(r.failed),
            killed: BigInt(r.killed),
            cpuHours: hours(r.cpuSeconds),
            gpuHours: hours(r.gpuSeconds),
            wallHours: hours(r.wallSeconds),
            maxRssBytes: r.maxRssBytes,
          }),
        ),
      });
    },
    async listHistory(req: ListHistoryRequest) {
      const history = historyOf(deps);
      const size = pageSize(req.pageSize);
      if (req.worker) checkWorkerName(req.worker);
      for (const s of req.states) {
        if (s !== JobState.UNSPECIFIED && !isFinal(s))
          throw invalid(`the history holds only final states; ${JobState[s] ?? s} is not one`);
      }
      const since = req.since ? timestampDate(req.since) : undefined;
      const until = req.until ? timestampDate(req.until) : undefined;
      if (since && until && since >= until) throw invalid("since must be before until");
      if (req.nameGlob.length > 256) throw invalid("name_glob is longer than 256 characters");
      if (req.pageToken) checkToken(req.pageToken);
      try {
        return await history.list({
          since,
          until,
          states: req.states.filter((s) => s !== JobState.UNSPECIFIED),
          owner: req.owner,
          queue: req.queue,
          worker: req.worker,
          nameGlob: req.nameGlob,
          labels: req.labels,
          pageSize: size,
          pageToken: req.pageToken,
        });
      } catch (err) {
        throw unavailable(history, err);
      }
    },
  };
}

function checkToken(token: string): void {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(token)) throw invalid("page_token is not one this server returned");
}
