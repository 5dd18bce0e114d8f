import { mkdtempSync } from "node:fs";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { JobSchema, JobSpecSchema, JobState } from "../gen/crms/v1/job_pb.js";
import { History } from "../src/history/history.js";

const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
let next = 1;
const mk = () =>
  create(JobSchema, {
    id: String(next++),
    state: JobState.SUCCEEDED,
    worker: "w1",
    exitCode: 0,
    attemptCount: 1,
    spec: create(JobSpecSchema, { command: ["echo", "crms"], name: "paced", labels: { owner: "alice", team: "x" } }),
    submitTime: timestampFromMs(Date.now() - 50),
    startTime: timestampFromMs(Date.now() - 20),
    endTime: timestampFromMs(Date.now()),
  } as never);
for (const mode of (process.argv[2] ?? "plain,async,nogin").split(",")) {
  const h = await History.open(mkdtempSync("/tmp/zzh-"));
  const db = (h as unknown as { db: { query: (s: string) => Promise<unknown> } }).db;
  if (mode === "async") await db.query("SET synchronous_commit TO off");
  if (mode === "nogin") await db.query("DROP INDEX jobs_labels");
  for (let w = 0; w < 5; w++) await h.write(Array.from({ length: 100 }, mk));
  const c0 = cpu();
  const t0 = performance.now();
  const n = 3000;
  for (let i = 0; i < n; i += 100) {
    const jobs = Array.from({ length: 100 }, mk);
    await h.write(jobs);
    await Promise.all(jobs.map((j) => h.storeLog(j.id, 1, 1, Buffer.from("crms\n"), 0)));
  }
  await h.flush();
  console.log(
    mode,
    "cpu ms/job",
    ((cpu() - c0) / n).toFixed(3),
    "wall ms/job",
    ((performance.now() - t0) / n).toFixed(3),
  );
  await h.close();
}
