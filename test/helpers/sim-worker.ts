/**
 * A simulated worker speaking the real Attach protocol: every assigned job
 * "runs" at once and finishes with exit 0, the given output tail and, when
 * given, the given usage. For tests where the process itself does not matter
 * (etcd space, scale, accounting).
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { ServiceTransport } from "../../clients/typescript/src/transport.js";
import type { UsageSchema } from "../../gen/crms/v1/job_pb.js";
import { AttachRequestSchema, WorkerService } from "../../gen/crms/v1/worker_pb.js";

export interface SimWorker {
  finished: number;
  stop(): void;
}

export function startSimWorker(
  address: string,
  name: string,
  slots: number,
  tail = Buffer.alloc(0),
  usage?: MessageInitShape<typeof UsageSchema>,
): SimWorker {
  const transport = new ServiceTransport(address);
  const stream = transport.bidiStream(WorkerService.method.attach);
  const sim: SimWorker = {
    finished: 0,
    stop() {
      clearInterval(beat);
      stream.end();
      transport.close();
    },
  };
  const send = (msg: Parameters<typeof create<typeof AttachRequestSchema>>[1]) =>
    stream.write(create(AttachRequestSchema, msg));
  stream.on("error", () => undefined);
  stream.on("data", (res) => {
    const m = res.msg;
    if (m.case === "assign") {
      const { jobId, attempt } = m.value;
      send({ msg: { case: "started", value: { jobId, attempt, pid: 1 } } });
      send({ msg: { case: "finished", value: { jobId, attempt, exitCode: 0, pid: 1, stdoutTail: tail, usage } } });
      sim.finished++;
    } else if (m.case === "kill") {
      send({ msg: { case: "finished", value: { jobId: m.value.jobId, attempt: m.value.attempt, killed: true } } });
    }
  });
  send({ msg: { case: "hello", value: { name, slots, hostname: "sim", version: "sim" } } });
  const beat = setInterval(() => send({ msg: { case: "heartbeat", value: {} } }), 1000);
  return sim;
}
