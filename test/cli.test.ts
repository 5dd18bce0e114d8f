/**
 * The CLI's habits, as a user meets them: help that never acts, global
 * options anywhere, quiet EPIPE, -o formats, --wait exit codes and pending
 * reasons, a fast "cannot reach", negative numbers, watch, completion,
 * colour and width. Real etcd, server, `crms worker` and `crms` processes.
 */
import { execFile, spawn } from "node:child_process";
import { createServer } from "node:net";
import anyTest, { type TestFn } from "ava";
import YAML from "yaml";
import type { CrmsClient } from "../clients/typescript/src/client.js";
import { JobState } from "../gen/crms/v1/job_pb.js";
import { WorkerState } from "../gen/crms/v1/worker_pb.js";
import { COMMANDS } from "../src/cli/help.js";
import { CRMS_BIN, cli, TestCluster } from "./helpers/cluster.js";

const test = anyTest as TestFn<{ cluster: TestCluster; c: CrmsClient; env: NodeJS.ProcessEnv }>;

test.before(async (t) => {
  const cluster = await TestCluster.start();
  await cluster.startWorker("cli-1", 4);
  const env: NodeJS.ProcessEnv = { ...process.env, CRMS_SERVER: cluster.address };
  delete env.NO_COLOR;
  delete env.FORCE_COLOR;
  delete env.COLUMNS;
  t.context = { cluster, c: cluster.client(), env };
});

