/**
 * Fault test 6: 50 contenders (each its own etcd client, as 50 replicas would
 * be) assign the same PENDING job at once, each with the compare-and-put the
 * scheduler uses (the job's mod revision as read). Exactly one wins; the
 * others get ABORTED; etcd holds one assignment.
 */
import { create } from "@bufbuild/protobuf";
import test from "ava";
import { JobSpecSchema, JobState } from "../../gen/crms/v1/job_pb.js";
import { transition } from "../../src/scheduler/job-machine.js";
import { Store } from "../../src/store/store.js";
import { startEtcdCluster } from "../helpers/etcd.js";
import { summaryLine } from "../helpers/fault-cluster.js";

test("6. 50 concurrent attempts to assign the same job: exactly one succeeds, the others get ABORTED, etcd holds one assignment", async (t) => {
  const etcd = await startEtcdCluster(3);
  const stores: Store[] = [];
  try {
    const open = (i: number) => Store.open({ endpoints: etcd.endpoints, replicaId: `contender-${i}` });
    const owner = await open(0);
    stores.push(owner);
    const { job } = await owner.createJob(create(JobSpecSchema, { command: ["true"] }), "race");
    const read = await owner.fetchJob(job.id);
    if (!read) throw new Error("job not readable");
    t.is(read.value.state, JobState.PENDING);
    for (let i = 1; i < 50; i++) stores.push(await open(i));
    const key = `crms/jobs/${job.id}`;
    // Each contender writes only if the job is still as it read it (mod revision), the scheduler's compare.
    const outcomes = await Promise.allSettled(
      stores.map((s, i) =>
        s.updateJob(job.id, (j) => transition(j, { type: "assign", worker: `w${i}`, now: new Date() }), [
          { key, target: "mod", revision: read.mod },
        ]),
      ),
    );
    const won = outcomes.filter((o) => o.status === "fulfilled");
    const codes = outcomes.flatMap((o) => (o.status === "rejected" ? [(o.reason as { code?: string }).code] : []));
    t.is(won.length, 1, "exactly one assignment succeeded");
    t.deepEqual([...new Set(codes)], ["ABORTED"], `the others were ABORTED: ${JSON.stringify(codes.slice(0, 3))}`);
    const stored = await owner.fetchJob(job.id);
    const winner = won[0]?.status === "fulfilled" ? won[0].value.worker : "";
    t.is(stored?.value.state, JobState.ASSIGNED);
    t.is(stored?.value.attempt, 1);
    t.is(stored?.value.attempts.length, 1, "etcd holds one assignment");
    t.is(stored?.value.worker, winner);
    t.log(
      summaryLine("assign-race", {
        faults: 50,
        submitted: 1,
        acknowledged: 1,
        finished: 0,
        lost: 0,
        duplicated: (stored?.value.attempts.length ?? 0) - 1,
      }),
    );
  } finally {
    await Promise.all(stores.map((s) => s.close().catch(() => undefined)));
    await etcd.stop();
  }
});
