/**
 * QueueService against a real etcd and control plane: create, get, list,
 * update and delete with the contract's codes, "default" always there and
 * first, deletes refused while the queue has unfinished jobs, writes for
 * admins only once tokens are on, the same service over grpc-js and the web
 * page's Connect transport; and the CLI's `crms queue ...`, submit's
 * resource and queue flags and what `crms job` shows of them.
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { status } from "@grpc/grpc-js";
import anyTest, { type ExecutionContext, type TestFn } from "ava";
import type { CrmsClient } from "../clients/typescript/src/client.js";
import { JobState } from "../gen/crms/v1/job_pb.js";
import { AttachRequestSchema, WorkerService, WorkerState } from "../gen/crms/v1/worker_pb.js";
import { withOwner } from "../src/cli/resources.js";
import { byteSize } from "../src/cmd/flags.js";
import { OWNER_LABEL } from "../src/rpc/names.js";
import { startHttp } from "../src/web/http.js";
import { cli, TestCluster } from "./helpers/cluster.js";

const test = anyTest as TestFn<{ cluster: TestCluster; c: CrmsClient; env: NodeJS.ProcessEnv }>;

test.before(async (t) => {
  // No worker: submitted jobs stay PENDING.
  const cluster = await TestCluster.start();
  const env: NodeJS.ProcessEnv = { ...process.env, CRMS_SERVER: cluster.address, NO_COLOR: "1" };
  delete env.CRMS_TOKEN;
  delete env.CRMS_TOKEN_FILE;
  t.context = { cluster, c: cluster.client(), env };
});

test.after.always(async (t) => {
  await t.context.cluster?.stop();
});

/** The gRPC status code a call failed with (OK if it did not). */
async function codeOf(p: Promise<unknown>): Promise<number> {
  return p.then(
    () => status.OK,
    (e: { code?: number }) => e.code ?? -1,
  );
}

/** Runs each command line (three at a time: each is a process) and checks it is a usage error, exit 2. */
async function usageErrors(t: ExecutionContext, env: NodeJS.ProcessEnv, cases: string[][]): Promise<void> {
  for (let i = 0; i < cases.length; i += 3) {
    await Promise.all(
      cases.slice(i, i + 3).map(async (args) => {
        const r = await cli(args, env);
        t.is(r.code, 2, `${args.join(" ")}: ${r.stdout}${r.stderr}`);
      }),
    );
  }
}

