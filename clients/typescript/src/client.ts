/**
 * The TypeScript client shared by the CLI, the tests and users: typed calls
 * over the crms contract, with the gRPC status kept on every error.
 */

import { randomUUID } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import { AdminService } from "../../../gen/crms/v1/admin_pb.js";
import {
  type GetUsageRequestSchema,
  type Job,
  JobService,
  type JobSpecSchema,
  JobState,
  type ListHistoryRequestSchema,
  type ListJobsRequestSchema,
  type StreamOutputResponse,
  WatchEventType,
  type WatchJobsResponse,
} from "../../../gen/crms/v1/job_pb.js";
import { type Queue, type QueueSchema, QueueService } from "../../../gen/crms/v1/queue_pb.js";
import { type WatchWorkersResponse, type Worker, WorkerService } from "../../../gen/crms/v1/worker_pb.js";
import { isFinal } from "../../../src/rpc/states.js";
import { FailoverTransport, type RetryOptions, retrySameRequest } from "./failover.js";
import { authMetadata, type ClientSecurity, channelCredentials, securityFromEnv } from "./security.js";
import type { CallOptions } from "./transport.js";

export type { CallOptions, ClientSecurity, Job, Queue, Worker };
export { JobState, WatchEventType };

/** The default server address: $CRMS_SERVER or localhost:7070. */
export function defaultServer(): string {
  return process.env.CRMS_SERVER || "localhost:7070";
}

/** Turns a grpc-js stream into an async iterable that ends with the stream. */
async function* iterate<T>(call: grpc.ClientReadableStream<T>): AsyncIterable<T> {
  try {
    for await (const msg of call) yield msg as T;
  } finally {
    call.cancel();
  }
}

export class CrmsClient {
  /** One channel per address of `target` ("a:7070,b:7070"); unary calls fail over on UNAVAILABLE. */
  readonly transport: FailoverTransport;

  constructor(
    readonly target: string = defaultServer(),
    credentials?: grpc.ChannelCredentials,
    /** Metadata sent with every call (e.g. authorization). */
    metadata: Record<string, string> = {},
  ) {
    this.transport = new FailoverTransport(target, credentials, metadata);
  }

  /** A client with a CA, client certificate and token from `security`, else from CRMS_CA, CRMS_CERT, CRMS_KEY, CRMS_TOKEN. */
  static secure(target: string = defaultServer(), security: ClientSecurity = {}): CrmsClient {
    const sec = securityFromEnv(security);
    return new CrmsClient(target, channelCredentials(sec), authMetadata(sec));
  }

  close(): void {
    this.transport.close();
  }

  /**
   * Submits a job. Without a request id one is generated, and the call is
   * retried on UNAVAILABLE / DEADLINE_EXCEEDED with that same id (next address
   * first), so a submit cut off by a failure creates exactly one job.
   */
  async submit(
    spec: MessageInitShape<typeof JobSpecSchema>,
    options: CallOptions & { requestId?: string; retry?: RetryOptions; onRetry?: (err: unknown) => void } = {},
  ): Promise<Job> {
    return (await this.submitJob(spec, options.requestId ?? "", options)).job as Job;
  }

  async submitJob(
    spec: MessageInitShape<typeof JobSpecSchema>,
    requestId = "",
    options: CallOptions & { retry?: RetryOptions; onRetry?: (err: unknown) => void } = {},
  ) {
    const request = { spec, requestId: requestId || randomUUID() };
    return retrySameRequest(
      (timeoutMs) => this.transport.unary(JobService.method.submitJob, request, { ...options, timeoutMs }),
      { attemptTimeoutMs: options.timeoutMs, ...options.retry },
      options.onRetry,
    );
  }

  async getJob(id: string, options?: CallOptions): Promise<Job> {
    return (await this.transport.unary(JobService.method.getJob, { id }, options)).job as Job;
  }

  async listJobs(req: MessageInitShape<typeof ListJobsRequestSchema> = {}, options?: CallOptions) {
    return this.transport.unary(JobService.method.listJobs, req, options);
  }

  /** Every job matching the filter, page after page. */
  async *jobs(req: MessageInitShape<typeof ListJobsRequestSchema> = {}, options?: CallOptions): AsyncIterable<Job> {
    let pageToken = "";
    do {
      const page = await this.listJobs({ ...req, pageToken }, options);
      yield* page.jobs;
      pageToken = page.nextPageToken;
    } while (pageToken);
  }

  /** One page of finished jobs from the history database, newest end first. */
  async listHistory(req: MessageInitShape<typeof ListHistoryRequestSchema> = {}, options?: CallOptions) {
    return this.transport.unary(JobService.method.listHistory, req, options);
  }

