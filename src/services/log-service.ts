/**
 * Kept output: WorkerService.UploadOutput receives a finished run's full
 * stdout and stderr from its worker (in chunks, in order) and keeps them,
 * compressed, in the history database; StreamOutput serves them once the
 * worker that ran the job is gone.
 */
import { create } from "@bufbuild/protobuf";
import {
  type Job,
  OutputStream,
  type StreamOutputResponse,
  StreamOutputResponseSchema,
} from "../../gen/crms/v1/job_pb.js";
import type { UploadOutputRequest } from "../../gen/crms/v1/worker_pb.js";
import { DEFAULT_OUTPUT_CAP } from "../config.js";
import { CrmsError, invalid, notFound, precondition } from "../errors.js";
import type { CallContext } from "../rpc/context.js";
import type { ServiceDeps } from "./context.js";
import { historyJob, unavailable } from "./history-service.js";
import { checkJobId } from "./validate.js";

/** The per-job cap on kept output (both streams), default 64 MiB. */
const MAX_CHUNK = 4 * 1024 * 1024;
/** An upload left unfinished this long is dropped. */
const STALE_MS = 10 * 60_000;
/** Bytes per StreamOutput message when serving kept output. */
const SERVE_CHUNK = 1024 * 1024;

interface Upload {
  chunks: Buffer[];
  size: number;
  touched: number;
}

/** The line that marks where kept output was cut. */
export function cutMark(cutBytes: number): Buffer {
  return Buffer.from(`\n[crms: output cut at the per-job cap; ${cutBytes} more bytes were not kept]\n`);
}

export function createLogService(deps: ServiceDeps, capBytes = DEFAULT_OUTPUT_CAP) {
  const uploads = new Map<string, Upload>();
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const [k, u] of uploads) if (now - u.touched > STALE_MS) uploads.delete(k);
  }, 60_000);
  sweep.unref();

  async function owningJob(id: string): Promise<Job> {
    const job = deps.store.job(id) ?? (await deps.store.fetchJob(id))?.value ?? (await historyJob(deps, id));
    if (!job) throw notFound(`job ${id} not found`);
    return job;
  }

  return {
    async uploadOutput(req: UploadOutputRequest, ctx?: CallContext) {
      const history = deps.history;
      if (!history) throw precondition("this control plane keeps no history, so no output either");
      checkJobId(req.jobId);
      if (req.stream !== OutputStream.STDOUT && req.stream !== OutputStream.STDERR)
        throw invalid("stream must be STDOUT or STDERR");
      if (req.data.length > MAX_CHUNK) throw invalid(`data: at most ${MAX_CHUNK} bytes per chunk`);
      if (req.attempt < 1) throw invalid("attempt must be 1 or more");
      const key = `${req.jobId}.${req.attempt}.${req.stream}`;
      let upload = uploads.get(key);
      if (req.offset === 0n) {
        const job = await owningJob(req.jobId);
        const worker = ctx?.identity?.role === "worker" ? ctx.identity.worker : undefined;
        if (worker !== undefined && job.attempts.find((a) => a.number === req.attempt)?.worker !== worker)
          throw new CrmsError(
            "PERMISSION_DENIED",
            `attempt ${req.attempt} of job ${req.jobId} did not run on ${worker}`,
          );
        upload = { chunks: [], size: 0, touched: Date.now() };
        uploads.set(key, upload);
      }
      if (!upload || BigInt(upload.size) !== req.offset)
        throw new CrmsError("OUT_OF_RANGE", `expected offset ${upload?.size ?? 0} for ${key}, got ${req.offset}`);
      let cut = Number(req.cutBytes);
      const room = Math.max(0, capBytes - upload.size);
      const data = Buffer.from(req.data.subarray(0, room));
      cut += req.data.length - data.length;
      upload.chunks.push(data);
      upload.size += data.length;
      upload.touched = Date.now();
      if (req.last) {
        uploads.delete(key);
        try {
          await history.storeLog(req.jobId, req.attempt, req.stream, Buffer.concat(upload.chunks), cut);
        } catch (err) {
          throw unavailable(history, err);
        }
      }
      return { received: BigInt(upload.size) };
    },
  };
}

/** The kept output of a finished job as StreamOutput messages, or undefined when none was kept. */
export async function keptOutput(deps: ServiceDeps, job: Job): Promise<StreamOutputResponse[] | undefined> {
  if (!deps.history || job.attempt < 1) return undefined;
  const kept = await deps.history.readLog(job.id, job.attempt).catch(() => []);
  if (!kept.length) return undefined;
  const out: StreamOutputResponse[] = [];
  for (const k of kept) {
    const data = k.cutBytes > 0 ? Buffer.concat([k.data, cutMark(k.cutBytes)]) : k.data;
    for (let i = 0; i < data.length; i += SERVE_CHUNK)
      out.push(
        create(StreamOutputResponseSchema, {
          stream: k.stream,
          data: data.subarray(i, i + SERVE_CHUNK),
          offset: BigInt(i),
        }),
      );
  }
  return out;
}
