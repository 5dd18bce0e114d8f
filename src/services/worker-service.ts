/** WorkerService handlers. */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ResourcesSchema, WatchEventType } from "../../gen/crms/v1/job_pb.js";
import {
  type AttachRequest,
  type DrainWorkerRequest,
  type ForgetWorkerRequest,
  ForgetWorkerResponseSchema,
  type GetWorkerRequest,
  type ListWorkersRequest,
  type ResumeWorkerRequest,
  type StopWorkerRequest,
  StopWorkerResponseSchema,
  type WatchWorkersResponse,
  WatchWorkersResponseSchema,
  type Worker,
  WorkerState,
} from "../../gen/crms/v1/worker_pb.js";
import { checkWorkerBinding } from "../auth/policy.js";
import { CrmsError, notFound, precondition } from "../errors.js";
import type { CallContext } from "../rpc/context.js";
import { AsyncQueue } from "./async-queue.js";
import type { ServiceDeps } from "./context.js";
import type { Sessions } from "./sessions/index.js";
import { checkPageToken, checkWorkerName, pageSize } from "./validate.js";

export function createWorkerService(deps: ServiceDeps, sessions: Sessions) {
  const { store } = deps;

  /** A worker record with the live figures only the caches know. */
  function present(w: Worker): Worker {
    const running = [...(store.jobIndex.active.get(w.name) ?? [])];
    const session = sessions.byName.get(w.name);
    const a = deps.fairShare?.allocated.get(w.name);
    const named: { [k: string]: bigint } = {};
    for (const [k, v] of Object.entries(a?.named ?? {})) if (v > 0) named[k] = BigInt(v);
    return {
      ...w,
      allocated:
        a &&
        create(ResourcesSchema, {
          cpus: Math.max(0, a.cpus),
          memoryBytes: BigInt(Math.max(0, a.memory)),
          gpus: Math.max(0, a.gpus),
          named,
        }),
      usedSlots: running.length,
      runningJobs: running,
      lastHeartbeat: session?.open ? timestampFromDate(new Date(session.lastHeartbeat)) : w.lastHeartbeat,
    };
  }

  function known(name: string): Worker {
    checkWorkerName(name);
    const w = store.worker(name);
    if (!w) throw notFound(`worker ${name} is not known`);
    return w;
  }

  return {
    attach(requests: AsyncIterable<AttachRequest>, ctx: CallContext) {
      return sessions.attach(requests, ctx);
    },

    async listWorkers(req: ListWorkersRequest) {
      const size = pageSize(req.pageSize);
      checkPageToken(req.pageToken, "ListWorkers");
      const names = [...store.workers.entries.keys()].sort();
      const start = req.pageToken ? names.findIndex((n) => n > req.pageToken) : 0;
      const from = start < 0 ? names.length : start;
      const page = names.slice(from, from + size);
      const workers = page.map((n) => present(store.worker(n) as Worker));
      return { workers, nextPageToken: from + size < names.length ? (page.at(-1) ?? "") : "" };
    },

    async getWorker(req: GetWorkerRequest) {
      return { worker: present(known(req.name)) };
    },

    watchWorkers(_req: unknown, ctx: CallContext): AsyncIterable<WatchWorkersResponse> {
      const q = new AsyncQueue<WatchWorkersResponse>();
      const send = (type: WatchEventType, worker: Worker | undefined, revision: number) =>
        q.push(
          create(WatchWorkersResponseSchema, { type, worker: worker && present(worker), revision: BigInt(revision) }),
        );
      for (const e of store.workers.entries.values()) send(WatchEventType.EXISTING, e.value, e.mod);
      send(WatchEventType.SYNCED, undefined, store.workers.revision);
      const onPut = (_n: string, e: { value: Worker; mod: number }) => send(WatchEventType.PUT, e.value, e.mod);
      const onDelete = (_n: string, prev: { value: Worker }, rev: number) =>
        send(WatchEventType.DELETED, prev.value, rev);
      store.workers.on("put", onPut);
      store.workers.on("delete", onDelete);
      ctx.signal.addEventListener(
        "abort",
        () => {
          store.workers.off("put", onPut);
          store.workers.off("delete", onDelete);
          q.end();
        },
        { once: true },
      );
      return q;
    },

    async drainWorker(req: DrainWorkerRequest) {
      known(req.name);
      const w = await store.updateWorker(req.name, (w) => {
        if (!w) throw notFound(`worker ${req.name} is not known`);
        if (w.state === WorkerState.DRAINING) return undefined;
        if (w.state !== WorkerState.UP) throw precondition(`worker ${req.name} is not attached`);
        return { ...w, state: WorkerState.DRAINING };
      });
      deps.log.info("worker draining", { worker: req.name });
      return { worker: present(w as Worker) };
    },

    async stopWorker(req: StopWorkerRequest) {
      known(req.name);
      await store.updateWorker(req.name, (w) => {
        if (!w) throw notFound(`worker ${req.name} is not known`);
        if (w.stopRequested) return undefined;
        return {
          ...w,
          stopRequested: true,
          stopKeepRuns: req.keepRuns,
          state: w.state === WorkerState.UP ? WorkerState.DRAINING : w.state,
        };
      });
      deps.log.info("worker stop requested", { worker: req.name });
      return create(StopWorkerResponseSchema, {});
    },

    async resumeWorker(req: ResumeWorkerRequest) {
      known(req.name);
      const w = await store.updateWorker(req.name, (w) => {
        if (!w) throw notFound(`worker ${req.name} is not known`);
        if (w.state === WorkerState.UP) return undefined;
        if (w.state !== WorkerState.DRAINING)
          throw precondition(`worker ${req.name} is ${WorkerState[w.state]}; only a DRAINING worker can be resumed`);
        if (w.stopRequested) throw precondition(`worker ${req.name} is stopping; it cannot be resumed`);
        return { ...w, state: WorkerState.UP };
      });
      deps.log.info("worker resumed", { worker: req.name });
      return { worker: present(w as Worker) };
    },

    async forgetWorker(req: ForgetWorkerRequest, ctx?: CallContext) {
      checkWorkerBinding(ctx?.identity, req.name);
      for (let i = 0; i < 10; i++) {
        const e = store.workers.entries.get(known(req.name).name);
        if (!e) break;
        if (e.value.state !== WorkerState.DOWN) {
          throw precondition(
            `worker ${req.name} is ${WorkerState[e.value.state]}; only a DOWN worker can be forgotten (stop it first)`,
          );
        }
        if (await store.deleteWorker(req.name, e.mod)) {
          deps.log.info("worker forgotten", { worker: req.name });
          return create(ForgetWorkerResponseSchema, {});
        }
      }
      throw new CrmsError("ABORTED", `worker ${req.name} changed while being forgotten; retry`);
    },
  };
}
