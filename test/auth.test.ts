/**
 * Tokens and roles against a real control plane and etcd: every role against
 * every RPC (allowed ones work; the others get PERMISSION_DENIED and etcd is
 * unchanged), missing/invalid/revoked tokens, ownership of jobs, worker tokens
 * bound to one worker name, the bootstrap admin token file, the web page's
 * Connect API with tokens, and refusing to start open.
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, type DescMethod } from "@bufbuild/protobuf";
import { status } from "@grpc/grpc-js";
import test from "ava";
import { CrmsClient } from "../clients/typescript/src/client.js";
import { AdminService } from "../gen/crms/v1/admin_pb.js";
import { JobService } from "../gen/crms/v1/job_pb.js";
import { QueueService } from "../gen/crms/v1/queue_pb.js";
import { AttachRequestSchema, WorkerService } from "../gen/crms/v1/worker_pb.js";
import { POLICY } from "../src/auth/policy.js";
import { OWNER_LABEL } from "../src/rpc/names.js";
import { startServer } from "../src/server/server.js";
import { startHttp } from "../src/web/http.js";
import { cli, TestCluster } from "./helpers/cluster.js";
import { startEtcd } from "./helpers/etcd.js";

const bearer = (secret: string) => ({ authorization: `Bearer ${secret}` });

interface Setup {
  cluster: TestCluster;
  admin: CrmsClient;
  adminSecret: string;
  tokens: Record<string, string>;
  client(secret: string): CrmsClient;
}

async function setup(t: { teardown(fn: () => unknown): void }): Promise<Setup> {
  const adminTokenFile = join(mkdtempSync(join(tmpdir(), "crms-auth-")), "admin.token");
  const cluster = await TestCluster.start({ adminTokenFile, graceSeconds: 600 });
  const clients: CrmsClient[] = [];
  t.teardown(async () => {
    for (const c of clients) c.close();
    await cluster.stop();
  });
  const client = (secret: string) => {
    const c = new CrmsClient(cluster.address, undefined, bearer(secret));
    clients.push(c);
    return c;
  };
  const adminSecret = readFileSync(adminTokenFile, "utf8").trim();
  const admin = client(adminSecret);
  const tokens: Record<string, string> = { admin: adminSecret };
  for (const [name, role, worker] of [
    ["alice", "submitter", ""],
    ["bob", "submitter", ""],
    ["rita", "reader", ""],
    ["w1", "worker", "w1"],
  ] as const) {
    const r = await admin.createToken(name, role, worker);
    tokens[name] = r.secret;
    await cluster.waitFor(() => !!cluster.server.tokens.lookup(r.secret), 10_000, `token ${name} in the cache`);
  }
  return { cluster, admin, adminSecret, tokens, client };
}

/** What crms keeps in etcd, key -> value (base64), for before/after comparisons. */
async function snapshot(cluster: TestCluster): Promise<Record<string, string>> {
  const all = await cluster.etcdClient().getAll().prefix("crms/").buffers();
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(all)) {
    if (/^crms\/(jobs|workers|tokens|reqids|queues)\/|^crms\/idseq$/.test(k)) out[k] = v.toString("base64");
  }
  return out;
}

/** Calls any RPC; resolves with the status code (0 when it worked). */
function callRpc(c: CrmsClient, m: DescMethod, req: object): Promise<number> {
  const tr = c.transport;
  // biome-ignore lint/suspicious/noExplicitAny: one caller for every method of the contract.
  const method = m as any;
  if (m.methodKind === "unary") {
    return tr.unary(method, req as never, { timeoutMs: 60_000 }).then(
      () => status.OK,
      (e: { code: number }) => e.code,
    );
  }
  if (m.methodKind === "server_streaming") {
    const call = tr.serverStream(method, req as never, { timeoutMs: 20_000 });
    return new Promise((resolve) => {
      call.on("data", () => {
        resolve(status.OK);
        call.cancel();
      });
      call.on("error", (e: { code: number }) => resolve(e.code));
      call.on("end", () => resolve(status.OK));
    });
  }
  const stream = tr.bidiStream(method, { timeoutMs: 20_000 });
  stream.write(create(AttachRequestSchema, req as never));
  return new Promise((resolve) => {
    stream.on("data", () => {
      resolve(status.OK);
      stream.end();
      stream.cancel();
    });
    stream.on("error", (e: { code: number }) => resolve(e.code));
  });
}