  /** Every finished job in the history matching the filter, page after page. */
  async *history(
    req: MessageInitShape<typeof ListHistoryRequestSchema> = {},
    options?: CallOptions,
  ): AsyncIterable<Job> {
    let pageToken = "";
    do {
      const page = await this.listHistory({ ...req, pageToken }, options);
      yield* page.jobs;
      pageToken = page.nextPageToken;
    } while (pageToken);
  }

  /** What finished jobs used, summed per user, queue or worker (GetUsage; the last 7 days unless `since`). */
  async getUsage(req: MessageInitShape<typeof GetUsageRequestSchema> = {}, options?: CallOptions) {
    return this.transport.unary(JobService.method.getUsage, req, options);
  }

  watchJobs(ids: string[] = [], options?: CallOptions & { afterRevision?: bigint }): AsyncIterable<WatchJobsResponse> {
    return iterate(
      this.transport.serverStream(
        JobService.method.watchJobs,
        { ids, afterRevision: options?.afterRevision ?? 0n },
        options,
      ),
    );
  }

  /** Resolves when the job reaches a final state (via WatchJobs, no polling). */
  async wait(id: string, options: CallOptions = {}): Promise<Job> {
    return this.waitUntil(id, () => false, options);
  }

  /**
   * Resolves with the job as soon as `cond(job)` holds or the job reaches a
   * final state (which never changes), watching it with WatchJobs. An unknown
   * id rejects with NOT_FOUND (as in the Python and Go clients), not a hang.
   */
  async waitUntil(id: string, cond: (job: Job) => boolean, options: CallOptions = {}): Promise<Job> {
    const controller = new AbortController();
    options.signal?.addEventListener("abort", () => controller.abort(), { once: true });
    const reached = (job: Job) => isFinal(job.state) || cond(job);
    let seen = false;
    try {
      for await (const ev of this.watchJobs([id], { ...options, signal: controller.signal })) {
        if (ev.type === WatchEventType.SYNCED && !seen) {
          // Not in the listing: ask for it directly (GetJob answers NOT_FOUND for an unknown id).
          const job = await this.getJob(id, options);
          seen = true;
          if (reached(job)) return job;
        }
        if (ev.type === WatchEventType.DELETED) throw new Error(`job ${id} was deleted`);
        if (!ev.job || ev.job.id !== id) continue;
        seen = true;
        if (reached(ev.job)) return ev.job;
      }
      throw new Error(`watch of job ${id} ended early`);
    } finally {
      controller.abort();
    }
  }

  async kill(id: string, graceSeconds = 0, options?: CallOptions, force = false): Promise<Job> {
    return (await this.transport.unary(JobService.method.killJob, { id, graceSeconds, force }, options)).job as Job;
  }

  /** GoCRMS's RunJob: a HELD or PENDING job runs on the named worker as soon as it has a free slot. */
  async runJob(id: string, worker: string, options?: CallOptions): Promise<Job> {
    return (await this.transport.unary(JobService.method.runJob, { id, worker }, options)).job as Job;
  }

  /** Runs a finished job (or array; with failedOnly its unsuccessful tasks) again under the same id. */
  async requeue(id: string, failedOnly = false, options?: CallOptions): Promise<Job> {
    return (await this.transport.unary(JobService.method.requeueJob, { id, failedOnly }, options)).job as Job;
  }

  async hold(id: string, options?: CallOptions): Promise<Job> {
    return (await this.transport.unary(JobService.method.holdJob, { id }, options)).job as Job;
  }

  async release(id: string, options?: CallOptions): Promise<Job> {
    return (await this.transport.unary(JobService.method.releaseJob, { id }, options)).job as Job;
  }

  async deleteJob(id: string, options?: CallOptions): Promise<void> {
    await this.transport.unary(JobService.method.deleteJob, { id }, options);
  }

  output(id: string, follow = false, options?: CallOptions): AsyncIterable<StreamOutputResponse> {
    return iterate(this.transport.serverStream(JobService.method.streamOutput, { id, follow }, options));
  }

  /** The whole output of a job as text (stdout then stderr). */
  async outputText(id: string, options?: CallOptions): Promise<{ stdout: string; stderr: string }> {
    const out = { stdout: "", stderr: "" };
    for await (const chunk of this.output(id, false, options)) {
      const text = Buffer.from(chunk.data).toString();
      if (chunk.stream === 2) out.stderr += text;
      else out.stdout += text;
    }
    return out;
  }

  async listWorkers(pageSize = 0, pageToken = "", options?: CallOptions) {
    return this.transport.unary(WorkerService.method.listWorkers, { pageSize, pageToken }, options);
  }

