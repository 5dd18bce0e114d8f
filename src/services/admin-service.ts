/** AdminService handlers: etcd members, quota and alarms, cluster counts, and maintenance. */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { EtcdOutageSchema } from "../../gen/crms/v1/admin_pb.js";
import { type Job, JobState } from "../../gen/crms/v1/job_pb.js";
import { WorkerState } from "../../gen/crms/v1/worker_pb.js";
import { CrmsError } from "../errors.js";
import type { History } from "../history/history.js";
import type { Outage } from "../store/health.js";
import { compactOnRequest, defragment, disarmAlarms, recover } from "../store/maintenance.js";
import { HistoryWait, type Retention } from "../store/retention.js";
import { memberStatus } from "../store/status.js";
import type { ServiceDeps } from "./context.js";
import { checkRevision } from "./validate.js";

function historyStatus(deps: ServiceDeps) {
  const h = deps.history?.status();
  if (!h) return undefined;
  return {
    kind: h.kind,
    location: h.where,
    up: h.up,
    error: h.error,
    pendingJobs: BigInt(h.pending),
    lagSeconds: h.lagSeconds,
    schemaVersion: h.schemaVersion,
  };
}

export function createAdminService(deps: ServiceDeps, retention: Retention) {
  const { store, log } = deps;
  return {
    async getClusterStatus() {
      // While etcd does not answer, say so at once from the cache rather than wait for it.
      const reachable = store.health.reachable;
      const status = reachable ? await memberStatus(store) : { members: [], alarms: [], revision: store.jobs.revision };
      await deps.history?.ping();
      let workersUp = 0;
      let workersDown = 0;
      let slotsTotal = 0;
      let slotsUsed = 0;
      for (const e of store.workers.entries.values()) {
        const w = e.value;
        if (w.state === WorkerState.DOWN) workersDown++;
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
        workersDown,
        slotsTotal,
        slotsUsed,
        jobs,
        replica: store.replicaId,
        schedulerLeader: deps.election.leaderId,
        etcdReachable: reachable,
        lastEtcdOutage: store.health.last && outageMessage(store.health.last),
        history: historyStatus(deps),
        retentionWaiting: retention.waiting,
        unfinishedJobs: BigInt(deps.admission?.count ?? 0),
        maxJobs: BigInt(deps.admission?.limits.maxJobs ?? 0),
      };
    },

    async compact(req: { revision: bigint }) {
      checkRevision("revision", req.revision, "the current revision");
      const revision = await compactOnRequest(store, Number(req.revision));
      log.info("compacted etcd on request", { revision });
      return { revision: BigInt(revision) };
    },

    async defragment() {
      const res = await defragment(store, (endpoint) => log.info("defragmenting etcd member", { endpoint }));
      return res;
    },

    async disarmAlarms() {
      const disarmed = await disarmAlarms(store);
      log.info("disarmed etcd alarms", { disarmed });
      return { disarmed };
    },

    async recover(req: { keepFinished?: bigint }) {
      const keep = req.keepFinished === undefined ? undefined : Number(req.keepFinished);
      log.warn("recovering etcd: compact, defragment each member, disarm", { keepFinished: keep });
      const confirm = deps.history ? (jobs: Job[]) => (deps.history as History).confirm(jobs) : undefined;
      const res = await recover(store, keep, confirm).catch((err) => {
        if (err instanceof HistoryWait)
          throw new CrmsError(
            "UNAVAILABLE",
            `compacted, defragmented and disarmed, but deleted no finished job: ${err.message}; start the server with --no-history to delete without keeping them`,
          );
        throw err;
      });
      log.info("etcd recovery finished", { writable: res.writable, disarmed: res.disarmed, deleted: res.deletedJobs });
      return { ...res, compactedRevision: BigInt(res.compactedRevision), deletedJobs: BigInt(res.deletedJobs) };
    },

    async runRetention() {
      return { deleted: BigInt(await retention.runNow()) };
    },
  };
}

/** The API form of an etcd outage a replica lived through. */
function outageMessage(o: Outage) {
  const end = o.restoredAt ?? new Date();
  return create(EtcdOutageSchema, {
    lostTime: timestampFromDate(o.lostAt),
    restoredTime: o.restoredAt && timestampFromDate(o.restoredAt),
    seconds: (end.getTime() - o.lostAt.getTime()) / 1000,
    error: o.error,
    leaseRenewed: o.leaseRenewed,
    workersReregistered: o.reregistered,
    reregisteredWorkers: o.reregisteredNames,
  });
}
