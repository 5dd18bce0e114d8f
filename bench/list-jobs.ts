/**
 * ListJobs at scale: a control plane (in this process, on a fresh etcd) holds
 * N jobs (default 100,000; a fifth of them finished), and the ListJobs handler
 * is timed for each order, on the first page and deep in the listing, with
 * the total_size it computes. Run: npx tsx bench/list-jobs.ts [--jobs N].
 * Prints a table and, as the last line, one JSON object.
 */
import { parseArgs } from "node:util";
import { create } from "@bufbuild/protobuf";
import { JobState, ListJobsRequestSchema } from "../gen/crms/v1/job_pb.js";
import { transition } from "../src/scheduler/job-machine.js";
import { startServer } from "../src/server/server.js";
import { startEtcd } from "./lib/etcd.js";

const { values } = parseArgs({ options: { jobs: { type: "string" }, calls: { type: "string" } } });
const jobs = Number(values.jobs ?? 100_000);
const calls = Number(values.calls ?? 21);

const etcd = await startEtcd(["--quota-backend-bytes", String(4 * 1024 ** 3)]);
const server = await startServer({
  listen: "127.0.0.1:0",
  etcd: [etcd.endpoint],
  logLevel: "error",
  retentionIntervalSeconds: 0,
  compactionIntervalSeconds: 0,
});
try {
  const { store } = server;
  const names = ["build", "test", "deploy", "lint", "report"];
  process.stderr.write(`submitting ${jobs.toLocaleString("en-US")} jobs…\n`);
  const ids: string[] = [];
  for (let i = 0; i < jobs; i += 1000) {
    const batch = [];
    for (let k = i; k < Math.min(jobs, i + 1000); k++)
      batch.push(store.createJob({ command: ["true"], name: `${names[k % 5]}-${k % 997}`, hold: true } as never, ""));
    for (const r of await Promise.all(batch)) ids.push(r.job.id);
  }
  process.stderr.write("finishing a fifth of them…\n");
  for (let i = 0; i < ids.length; i += 5000) {
    await Promise.all(
      ids
        .slice(i, i + 5000)
        .filter((_, k) => k % 5 === 0)
        .map((id) => store.updateJob(id, (j) => transition(j, { type: "kill", now: new Date() }))),
    );
  }
  const { job } = server.handlers;
  const rows: Array<{
    order: string;
    page: string;
    filter: string;
    ms_median: number;
    cpu_ms_median: number;
    total: number;
  }> = [];
  const median = (xs: number[]) => Math.round((xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0) * 10) / 10;
  for (const order of ["id", "-id", "-submit_time", "end_time", "-end_time", "state", "name", "-name"]) {
    for (const [page, token, filter, states] of [
      ["first", "", "none", []],
      ["middle", `p${Math.floor(jobs / 2)}`, "none", []],
      ["first", "", "state", [JobState.KILLED]],
    ] as const) {
      const times: number[] = [];
      const cpu: number[] = [];
      let total = 0;
      for (let i = 0; i < calls; i++) {
        const t0 = performance.now();
        const c0 = process.cpuUsage();
        const res = await job.listJobs(
          create(ListJobsRequestSchema, { orderBy: order, pageSize: 50, pageToken: token, states: [...states] }),
        );
        const c = process.cpuUsage(c0);
        cpu.push((c.user + c.system) / 1000);
        times.push(performance.now() - t0);
        total = res.totalSize;
      }
      rows.push({ order, page, filter, ms_median: median(times), cpu_ms_median: median(cpu), total });
    }
  }
  // CPU time is what a call costs; wall time also counts whatever else the machine runs.
  process.stdout.write("order          page    filter  wall ms (median)  cpu ms (median)  total_size\n");
  for (const r of rows)
    process.stdout.write(
      `${r.order.padEnd(14)} ${r.page.padEnd(7)} ${r.filter.padEnd(7)} ${String(r.ms_median).padStart(16)} ${String(r.cpu_ms_median).padStart(16)} ${String(r.total).padStart(11)}\n`,
    );
  process.stdout.write(`${JSON.stringify({ scenario: "list-jobs", jobs, calls, page_size: 50, rows })}\n`);
} finally {
  await server.stop();
  await etcd.proc.stop();
}
