/**
 * A replica started over more job records than it can load (its heap limit;
 * here `holdableJobs` stands for a small heap) says so instead of running out
 * of memory half-way through the load: it stays up, answers every call with
 * the reason and the figures, workers are sent elsewhere with UNAVAILABLE,
 * health says NOT_SERVING, and the replica that holds the set goes on; once
 * enough jobs are gone it loads them and serves on the same port.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { status } from "@grpc/grpc-js";
import test from "ava";
import { CrmsClient } from "../clients/typescript/src/client.js";
import { ServiceTransport } from "../clients/typescript/src/transport.js";
import { JobState } from "../gen/crms/v1/job_pb.js";
import { WorkerService } from "../gen/crms/v1/worker_pb.js";
import { startServer } from "../src/server/server.js";
import { holdableJobs } from "../src/store/capacity.js";
import { cli, grpcurlPath, TestCluster } from "./helpers/cluster.js";

const refusal = (p: Promise<unknown>) =>
  p.then(
    () => ({ code: status.OK, details: "" }),
    (e: { code: number; details: string }) => e,
  );

test("a replica over more jobs than it can load serves GetJob and ListJobs from etcd, refuses the rest with the reason and stays up; the others go on", async (t) => {
  const adminTokenFile = join(mkdtempSync(join(tmpdir(), "crms-overcap-")), "admin.token");
  const cluster = await TestCluster.start({ adminTokenFile });
  t.teardown(() => cluster.stop());
  const adminSecret = readFileSync(adminTokenFile, "utf8").trim();
  const c = cluster.client(adminSecret);
  const reader = await c.createToken("rita", "reader");
  const ids: string[] = [];
  for (let i = 0; i < 30; i++) {
    ids.push((await c.submit({ command: ["true"], hold: true, labels: { half: String(i % 2) } })).id);
  }
  const etcdJobs = async () => Number(await cluster.etcdClient().getAll().prefix("crms/jobs/").count());
  t.is(await etcdJobs(), 30);

  const errors: string[] = [];
  const quiet = () => undefined;
  const small = await startServer({
    listen: "127.0.0.1:0",
    etcd: [cluster.etcd.endpoint],
    adminTokenFile,
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
  const sc = new CrmsClient(small.address, undefined, { authorization: `Bearer ${reader.secret}` });
  t.teardown(() => sc.close());
  const submit = await refusal(sc.submit({ command: ["true"] }));
  t.is(submit.code, status.RESOURCE_EXHAUSTED);
  t.regex(submit.details, reason);
  // Reads come straight from etcd, checked against the same tokens as anywhere.
  const anonymous = new CrmsClient(small.address);
  t.teardown(() => anonymous.close());
  const third = ids[3] as string;
  t.is((await refusal(anonymous.getJob(third))).code, status.UNAUTHENTICATED);
  const one = await sc.getJob(third);
  t.is(one.id, third);
  t.is(one.state, JobState.HELD);
  t.deepEqual(one.spec?.command, ["true"]);
  t.is((await refusal(sc.getJob("999"))).code, status.NOT_FOUND);
  // Listed in id order (11 after 9, unlike etcd's key order), a page at a time, either way, with filters.
  const walk = async (req: { orderBy?: string; labels?: Record<string, string> }) => {
    const seen: string[] = [];
    let pageToken = "";
    do {
      const page = await sc.listJobs({ ...req, pageSize: 7, pageToken });
      t.true(page.jobs.length <= 7);
      seen.push(...page.jobs.map((j) => j.id));
      pageToken = page.nextPageToken;
    } while (pageToken);
    return seen;
  };
  t.deepEqual(await walk({}), ids);
  t.deepEqual(await walk({ orderBy: "-id" }), [...ids].reverse());
  t.deepEqual(
    await walk({ labels: { half: "1" } }),
    ids.filter((_, i) => i % 2 === 1),
  );
  const byName = await refusal(sc.listJobs({ orderBy: "name" }));
  t.is(byName.code, status.FAILED_PRECONDITION);
  t.regex(byName.details, /lists by id only/);
  // The CLI reads through it too.
  const env = { ...process.env, CRMS_SERVER: small.address, CRMS_TOKEN: reader.secret };
  const shown = await cli(["job", ids[5] as string], env);
  t.is(shown.code, 0, shown.stderr);
  t.regex(shown.stdout, /HELD/);
  const list = await cli(["jobs"], env);
  t.is(list.code, 0, list.stderr);
  t.regex(list.stdout, new RegExp(`\\b${ids[29]}\\b`));
  t.is(list.stderr, "", "all 30 shown");
  // Like any `crms jobs`: the first N, and a note on stderr when more matched.
  const few = await cli(["jobs", "--sort", "id", "--limit", "5"], env);
  t.deepEqual(
    few.stdout
      .trim()
      .split("\n")
      .slice(1)
      .map((l) => l.split(/\s+/)[0]),
    ids.slice(0, 5),
  );
  t.regex(few.stderr, /the first 5 shown, more matched/);
  // A worker is sent to another replica.
  const transport = new ServiceTransport(small.address);
  t.teardown(() => transport.close());
  const upload = await refusal(
    transport.unary(WorkerService.method.uploadOutput, { jobId: "1", attempt: 1, stream: 1, last: true }),
  );
  t.is(upload.code, status.UNAVAILABLE);
  // `crms admin status` shows the reason.
  const st = await cli(["admin", "status"], { ...process.env, CRMS_SERVER: small.address, CRMS_TOKEN: adminSecret });
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
  const sa = new CrmsClient(address, undefined, { authorization: `Bearer ${adminSecret}` });
  t.teardown(() => sa.close());
  t.truthy((await sa.submit({ command: ["true"], hold: true })).id);
  t.is((await refusal(sc.submit({ command: ["true"] }))).code, status.PERMISSION_DENIED, "a reader's token reads only");
  const healthy = await promisify(execFile)(grpcurlPath(), ["-plaintext", address, "grpc.health.v1.Health/Check"]);
  t.regex(healthy.stdout, /"SERVING"/);
});

test("the job records a replica can load follow its heap limit", (t) => {
  // About 3.2 million at V8's default limit here (about 4 GiB): 1 KiB a record in 3/4 of the heap.
  t.is(holdableJobs(4144 * 1024 * 1024), 3_182_592);
  t.is(holdableJobs(512 * 1024 * 1024), 393_216);
  t.is(holdableJobs(1024 * 1024), 1000, "never below a thousand");
});
