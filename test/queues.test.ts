/**
 * QueueService against a real etcd and control plane: create, get, list,
 * update and delete with the contract's codes, "default" always there and
 * first, deletes refused while the queue has unfinished jobs, writes for
 * admins only once tokens are on, the same service over grpc-js and the web
 * page's Connect transport; and the CLI's `crms queue ...` and submit's
 * resource and queue flags.
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { status } from "@grpc/grpc-js";
import anyTest, { type TestFn } from "ava";
import type { CrmsClient } from "../clients/typescript/src/client.js";
import { JobState } from "../gen/crms/v1/job_pb.js";
import { OWNER_LABEL } from "../src/rpc/names.js";
import { startHttp } from "../src/web/http.js";
import { TestCluster } from "./helpers/cluster.js";

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
