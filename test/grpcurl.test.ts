import { execFile } from "node:child_process";
import { promisify } from "node:util";
import test from "ava";
import { JobState } from "../gen/crms/v1/job_pb.js";
import { grpcurlPath, TestCluster } from "./helpers/cluster.js";

const run = promisify(execFile);

test("grpcurl lists the services through reflection and a SubmitJob sent through it runs", async (t) => {
  const cluster = await TestCluster.start();
  try {
    await cluster.startWorker("curl-worker", 1);
    const grpcurl = grpcurlPath();
    const list = await run(grpcurl, ["-plaintext", cluster.address, "list"]);
    const services = list.stdout.trim().split("\n");
    for (const s of [
      "crms.v1.JobService",
      "crms.v1.WorkerService",
      "crms.v1.AdminService",
      "crms.v1.QueueService",
      "grpc.health.v1.Health",
    ]) {
      t.true(services.includes(s), `${s} listed in:\n${list.stdout}`);
    }
    const described = await run(grpcurl, ["-plaintext", cluster.address, "describe", "crms.v1.JobService.SubmitJob"]);
    t.regex(described.stdout, /rpc SubmitJob/);
    const queues = await run(grpcurl, ["-plaintext", cluster.address, "crms.v1.QueueService/ListQueues"]);
    t.is(JSON.parse(queues.stdout).queues[0].name, "default");
    const submitted = await run(grpcurl, [
      "-plaintext",
      "-d",
      JSON.stringify({ spec: { command: ["echo", "via grpcurl"], name: "curl" } }),
      cluster.address,
      "crms.v1.JobService/SubmitJob",
    ]);
    const id = JSON.parse(submitted.stdout).job.id as string;
    const done = await cluster.client().wait(id, { timeoutMs: 20_000 });
    t.is(done.state, JobState.SUCCEEDED);
    t.is(Buffer.from(done.stdoutTail).toString(), "via grpcurl\n");
    const health = await run(grpcurl, ["-plaintext", cluster.address, "grpc.health.v1.Health/Check"]);
    t.regex(health.stdout, /SERVING/);
    const bad = await run(grpcurl, [
      "-plaintext",
      "-d",
      '{"id":"77777"}',
      cluster.address,
      "crms.v1.JobService/GetJob",
    ]).catch((e: { stderr: string }) => e);
    t.regex((bad as { stderr: string }).stderr, /NotFound/);
  } finally {
    await cluster.stop();
  }
});