test.serial(
  "each role against each RPC: allowed ones work, others are PERMISSION_DENIED and change nothing",
  async (t) => {
    const s = await setup(t);
    const roleOf: Record<string, string> = { admin: "admin", alice: "submitter", rita: "reader", w1: "worker" };
    let checked = 0;
    // Every refused call first, then every allowed one: an allowed call sets things moving
    // (an attached w1 is given a job, then detaches and later goes DOWN), which a refused
    // call's before/after comparison of etcd would otherwise see.
    for (const pass of ["refused", "allowed"] as const)
      for (const service of [JobService, WorkerService, AdminService, QueueService]) {
        for (const m of service.methods) {
          const rpc = `${service.name}.${m.name}`;
          // Admin-only RPCs need no entry (AdminService's, and QueueService's writes).
          t.truthy(POLICY[rpc] || service === AdminService || service === QueueService, `${rpc} has a policy entry`);
          for (const caller of ["admin", "alice", "rita", "w1"]) {
            const role = roleOf[caller] as string;
            const allowed = (POLICY[rpc] ?? ["admin"]).includes(role as never);
            if (allowed !== (pass === "allowed")) continue;
            const c = s.client(s.tokens[caller] as string);
            // A fresh job of the caller's own (or admin's, for roles that cannot submit), for the job RPCs.
            const owner = role === "submitter" ? c : s.admin;
            const held = await owner.submit({ command: ["true"], hold: true });
            const pending = await owner.submit({ command: ["true"], constraints: { nowhere: "1" } });
            const finished = await owner.kill((await owner.submit({ command: ["true"], hold: true })).id);
            const requests: Record<string, [object, number]> = {
              SubmitJob: [{ spec: { command: ["true"], hold: true } }, status.OK],
              GetJob: [{ id: held.id }, status.OK],
              ListJobs: [{}, status.OK],
              // This cluster keeps no history database.
              ListHistory: [{}, status.FAILED_PRECONDITION],
              GetUsage: [{}, status.FAILED_PRECONDITION],
              UploadOutput: [{ jobId: finished.id, attempt: 1, stream: 1, last: true }, status.FAILED_PRECONDITION],
              WatchJobs: [{ ids: [held.id] }, status.OK],
              KillJob: [{ id: held.id }, status.OK],
              HoldJob: [{ id: pending.id }, status.OK],
              ReleaseJob: [{ id: held.id }, status.OK],
              DeleteJob: [{ id: finished.id }, status.OK],
              StreamOutput: [{ id: held.id }, status.OK],
              Attach: [
                { msg: { case: "hello", value: { name: "w1", slots: 1, hostname: "h", version: "t" } } },
                status.OK,
              ],
              ListWorkers: [{}, status.OK],
              GetWorker: [{ name: "nope" }, status.NOT_FOUND],
              WatchWorkers: [{}, status.OK],
              DrainWorker: [{ name: "nope" }, status.NOT_FOUND],
              StopWorker: [{ name: "nope" }, status.NOT_FOUND],
              ResumeWorker: [{ name: "nope" }, status.NOT_FOUND],
              // A worker token may forget only the worker it is bound to (w1).
              ForgetWorker: [{ name: "nope" }, role === "worker" ? status.PERMISSION_DENIED : status.NOT_FOUND],
              RunJob: [{ id: held.id, worker: "nope" }, status.NOT_FOUND],
              RequeueJob: [{ id: finished.id }, status.OK],
              GetClusterStatus: [{}, status.OK],
              Compact: [{}, status.OK],
              Defragment: [{}, status.OK],
              DisarmAlarms: [{}, status.OK],
              Recover: [{}, status.OK],
              RunRetention: [{}, status.OK],
              CreateToken: [{ name: `made-by-${caller}`, role: "reader" }, status.OK],
              ListTokens: [{}, status.OK],
              RevokeToken: [{ id: "0123456789abcdef" }, status.NOT_FOUND],
              CreateQueue: [{ queue: { name: `made-by-${caller}`, weight: 1 } }, status.OK],
              GetQueue: [{ name: "default" }, status.OK],
              ListQueues: [{}, status.OK],
              UpdateQueue: [{ queue: { name: "default", weight: 1 } }, status.OK],
              DeleteQueue: [{ name: "nope" }, status.NOT_FOUND],
            };
            const [req, expected] = requests[m.name] ?? [{}, status.OK];
            t.truthy(requests[m.name], `a request for ${rpc}`);
            const before = allowed ? undefined : await snapshot(s.cluster);
            const code = await callRpc(c, m, req);
            if (allowed) {
              t.is(code, expected, `${role} calling ${rpc}: ${status[code]}`);
            } else {
              t.is(code, status.PERMISSION_DENIED, `${role} calling ${rpc} must be denied, got ${status[code]}`);
              t.deepEqual(await snapshot(s.cluster), before, `${role} calling ${rpc} changed etcd`);
            }
            checked++;
            if (m.name === "Attach" && allowed) {
              // Let the session close before the next caller attaches as w1.
              await s.cluster.waitFor(() => !s.cluster.server.sessions.byName.get("w1")?.open, 10_000, "w1 detached");
            }
          }
        }
      }
    t.log(`${checked} role x RPC combinations checked`);
    t.true(checked >= 24 * 4);
  },
);