  async *workers(options?: CallOptions): AsyncIterable<Worker> {
    let pageToken = "";
    do {
      const page = await this.listWorkers(0, pageToken, options);
      yield* page.workers;
      pageToken = page.nextPageToken;
    } while (pageToken);
  }

  async getWorker(name: string, options?: CallOptions): Promise<Worker> {
    return (await this.transport.unary(WorkerService.method.getWorker, { name }, options)).worker as Worker;
  }

  watchWorkers(options?: CallOptions): AsyncIterable<WatchWorkersResponse> {
    return iterate(this.transport.serverStream(WorkerService.method.watchWorkers, {}, options));
  }

  async drain(name: string, options?: CallOptions): Promise<Worker> {
    return (await this.transport.unary(WorkerService.method.drainWorker, { name }, options)).worker as Worker;
  }

  /** Undoes a drain: the worker takes new jobs again. */
  async resume(name: string, options?: CallOptions): Promise<Worker> {
    return (await this.transport.unary(WorkerService.method.resumeWorker, { name }, options)).worker as Worker;
  }

  /** Removes a DOWN worker's record. */
  async forgetWorker(name: string, options?: CallOptions): Promise<void> {
    await this.transport.unary(WorkerService.method.forgetWorker, { name }, options);
  }

  /** Tells a worker to exit; keepRuns: leaving its runs to the next worker with its name and data dir. */
  async stopWorker(name: string, options?: CallOptions, keepRuns = false): Promise<void> {
    await this.transport.unary(WorkerService.method.stopWorker, { name, keepRuns }, options);
  }

  async clusterStatus(options?: CallOptions) {
    return this.transport.unary(AdminService.method.getClusterStatus, {}, options);
  }

  async compact(revision = 0n, options?: CallOptions) {
    return this.transport.unary(AdminService.method.compact, { revision }, options);
  }

  async defragment(options?: CallOptions) {
    return this.transport.unary(AdminService.method.defragment, {}, { timeoutMs: 10 * 60_000, ...options });
  }

  async disarmAlarms(options?: CallOptions) {
    return this.transport.unary(AdminService.method.disarmAlarms, {}, options);
  }

  /** Gets etcd out of NOSPACE; with `keepFinished`, also deletes finished jobs beyond the newest that many. */
  async recover(keepFinished?: number, options?: CallOptions) {
    const req = keepFinished === undefined ? {} : { keepFinished: BigInt(keepFinished) };
    return this.transport.unary(AdminService.method.recover, req, { timeoutMs: 10 * 60_000, ...options });
  }

  async runRetention(options?: CallOptions) {
    return this.transport.unary(AdminService.method.runRetention, {}, options);
  }

  /** Creates an API token; the response's secret is shown only this once. */
  /** Creates an API token; `bootstrap` is needed for the first token of an open server (it turns authentication on). */
  async createToken(name: string, role: string, worker = "", options?: CallOptions & { bootstrap?: boolean }) {
    const bootstrap = options?.bootstrap ?? false;
    return this.transport.unary(AdminService.method.createToken, { name, role, worker, bootstrap }, options);
  }

  async listTokens(options?: CallOptions) {
    return (await this.transport.unary(AdminService.method.listTokens, {}, options)).tokens;
  }

  async revokeToken(id: string, options?: CallOptions) {
    return (await this.transport.unary(AdminService.method.revokeToken, { id }, options)).token;
  }

  /** Creates a queue (admin); weight 0 means 1. ALREADY_EXISTS if the name is taken. */
  async createQueue(queue: MessageInitShape<typeof QueueSchema>, options?: CallOptions): Promise<Queue> {
    return (await this.transport.unary(QueueService.method.createQueue, { queue }, options)).queue as Queue;
  }

  /** One queue with its status (running, pending, share against target, per user). */
  async getQueue(name: string, options?: CallOptions): Promise<Queue> {
    return (await this.transport.unary(QueueService.method.getQueue, { name }, options)).queue as Queue;
  }

  /** Every queue with its status, "default" first, then by name. */
  async listQueues(options?: CallOptions): Promise<Queue[]> {
    return (await this.transport.unary(QueueService.method.listQueues, {}, options)).queues;
  }

  /** Replaces a queue's settings (admin): every setting, so send the ones to keep as they were. */
  async updateQueue(queue: MessageInitShape<typeof QueueSchema>, options?: CallOptions): Promise<Queue> {
    return (await this.transport.unary(QueueService.method.updateQueue, { queue }, options)).queue as Queue;
  }

  /** Deletes a queue (admin); FAILED_PRECONDITION while it has unfinished jobs, and for "default". */
  async deleteQueue(name: string, options?: CallOptions): Promise<void> {
    await this.transport.unary(QueueService.method.deleteQueue, { name }, options);
  }
}