test("queues: create, get, list, update and delete round trip with the contract's codes", async (t) => {
  const { c } = t.context;
  const made = await c.createQueue({ name: "rt", weight: 2, maxRunning: 3, maxCpus: 8, maxGpus: 1, preemptible: true });
  t.like(made, { name: "rt", weight: 2, maxRunning: 3, maxCpus: 8, maxGpus: 1, preemptible: true });
  t.truthy(made.createTime, "create_time set at create");
  t.true(Math.abs(timestampDate(made.createTime as never).getTime() - Date.now()) < 60_000);
  t.truthy(made.status, "the answer carries its status");
  t.is(made.status?.running, 0);
  t.is(made.status?.pending, 0n);

  const got = await c.getQueue("rt");
  t.like(got, { name: "rt", weight: 2, maxRunning: 3, maxCpus: 8, maxGpus: 1, preemptible: true });
  t.deepEqual(got.createTime, made.createTime);

  t.is(await codeOf(c.createQueue({ name: "rt", weight: 1 })), status.ALREADY_EXISTS);
  t.is(await codeOf(c.createQueue({ name: "default", weight: 1 })), status.ALREADY_EXISTS, "default always exists");
  for (const name of ["", "Rt", "-rt", ".rt", "_rt", "a/b", "a b", "é", "x".repeat(64)]) {
    t.is(await codeOf(c.createQueue({ name, weight: 1 })), status.INVALID_ARGUMENT, `name ${JSON.stringify(name)}`);
  }
  t.is(await codeOf(c.createQueue({ name: "x".repeat(63), weight: 1 })), status.OK, "63 characters are allowed");
  t.is(await codeOf(c.createQueue({ name: "9a_b.c-d", weight: 1 })), status.OK);
  for (const weight of [-1, Number.NaN, Number.POSITIVE_INFINITY, -0.5]) {
    t.is(await codeOf(c.createQueue({ name: "w-bad", weight })), status.INVALID_ARGUMENT, `weight ${weight}`);
  }
  t.is((await c.createQueue({ name: "w-zero", weight: 0 })).weight, 1, "weight 0 in a create means 1");
  t.is((await c.createQueue({ name: "w-frac", weight: 0.25 })).weight, 0.25);

  t.is(await codeOf(c.getQueue("nope")), status.NOT_FOUND);
  t.is(await codeOf(c.getQueue("Bad Name")), status.INVALID_ARGUMENT);
  t.is((await c.getQueue("default")).weight, 1, "default reads as weight 1 when never stored");

  // Update replaces every setting and keeps create_time.
  const changed = await c.updateQueue({ name: "rt", weight: 5, maxRunning: 0, maxCpus: 4 });
  t.like(changed, { name: "rt", weight: 5, maxRunning: 0, maxCpus: 4, maxGpus: 0, preemptible: false });
  t.deepEqual(changed.createTime, made.createTime);
  t.like(await c.getQueue("rt"), { weight: 5, maxRunning: 0, maxCpus: 4, maxGpus: 0, preemptible: false });
  t.is((await c.updateQueue({ name: "rt", weight: 0 })).weight, 1, "weight 0 in an update means 1");
  t.is(await codeOf(c.updateQueue({ name: "rt", weight: -2 })), status.INVALID_ARGUMENT);
  t.is(await codeOf(c.updateQueue({ name: "rt", weight: Number.NaN })), status.INVALID_ARGUMENT);
  t.is(await codeOf(c.updateQueue({ name: "nope", weight: 1 })), status.NOT_FOUND);
  t.is(await codeOf(c.updateQueue({ name: "BAD", weight: 1 })), status.INVALID_ARGUMENT);
  const def = await c.updateQueue({ name: "default", weight: 3, maxRunning: 100 });
  t.like(def, { name: "default", weight: 3, maxRunning: 100 });
  t.like(await c.getQueue("default"), { weight: 3, maxRunning: 100 });
  await c.updateQueue({ name: "default", weight: 1 });

  t.is(await codeOf(c.deleteQueue("default")), status.FAILED_PRECONDITION);
  t.is(await codeOf(c.deleteQueue("nope")), status.NOT_FOUND);
  t.is(await codeOf(c.deleteQueue("rt")), status.OK);
  t.is(await codeOf(c.getQueue("rt")), status.NOT_FOUND);
  t.is(await codeOf(c.deleteQueue("rt")), status.NOT_FOUND, "a second delete");
  // A deleted name can be created again.
  t.is(await codeOf(c.createQueue({ name: "rt", weight: 1 })), status.OK);
  t.is(await codeOf(c.deleteQueue("rt")), status.OK);
});

test("ListQueues answers default first, then the others by name, each with its status", async (t) => {
  const { c } = t.context;
  for (const name of ["zz-list", "aa-list", "mm-list"]) await c.createQueue({ name, weight: 1 });
  const names = (await c.listQueues()).map((q) => q.name);
  t.is(names[0], "default");
  t.deepEqual(names.slice(1), [...names.slice(1)].sort(), "then by name");
  for (const n of ["zz-list", "aa-list", "mm-list"]) t.true(names.includes(n));
  t.true((await c.listQueues()).every((q) => q.status !== undefined));
});

test("DeleteQueue is refused while the queue has a pending, held or array job, and works once they end", async (t) => {
  const { c, cluster } = t.context;
  await c.createQueue({ name: "busy", weight: 1 });
  // No worker: the job stays PENDING.
  const job = await c.submit({ command: ["true"], queue: "busy", labels: { [OWNER_LABEL]: "alice" } });
  await cluster.waitFor(async () => (await c.getQueue("busy")).status?.pending === 1n, 10_000, "pending counted");
  const shown = await c.getQueue("busy");
  t.is(shown.status?.users.length, 1);
  t.like(shown.status?.users[0], { user: "alice", running: 0, pending: 1n });
  const err = await t.throwsAsync(c.deleteQueue("busy"));
  t.is((err as unknown as { code: number }).code, status.FAILED_PRECONDITION);
  t.regex((err as unknown as { details: string }).details, /unfinished/);
  t.truthy(await c.getQueue("busy"), "still there");
  await c.kill(job.id);
  await cluster.waitFor(async () => (await c.getQueue("busy")).status?.pending === 0n, 10_000, "pending gone");

  // HELD jobs and arrays are unfinished too.
  const held = await c.submit({ command: ["true"], queue: "busy", hold: true });
  t.is(await codeOf(c.deleteQueue("busy")), status.FAILED_PRECONDITION, "a held job keeps the queue");
  await c.kill(held.id);
  const array = await c.submit({ command: ["true"], queue: "busy", hold: true, array: { first: 1, last: 3 } });
  t.is(await codeOf(c.deleteQueue("busy")), status.FAILED_PRECONDITION, "a held array keeps the queue");
  await c.kill(array.id);
  await cluster.waitFor(async () => (await c.getJob(array.id)).state === JobState.KILLED, 10_000, "array killed");

  t.is(await codeOf(c.deleteQueue("busy")), status.OK);
});

