/** Facts about job states and arrays that every layer shares (pure, from the contract). */
import { type Job, JobState } from "../../gen/crms/v1/job_pb.js";

/** True for states a job never leaves (LOST counts only once it is final). */
export function isFinal(state: JobState): boolean {
  return (
    state === JobState.SUCCEEDED || state === JobState.FAILED || state === JobState.KILLED || state === JobState.LOST
  );
}

/** True while a job holds a slot on a worker. */
export function isActive(state: JobState): boolean {
  return state === JobState.ASSIGNED || state === JobState.RUNNING;
}

/** True for an array's parent record (it never runs itself; its tasks do). */
export const isArrayParent = (job: Job): boolean => job.spec?.array !== undefined;

/** The number of tasks of an array (0 for a plain job). */
export function arraySize(job: Job): number {
  const a = job.spec?.array;
  return a ? a.last - a.first + 1 : 0;
}
