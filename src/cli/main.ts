/**
 * `crms`: the command line. Tables for people, `-o json` for scripts, one
 * clear line and a non-zero exit on failure.
 */
import { cpus, hostname } from "node:os";
import { type ParseArgsConfig, parseArgs } from "node:util";
import { toJson } from "@bufbuild/protobuf";
import { status as grpcStatus } from "@grpc/grpc-js";
import { GetClusterStatusResponseSchema } from "../../gen/crms/v1/admin_pb.js";
import { JobState } from "../../gen/crms/v1/job_pb.js";
import { CrmsClient, defaultServer } from "../client/client.js";
import {
  JobSchema,
  jobDetail,
  jobState,
  jobsTable,
  table,
  WorkerSchema,
  workerDetail,
  workersTable,
} from "./format.js";

export const VERSION = "0.1.0";

const USAGE = `crms — cluster resource manager

Usage: crms <command> [options]

Jobs:
  submit [options] -- CMD ARGS...   submit a job (--name --env K=V --cwd DIR --label K=V
                                    --constraint K=V --on WORKER --priority N --retries N
                                    --lost-retries N --timeout SECONDS --hold --wait
                                    --request-id ID -o json)
  jobs [--state S] [--worker W] [--label K=V] [-o table|wide|json]
  job ID [-o json]                  show one job with its attempts
  logs [-f] ID                      print a job's output (-f follows it)
  kill ID [--grace SECONDS]         kill a job
  hold ID | release ID | delete ID
Workers:
  workers [-o json]                 list workers
  worker NAME [-o json]             show one worker
  drain NAME                        stop placing jobs on a worker
  stop NAME                         make a worker exit
Admin:
  admin status [-o json]            etcd members, size against quota, alarms, counts
  admin compact [REV]               compact etcd history (to the current revision)
  admin defrag                      defragment each etcd member in turn
  admin disarm                      disarm etcd alarms
  admin recover                     out of NOSPACE: compact, defragment, disarm, check a write
  admin gc                          delete finished jobs past retention now
Processes:
  server --listen HOST:PORT --etcd URL[,URL...] [--grace S] [--prefix P] [--log-level L]
         [--compaction-interval S (300; 0 off)] [--retention-age S (86400)] [--retention-count N (100000)]
         [--quota-bytes N] [--tail-bytes N (2048 per stream)] [--http HOST:PORT (web page)]
  worker [--name NAME] [--slots N] [--server HOST:PORT[,...]] [--label K=V] [--data-dir DIR]
  dev [--port PORT] [--http-port P] etcd + control plane + one worker + web page on this machine

Global: --server HOST:PORT[,HOST:PORT...] (or $CRMS_SERVER; default localhost:7070); calls go to the
        next address when one is UNAVAILABLE, and submit retries with one request id
`;

/** A user-facing failure: printed as one line, exit code 1 (or `exitCode`). */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

type Options = ParseArgsConfig["options"];

const common: Options = {
  server: { type: "string" },
  output: { type: "string", short: "o" },
  help: { type: "boolean", short: "h" },
};

function parse(args: string[], options: Options = {}) {
  try {
    return parseArgs({ args, options: { ...common, ...options }, allowPositionals: true, strict: true });
  } catch (err) {
    throw new CliError(err instanceof Error ? err.message : String(err), 2);
  }
}

function keyValues(list: unknown, what: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of (list as string[] | undefined) ?? []) {
    const i = item.indexOf("=");
    if (i <= 0) throw new CliError(`${what} must be KEY=VALUE (got ${JSON.stringify(item)})`, 2);
    out[item.slice(0, i)] = item.slice(i + 1);
  }
  return out;
}

function int(value: unknown, what: string, fallback = 0): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new CliError(`${what} must be a whole number ≥ 0 (got ${value})`, 2);
  return n;
}

function one(positionals: string[], what: string): string {
  const [first, ...rest] = positionals;
  if (!first || rest.length) throw new CliError(`expected exactly one ${what}`, 2);
  return first;
}

function stateOf(name: string): JobState {
  const s = JobState[name.toUpperCase() as keyof typeof JobState];
  if (s === undefined || s === JobState.UNSPECIFIED) {
    throw new CliError(
      `unknown state ${name}; one of ${Object.keys(JobState)
        .filter((k) => Number.isNaN(Number(k)) && k !== "UNSPECIFIED")
        .join(", ")}`,
      2,
    );
  }
  return s;
}

const print = (s: string) => process.stdout.write(`${s}\n`);
const printJson = (v: unknown) => print(JSON.stringify(v, null, 2));

