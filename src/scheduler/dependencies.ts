/**
 * Job dependencies (`--after ID[:succeeded|failed|finished]`). A job with
 * unmet dependencies stays PENDING with a reason naming what it waits for;
 * when one can no longer be met it becomes FAILED with the reason. Ids must
 * name jobs that exist at submit, checked before the job draws its id, so a
 * job can only wait for jobs that existed before it and no cycle can be
 * written; an id that does not exist (its own included) is NOT_FOUND.
 */
import { DependencyCondition, type Job, JobState } from "../../gen/crms/v1/job_pb.js";
import { isFinal } from "../rpc/states.js";

export const MAX_DEPENDENCIES = 64;

const CONDITION_WORDS: Record<string, DependencyCondition> = {
  succeeded: DependencyCondition.SUCCEEDED,
  failed: DependencyCondition.FAILED,
  finished: DependencyCondition.FINISHED,
};

/** "succeeded", "failed" or "finished". */
export function conditionWord(c: DependencyCondition): string {
  if (c === DependencyCondition.FAILED) return "failed";
  if (c === DependencyCondition.FINISHED) return "finished";
  return "succeeded";
}

/** Parses "ID" or "ID:condition" (the CLI's --after); throws a message on bad input. */
export function parseAfter(text: string): { jobId: string; condition: DependencyCondition } {
  const [jobId = "", word, ...rest] = text.split(":");
  const condition = word === undefined ? DependencyCondition.SUCCEEDED : CONDITION_WORDS[word];
  if (!/^[1-9][0-9]*$/.test(jobId) || condition === undefined || rest.length) {
    throw new Error(`--after ${JSON.stringify(text)}: expected ID or ID:succeeded|failed|finished`);
  }
  return { jobId, condition };
}

function met(state: JobState, c: DependencyCondition): boolean {
  if (c === DependencyCondition.FINISHED) return isFinal(state);
  if (c === DependencyCondition.FAILED) return isFinal(state) && state !== JobState.SUCCEEDED;
  return state === JobState.SUCCEEDED;
}

export type DependencyVerdict = { kind: "ready" } | { kind: "wait"; reason: string } | { kind: "fail"; reason: string };

/** Where a job stands on its dependencies, given the current jobs. */
export function evaluate(job: Job, lookup: (id: string) => Job | undefined): DependencyVerdict {
  const waiting: string[] = [];
  for (const d of job.spec?.after ?? []) {
    const dep = lookup(d.jobId);
    const want = conditionWord(d.condition);
    if (!dep) return { kind: "fail", reason: `dependency job ${d.jobId} no longer exists (wanted ${want})` };
    if (met(dep.state, d.condition)) continue;
    if (isFinal(dep.state)) {
      return {
        kind: "fail",
        reason: `dependency not met: job ${d.jobId} ended ${JobState[dep.state]}, needed ${want}`,
      };
    }
    waiting.push(`${d.jobId} (${want})`);
  }
  if (waiting.length === 0) return { kind: "ready" };
  return { kind: "wait", reason: `waiting for job${waiting.length > 1 ? "s" : ""} ${waiting.join(", ")}` };
}
