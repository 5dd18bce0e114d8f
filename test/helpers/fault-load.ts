/**
 * The fault tests' load: submissions at a fixed rate through clients given
 * every replica's address, a fault injected and restored on a schedule, then
 * an account of every acknowledged job. Rate and duration default to 100/s
 * for 15 s (fault at 5 s, restore at 10 s) to keep CI short; FAULT_RATE and
 * FAULT_SECONDS set them (the issue's figures: FAULT_RATE=200 FAULT_SECONDS=60).
 */
import * as grpc from "@grpc/grpc-js";
import { JobState } from "../../gen/crms/v1/job_pb.js";
import { account, type FaultCluster, type Summary, sleep, waitFor } from "./fault-cluster.js";

export interface LoadPlan {
  /** Called at a third of the run. */
  fault: () => Promise<void> | void;
  /** Called at two thirds of the run. */
  restore?: () => Promise<void> | void;
}

export interface LoadResult extends Summary {
  /** gRPC codes clients saw and retried, by name. */
  retried: Map<string, number>;
  /** Submits that failed for good, by code name. */
  failed: Map<string, number>;
  problems: string[];
  jobs: Awaited<ReturnType<typeof account>>["jobs"];
}

const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
const codeName = (err: unknown) => grpc.status[(err as { code?: number }).code ?? -1] ?? String(err);

export async function runLoad(cluster: FaultCluster, plan: LoadPlan, tag: string): Promise<LoadResult> {
  const rate = Number(process.env.FAULT_RATE ?? 100);
  const seconds = Number(process.env.FAULT_SECONDS ?? 15);
  const clients = [cluster.client(), cluster.client(), cluster.client(), cluster.client()];
  const acked = new Map<string, string>();
  const retried = new Map<string, number>();
  const failed = new Map<string, number>();
  const inflight: Promise<void>[] = [];
  const command = cluster.markerCommand();
  let submitted = 0;
  const start = Date.now();
  let faulted = false;
  let restored = false;
  const tickMs = 50;
  while (Date.now() - start < seconds * 1000) {
    const elapsed = (Date.now() - start) / 1000;
    if (!faulted && elapsed >= seconds / 3) {
      faulted = true;
      await plan.fault();
    }
    if (!restored && plan.restore && elapsed >= (2 * seconds) / 3) {
      restored = true;
      await plan.restore();
    }
    // Submissions owed by now (catches up after a slow tick).
    const due = Math.floor(((Date.now() - start) / 1000) * rate);
    for (; submitted < due; submitted++) {
      const requestId = `${tag}-${submitted}`;
      const client = clients[submitted % clients.length];
      if (!client) continue;
      inflight.push(
        client
          .submit(
            { name: requestId, command, maxRetries: 0 },
            { requestId, timeoutMs: 5_000, retry: { budgetMs: 60_000 }, onRetry: (e) => bump(retried, codeName(e)) },
          )
          .then(
            (job) => void acked.set(requestId, job.id),
            (err) => void bump(failed, codeName(err)),
          ),
      );
    }
    await sleep(tickMs);
  }
  if (plan.restore && !restored) await plan.restore();
  await Promise.all(inflight);
  // Wait until nothing is queued or running any more.
  const status = cluster.client();
  await waitFor(
    async () => {
      const s = await status.clusterStatus({ timeoutMs: 5_000 }).catch(() => undefined);
      if (!s) return false;
      const busy = s.jobs
        .filter((c) => c.state === JobState.PENDING || c.state === JobState.RUNNING)
        .reduce((a, c) => a + Number(c.count), 0);
      return busy === 0;
    },
    180_000,
    "every job to finish",
  );
  await sleep(1_000);
  const result = await account(cluster, acked);
  return { faults: 1, submitted, acknowledged: acked.size, retried, failed, ...result };
}
