/**
 * QueueService handlers: queues' settings in the store (src/store/queues.ts),
 * each read with its status from fair share's bookkeeping
 * (src/scheduler/fair-share.ts). Reading is open to every role; creating,
 * changing and deleting is admin-only (src/auth/policy.ts).
 */
import { clone, create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { JobState } from "../../gen/crms/v1/job_pb.js";
import {
  type CreateQueueRequest,
  type DeleteQueueRequest,
  type GetQueueRequest,
  type Queue,
  QueueSchema,
  type UpdateQueueRequest,
} from "../../gen/crms/v1/queue_pb.js";
import { CrmsError, invalid, notFound, precondition } from "../errors.js";
import { isArrayParent, isFinal } from "../rpc/states.js";
import { queueOf } from "../scheduler/fair-share.js";
import { DEFAULT_QUEUE } from "../store/queues.js";
import type { ServiceDeps } from "./context.js";
import { checkQueueName } from "./validate.js";

/** A queue's weight as stored: finite and ≥ 0, where 0 (unset) means 1. */
export function queueWeight(weight: number): number {
  if (!Number.isFinite(weight) || weight < 0) {
    throw invalid(`weight must be a finite number ≥ 0 (0 means 1), got ${weight}`);
  }
  return weight === 0 ? 1 : weight;
}

/** The settings of a request's queue, checked: what the store keeps (no status, no create_time yet). */
function settingsOf(queue: Queue | undefined): Queue {
  if (!queue) throw invalid("queue is required");
  checkQueueName(queue.name);
  return create(QueueSchema, {
    name: queue.name,
    weight: queueWeight(queue.weight),
    maxRunning: queue.maxRunning,
    maxCpus: queue.maxCpus,
    maxGpus: queue.maxGpus,
    preemptible: queue.preemptible,
  });
}

export function createQueueService(deps: ServiceDeps) {
  const { store, log } = deps;

  /** A queue as answered: a copy of the stored settings with its status now. */
  const withStatus = (q: Queue): Queue => {
    const out = clone(QueueSchema, q);
    out.status = deps.fairShare?.status(q.name);
    return out;
  };

  /** The stored queue of that name; NOT_FOUND if there is none. */
  const existing = (name: string): Queue => {
    checkQueueName(name);
    const q = store.queues.get(name);
    if (!q) throw notFound(`queue ${name} not found`);
    return q;
  };

  /**
   * Unfinished jobs of a queue that fair share does not count (it counts
   * PENDING, ASSIGNED and RUNNING jobs): HELD ones and arrays (a parent whose
   * tasks are not all created yet). A scan, made only when such jobs exist.
   */
  const waitingElsewhere = (queue: string): number => {
    if (!(store.jobIndex.counts.get(JobState.HELD) ?? 0) && !store.jobIndex.arrays) return 0;
    let n = 0;
    for (const e of store.jobs.entries.values()) {
      const job = e.value;
      if ((job.state === JobState.HELD || isArrayParent(job)) && !isFinal(job.state) && queueOf(job) === queue) n++;
    }
    return n;
  };

  return {
    async createQueue(req: CreateQueueRequest) {
      const queue = settingsOf(req.queue);
      queue.createTime = timestampNow();
      // "default" always exists, stored or not.
      if (queue.name === DEFAULT_QUEUE || !(await store.queues.create(queue))) {
        throw new CrmsError("ALREADY_EXISTS", `queue ${queue.name} already exists`);
      }
      log.info("queue created", { queue: queue.name, weight: queue.weight });
      return { queue: withStatus(queue) };
    },

    async getQueue(req: GetQueueRequest) {
      return { queue: withStatus(existing(req.name)) };
    },

    async listQueues() {
      return { queues: store.queues.list().map(withStatus) };
    },

    async updateQueue(req: UpdateQueueRequest) {
      const queue = settingsOf(req.queue);
      queue.createTime = existing(queue.name).createTime;
      if (!(await store.queues.update(queue))) throw notFound(`queue ${queue.name} not found`);
      log.info("queue updated", { queue: queue.name, weight: queue.weight });
      return { queue: withStatus(queue) };
    },

    async deleteQueue(req: DeleteQueueRequest) {
      if (req.name === DEFAULT_QUEUE) throw precondition(`queue ${DEFAULT_QUEUE} cannot be deleted`);
      existing(req.name);
      const unfinished = (deps.fairShare?.unfinished(req.name) ?? 0) || waitingElsewhere(req.name);
      if (unfinished > 0) {
        throw precondition(
          `queue ${req.name} has ${unfinished} unfinished job(s) (pending or running): delete it once they end`,
        );
      }
      if (!(await store.queues.delete(req.name))) throw notFound(`queue ${req.name} not found`);
      log.info("queue deleted", { queue: req.name });
      return {};
    },
  };
}