test.serial("missing, invalid and revoked tokens are UNAUTHENTICATED and change nothing", async (t) => {
  const s = await setup(t);
  const before = await snapshot(s.cluster);
  const anonymous = new CrmsClient(s.cluster.address);
  t.teardown(() => anonymous.close());
  const e1 = await t.throwsAsync(anonymous.submit({ command: ["true"] }));
  t.is((e1 as unknown as { code: number }).code, status.UNAUTHENTICATED);
  t.regex((e1 as unknown as { details: string }).details, /bearer token is required/);
  const e2 = await t.throwsAsync(s.client("crms_not-a-real-token-at-all").submit({ command: ["true"] }));
  t.is((e2 as unknown as { code: number }).code, status.UNAUTHENTICATED);
  const e3 = await t.throwsAsync(anonymous.listJobs({}, { metadata: { authorization: `Basic ${s.tokens.alice}` } }));
  t.is((e3 as unknown as { code: number }).code, status.UNAUTHENTICATED);
  t.deepEqual(await snapshot(s.cluster), before);

  // Revoking takes effect without a restart.
  const bob = s.client(s.tokens.bob as string);
  await bob.listJobs();
  const id = (await s.admin.listTokens()).find((x) => x.name === "bob")?.id as string;
  await s.admin.revokeToken(id);
  await s.cluster.waitFor(() => !s.cluster.server.tokens.lookup(s.tokens.bob as string), 10_000, "revocation");
  const e4 = await t.throwsAsync(bob.listJobs());
  t.is((e4 as unknown as { code: number }).code, status.UNAUTHENTICATED);
  t.false((await s.admin.listTokens()).some((x) => x.name === "bob"));
  // etcd holds only hashes: no secret appears in any stored value or key.
  const raw = JSON.stringify(await s.cluster.etcdClient().getAll().prefix("crms/tokens/").strings());
  for (const secret of Object.values(s.tokens)) t.false(raw.includes(secret));
});

