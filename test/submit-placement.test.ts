/**
 * Placement in the submit: when the replica that takes a submit leads the
 * scheduler, nothing waits in the pending queue and a worker has room, the
 * job's create Txn writes it ASSIGNED (one etcd round trip on its way to the
 * worker instead of two). Otherwise it is created PENDING and a pass places
 * it, as before. Checked on the record etcd held first (the job key at its
 * create revision), and by the run itself (once, to the end).
 */
import { fromBinary } from "@bufbuild/protobuf";
import test from "ava";
import { CrmsClient } from "../clients/typescript/src/client.js";
import { type Job, JobSchema, JobState } from "../gen/crms/v1/job_pb.js";
import { startServer } from "../src/server/server.js";
import { TestCluster } from "./helpers/cluster.js";

/** The job's first record in etcd: its key read at its create revision. */
async function firstRecord(cluster: TestCluster, id: string): Promise<Job> {
  const etcd = cluster.etcdClient();
  const key = `crms/jobs/${id}`;
  const now = await etcd.get(key).exec();
  const kv = now.kvs[0];
  if (!kv) throw new Error(`job ${id} is not in etcd`);
  const first = await etcd.get(key).revision(String(kv.create_revision)).exec();
  const value = first.kvs[0]?.value;
  if (!value) throw new Error(`job ${id} has no record at its create revision`);
  return fromBinary(JobSchema, value);
}

test("a job submitted to an idle cluster is created ASSIGNED to a worker with room and runs once", async (t) => {
  const cluster = await TestCluster.start({});
  t.teardown(() => cluster.stop());
  await cluster.startWorker("sp-a", 2);
  const c = cluster.client();
  for (const targetWorker of ["sp-a", ""]) {
    const job = await c.submit({ command: ["sh", "-c", "echo placed"], targetWorker });
    t.is(job.state, JobState.ASSIGNED, "the submit answers with the assigned record");
    t.is(job.worker, "sp-a");
    const first = await firstRecord(cluster, job.id);
    t.is(first.state, JobState.ASSIGNED, "the create wrote it ASSIGNED: it was never PENDING in etcd");
    t.is(first.attempts.length, 1);
    t.is(first.attempts[0]?.worker, "sp-a");
    t.truthy(first.attempts[0]?.assignTime);
    t.truthy(first.submitTime);
    const done = await c.wait(job.id);
    t.is(done.state, JobState.SUCCEEDED, `${done.error} ${done.exitCode}`);
    t.is(done.attempts.length, 1, "it ran once");
    t.is(done.stdoutTail.toString(), "placed\n");
  }
  t.is(cluster.server.scheduler.stats.placed, 2, "both counted as placed by the scheduler");
});

test("a job is created PENDING when others wait in the queue or no worker has room, and a pass places it", async (t) => {
  const cluster = await TestCluster.start({});
  t.teardown(() => cluster.stop());
  await cluster.startWorker("sp-b", 1);
  const c = cluster.client();
  // The only slot taken: the next job aimed at sp-b has no room.
  const busy = await c.submit({ command: ["sleep", "1"], targetWorker: "sp-b" });
  t.is(busy.state, JobState.ASSIGNED);
  const waits = await c.submit({ command: ["true"], targetWorker: "sp-b" });
  t.is(waits.state, JobState.PENDING);
  t.is((await firstRecord(cluster, waits.id)).state, JobState.PENDING);
  // A job waits in the queue now (for an absent worker): a new one goes behind it even where a
  // worker has room, so nothing queued is passed over by a submit.
  await c.submit({ command: ["true"], targetWorker: "nowhere" });
  await cluster.startWorker("sp-c", 2);
  const behind = await c.submit({ command: ["true"], targetWorker: "sp-c" });
  t.is((await firstRecord(cluster, behind.id)).state, JobState.PENDING);
  for (const id of [busy.id, waits.id, behind.id]) {
    const done = await c.wait(id);
    t.is(done.state, JobState.SUCCEEDED);
    t.is(done.attempts.length, 1);
  }
});

test("a replica that does not lead creates jobs PENDING; the leader places them", async (t) => {
  const cluster = await TestCluster.start({});
  t.teardown(() => cluster.stop());
  await cluster.startWorker("sp-d", 2);
  const other = await startServer({ listen: "127.0.0.1:0", etcd: [cluster.etcd.endpoint], logLevel: "warn" });
  t.teardown(() => other.stop());
  t.false(other.election.isLeader, "the second replica does not lead");
  const c = new CrmsClient(other.address);
  t.teardown(() => c.close());
  const job = await c.submit({ command: ["true"], targetWorker: "sp-d" });
  t.is(job.state, JobState.PENDING);
  t.is((await firstRecord(cluster, job.id)).state, JobState.PENDING);
  const done = await c.wait(job.id);
  t.is(done.state, JobState.SUCCEEDED);
  t.is(done.worker, "sp-d");
});
