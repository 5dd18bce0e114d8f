/** What the service handlers share: the store, the election and this replica's sessions. */

import type { Job } from "../../gen/crms/v1/job_pb.js";
import type { History } from "../history/history.js";
import type { Logger } from "../log.js";
import type { FairShare } from "../scheduler/fair-share.js";
import type { Admission } from "../store/admission.js";
import type { Election } from "../store/election.js";
import type { CreatePlacement, Store } from "../store/store.js";

export interface ServiceOptions {
  /** Seconds between worker heartbeats (told to workers in Welcome). */
  heartbeatSeconds: number;
  /** Default kill grace in seconds. */
  killGraceSeconds: number;
  /** Seconds a detached worker has before its jobs are LOST (told to workers in Welcome, for fencing). */
  graceSeconds?: number;
  /** Assumed etcd quota in bytes. */
  quotaBytes: number;
  /** Bytes of stdout and of stderr kept with a finished job. */
  tailBytes: number;
}

export interface ServiceDeps {
  store: Store;
  election: Election;
  log: Logger;
  options: ServiceOptions;
  /** The job history database, when the control plane has one. */
  history?: History;
  /** The cap on unfinished jobs (absent: no cap). */
  admission?: Admission;
  /** Queues' and users' loads and shares (absent in tests that build services alone). */
  fairShare?: FairShare;
  /** The scheduler's placement of a job in its own create, when it can place it at once (see Scheduler.placeAtSubmit). */
  place?: (job: Job) => CreatePlacement | undefined;
}
