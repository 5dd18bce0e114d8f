/** Facts about job states that every layer shares (pure, from the contract). */
import { JobState } from "../../gen/crms/v1/job_pb.js";

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
