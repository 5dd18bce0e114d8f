/**
 * Authorization in one place: which roles may call which RPC, and the check
 * every transport (grpc-js in src/server/grpc.ts, Connect in src/web/connect.ts)
 * runs before a handler. Ownership ("its own jobs") is checked in job-service.
 */

import { CrmsError } from "../errors.js";
import type { Identity } from "../rpc/context.js";
import type { Role, Tokens } from "./tokens.js";

const READ: Role[] = ["admin", "submitter", "reader"];
const OWN: Role[] = ["admin", "submitter"];
const ADMIN: Role[] = ["admin"];

/** RPC ("Service.Method") -> roles allowed to call it. An RPC not listed is admin-only. */
export const POLICY: Readonly<Record<string, readonly Role[]>> = {
  "JobService.SubmitJob": OWN,
  "JobService.GetJob": READ,
  "JobService.ListJobs": READ,
  "JobService.ListHistory": READ,
  "JobService.GetUsage": READ,
  "JobService.WatchJobs": READ,
  "JobService.StreamOutput": READ,
  "JobService.KillJob": OWN,
  "JobService.HoldJob": OWN,
  "JobService.ReleaseJob": OWN,
  "JobService.DeleteJob": ADMIN,
  "WorkerService.Attach": ["admin", "worker"],
  "WorkerService.UploadOutput": ["admin", "worker"],
  "WorkerService.ListWorkers": READ,
  "WorkerService.GetWorker": READ,
  "WorkerService.WatchWorkers": READ,
  "WorkerService.DrainWorker": ADMIN,
  "WorkerService.StopWorker": ADMIN,
  "WorkerService.ResumeWorker": ADMIN,
  // A worker token may forget only the worker it is bound to (checked in the handler).
  "WorkerService.ForgetWorker": ["admin", "worker"],
  "JobService.RunJob": OWN,
  "JobService.RequeueJob": OWN,
  "AdminService.GetClusterStatus": READ,
  // Creating, changing and deleting queues is admin-only (not listed).
  "QueueService.GetQueue": READ,
  "QueueService.ListQueues": READ,
};

/** The roles allowed to call an RPC. */
export function allowedRoles(method: string): readonly Role[] {
  return POLICY[method] ?? ADMIN;
}

/** The bearer secret of a request's metadata, or "" when there is none. */
export function bearerOf(metadata: Record<string, string>): string {
  const header = metadata.authorization ?? "";
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m ? (m[1] as string) : "";
}

export interface AuthOptions {
  /** The tokens (hashed, watched in etcd). */
  tokens: Tokens;
  /** True when the server listens beyond loopback: then tokens are required even if none exist yet. */
  exposed: boolean;
}

/** Authenticates and authorizes calls; one instance per replica. */
export class Authorizer {
  constructor(private readonly options: AuthOptions) {}

  /** Authentication is on unless there is no token at all and the server is on loopback. */
  get enabled(): boolean {
    return this.options.exposed || this.options.tokens.size > 0;
  }

  /**
   * The caller of `method`: undefined when authentication is off; throws
   * UNAUTHENTICATED without a live token, PERMISSION_DENIED for a role the RPC does not allow.
   */
  check(method: string, metadata: Record<string, string>): Identity | undefined {
    if (!this.enabled) return undefined;
    const secret = bearerOf(metadata);
    if (!secret) throw new CrmsError("UNAUTHENTICATED", "a bearer token is required (authorization: Bearer TOKEN)");
    const record = this.options.tokens.lookup(secret);
    if (!record) throw new CrmsError("UNAUTHENTICATED", "the token is not valid (unknown or revoked)");
    const roles = allowedRoles(method);
    if (!roles.includes(record.role)) {
      throw new CrmsError(
        "PERMISSION_DENIED",
        `role ${record.role} (token ${record.name}) may not call ${method}; allowed: ${roles.join(", ")}`,
      );
    }
    return { name: record.name, role: record.role, ...(record.worker ? { worker: record.worker } : {}) };
  }
}

/** Throws PERMISSION_DENIED when a worker token attaches under a name other than the one it is bound to. */
export function checkWorkerBinding(identity: Identity | undefined, workerName: string): void {
  if (identity?.role !== "worker" || identity.worker === workerName) return;
  throw new CrmsError(
    "PERMISSION_DENIED",
    `worker token ${identity.name} is bound to worker ${identity.worker}, not ${JSON.stringify(workerName)}`,
  );
}
