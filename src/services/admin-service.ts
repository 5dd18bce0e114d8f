/** AdminService handlers: etcd members, quota and alarms, and cluster counts. */
import { JobState } from "../../gen/crms/v1/job_pb.js";
import { WorkerState } from "../../gen/crms/v1/worker_pb.js";
import { memberStatus } from "../store/status.js";
import type { ServiceDeps } from "./context.js";

export function createAdminService(deps: ServiceDeps) {
  const { store } = deps;
  return {
    async getClusterStatus() {
      const status = await memberStatus(store);
      let workersUp = 0;
      let slotsTotal = 0;
      let slotsUsed = 0;
      for (const e of store.workers.entries.values()) {
        const w = e.value;
        if (w.state === WorkerState.UP || w.state === WorkerState.DRAINING) {
          if (w.state === WorkerState.UP) workersUp++;
          slotsTotal += w.slots;
          slotsUsed += store.jobIndex.active.get(w.name)?.size ?? 0;
        }
      }
      const jobs = [...store.jobIndex.counts]
        .filter(([state, count]) => state !== JobState.UNSPECIFIED && count > 0)
        .sort(([a], [b]) => a - b)
        .map(([state, count]) => ({ state, count: BigInt(count) }));
      return {
        members: status.members,
        revision: BigInt(status.revision),
        quotaBytes: BigInt(deps.options.quotaBytes),
        alarms: status.alarms,
        workers: store.workers.entries.size,
        workersUp,
        slotsTotal,
        slotsUsed,
        jobs,
        replica: store.replicaId,
        schedulerLeader: deps.election.leaderId,
      };
    },
  };
}
