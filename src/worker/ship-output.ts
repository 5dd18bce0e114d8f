/**
 * Ships a finished run's full output to the control plane (WorkerService.
 * UploadOutput), so that it can be read after this worker is gone. Both
 * streams together are capped (default 64 MiB): each keeps at least half the
 * cap when it needs it, and the bytes past the cap are counted as cut, which
 * the control plane marks where it serves the output.
 */
import { open, stat } from "node:fs/promises";
import path from "node:path";
import type { ServiceTransport } from "../../clients/typescript/src/transport.js";
import { OutputStream } from "../../gen/crms/v1/job_pb.js";
import { WorkerService } from "../../gen/crms/v1/worker_pb.js";
import { WORKER_DEFAULTS } from "../config.js";

const CHUNK = 4 * 1024 * 1024;

async function sizeOf(file: string): Promise<number> {
  return stat(file).then(
    (s) => s.size,
    () => -1,
  );
}

/** How many bytes of each stream to send under `cap`: stdout, stderr. Pure: exported for tests. */
export function shares(stdout: number, stderr: number, cap: number): [number, number] {
  const err = Math.min(stderr, Math.max(Math.floor(cap / 2), cap - stdout));
  return [Math.min(stdout, cap - err), err];
}

/**
 * Sends both streams of the run in `runDir`; throws what the control plane
 * answered. An empty stderr is not sent (nothing to keep; one call less per
 * job); stdout always is, so every run that wrote its files leaves a record.
 */
export async function shipOutput(
  transport: ServiceTransport,
  jobId: string,
  attempt: number,
  runDir: string,
  cap = WORKER_DEFAULTS.shipOutputBytes,
): Promise<void> {
  const files = [path.join(runDir, "stdout"), path.join(runDir, "stderr")];
  const sizes = await Promise.all(files.map(sizeOf));
  if (sizes.every((s) => s < 0)) return;
  const keep = shares(Math.max(0, sizes[0] as number), Math.max(0, sizes[1] as number), cap);
  for (const i of [0, 1]) {
    const size = sizes[i] as number;
    if (size < 0 || (i === 1 && size === 0)) continue;
    const stream = i === 0 ? OutputStream.STDOUT : OutputStream.STDERR;
    const send = keep[i] as number;
    const fh = await open(files[i] as string, "r");
    try {
      let offset = 0;
      let last = false;
      while (!last) {
        const n = Math.min(CHUNK, send - offset);
        const buf = Buffer.alloc(n);
        const { bytesRead } = n ? await fh.read(buf, 0, n, offset) : { bytesRead: 0 };
        last = offset + bytesRead >= send || bytesRead === 0;
        await transport.unary(
          WorkerService.method.uploadOutput,
          {
            jobId,
            attempt,
            stream,
            offset: BigInt(offset),
            data: buf.subarray(0, bytesRead),
            last,
            cutBytes: last ? BigInt(size - (offset + bytesRead)) : 0n,
          },
          { timeoutMs: 60_000 },
        );
        offset += bytesRead;
      }
    } finally {
      await fh.close();
    }
  }
}
