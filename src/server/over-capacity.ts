/**
 * What a replica serves when etcd holds more job records than it can load
 * (see store/capacity.ts): GetJob and ListJobs, read straight from etcd (see
 * services/read-only-jobs.ts), and the reason for everything else. Every
 * other call is refused with it: RESOURCE_EXHAUSTED, and UNAVAILABLE for
 * workers, which then attach to another replica. Health reports NOT_SERVING
 * (it is not a whole replica), so a load balancer skips it.
 * The process stays up instead of failing in a loop under its supervisor,
 * and counts again now and then (see ControlPlane.recheckCapacity).
 */
import type { DescService } from "@bufbuild/protobuf";
import { AdminService } from "../../gen/crms/v1/admin_pb.js";
import { JobService } from "../../gen/crms/v1/job_pb.js";
import { QueueService } from "../../gen/crms/v1/queue_pb.js";
import { WorkerService } from "../../gen/crms/v1/worker_pb.js";
import { type Code, CrmsError } from "../errors.js";
import type { ServiceHandlers } from "../rpc/handlers.js";
import type { OverCapacity } from "../store/capacity.js";

/** Handlers for every method of `service` that refuse with `code` and the reason now. */
function refusing<S extends DescService>(service: S, code: Code, reason: () => OverCapacity): ServiceHandlers<S> {
  const refuse = () => new CrmsError(code, reason().message);
  const out: Record<string, unknown> = {};
  for (const m of service.methods) {
    out[m.localName] =
      m.methodKind === "unary"
        ? async () => {
            throw refuse();
          }
        : // biome-ignore lint/correctness/useYield: refuses before its first message
          async function* () {
            throw refuse();
          };
  }
  return out as ServiceHandlers<S>;
}

/** The four services of a replica over capacity; `reads`, the job reads it still serves. */
export function overCapacityHandlers(
  reason: () => OverCapacity,
  reads?: Pick<ServiceHandlers<typeof JobService>, "getJob" | "listJobs">,
) {
  return {
    job: { ...refusing(JobService, "RESOURCE_EXHAUSTED", reason), ...reads },
    worker: refusing(WorkerService, "UNAVAILABLE", reason),
    admin: refusing(AdminService, "RESOURCE_EXHAUSTED", reason),
    queue: refusing(QueueService, "RESOURCE_EXHAUSTED", reason),
  };
}

/**
 * Handlers that call, at each call, those `current` returns: registered once
 * on the port, they switch from refusing to serving without a moment when the
 * port is closed (a client connecting then would be refused and back off).
 */
export function delegating<S extends DescService>(service: S, current: () => ServiceHandlers<S>): ServiceHandlers<S> {
  const out: Record<string, unknown> = {};
  for (const m of service.methods) {
    const name = m.localName;
    out[name] = (request: unknown, ctx: unknown) =>
      (current() as Record<string, (request: unknown, ctx: unknown) => unknown>)[name]?.(request, ctx);
  }
  return out as ServiceHandlers<S>;
}