test.after.always(async (t) => {
  await t.context.cluster?.stop();
});

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Runs the CLI through a shell pipeline (pipefail on) and returns its status and stderr. */
function shell(script: string, env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile("bash", ["-o", "pipefail", "-c", script], { env, timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

test.serial(
  "--help and -h on every command and subcommand print its usage, exit 0 and do nothing (no worker, server or dev starts, no job is submitted or killed)",
  async (t) => {
    t.timeout(180_000);
    const { c, env } = t.context;
    const held = await c.submit({ command: ["true"], hold: true });
    const before = (await c.listJobs({ pageSize: 1 })).totalSize;
    const cases: string[][] = [];
    for (const cmd of Object.keys(COMMANDS).filter((k) => !["help", "version", "completion"].includes(k))) {
      cases.push(cmd === "kill" || cmd === "delete" || cmd === "hold" ? [cmd, held.id, "--help"] : [cmd, "--help"]);
    }
    cases.push(["worker", "-h"], ["server", "-h", "--listen", "127.0.0.1:0"], ["dev", "-h"]);
    cases.push(
      ["submit", "-h", "--", "true"],
      ["worker", "forget", "gone", "--help"],
      ["admin", "token", "create", "-h"],
    );
    cases.push(["admin", "recover", "--help"], ["drain", "cli-1", "--help"], ["stop", "cli-1", "-h"]);
    // Four at a time: each is a process with the TypeScript sources.
    const results: Array<{ args: string[]; code: number; stdout: string; stderr: string }> = [];
    for (let i = 0; i < cases.length; i += 4) {
      results.push(
        ...(await Promise.all(cases.slice(i, i + 4).map(async (args) => ({ args, ...(await cli(args, env)) })))),
      );
    }
    for (const r of results) {
      t.is(r.code, 0, `${r.args.join(" ")}: ${r.stderr}`);
      t.true(r.stdout.startsWith(`Usage: crms ${r.args[0]}`), `${r.args.join(" ")}:\n${r.stdout}`);
      t.regex(r.stdout, /Global:/);
    }
    // Nothing happened: the held job is still held, no job was added, the worker still works.
    t.is((await c.getJob(held.id)).state, JobState.HELD);
    t.is((await c.listJobs({ pageSize: 1 })).totalSize, before);
    t.is((await c.getWorker("cli-1")).state, WorkerState.UP);
    // `crms help CMD` is `crms CMD --help`; the job's own -h after `--` is the job's.
    const help = await cli(["help", "jobs"], env);
    t.is(help.stdout, results.find((r) => r.args[0] === "jobs")?.stdout ?? "(no jobs --help)");
    t.is((await cli(["help", "nosuch"], env)).code, 2);
    t.is((await cli(["--help"], env)).code, 0);
  },
);

test("global options go before the command too; -o picks table, wide, json, yaml or name and refuses anything else naming the choices; JSON and YAML have state names and text tails", async (t) => {
  const { c, cluster, env } = t.context;
  const done = await c.submit({ command: ["sh", "-c", "echo hello-tail"], labels: { suite: "formats" } });
  await c.wait(done.id);
  const noServer = { ...env, CRMS_SERVER: "127.0.0.1:1" };
  const json = await cli(["--server", cluster.address, "-o", "json", "jobs", "--label", "suite=formats"], noServer);
  t.is(json.code, 0, json.stderr);
  const list = JSON.parse(json.stdout) as Array<{ id: string; state: string; stdoutTail: string }>;
  t.is(list[0]?.id, done.id);
  t.is(list[0]?.state, "SUCCEEDED");
  t.is(list[0]?.stdoutTail, "hello-tail\n");
  const yaml = await cli(["jobs", "--label", "suite=formats", "-o", "yaml"], env);
  t.is((YAML.parse(yaml.stdout) as Array<{ state: string }>)[0]?.state, "SUCCEEDED");
  const one = await cli(["job", done.id, "-o", "yaml"], env);
  t.is((YAML.parse(one.stdout) as { id: string }).id, done.id);
  t.is((await cli(["jobs", "--label", "suite=formats", "-o", "name"], env)).stdout, `${done.id}\n`);
  const workers = await cli(["--server=" + cluster.address, "workers", "-o", "json"], noServer);
  t.is((JSON.parse(workers.stdout) as Array<{ name: string; state: string }>)[0]?.state, "UP");
  t.regex((await cli(["workers", "-o", "name"], env)).stdout, /^cli-1$/m);
  t.regex(
    (await cli(["jobs", "-o", "wide", "--label", "suite=formats"], env)).stdout,
    /^ID\s+NAME\s+STATE\s+WORKER\s+ATTEMPT/,
  );
  const bogus = await cli(["jobs", "-o", "bogus"], env);
  t.is(bogus.code, 2);
  t.regex(bogus.stderr, /-o must be one of table, wide, json, yaml, name \(got "bogus"\)/);
  // `crms worker` starts without the CLI's modules; its bad flags are still usage errors, each named.
  const slots = await cli(["worker", "--slots", "x"], env);
  t.is(slots.code, 2);
  t.is(slots.stderr, "crms: --slots must be a whole number ≥ 0 (got x)\n");
  const name = await cli(["worker", "--name", "bad name"], env);
  t.is(name.code, 2);
  t.regex(name.stderr, /^crms: --name: worker name "bad name" contains " "/);
});

test("a reader that goes away (| head -1) ends crms quietly: no EPIPE trace, exit 0", async (t) => {
  const { c, env } = t.context;
  const job = await c.submit({ command: ["seq", "1", "300000"] });
  await c.wait(job.id);
  const logs = await shell(`node ${CRMS_BIN} logs ${job.id} | head -1`, env);
  t.is(logs.stdout, "1\n");
  t.is(logs.stderr, "");
  t.is(logs.code, 0);
  const yaml = await shell(`node ${CRMS_BIN} job ${job.id} -o yaml | head -1`, env);
  t.is(yaml.stderr, "");
  t.is(yaml.code, 0);
});

test("submit --wait exits with the job's code, 124 for its --timeout, 128+N for signal N, 127 when the command cannot start", async (t) => {
  const { env } = t.context;
  const cases: Array<[string[], number]> = [
    [["--", "sh", "-c", "exit 3"], 3],
    [["--timeout", "1", "--", "sleep", "30"], 124],
    [["--", "sh", "-c", "kill -9 $$"], 137],
    [["--", "no-such-command-crms-test"], 127],
    [["--", "true"], 0],
  ];
  const results = await Promise.all(cases.map(([args]) => cli(["submit", "--wait", ...args], env)));
  for (const [i, [args, code]] of cases.entries())
    t.is(results[i]?.code, code, `${args.join(" ")}: ${results[i]?.stderr}`);
});

test("submit --wait prints the pending reason while the job waits (target worker not attached)", async (t) => {
  const { c, env } = t.context;
  const proc = spawn(process.execPath, [CRMS_BIN, "submit", "--on", "nosuchworker", "--wait", "--", "true"], { env });
  let err = "";
  proc.stderr.on("data", (d) => (err += d));
  t.teardown(() => proc.kill("SIGKILL"));
  await t.context.cluster.waitFor(
    () => /target worker nosuchworker is not attached/.test(err),
    90_000,
    "the pending reason on stderr",
  );
  t.regex(
    err,
    /^job (\d+) submitted; waiting for it to end\n(?:.*\n)*job \1 PENDING: target worker nosuchworker is not attached\n/,
  );
  const id = /^job (\d+)/.exec(err)?.[1] as string;
  await c.kill(id);
});

test("an unreachable server gives a clear 'cannot reach' within the default 5 s connect timeout (--connect-timeout changes it)", async (t) => {
  const { env } = t.context;
  const port = await closedPort();
  // The message names the deadline the CLI waited for (the old behaviour was about 30 s of silence and
  // a gRPC dump); no timing assertion, the machine is shared.
  const r = await cli(["jobs", "--server", `127.0.0.1:${port}`], env);
  t.is(r.code, 1);
  t.regex(
    r.stderr,
    new RegExp(
      `^crms: UNAVAILABLE: cannot reach the crms server at 127\\.0\\.0\\.1:${port} within 5s \\(.*ECONNREFUSED.*\\); is it running\\?`,
    ),
  );
  const short = await cli(["--connect-timeout", "1", "workers", "--server", `127.0.0.1:${port}`], env);
  t.regex(short.stderr, /within 1s/);
  t.is((await cli(["jobs", "--connect-timeout", "0"], env)).code, 2);
});

test("negative numbers are values: --priority -5", async (t) => {
  const { c, env } = t.context;
  const r = await cli(["submit", "--hold", "--priority", "-5", "-o", "json", "--", "echo", "-5"], env);
  t.is(r.code, 0, r.stderr);
  const job = await c.getJob((JSON.parse(r.stdout) as { id: string }).id);
  t.is(job.spec?.priority, -5);
  t.deepEqual(job.spec?.command, ["echo", "-5"]);
  await c.kill(job.id);
});

test("crms completion bash loads in bash and completes commands, options and -o values; zsh and fish scripts are printed", async (t) => {
  const { env } = t.context;
  const complete = (words: string) =>
    shell(
      `source <(node ${CRMS_BIN} completion bash) && COMP_WORDS=(${words}) && COMP_CWORD=$((\${#COMP_WORDS[@]} - 1)) && _crms && echo "\${COMPREPLY[*]}"`,
      env,
    );
  t.is((await complete("crms jo")).stdout, "jobs job\n");
  t.is((await complete("crms --server x wor")).stdout, "workers worker\n");
  t.regex((await complete("crms jobs --s")).stdout, /--state --sort --server/);
  t.is((await complete("crms jobs -o y")).stdout, "yaml\n");
  t.regex((await cli(["completion", "zsh"], env)).stdout, /bashcompinit[\s\S]*complete -o default -F _crms crms/);
  t.regex(
    (await cli(["completion", "fish"], env)).stdout,
    /complete -c crms -f -n __fish_use_subcommand -a "submit jobs/,
  );
  t.is((await cli(["completion", "tcsh"], env)).code, 2);
});

test("colour only when asked for a terminal (FORCE_COLOR) and never with NO_COLOR or into a pipe; tables fit the width, COMMAND cut first", async (t) => {
  const { c, env } = t.context;
  const job = await c.submit({
    command: ["sh", "-c", "echo a-rather-long-command-line-that-does-not-fit-in-forty-columns at all"],
    name: "wide-one",
    labels: { suite: "width" },
  });
  await c.wait(job.id);
  const args = ["jobs", "--label", "suite=width"];
  const ESC = "\u001b[";
  t.true((await cli(args, { ...env, FORCE_COLOR: "1" })).stdout.includes(`${ESC}32mSUCCEEDED`));
  t.false((await cli(args, { ...env, FORCE_COLOR: "1", NO_COLOR: "1" })).stdout.includes(ESC));
  t.false((await cli(args, env)).stdout.includes(ESC));
  const narrow = await cli(args, { ...env, COLUMNS: "50" });
  for (const line of narrow.stdout.trimEnd().split("\n")) t.true(line.length <= 50, line);
  t.regex(narrow.stdout, /wide-one\s+SUCCEEDED\s+cli-1\s+\S+\s+sh -c .*…$/m);
});

test.serial(
  "jobs -w and workers -w follow changes after the listing, one row per change into a pipe, and end with 0 on Ctrl-C",
  async (t) => {
    const { c, cluster, env } = t.context;
    const watch = (args: string[]) => {
      const proc = spawn(process.execPath, [CRMS_BIN, ...args], { env });
      const out = { text: "" };
      proc.stdout.on("data", (d) => (out.text += d));
      proc.stderr.on("data", (d) => (out.text += d));
      const exited = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));
      t.teardown(() => proc.kill("SIGKILL"));
      return { proc, out, exited };
    };
    const jobs = watch(["jobs", "-w", "--label", "suite=watch"]);
    const workers = watch(["workers", "-w"]);
    await cluster.waitFor(() => /^ID/.test(jobs.out.text) && /^NAME/.test(workers.out.text), 30_000, "the listings");
    const job = await c.submit({ command: ["true"], labels: { suite: "watch" } });
    await cluster.waitFor(() => new RegExp(`^${job.id}\\s.*SUCCEEDED`, "m").test(jobs.out.text), 30_000, jobs.out.text);
    await c.drain("cli-1");
    await cluster.waitFor(() => /^cli-1\s+DRAINING/m.test(workers.out.text), 30_000, workers.out.text);
    await c.resume("cli-1");
    jobs.proc.kill("SIGINT");
    workers.proc.kill("SIGINT");
    t.is(await jobs.exited, 0);
    t.is(await workers.exited, 0);
  },
);

test("on a terminal (script(1) gives crms a pty): --wait shows state changes and an array's task bar; tables are coloured and fit the terminal", async (t) => {
  const { env } = t.context;
  const inPty = (args: string) =>
    shell(
      `stty cols 60 2>/dev/null; script -qec ${JSON.stringify(`stty cols 60; node ${CRMS_BIN} ${args}`)} /dev/null`,
      env,
    );
  const r = await inPty("submit --wait --label suite=pty --array 1-3 -- sh -c 'sleep 0.5'");
  t.is(r.code, 0, r.stdout);
  t.regex(r.stdout, /job \d+ submitted; waiting for it to end/);
  t.regex(r.stdout, /\[#* *\] \d\/3 tasks ended/);
  t.regex(r.stdout, /job \d+ SUCCEEDED/);
  // Only this test's jobs: the file's other tests run at the same time on the same cluster.
  const table = await inPty("jobs --limit 3 --label suite=pty");
  t.true(table.stdout.includes("\u001b[32mSUCCEEDED"), table.stdout);
  for (const line of table.stdout.trimEnd().split(/\r?\n/)) {
    // Colour codes take no columns.
    t.true(line.replace(new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, "g"), "").length <= 60, line);
  }
});