async function withClient<T>(server: unknown, fn: (c: CrmsClient) => Promise<T>): Promise<T> {
  const client = new CrmsClient((server as string | undefined) || defaultServer());
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

async function submit(args: string[]): Promise<number> {
  const { values: v, positionals } = parse(args, {
    name: { type: "string" },
    env: { type: "string", multiple: true },
    cwd: { type: "string" },
    label: { type: "string", multiple: true },
    constraint: { type: "string", multiple: true },
    on: { type: "string" },
    priority: { type: "string" },
    retries: { type: "string" },
    "lost-retries": { type: "string" },
    timeout: { type: "string" },
    hold: { type: "boolean" },
    wait: { type: "boolean" },
    "request-id": { type: "string" },
  });
  if (positionals.length === 0) throw new CliError("nothing to run: crms submit [options] -- CMD ARGS...", 2);
  const priority = v.priority === undefined ? 0 : Number(v.priority);
  if (!Number.isInteger(priority)) throw new CliError(`--priority must be an integer (got ${v.priority})`, 2);
  return withClient(v.server, async (c) => {
    const job = await c.submit(
      {
        command: positionals,
        name: (v.name as string) ?? "",
        env: keyValues(v.env, "--env"),
        workingDir: (v.cwd as string) ?? "",
        labels: keyValues(v.label, "--label"),
        constraints: keyValues(v.constraint, "--constraint"),
        targetWorker: (v.on as string) ?? "",
        priority,
        maxRetries: int(v.retries, "--retries"),
        maxLostRetries: int(v["lost-retries"], "--lost-retries"),
        timeoutSeconds: int(v.timeout, "--timeout"),
        hold: Boolean(v.hold),
      },
      { requestId: (v["request-id"] as string) ?? "" },
    );
    if (!v.wait) {
      if (v.output === "json") printJson(toJson(JobSchema, job));
      else print(`job ${job.id} submitted (${jobState(job.state)})`);
      return 0;
    }
    const done = await c.wait(job.id);
    const out = await c.outputText(done.id).catch(() => ({ stdout: "", stderr: "" }));
    if (v.output === "json") {
      printJson({ job: toJson(JobSchema, done), stdout: out.stdout, stderr: out.stderr });
    } else {
      process.stdout.write(out.stdout);
      process.stderr.write(out.stderr);
      const detail = done.error ? `: ${done.error}` : done.exitCode !== undefined ? ` (exit ${done.exitCode})` : "";
      process.stderr.write(`job ${done.id} ${jobState(done.state)}${detail}\n`);
    }
    return done.state === JobState.SUCCEEDED ? 0 : (done.exitCode ?? 1) || 1;
  });
}

async function jobs(args: string[]): Promise<number> {
  const { values: v } = parse(args, {
    state: { type: "string", multiple: true },
    worker: { type: "string" },
    label: { type: "string", multiple: true },
    limit: { type: "string" },
  });
  const states = ((v.state as string[] | undefined) ?? []).flatMap((s) => s.split(",")).map(stateOf);
  const limit = int(v.limit, "--limit", Number.POSITIVE_INFINITY);
  return withClient(v.server, async (c) => {
    const list = [];
    for await (const job of c.jobs({
      states,
      worker: (v.worker as string) ?? "",
      labels: keyValues(v.label, "--label"),
      pageSize: 1000,
    })) {
      list.push(job);
      if (list.length >= limit) break;
    }
    if (v.output === "json") printJson(list.map((j) => toJson(JobSchema, j)));
    else print(jobsTable(list, v.output === "wide"));
    return 0;
  });
}

async function jobCommand(cmd: string, args: string[]): Promise<number> {
  const { values: v, positionals } = parse(args, { grace: { type: "string" } });
  const id = one(positionals, "job id");
  return withClient(v.server, async (c) => {
    switch (cmd) {
      case "job": {
        const job = await c.getJob(id);
        print(v.output === "json" ? JSON.stringify(toJson(JobSchema, job), null, 2) : jobDetail(job));
        return 0;
      }
      case "kill": {
        const job = await c.kill(id, int(v.grace, "--grace"));
        print(`job ${id} ${job.state === JobState.KILLED ? "killed" : "is being killed"}`);
        return 0;
      }
      case "hold":
        await c.hold(id);
        print(`job ${id} held`);
        return 0;
      case "release":
        await c.release(id);
        print(`job ${id} released`);
        return 0;
      default:
        await c.deleteJob(id);
        print(`job ${id} deleted`);
        return 0;
    }
  });
}

async function logs(args: string[]): Promise<number> {
  const { values: v, positionals } = parse(args, { follow: { type: "boolean", short: "f" } });
  const id = one(positionals, "job id");
  return withClient(v.server, async (c) => {
    for await (const chunk of c.output(id, Boolean(v.follow))) {
      (chunk.stream === 2 ? process.stderr : process.stdout).write(chunk.data);
    }
    return 0;
  });
}

async function workerCommand(cmd: string, args: string[]): Promise<number> {
  const { values: v, positionals } = parse(args);
  return withClient(v.server, async (c) => {
    if (cmd === "workers") {
      const list = [];
      for await (const w of c.workers()) list.push(w);
      print(
        v.output === "json"
          ? JSON.stringify(
              list.map((w) => toJson(WorkerSchema, w)),
              null,
              2,
            )
          : workersTable(list),
      );
      return 0;
    }
    const name = one(positionals, "worker name");
    if (cmd === "worker") {
      const w = await c.getWorker(name);
      print(v.output === "json" ? JSON.stringify(toJson(WorkerSchema, w), null, 2) : workerDetail(w));
    } else if (cmd === "drain") {
      await c.drain(name);
      print(`worker ${name} draining: no new jobs, running ones finish`);
    } else {
      await c.stopWorker(name);
      print(`worker ${name} told to stop`);
    }
    return 0;
  });
}

function bytes(n: bigint | number): string {
  const x = Number(n);
  return x >= 1 << 30
    ? `${(x / (1 << 30)).toFixed(2)} GiB`
    : x >= 1 << 20
      ? `${(x / (1 << 20)).toFixed(1)} MiB`
      : `${(x / 1024).toFixed(0)} KiB`;
}

async function admin(args: string[]): Promise<number> {
  const { values: v, positionals } = parse(args);
  const sub = positionals[0] ?? "status";
  return withClient(v.server, async (c) => {
    switch (sub) {
      case "status":
        break;
      case "compact": {
        const r = await c.compact(BigInt(positionals[1] ?? 0));
        print(`compacted etcd to revision ${r.revision}`);
        return 0;
      }
      case "defrag": {
        const r = await c.defragment();
        for (const [i, m] of r.after.entries()) {
          print(`defragmented ${m.endpoint}: ${bytes(r.before[i]?.dbSize ?? 0n)} -> ${bytes(m.dbSize)}`);
        }
        return 0;
      }
      case "disarm": {
        const r = await c.disarmAlarms();
        print(r.disarmed.length ? `disarmed ${r.disarmed.join(", ")}` : "no alarm was active");
        return 0;
      }
      case "recover": {
        const r = await c.recover();
        print(`compacted to revision ${r.compactedRevision}`);
        for (const m of r.members) print(`defragmented ${m.endpoint}: now ${bytes(m.dbSize)}`);
        print(r.disarmed.length ? `disarmed ${r.disarmed.join(", ")}` : "no alarm was active");
        print(r.writable ? "etcd accepts writes again" : "etcd still refuses writes");
        return r.writable ? 0 : 1;
      }
      case "gc": {
        const r = await c.runRetention();
        print(`retention deleted ${r.deleted} finished jobs`);
        return 0;
      }
      default:
        throw new CliError(`unknown admin command ${sub}; one of status, compact, defrag, disarm, recover, gc`, 2);
    }
    const s = await c.clusterStatus();
    if (v.output === "json") {
      printJson(toJson(GetClusterStatusResponseSchema, s));
      return 0;
    }
    print(
      table(
        ["ENDPOINT", "ID", "VERSION", "DB SIZE", "IN USE", "QUOTA", "LEADER", "ALARMS"],
        s.members.map((m) => [
          m.endpoint,
          m.id,
          m.error ? `unreachable: ${m.error}` : m.version,
          bytes(m.dbSize),
          bytes(m.dbSizeInUse),
          `${((Number(m.dbSize) / Number(s.quotaBytes)) * 100).toFixed(1)}% of ${bytes(s.quotaBytes)}`,
          m.leader ? "yes" : "no",
          m.alarms.join(",") || "-",
        ]),
      ),
    );
    print("");
    print(`Revision:   ${s.revision}`);
    print(
      `Alarms:     ${s.alarms.join(", ") || "none"}${s.alarms.includes("NOSPACE") ? " — run `crms admin recover`" : ""}`,
    );
    print(`Workers:    ${s.workersUp} up of ${s.workers}; slots ${s.slotsUsed}/${s.slotsTotal} used`);
    print(`Jobs:       ${s.jobs.map((j) => `${jobState(j.state)} ${j.count}`).join(", ") || "none"}`);
    print(`Replica:    ${s.replica} (scheduler leader: ${s.schedulerLeader || "none"})`);
    return 0;
  });
}

function untilSignal(): Promise<string> {
  return new Promise((resolve) => {
    const on = (sig: string) => () => resolve(sig);
    process.once("SIGINT", on("SIGINT"));
    process.once("SIGTERM", on("SIGTERM"));
  });
}

async function server(args: string[]): Promise<number> {
  const { values: v } = parse(args, {
    listen: { type: "string" },
    etcd: { type: "string" },
    prefix: { type: "string" },
    grace: { type: "string" },
    "log-level": { type: "string" },
    "compaction-interval": { type: "string" },
    "retention-age": { type: "string" },
    "retention-count": { type: "string" },
    "quota-bytes": { type: "string" },
    "tail-bytes": { type: "string" },
    http: { type: "string" },
  });
  const { startServer } = await import("../server/server.js");
  const cp = await startServer({
    listen: (v.listen as string) ?? "localhost:7070",
    etcd: ((v.etcd as string) ?? "http://127.0.0.1:2379").split(","),
    prefix: v.prefix as string | undefined,
    graceSeconds: int(v.grace, "--grace", 10),
    logLevel: ((v["log-level"] as string) ?? "info") as "info",
    compactionIntervalSeconds: int(v["compaction-interval"], "--compaction-interval", 300),
    retentionAgeSeconds: int(v["retention-age"], "--retention-age", 24 * 3600),
    retentionCount: int(v["retention-count"], "--retention-count", 100_000),
    quotaBytes: int(v["quota-bytes"], "--quota-bytes", 2 * 1024 ** 3),
    tailBytes: int(v["tail-bytes"], "--tail-bytes", 2048),
  });
  const { startHttp } = await import("../web/http.js");
  const web = v.http ? await startHttp(cp, v.http as string) : undefined;
  if (web) cp.log.info("web dashboard and Connect API serving", { url: web.url });
  await untilSignal();
  await web?.close();
  await cp.stop();
  return 0;
}

async function worker(args: string[]): Promise<number> {
  const { values: v } = parse(args, {
    name: { type: "string" },
    slots: { type: "string" },
    label: { type: "string", multiple: true },
    "data-dir": { type: "string" },
  });
  const { createWorker } = await import("../worker/worker.js");
  const { defaultDataDir } = await import("./paths.js");
  const name = (v.name as string) ?? hostname();
  const w = createWorker({
    name,
    slots: int(v.slots, "--slots", cpus().length),
    servers: ((v.server as string) ?? defaultServer()).split(","),
    labels: keyValues(v.label, "--label"),
    dataDir: (v["data-dir"] as string) ?? defaultDataDir(`worker-${name}`),
    version: VERSION,
  });
  await w.start();
  const sig = await Promise.race([untilSignal(), w.stopped.then(() => "stopped")]);
  if (sig !== "stopped") await w.stop({ killRuns: true });
  return 0;
}

/** Runs the CLI with argv (without node and script) and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [cmd, ...args] = argv;
  if (!cmd || cmd === "help" || cmd === "--help" || cmd === "-h") {
    process.stdout.write(USAGE);
    return cmd ? 0 : 2;
  }
  if (cmd === "--version" || cmd === "version") {
    print(VERSION);
    return 0;
  }
  switch (cmd) {
    case "submit":
      return submit(args);
    case "jobs":
      return jobs(args);
    case "job":
    case "kill":
    case "hold":
    case "release":
    case "delete":
      return jobCommand(cmd, args);
    case "logs":
      return logs(args);
    case "workers":
    case "worker":
      if (cmd === "worker" && (args.length === 0 || args[0]?.startsWith("-"))) return worker(args);
      return workerCommand(cmd, args);
    case "drain":
    case "stop":
      return workerCommand(cmd, args);
    case "admin":
      return admin(args);
    case "server":
      return server(args);
    case "dev": {
      const { dev } = await import("./dev.js");
      return dev(args);
    }
    default:
      throw new CliError(`unknown command ${cmd}; see crms --help`, 2);
  }
}

/** One line for any failure: gRPC errors with their code name. */
export function describeError(err: unknown): string {
  const e = err as { code?: number; details?: string; message?: string };
  if (typeof e.code === "number" && e.details !== undefined) {
    const name = grpcStatus[e.code] ?? String(e.code);
    if (e.code === grpcStatus.UNAVAILABLE)
      return `UNAVAILABLE: cannot reach the crms server (${e.details}); is it running? (--server or CRMS_SERVER)`;
    return `${name}: ${e.details}`;
  }
  return e.message ?? String(err);
}
