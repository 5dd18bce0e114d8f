/**
 * The cross-client conformance scenario with the TypeScript client
 * (clients/typescript). Prints ONE JSON line, the same shape as
 * clients/python/examples/conformance.py and clients/go/cmd/conformance:
 *
 *   npx tsx examples/conformance.ts localhost:7070
 *   {"client":"typescript","final_state":"SUCCEEDED","output":"conformance\n","killed_state":"KILLED","unknown_code":"NOT_FOUND","invalid_code":"INVALID_ARGUMENT"}
 *
 * The scenario: submit ["sh","-c","echo conformance"], wait (WatchJobs),
 * report its final state and whole stdout (StreamOutput); submit
 * ["sleep","60"], wait until RUNNING (WatchJobs), kill it, wait, report its
 * final state; GetJob("999999999") and a submit with an empty command, report
 * their gRPC code names. Exits 1 (after printing what it has) if a step fails.
 */
import { status } from "@grpc/grpc-js";
import { CrmsClient, JobState } from "../clients/typescript/src/client.js";

interface Result {
  client: string;
  final_state: string;
  output: string;
  killed_state: string;
  unknown_code: string;
  invalid_code: string;
}

/** The gRPC code name of what a call threw ("OK" if it did not throw). */
async function codeOf(call: () => Promise<unknown>): Promise<string> {
  try {
    await call();
    return "OK";
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    return typeof code === "number" && status[code] ? status[code] : "UNKNOWN";
  }
}

async function scenario(c: CrmsClient, res: Result): Promise<void> {
  const timeoutMs = 60_000;
  const job = await c.submit({ command: ["sh", "-c", "echo conformance"] });
  const done = await c.wait(job.id, { timeoutMs });
  res.final_state = JobState[done.state];
  res.output = (await c.outputText(job.id)).stdout;

  const sleeper = await c.submit({ command: ["sleep", "60"] });
  const running = await c.waitUntil(sleeper.id, (j) => j.state === JobState.RUNNING, { timeoutMs });
  if (running.state !== JobState.RUNNING)
    throw new Error(`job ${sleeper.id} ended ${JobState[running.state]} before it ran`);
  await c.kill(sleeper.id);
  res.killed_state = JobState[(await c.wait(sleeper.id, { timeoutMs })).state];

  res.unknown_code = await codeOf(() => c.getJob("999999999"));
  res.invalid_code = await codeOf(() => c.submit({ command: [] }));
}

async function main(argv: string[]): Promise<number> {
  if (argv.length !== 1) {
    console.error("usage: conformance.ts ADDRESS");
    return 2;
  }
  const res: Result = {
    client: "typescript",
    final_state: "",
    output: "",
    killed_state: "",
    unknown_code: "",
    invalid_code: "",
  };
  const c = new CrmsClient(argv[0]);
  let failed: unknown;
  try {
    await scenario(c, res);
  } catch (err) {
    failed = err;
  } finally {
    c.close();
  }
  console.log(JSON.stringify(res));
  if (failed !== undefined) {
    console.error("conformance:", failed instanceof Error ? failed.message : failed);
    return 1;
  }
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