test("with tokens on, reading queues is open to every role and writing is the admin's", async (t) => {
  const adminTokenFile = join(mkdtempSync(join(tmpdir(), "crms-queues-")), "admin.token");
  const cluster = await TestCluster.start({ adminTokenFile });
  t.teardown(() => cluster.stop());
  const admin = cluster.client(readFileSync(adminTokenFile, "utf8").trim());
  const secrets: Record<string, string> = {};
  for (const [name, role] of [
    ["sally", "submitter"],
    ["rita", "reader"],
  ] as const) {
    secrets[name] = (await admin.createToken(name, role)).secret;
    await cluster.waitFor(() => !!cluster.server.tokens.lookup(secrets[name] as string), 10_000, `token ${name}`);
  }
  t.is((await admin.createQueue({ name: "team", weight: 2 })).weight, 2);
  for (const who of ["sally", "rita"]) {
    const c = cluster.client(secrets[who]);
    t.is(await codeOf(c.createQueue({ name: `by-${who}`, weight: 1 })), status.PERMISSION_DENIED, `${who} create`);
    t.is(await codeOf(c.updateQueue({ name: "team", weight: 9 })), status.PERMISSION_DENIED, `${who} update`);
    t.is(await codeOf(c.deleteQueue("team")), status.PERMISSION_DENIED, `${who} delete`);
    t.is((await c.getQueue("team")).weight, 2, `${who} reads`);
    t.deepEqual(
      (await c.listQueues()).map((q) => q.name),
      ["default", "team"],
      `${who} lists`,
    );
  }
  t.is(await codeOf(cluster.client().listQueues()), status.UNAUTHENTICATED, "no token");
  t.is((await admin.updateQueue({ name: "team", weight: 9 })).weight, 9);
  await admin.deleteQueue("team");
  t.deepEqual(
    (await admin.listQueues()).map((q) => q.name),
    ["default"],
  );

  // The same service on the web page's Connect transport.
  const web = await startHttp(cluster.server, "127.0.0.1:0");
  t.teardown(() => web.close());
  const post = (path: string, body: object, token: string) =>
    fetch(new URL(path, web.url), {
      method: "POST",
      headers: { "Content-Type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
    });
  const listed = await post("crms.v1.QueueService/ListQueues", {}, secrets.rita as string);
  t.is(listed.status, 200);
  t.is(((await listed.json()) as { queues: Array<{ name: string }> }).queues[0]?.name, "default");
  const denied = await post("crms.v1.QueueService/CreateQueue", { queue: { name: "web" } }, secrets.rita as string);
  t.is(denied.status, 403);
});

test("crms queue create, list, show, update and delete, as tables and -o json; usage errors exit 2", async (t) => {
  const { c, env } = t.context;
  const ok = async (args: string[]) => {
    const r = await cli(args, env);
    t.is(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
  };
  t.regex(
    await ok(["queue", "create", "cq", "--weight", "2", "--max-running", "3", "--preemptible"]),
    /queue cq created \(weight 2\)/,
  );
  t.like(await c.getQueue("cq"), { weight: 2, maxRunning: 3, maxCpus: 0, preemptible: true });
  t.is((await c.getQueue("cq")).createTime !== undefined, true);
  const shown = JSON.parse(await ok(["queue", "show", "cq", "-o", "json"]));
  t.like(shown, { name: "cq", weight: 2, maxRunning: 3, maxCpus: 0, preemptible: true });
  t.like(shown.status, { running: 0, pending: "0" });

  const table = await ok(["queue", "list"]);
  const rows = table.trimEnd().split("\n");
  t.regex(
    rows[0] as string,
    /^NAME\s+WEIGHT\s+MAX RUNNING\s+MAX CPUS\s+MAX GPUS\s+PREEMPTIBLE\s+RUNNING\s+PENDING\s+SHARE\s+TARGET$/,
  );
  t.regex(rows[1] as string, /^default\s+1\s/, "default first");
  t.regex(table, /^cq\s+2\s+3\s+-\s+-\s+yes\s+0\s+0\s+0\.0%\s+\S+%$/m);
  const listed = JSON.parse(await ok(["queue", "list", "-o", "json"])) as Array<{ name: string }>;
  t.is(listed[0]?.name, "default");
  t.true(listed.some((q) => q.name === "cq"));
  const names = (await ok(["queue", "list", "-o", "name"])).trimEnd().split("\n");
  t.is(names[0], "default");
  t.true(names.includes("cq"));

  // update changes what is given and keeps the rest.
  t.regex(await ok(["queue", "update", "cq", "--max-cpus", "4"]), /queue cq updated/);
  t.like(await c.getQueue("cq"), { weight: 2, maxRunning: 3, maxCpus: 4, maxGpus: 0, preemptible: true });
  await ok(["queue", "update", "cq", "--weight", "0.5", "--no-preemptible", "--max-running", "0"]);
  t.like(await c.getQueue("cq"), { weight: 0.5, maxRunning: 0, maxCpus: 4, preemptible: false });

  // show: settings, load and share, then one row per user.
  const job = await c.submit({ command: ["true"], queue: "cq", labels: { [OWNER_LABEL]: "carol" } });
  await t.context.cluster.waitFor(async () => (await c.getQueue("cq")).status?.pending === 1n, 10_000, "pending");
  const text = await ok(["queue", "show", "cq"]);
  t.regex(text, /^Name:\s+cq$/m);
  t.regex(text, /^Weight:\s+0\.5$/m);
  t.regex(text, /^Max running:\s+no limit$/m);
  t.regex(text, /^Max cpus:\s+4$/m);
  t.regex(text, /^Preemptible:\s+no/m);
  t.regex(text, /^Running:\s+0 jobs/m);
  t.regex(text, /^Pending:\s+1 jobs/m);
  t.regex(text, /^Share:\s+0\.0% of the cluster; target \d+\.\d%$/m);
  t.regex(text, /^USER\s+RUNNING\s+PENDING\s+SHARE\s+TARGET\s+DECAYED USAGE$/m);
  t.regex(text, /^carol\s+0\s+1\s+0\.0%\s+\d+\.\d%\s+0$/m);
  const detail = await ok(["job", job.id]);
  t.regex(detail, /^Queue position:\s+1 \(1 = next\)$/m);
  t.regex(detail, /^Queue:\s+cq$/m);
  t.regex(detail, /^User:\s+carol$/m);

  const refused = await cli(["queue", "delete", "cq"], env);
  t.is(refused.code, 1);
  t.regex(refused.stderr, /FAILED_PRECONDITION: queue cq has 1 unfinished job/);
  await c.kill(job.id);
  await t.context.cluster.waitFor(async () => (await c.getQueue("cq")).status?.pending === 0n, 10_000, "killed");
  t.regex(await ok(["queue", "delete", "cq"]), /queue cq deleted/);
  const gone = await cli(["queue", "show", "cq"], env);
  t.is(gone.code, 1);
  t.regex(gone.stderr, /NOT_FOUND: queue cq not found/);
  const again = await cli(["queue", "create", "default"], env);
  t.is(again.code, 1);
  t.regex(again.stderr, /ALREADY_EXISTS/);

  await usageErrors(t, env, [
    ["queue"],
    ["queue", "bogus"],
    ["queue", "create"],
    ["queue", "create", "a", "b"],
    ["queue", "create", "x", "--weight", "-1"],
    ["queue", "create", "x", "--weight", "lots"],
    ["queue", "create", "x", "--max-running", "1.5"],
    ["queue", "create", "x", "--max-gpus", "4294967296"],
    ["queue", "update", "x", "--preemptible", "--no-preemptible"],
  ]);
  const help = await cli(["queue", "--help"], env);
  t.is(help.code, 0);
  for (const sub of ["create", "list", "show", "update", "delete"]) t.regex(help.stdout, new RegExp(`queue ${sub}`));
});

test("sizes: bytes, or a number with a binary K, M, G or T", (t) => {
  t.is(byteSize("4G", "--memory"), 4 * 1024 ** 3);
  t.is(byteSize("512M", "--memory"), 512 * 1024 ** 2);
  t.is(byteSize("512Mi", "--memory"), 512 * 1024 ** 2);
  t.is(byteSize("1.5GiB", "--memory"), 1.5 * 1024 ** 3);
  t.is(byteSize("100k", "--memory"), 102_400);
  t.is(byteSize("2T", "--memory"), 2 * 1024 ** 4);
  t.is(byteSize("1048576", "--memory"), 1_048_576);
  t.is(byteSize(undefined, "--memory", 7), 7);
  for (const bad of ["", "x", "-1", "1.5", "4P", "4 G B", "1i"]) {
    t.throws(() => byteSize(bad, "--memory"), { message: /--memory must be a size/ }, bad);
  }
});

test("the CLI names the OS user as the owner on a connection without a token, unless told otherwise", (t) => {
  const me = userInfo().username;
  const env = { ...process.env };
  delete process.env.CRMS_TOKEN;
  delete process.env.CRMS_TOKEN_FILE;
  try {
    t.deepEqual(withOwner({ a: "1" }, {}), { a: "1", [OWNER_LABEL]: me });
    t.deepEqual(withOwner({ [OWNER_LABEL]: "someone" }, {}), { [OWNER_LABEL]: "someone" });
    t.deepEqual(withOwner({}, { token: "secret" }), {}, "with a token the server names the owner");
    t.deepEqual(withOwner({}, { tokenFile: "/nowhere" }), {});
  } finally {
    Object.assign(process.env, env);
  }
});

test("crms submit --cpus --memory --gpus --resource --queue --preemptible sends them in the spec; crms job shows them", async (t) => {
  // A cluster of its own with a worker that could hold the job (its Hello offers the resources).
  const cluster = await TestCluster.start();
  t.teardown(() => cluster.stop());
  const c = cluster.client();
  const env: NodeJS.ProcessEnv = { ...process.env, CRMS_SERVER: cluster.address, NO_COLOR: "1" };
  delete env.CRMS_TOKEN;
  delete env.CRMS_TOKEN_FILE;
  const attach = c.transport.bidiStream(WorkerService.method.attach, { timeoutMs: 120_000 });
  attach.on("error", () => undefined);
  attach.on("data", () => undefined);
  t.teardown(() => attach.cancel());
  attach.write(
    create(AttachRequestSchema, {
      msg: {
        case: "hello",
        value: {
          name: "big",
          slots: 4,
          hostname: "h",
          version: "t",
          resources: { cpus: 8, memoryBytes: 32n * 1024n ** 3n, gpus: 2, named: { license: 4n, scratch: 4n } },
        },
      },
    }),
  );
  await cluster.waitFor(() => cluster.server.store.worker("big")?.state === WorkerState.UP, 10_000, "worker big");
  await c.createQueue({ name: "sq", weight: 1 });

  const r = await cli(
    [
      "submit",
      "--hold",
      "--cpus",
      "2",
      "--memory",
      "4G",
      "--gpus",
      "1",
      "--resource",
      "license=1",
      "--resource",
      "scratch=2",
      "--queue",
      "sq",
      "--preemptible",
      "-o",
      "name",
      "--",
      "true",
    ],
    env,
  );
  t.is(r.code, 0, r.stderr);
  const job = await c.getJob(r.stdout.trim());
  t.like(job.spec?.resources, { cpus: 2, memoryBytes: 4n * 1024n ** 3n, gpus: 1 });
  t.deepEqual(job.spec?.resources?.named, { license: 1n, scratch: 2n });
  t.is(job.spec?.queue, "sq");
  t.true(job.spec?.preemptible);
  t.is(job.spec?.labels[OWNER_LABEL], userInfo().username, "the OS user on a connection without a token");

  const shown = await cli(["job", job.id], env);
  t.is(shown.code, 0, shown.stderr);
  t.regex(shown.stdout, /^Queue:\s+sq \(preemptible\)$/m);
  t.regex(shown.stdout, new RegExp(`^User:\\s+${userInfo().username}$`, "m"));
  t.regex(shown.stdout, /^Resources:\s+2 cpus, 4\.00 GiB memory, 1 gpu, license=1, scratch=2$/m);
  const wide = await cli(["jobs", "-o", "wide"], env);
  t.regex(wide.stdout, /^ID\s+NAME\s+STATE\s+WORKER\s+ATTEMPT\s+EXIT\s+QUEUE\s+USER\s/m);
  t.regex(wide.stdout, new RegExp(`^${job.id}\\s.*\\ssq\\s+${userInfo().username}\\s`, "m"));

  // No resource option: no resources in the spec (the server's default); an explicit owner is kept.
  const plain = await cli(["submit", "--hold", "--label", `${OWNER_LABEL}=dora`, "-o", "name", "--", "true"], env);
  t.is(plain.code, 0, plain.stderr);
  const p = await c.getJob(plain.stdout.trim());
  t.is(p.spec?.resources, undefined);
  t.is(p.spec?.queue, "");
  t.false(p.spec?.preemptible);
  t.is(p.spec?.labels[OWNER_LABEL], "dora");
  t.regex((await cli(["job", p.id], env)).stdout, /^Resources:\s+1 cpu \(default\)$/m);

  await usageErrors(
    t,
    env,
    [
      ["--memory", "4X"],
      ["--cpus", "-1"],
      ["--gpus", "1.5"],
      ["--resource", "license"],
      ["--resource", "license=lots"],
    ].map((args) => ["submit", ...args, "--", "true"]),
  );
});
