/**
 * At most one execution per attempt, at the protocol level: an ASSIGNED
 * attempt is sent again to the same worker process reconnecting (same
 * incarnation), never to a new process under the worker's name (a restart):
 * there it becomes LOST with a reason and a new attempt.
 */
import { create } from "@bufbuild/protobuf";
import test from "ava";
import { ServiceTransport } from "../clients/typescript/src/transport.js";
import { JobState } from "../gen/crms/v1/job_pb.js";
import { AttachRequestSchema, type AttachResponse, WorkerService } from "../gen/crms/v1/worker_pb.js";
import { TestCluster } from "./helpers/cluster.js";

/** A raw Attach stream that keeps what the control plane sends. */
function attach(address: string, incarnation: string) {
  const transport = new ServiceTransport(address);
  const stream = transport.bidiStream(WorkerService.method.attach);
  const got: AttachResponse[] = [];
  stream.on("data", (r: AttachResponse) => got.push(r));
  stream.on("error", () => undefined);
  const send = (msg: Parameters<typeof create<typeof AttachRequestSchema>>[1]) =>
    stream.write(create(AttachRequestSchema, msg));
  send({
    msg: {
      case: "hello",
      value: { name: "inc", slots: 1, hostname: "h", version: "t", incarnation, heartbeatAcks: true },
    },
  });
  return {
    got,
    send,
    assigns: () => got.flatMap((r) => (r.msg.case === "assign" ? [r.msg.value] : [])),
    close() {
      stream.cancel();
      transport.close();
    },
  };
}

test("an ASSIGNED attempt is sent again to the same process reconnecting, and becomes LOST (new attempt) for a new process", async (t) => {
  const cluster = await TestCluster.start({ graceSeconds: 30 });
  try {
    const c = cluster.client();
    const store = cluster.server.store;
    const first = attach(cluster.address, "process-a");
    await cluster.waitFor(() => first.got.some((r) => r.msg.case === "welcome"), 10_000, "welcome");
    const welcome = first.got.find((r) => r.msg.case === "welcome");
    t.is(welcome?.msg.case === "welcome" ? welcome.msg.value.graceSeconds : 0, 30, "Welcome tells the grace");
    first.send({ msg: { case: "heartbeat", value: {} } });
    await cluster.waitFor(() => first.got.some((r) => r.msg.case === "heartbeatAck"), 10_000, "a heartbeat ack");

    const job = await c.submit({ command: ["true"], maxRetries: 0 });
    await cluster.waitFor(() => first.assigns().length === 1, 10_000, "the assignment");
    t.is(first.assigns()[0]?.attempt, 1);
    first.close();

    // The same process reconnecting: it may have missed the Assign, so it gets it again.
    const again = attach(cluster.address, "process-a");
    await cluster.waitFor(() => again.assigns().length === 1, 10_000, "the assignment sent again");
    t.is(again.assigns()[0]?.attempt, 1);
    t.is(store.job(job.id)?.state, JobState.ASSIGNED);
    again.close();

    // A new process (a restart) that does not report attempt 1: LOST, and attempt 2 instead.
    const restarted = attach(cluster.address, "process-b");
    await cluster.waitFor(() => restarted.assigns().length >= 1, 10_000, "an assignment to the new process");
    t.deepEqual(
      restarted.assigns().map((a) => a.attempt),
      [2],
      "attempt 1 is never sent to the new process",
    );
    const record = store.job(job.id);
    t.is(record?.attempts[0]?.outcome, JobState.LOST);
    t.regex(record?.attempts[0]?.error ?? "", /restarted \(new process\) without reporting attempt 1/);
    t.is(store.worker("inc")?.incarnation, "process-b");
    restarted.close();
  } finally {
    await cluster.stop();
  }
});
