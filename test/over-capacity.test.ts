/**
 * A replica started over more job records than it can load (its heap limit;
 * here `holdableJobs` stands for a small heap) says so instead of running out
 * of memory half-way through the load: it stays up, answers every call with
 * the reason and the figures, workers are sent elsewhere with UNAVAILABLE,
 * health says NOT_SERVING, and the replica that holds the set goes on; once
 * enough jobs are gone it loads them and serves on the same port.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { status } from "@grpc/grpc-js";
import test from "ava";
import { CrmsClient } from "../clients/typescript/src/client.js";
import { ServiceTransport } from "../clients/typescript/src/transport.js";
import { WorkerService } from "../gen/crms/v1/worker_pb.js";
import { startServer } from "../src/server/server.js";
import { holdableJobs } from "../src/store/capacity.js";
import { cli, grpcurlPath, TestCluster } from "./helpers/cluster.js";

const refusal = (p: Promise<unknown>) =>
  p.then(
    () => ({ code: status.OK, details: "" }),
    (e: { code: number; details: string }) => e,
  );

test("a replica over more jobs than it can load refuses every call with the reason and stays up; the others go on", async (t) => {
  const cluster = await TestCluster.start();
  t.teardown(() => cluster.stop());
  const c = cluster.client();
  const ids: string[] = [];
  for (let i = 0; i < 30; i++) ids.push((await c.submit({ command: ["true"], hold: true })).id);
  const etcdJobs = async () => Number(await cluster.etcdClient().getAll().prefix("crms/jobs/").count());
  t.is(await etcdJobs(), 30);

  const errors: string[] = [];
  const quiet = () => undefined;
  const small = await startServer({
    listen: "127.0.0.1:0",
    etcd: [cluster.etcd.endpoint],
    holdableJobs: 20,
    capacityRecheckMs: 200,
    log: { debug: quiet, info: quiet, warn: quiet, error: (msg, f) => errors.push(`${msg} ${JSON.stringify(f)}`) },
  });
  t.teardown(() => small.stop());
  t.is(small.state, "SERVING");
  t.is(small.overCapacity?.records, 30);
  t.is(small.store as unknown, undefined, "nothing was loaded");
  t.true(errors.some((e) => /over capacity/.test(e) && /"jobRecords":30/.test(e)));

  const reason = /etcd holds 30 job records and a heap limit of \d+ MiB holds about 20\. .*--max-old-space-size=\d+/;
  const sc = new CrmsClient(small.address);
  t.teardown(() => sc.close());
  const submit = await refusal(sc.submit({ command: ["true"] }));
  t.is(submit.code, status.RESOURCE_EXHAUSTED);
  t.regex(submit.details, reason);
  const get = await refusal(sc.getJob("1"));
  t.is(get.code, status.RESOURCE_EXHAUSTED);
  const list = await refusal(sc.listJobs({}));
  t.is(list.code, status.RESOURCE_EXHAUSTED);
  t.regex(list.details, reason);
  // A worker is sent to another replica.
  const transport = new ServiceTransport(small.address);
  t.teardown(() => transport.close());
  const upload = await refusal(
    transport.unary(WorkerService.method.uploadOutput, { jobId: "1", attempt: 1, stream: 1, last: true }),
  );
  t.is(upload.code, status.UNAVAILABLE);
  // `crms admin status` shows the reason.
  const st = await cli(["admin", "status"], { ...process.env, CRMS_SERVER: small.address });
  t.not(st.code, 0);
  t.regex(st.stderr, /cannot load the cluster: etcd holds 30 job records/);
  // Health says so (a load balancer skips it); grpcurl is installed by scripts/setup.sh.
  const health = await promisify(execFile)(grpcurlPath(), ["-plaintext", small.address, "grpc.health.v1.Health/Check"]);
  t.regex(health.stdout, /NOT_SERVING/);

  // Nothing was written through it, and the replica that holds the set goes on.
  t.is(await etcdJobs(), 30);
  await c.submit({ command: ["true"], hold: true });
  t.is(await etcdJobs(), 31);

  // Once enough jobs are gone it counts again, loads them and serves as any replica, on the same port.
  const address = small.address;
  for (const id of ids.slice(0, 11)) {
    await c.kill(id);
    await c.deleteJob(id);
  }
  t.is(await etcdJobs(), 20);
  await cluster.waitFor(() => small.overCapacity === undefined && small.store !== undefined, 20_000, "the reload");
  t.is(small.address, address);
  t.is(small.store.jobs.entries.size, 20);
  const last = ids[29] as string;
  t.is((await sc.getJob(last)).id, last);
  t.truthy((await sc.submit({ command: ["true"], hold: true })).id);
  const healthy = await promisify(execFile)(grpcurlPath(), ["-plaintext", address, "grpc.health.v1.Health/Check"]);
  t.regex(healthy.stdout, /"SERVING"/);
});

test("the job records a replica can load follow its heap limit", (t) => {
  // About 3.2 million at V8's default limit here (about 4 GiB): 1 KiB a record in 3/4 of the heap.
  t.is(holdableJobs(4144 * 1024 * 1024), 3_182_592);
  t.is(holdableJobs(512 * 1024 * 1024), 393_216);
  t.is(holdableJobs(1024 * 1024), 1000, "never below a thousand");
});