test.serial("a submitter changes only its own jobs; jobs carry their owner", async (t) => {
  const s = await setup(t);
  const alice = s.client(s.tokens.alice as string);
  const bob = s.client(s.tokens.bob as string);
  const job = await alice.submit({ command: ["true"], hold: true, labels: { [OWNER_LABEL]: "bob" } });
  t.is(job.spec?.labels[OWNER_LABEL], "alice", "the owner label is the caller's, whatever was sent");
  const before = await snapshot(s.cluster);
  for (const op of [
    () => bob.kill(job.id),
    () => bob.release(job.id),
    () => bob.hold(job.id),
    () => bob.runJob(job.id, "anywhere"),
    () => bob.requeue(job.id),
  ]) {
    const err = await t.throwsAsync(op());
    t.is((err as unknown as { code: number }).code, status.PERMISSION_DENIED);
    t.regex((err as unknown as { details: string }).details, /belongs to alice/);
  }
  t.deepEqual(await snapshot(s.cluster), before);
  // Bob may still read it; alice and the admin may change it.
  t.is((await bob.getJob(job.id)).id, job.id);
  t.is((await alice.release(job.id)).id, job.id);
  t.truthy(await s.admin.kill(job.id));
});

test.serial("a worker token attaches only under its own worker name; the job env has no credentials", async (t) => {
  const s = await setup(t);
  const w1 = s.client(s.tokens.w1 as string);
  const hello = (name: string) => ({ msg: { case: "hello", value: { name, slots: 1, hostname: "h", version: "t" } } });
  const before = await snapshot(s.cluster);
  t.is(await callRpc(w1, WorkerService.method.attach, hello("w2")), status.PERMISSION_DENIED);
  t.deepEqual(await snapshot(s.cluster), before, "a refused attach leaves no worker record");
  t.is(s.cluster.server.store.worker("w2"), undefined);

  // A real worker process with the token in its environment: it attaches as w1 and
  // the job it runs sees neither the token nor the other CRMS_* secrets.
  const { spawn } = await import("node:child_process");
  const dataDir = mkdtempSync(join(tmpdir(), "crms-auth-worker-"));
  const proc = spawn(
    process.execPath,
    ["bin/crms.js", "worker", "--name", "w1", "--server", s.cluster.address, "--data-dir", dataDir],
    {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, CRMS_TOKEN: s.tokens.w1, CRMS_CA: "", MY_API_KEY: "k-secret", DB_PASSWORD: "p-secret" },
    },
  );
  let out = "";
  proc.stderr.on("data", (d) => (out += d));
  t.teardown(async () => {
    proc.kill("SIGTERM");
    await new Promise((r) => proc.once("exit", r));
  });
  await s.cluster.waitFor(() => s.cluster.server.store.worker("w1")?.state === 1, 20_000, `w1 attached\n${out}`);
  const alice = s.client(s.tokens.alice as string);
  const job = await alice.submit({ command: ["env"] });
  const done = await alice.wait(job.id, { timeoutMs: 30_000 });
  t.is(done.exitCode, 0);
  const { stdout } = await alice.outputText(job.id);
  t.regex(stdout, /^CRMS_JOB_ID=/m);
  t.false(stdout.includes(s.tokens.w1 as string), "the worker's token leaked into the job");
  t.notRegex(stdout, /^CRMS_TOKEN=|^MY_API_KEY=|^DB_PASSWORD=/m);
});

