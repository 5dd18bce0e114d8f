/**
 * Admission control against real etcd: `--max-jobs` caps unfinished jobs,
 * array tasks included; a submit or an array that would pass it is refused
 * with RESOURCE_EXHAUSTED naming the limit and the count, and leaves nothing
 * behind (no record, no id used); `crms admin status` and /metrics show the
 * count against the cap.
 */
import { status } from "@grpc/grpc-js";
import test from "ava";
import { JobState } from "../gen/crms/v1/job_pb.js";
import { createMetrics } from "../src/server/metrics.js";
import { startServer } from "../src/server/server.js";
import { defaultMaxJobs } from "../src/store/admission.js";
import { cli, TestCluster } from "./helpers/cluster.js";

const refusal = (p: Promise<unknown>) =>
  p.then(
    () => ({ code: status.OK, details: "" }),
    (e: { code: number; details: string }) => e,
  );

test("a job and an array past --max-jobs are refused with RESOURCE_EXHAUSTED, nothing is created, the count stays right", async (t) => {
  const cluster = await TestCluster.start({ maxJobs: 10 });
  t.teardown(() => cluster.stop());
  const c = cluster.client();
  const etcdJobs = async () => Number(await cluster.etcdClient().getAll().prefix("crms/jobs/").count());
  const ids: number[] = [];
  // No worker: everything stays unfinished. Held jobs count too.
  const firstId = (await c.submit({ command: ["true"] }, { requestId: "admission-first" })).id;
  ids.push(Number(firstId));
  for (let i = 0; i < 5; i++) ids.push(Number((await c.submit({ command: ["true"] })).id));
  ids.push(Number((await c.submit({ command: ["true"], hold: true })).id));
  t.is((await c.clusterStatus()).unfinishedJobs, 7n);

  const array = await refusal(c.submit({ command: ["true"], array: { first: 1, last: 4 } }));
  t.is(array.code, status.RESOURCE_EXHAUSTED);
  t.regex(
    array.details,
    /array submit refused: the cluster holds 7 unfinished jobs .* its limit is 10 \(--max-jobs\); 4 more/,
  );
  t.is(await etcdJobs(), 7, "no record was written for the refused array");

  // Three tasks fit exactly: the cap counts tasks, created or not.
  const parent = await c.submit({ command: ["true"], array: { first: 1, last: 3 } });
  ids.push(Number(parent.id));
  t.deepEqual(
    ids,
    ids.map((_, i) => (ids[0] as number) + i),
    "refused submits used no id",
  );
  // The scheduler creates the tasks meanwhile; the count does not change with it.
  await cluster.waitFor(() => cluster.server.store.job(parent.id)?.arrayCreated === 3, 20_000, "the array's tasks");
  const s = await c.clusterStatus();
  t.is(s.unfinishedJobs, 10n);
  t.is(s.maxJobs, 10n);

  const one = await refusal(c.submit({ command: ["true"] }));
  t.is(one.code, status.RESOURCE_EXHAUSTED);
  t.regex(
    one.details,
    /submit refused: the cluster holds 10 unfinished jobs .* its limit is 10 \(--max-jobs\); one more/,
  );
  t.is(await etcdJobs(), 11, "7 jobs, the parent and its 3 tasks; nothing for the refused submit");
  t.is((await c.clusterStatus()).unfinishedJobs, 10n, "the count right after the refusals");
  // A retried submit (same request id) of a job taken before the cap gets that job back.
  const again = await c.submitJob({ command: ["true"] }, "admission-first");
  t.true(again.existing);
  t.is(again.job?.id, firstId);

  // A job that ends makes room for one more.
  await c.kill(String(ids[0]));
  await cluster.waitFor(() => cluster.server.admission.count === 9, 10_000, "the count after a kill");
  const next = await c.submit({ command: ["true"] });
  t.is(next.state, JobState.PENDING);
  t.is(Number(next.id), Number(parent.id) + 4, "after the 3 task ids: the refused submits drew none");

  const env = { ...process.env, CRMS_SERVER: cluster.address };
  const out = await cli(["admin", "status"], env);
  t.is(out.code, 0, out.stderr);
  t.regex(out.stdout, /Unfinished: 10 of 10 allowed \(--max-jobs\)/);
  const metrics = createMetrics(cluster.server);
  t.teardown(() => metrics.close());
  const text = await metrics.registry.metrics();
  t.regex(text, /^crms_jobs_unfinished 10$/m);
  t.regex(text, /^crms_jobs_max 10$/m);
  t.regex(text, /^crms_submits_refused_total 2$/m);

  // A replica started over more unfinished jobs than its cap counts them from its load and says so.
  const warnings: string[] = [];
  const quiet = () => undefined;
  const other = await startServer({
    listen: "127.0.0.1:0",
    etcd: [cluster.etcd.endpoint],
    maxJobs: 5,
    log: { debug: quiet, info: quiet, error: quiet, warn: (msg) => warnings.push(msg) },
  });
  t.teardown(() => other.stop());
  t.is(other.admission.count, 10);
  t.true(warnings.some((w) => /more unfinished jobs than --max-jobs/.test(w)));
});

test("--max-jobs-per-user caps one owner; without --max-jobs the cap comes from the heap limit", async (t) => {
  const cluster = await TestCluster.start({ maxJobsPerUser: 2 });
  t.teardown(() => cluster.stop());
  t.is(cluster.server.admission.limits.maxJobs, defaultMaxJobs());
  t.true(defaultMaxJobs() >= 1000);
  // V8's default limit here (about 4 GiB) allows about half a million unfinished jobs.
  t.is(defaultMaxJobs(4144 * 1024 * 1024), 530_000);
  const c = cluster.client();
  await c.submit({ command: ["true"] });
  await c.submit({ command: ["true"] });
  const third = await refusal(c.submit({ command: ["true"] }));
  t.is(third.code, status.RESOURCE_EXHAUSTED);
  t.regex(third.details, /the anonymous user holds 2 unfinished jobs .* limit per user is 2 \(--max-jobs-per-user\)/);
  t.is(cluster.server.admission.count, 2);
});
