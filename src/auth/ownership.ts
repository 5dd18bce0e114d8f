/**
 * Job ownership: with authentication on, a submitted job carries its
 * submitter's identity in the reserved label crms.io/owner, and a submitter
 * may kill, hold and release only the jobs carrying its own name.
 */
import type { Job, JobSpec } from "../../gen/crms/v1/job_pb.js";
import { CrmsError } from "../errors.js";
import type { Identity } from "../rpc/context.js";
import { OWNER_LABEL } from "../rpc/names.js";

/** The spec with its owner label set to the caller (any value the caller gave is replaced). */
export function stampOwner(spec: JobSpec, identity: Identity | undefined): JobSpec {
  if (!identity) return spec;
  return { ...spec, labels: { ...spec.labels, [OWNER_LABEL]: identity.name } };
}

/** Throws PERMISSION_DENIED when a submitter changes a job that is not its own. */
export function checkOwner(job: Job, identity: Identity | undefined): void {
  if (!identity || identity.role === "admin") return;
  const owner = job.spec?.labels[OWNER_LABEL] ?? "";
  if (owner !== identity.name) {
    throw new CrmsError(
      "PERMISSION_DENIED",
      `job ${job.id} belongs to ${owner || "nobody"}; ${identity.name} (${identity.role}) may change only its own jobs`,
    );
  }
}