test.serial("the web page's Connect API takes the same bearer tokens", async (t) => {
  const s = await setup(t);
  const web = await startHttp(s.cluster.server, "127.0.0.1:0");
  t.teardown(() => web.close());
  const post = (path: string, body: object, token?: string) =>
    fetch(new URL(path, web.url), {
      method: "POST",
      headers: { "Content-Type": "application/json", ...(token ? bearer(token) : {}) },
      body: JSON.stringify(body),
    });
  const anon = await post("crms.v1.JobService/ListJobs", {});
  t.is(anon.status, 401);
  t.is(((await anon.json()) as { code: string }).code, "unauthenticated");
  const reader = await post("crms.v1.JobService/ListJobs", {}, s.tokens.rita);
  t.is(reader.status, 200);
  const denied = await post("crms.v1.JobService/SubmitJob", { spec: { command: ["true"] } }, s.tokens.rita);
  t.is(denied.status, 403);
  t.is(((await denied.json()) as { code: string }).code, "permission_denied");
  const metrics = await fetch(new URL("metrics", web.url));
  t.is(metrics.status, 401);
  const metricsOk = await fetch(new URL("metrics", web.url), { headers: bearer(s.tokens.rita as string) });
  t.is(metricsOk.status, 200);
});

test.serial("the CLI manages tokens: create, list, revoke", async (t) => {
  const s = await setup(t);
  const env = { ...process.env, CRMS_SERVER: s.cluster.address, CRMS_TOKEN: s.adminSecret };
  const made = await cli(["admin", "token", "create", "--name", "carol", "--role", "submitter", "-o", "json"], env);
  t.is(made.code, 0, made.stderr);
  const { id, secret } = JSON.parse(made.stdout) as { id: string; secret: string };
  const list = await cli(["admin", "token", "list"], env);
  t.regex(list.stdout, new RegExp(`${id}\\s+carol\\s+submitter`));
  await s.cluster.waitFor(() => !!s.cluster.server.tokens.lookup(secret), 10_000, "carol's token");
  const submitted = await cli(["submit", "--hold", "--", "true"], { ...env, CRMS_TOKEN: secret });
  t.is(submitted.code, 0, submitted.stderr);
  const denied = await cli(["admin", "token", "list"], { ...env, CRMS_TOKEN: secret });
  t.is(denied.code, 1);
  t.regex(denied.stderr, /PERMISSION_DENIED: role submitter/);
  const revoked = await cli(["admin", "token", "revoke", id], env);
  t.is(revoked.code, 0, revoked.stderr);
  t.regex(revoked.stdout, /revoked token/);
});

test.serial("refuses to listen beyond loopback open, and says why", async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  const err = await t.throwsAsync(startServer({ listen: "0.0.0.0:0", etcd: [etcd.endpoint], logLevel: "silent" }));
  t.regex(err?.message ?? "", /refusing to listen on 0\.0\.0\.0:0 .*neither TLS nor tokens.*--insecure/);
  const res = await cli(["server", "--listen", "0.0.0.0:0", "--etcd", etcd.endpoint], process.env);
  t.is(res.code, 1);
  t.regex(res.stderr, /refusing to listen/);
  // --insecure accepts the risk; an exposed server with a token (but no TLS) starts and requires it.
  const open = await startServer({ listen: "0.0.0.0:0", etcd: [etcd.endpoint], logLevel: "silent", insecure: true });
  await open.stop();
  const tokenFile = join(mkdtempSync(join(tmpdir(), "crms-exposed-")), "admin.token");
  const exposed = await startServer({
    listen: "0.0.0.0:0",
    etcd: [etcd.endpoint],
    logLevel: "silent",
    adminTokenFile: tokenFile,
    prefix: "exposed/",
  });
  t.teardown(() => exposed.stop());
  const c = new CrmsClient(`127.0.0.1:${exposed.port}`);
  t.teardown(() => c.close());
  const e = await t.throwsAsync(c.listJobs());
  t.is((e as unknown as { code: number }).code, status.UNAUTHENTICATED);
  const ok = new CrmsClient(`127.0.0.1:${exposed.port}`, undefined, bearer(readFileSync(tokenFile, "utf8").trim()));
  t.teardown(() => ok.close());
  t.deepEqual((await ok.listJobs()).jobs, []);
});
