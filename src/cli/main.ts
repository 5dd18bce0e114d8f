/**
 * `crms`: the command line. Tables for people, `-o json` for scripts, one
 * clear line and a non-zero exit on failure.
 */
import { toJson } from "@bufbuild/protobuf";
import { status as grpcStatus } from "@grpc/grpc-js";
import { CrmsClient, defaultServer, type Worker } from "../../clients/typescript/src/client.js";
import { GetClusterStatusResponseSchema } from "../../gen/crms/v1/admin_pb.js";
import { type Job, JobState } from "../../gen/crms/v1/job_pb.js";
import { CliError, cliParse, int, keyValues, parse, securityOf, wantsHelp } from "../cmd/flags.js";
import { SERVER_DEFAULTS as D, type Flags, VERSION, WORKER_DEFAULTS } from "../config.js";
import { arraySize } from "../rpc/states.js";
import { parseArraySpec } from "../scheduler/arrays.js";
import { parseAfter } from "../scheduler/dependencies.js";
import { bytes, etcdOutage, jobDetail, jobState, jobsTable, table, workerDetail, workersTable } from "./format.js";
import { completionScript, hoistGlobals, usageOf } from "./help.js";
import { csvHeader, csvRow, historyTable, parseWhen } from "./history-format.js";
import { emit, jobJson, type Output, waitExitCode, workerJson } from "./output.js";
import { QUEUE_USAGE, queueCommand } from "./queue.js";
import { RESOURCE_FLAGS, resourceSpec, withOwner } from "./resources.js";
import { usage } from "./usage.js";

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const DAY = 24 * 3600;
/** Rows `crms jobs` and `crms history` print unless --limit says otherwise (see history()). */
const LIST_ROWS = 1000;

const USAGE = `crms — cluster resource manager

Usage: crms <command> [options]

Jobs:
  submit [options] -- CMD ARGS...   submit a job (--name --env K=V --cwd DIR --label K=V
                                    --constraint K=V --on WORKER --priority N --retries N
                                    --lost-retries N --timeout SECONDS --hold --wait
                                    --keep-on-disconnect (runs on while its worker is cut off)
                                    --array FIRST-LAST[%MAX] --after ID[:succeeded|failed|finished]
                                    --cpus N (1) --memory SIZE (bytes or 512M, 4G...) --gpus N
                                    --resource NAME=N (repeat) --queue Q --preemptible
                                    --request-id ID -o json|yaml|name); with --wait: the pending
                                    reason while it waits (state changes and a task bar on a
                                    terminal), then the job's output, and the exit code below
  jobs [--state S] [--worker W] [--label K=V] [--array ID] [--tasks] [--sort ORDER] [--limit N]
       [-w] [-o table|wide|json|yaml|name]
                                    (--array ID: the tasks of an array; --tasks: list tasks too;
                                    --sort id|submit|end|state|name, "-" first for descending,
                                    default -id: newest first; --limit N: the first N in that order
                                    (default 1000, 0: all);
                                    -w/--watch: then follow changes live, like kubectl get -w)
  job ID [-o json|yaml]             show one job with its attempts (from the history once etcd
                                    retention deleted it)
  history [--since 7d] [--until T] [--state S] [--user U] [--queue Q] [--worker W] [--name GLOB]
          [--label K=V] [--limit N] [-o table|json|yaml|csv]
                                    finished jobs from the history database, newest first
                                    (--limit: 1000 by default, all with -o csv; 0: all)
                                    (T: 30m, 12h, 7d back from now, or an ISO date/time)
  usage [--since 7d] [--by user|queue|worker] [-o table|json|yaml]
                                    what finished jobs used (from the history): jobs, succeeded,
                                    failed, killed, CPU/GPU/wall hours, max RSS; largest CPU first
  logs [-f] ID                      print a job's output (-f follows it)
  kill ID [--grace SECONDS] [--force]
                                    kill a job (grace at most 3600; a later kill with a shorter
                                    grace, or --force: SIGKILL now, overrides an earlier one)
  run ID --on WORKER                run a held or pending job on that worker (GoCRMS's RunJob)
  release ID [--on WORKER]          release a held job (with --on: onto that worker)
  requeue ID [--failed]             run a finished job (or array) again under the same id;
                                    --failed: only the array's tasks that did not succeed
  hold ID | delete ID
Workers:
  workers [-w] [-o json|yaml|name]  list workers, DOWN ones included (-w: follow changes live)
  worker NAME [-o json|yaml]        show one worker (down time, reason, last heartbeat, its jobs)
  worker forget NAME                remove a DOWN worker's record
  drain NAME                        stop placing jobs on a worker
  resume NAME                       undo a drain: the worker takes new jobs again
  stop NAME [--keep-runs]           make a worker exit (killing its runs, or leaving them to
                                    the next worker with its name and data dir)
${QUEUE_USAGE}Admin:
  admin status [-o json]            etcd members, size against quota, alarms, counts
  admin compact [REV]               compact etcd history (to the current revision)
  admin defrag                      defragment each etcd member in turn
  admin disarm                      disarm etcd alarms
  admin recover [--keep-finished N] out of NOSPACE: compact, defragment, disarm, check a write;
                                    --keep-finished N also deletes finished jobs beyond the newest N
                                    (0: all finished) and compacts again; unfinished jobs are kept
  admin gc                          delete finished jobs past retention now
  admin token create --name N --role admin|submitter|reader|worker [--worker W] [--bootstrap]
                                    create an API token (the secret is printed once); the first
                                    token of an open server needs --bootstrap: it turns tokens on
  admin token list | admin token revoke ID
Processes:
  server --listen HOST:PORT --etcd URL[,URL...] [--grace S] [--heartbeat S (${D.heartbeatSeconds})] [--prefix P] [--log-level L]
         [--compaction-interval S (${D.compactionIntervalSeconds}; 0 off)] [--compaction-revisions N (${D.compactionRevisions}; 0 off)]
         [--compaction-keep-revisions N (${D.compactionKeepRevisions})] [--compaction-db-fraction F (${D.compactionDbFraction} of --quota-bytes; 0 off)]
         [--retention-age S (${D.retentionAgeSeconds})] [--retention-count N (${D.retentionCount})] [--retention-interval S (${D.retentionIntervalSeconds})]
         [--quota-bytes N] [--tail-bytes N (${D.tailBytes} per stream)] [--http HOST:PORT (web page)]
         [--data-dir DIR (job history embedded in DIR/history)] [--history postgres://U:P@HOST:PORT/DB]
         [--no-history] [--output-cap BYTES (${D.outputCapBytes / MiB} MiB kept per job)]
         [--logs-retention-age S (${D.logsRetentionAgeSeconds / DAY} days)] [--logs-retention-bytes N (${D.logsRetentionBytes / GiB} GiB, as stored)]
         [--max-jobs N (unfinished jobs, array tasks included; default from the heap limit; 0 off)]
         [--max-jobs-per-user N (0 off)] [--fair-share-half-life S (${D.fairShareHalfLifeSeconds / DAY} day)]
         [--preempt-grace S (${D.preemptGraceSeconds}; SIGTERM to SIGKILL of a preempted run)]
         [--heap-growth PERCENT (${D.heapGrowthPercent}: after a full GC the heap grows by this share of what it kept; 0: V8 decides)]
         [--tls-cert F --tls-key F [--client-ca F]] [--admin-token-file F] [--insecure]
         [--etcd-ca F [--etcd-cert F --etcd-key F]] [--etcd-user U ($CRMS_ETCD_PASSWORD)]
  worker [--name NAME] [--slots N] [--server HOST:PORT[,...]] [--label K=V] [--data-dir DIR]
         [--run-as USER] [--output-cap BYTES (${WORKER_DEFAULTS.shipOutputBytes / MiB} MiB of output shipped at job end; 0: none)]
         [--shim PATH (default bin/crms-shim; $CRMS_SHIM)]
         [--cpus N] [--memory BYTES|32G] [--gpus N] [--resource NAME=N ...]: offered to jobs
         (default: the CPUs, total memory and GPUs (nvidia-smi -L) detected); --slots: jobs at once
         SIGTERM/SIGINT: kill runs and exit; SIGUSR2: exit leaving runs to the next worker
  dev [--port PORT] [--http-port P] etcd + control plane + one worker + web page on this machine
Shell:
  completion bash|zsh|fish          print a completion script (bash: source <(crms completion bash))
  help [CMD]                        this text, or one command's (as crms CMD --help)

Global: --server HOST:PORT[,HOST:PORT...] (or $CRMS_SERVER; default localhost:7070); calls go to the
        next address when one is UNAVAILABLE, and submit retries with one request id
        --ca F --cert F --key F --tls (or $CRMS_CA $CRMS_CERT $CRMS_KEY, CRMS_TLS=1): TLS, mutual TLS
        --token T | --token-file F (or $CRMS_TOKEN, $CRMS_TOKEN_FILE): API token
        --connect-timeout S (or $CRMS_CONNECT_TIMEOUT; default 5): give up with "cannot reach ..."
        when no server address answers within S seconds (submit's --timeout is the job's own limit)
        -o table|wide|json|yaml|name: json and yaml are the CLI's form (states as shown, SUCCEEDED;
        output tails as text); the API's canonical JSON (grpcurl, Connect) has JOB_STATE_SUCCEEDED
        and base64 bytes. Colour on a terminal only, never with NO_COLOR; tables fit the terminal.
        Global options go before or after the command; -h/--help on any command shows its usage.

Exit codes: 0 ok; 1 failed (server error, job did not succeed); 2 usage error. submit --wait exits
        with the job's exit code; 124 when its --timeout ended it; 128+N when signal N ended it
        (137 SIGKILL, 143 SIGTERM, as \`crms kill\`); 127 when its command could not start.
`;

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

/** Waits until one address of the client answers, else a clear "cannot reach" after `seconds`. */
async function reachable(client: CrmsClient, target: string, seconds: number): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  try {
    await Promise.any(
      client.transport.transports.map(
        (t) =>
          new Promise<void>((resolve, reject) => t.client.waitForReady(deadline, (e) => (e ? reject(e) : resolve()))),
      ),
    );
  } catch {
    // One call without waiting, for grpc-js's last connection error (refused, TLS handshake, ...).
    const why = await client.listWorkers(1, "", { timeoutMs: 2000 }).then(
      () => "",
      (err: { details?: string }) => (err.details ? ` (${err.details})` : ""),
    );
    throw new CliError(
      `UNAVAILABLE: cannot reach the crms server at ${target} within ${seconds}s${why}; is it running? ` +
        "(--server or CRMS_SERVER; --connect-timeout S to wait longer)",
      1,
    );
  }
}

async function withClient<T>(v: Record<string, unknown>, fn: (c: CrmsClient) => Promise<T>): Promise<T> {
  let client: CrmsClient;
  const target = (v.server as string | undefined) || defaultServer();
  const raw = (v["connect-timeout"] as string | undefined) ?? process.env.CRMS_CONNECT_TIMEOUT ?? "5";
  const seconds = Number(raw);
  if (!(seconds > 0)) throw new CliError(`--connect-timeout must be a number of seconds > 0 (got ${raw})`, 2);
  try {
    client = CrmsClient.secure(target, securityOf(v));
  } catch (err) {
    throw new CliError((err as Error).message, 2);
  }
  try {
    await reachable(client, target, seconds);
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
    "keep-on-disconnect": { type: "boolean" },
    wait: { type: "boolean" },
    "request-id": { type: "string" },
    array: { type: "string" },
    after: { type: "string", multiple: true },
    ...RESOURCE_FLAGS,
  });
  if (positionals.length === 0) throw new CliError("nothing to run: crms submit [options] -- CMD ARGS...", 2);
  const priority = v.priority === undefined ? 0 : Number(v.priority);
  if (!Number.isInteger(priority)) throw new CliError(`--priority must be an integer (got ${v.priority})`, 2);
  return withClient(v, async (c) => {
    const job = await c.submit(
      {
        command: positionals,
        name: (v.name as string) ?? "",
        env: keyValues(v.env, "--env"),
        workingDir: (v.cwd as string) ?? "",
        labels: withOwner(keyValues(v.label, "--label"), securityOf(v)),
        constraints: keyValues(v.constraint, "--constraint"),
        ...resourceSpec(v),
        targetWorker: (v.on as string) ?? "",
        priority,
        maxRetries: int(v.retries, "--retries"),
        maxLostRetries: int(v["lost-retries"], "--lost-retries"),
        timeoutSeconds: int(v.timeout, "--timeout"),
        hold: Boolean(v.hold),
        keepOnDisconnect: Boolean(v["keep-on-disconnect"]),
        array: v.array === undefined ? undefined : cliParse(() => parseArraySpec(v.array as string)),
        after: ((v.after as string[] | undefined) ?? []).map((a) => cliParse(() => parseAfter(a))),
      },
      { requestId: (v["request-id"] as string) ?? "" },
    );
    const output = v.output as Output | undefined;
    if (!v.wait) {
      if (output === "json" || output === "yaml" || output === "name") emit(output, jobJson(job), [job.id], () => "");
      else if (job.spec?.array) print(`array ${job.id} submitted (${arraySize(job)} tasks)`);
      else print(`job ${job.id} submitted (${jobState(job.state)})`);
      return 0;
    }
    // The id first: if the wait fails, the job still exists and must not be submitted again.
    process.stderr.write(`job ${job.id} submitted; waiting for it to end\n`);
    let done: Job;
    try {
      done = await c.waitUntil(job.id, waitReporter(), {});
    } catch (err) {
      throw new CliError(
        `${describeError(err)}\njob ${job.id} was submitted and goes on without this wait: see it with \`crms job ${job.id}\`, follow its output with \`crms logs -f ${job.id}\``,
        1,
      );
    }
    const out = await c.outputText(done.id).catch(() => ({ stdout: "", stderr: "" }));
    if (output === "json" || output === "yaml") {
      emit(output, { job: jobJson(done), stdout: out.stdout, stderr: out.stderr }, [], () => "");
    } else {
      process.stdout.write(out.stdout);
      process.stderr.write(out.stderr);
      const detail = done.error ? `: ${done.error}` : done.exitCode !== undefined ? ` (exit ${done.exitCode})` : "";
      process.stderr.write(`job ${done.id} ${jobState(done.state)}${detail}\n`);
    }
    return waitExitCode(done);
  });
}

/**
 * What `submit --wait` tells while it waits, on stderr: the pending reason
 * each time it changes; on a terminal also state changes and, for an array,
 * a bar of tasks ended. Returns the observer for waitUntil (never "done").
 */
function waitReporter(): (job: Job) => boolean {
  const tty = Boolean(process.stderr.isTTY);
  let reason = "";
  let state = "";
  let bar = false;
  return (job) => {
    const clearBar = () => {
      if (bar) process.stderr.write("\r\x1b[K");
      bar = false;
    };
    if (job.pendingReason && job.pendingReason !== reason) {
      clearBar();
      process.stderr.write(`job ${job.id} ${jobState(job.state)}: ${job.pendingReason}\n`);
    }
    reason = job.pendingReason;
    const now = jobState(job.state);
    if (tty && now !== state && !job.pendingReason) {
      clearBar();
      process.stderr.write(`job ${job.id} ${now}${job.worker ? ` on ${job.worker}` : ""}\n`);
    }
    state = now;
    const counts = job.arrayCounts;
    if (tty && counts && counts.total > 0) {
      const ended = counts.succeeded + counts.failed + counts.killed + counts.lost;
      const width = 30;
      const filled = Math.round((ended / counts.total) * width);
      process.stderr.write(
        `\r\x1b[K[${"#".repeat(filled)}${" ".repeat(width - filled)}] ${ended}/${counts.total} tasks ended (${counts.running} running, ${counts.failed} failed)`,
      );
      bar = true;
      if (ended === counts.total) clearBar();
    }
    return false;
  };
}

/** `crms jobs --sort` names (short forms too) -> ListJobsRequest.order_by. */
export function orderOf(sort: string): string {
  const desc = sort.startsWith("-");
  const key = desc ? sort.slice(1) : sort;
  const full = ({ submit: "submit_time", end: "end_time" } as Record<string, string>)[key] ?? key;
  if (!["id", "submit_time", "end_time", "state", "name"].includes(full)) {
    throw new CliError(`--sort must be id, submit, end, state or name, "-" first for descending (got ${sort})`, 2);
  }
  return `${desc ? "-" : ""}${full}`;
}

async function jobs(args: string[]): Promise<number> {
  // `--sort -submit`: a value starting with "-" is taken as the option's value (joinValues).
  const { values: v } = parse(args, {
    state: { type: "string", multiple: true },
    worker: { type: "string" },
    label: { type: "string", multiple: true },
    limit: { type: "string" },
    array: { type: "string" },
    tasks: { type: "boolean" },
    sort: { type: "string" },
    watch: { type: "boolean", short: "w" },
  });
  const states = ((v.state as string[] | undefined) ?? []).flatMap((s) => s.split(",")).map(stateOf);
  // The first LIST_ROWS by default, as `crms history`: a million queued jobs printed whole took
  // minutes and ended the CLI (the table's widths overflowed the stack).
  const limit = int(v.limit, "--limit", LIST_ROWS) || Number.POSITIVE_INFINITY;
  const orderBy = orderOf((v.sort as string | undefined) ?? "-id");
  return withClient(v, async (c) => {
    const list: Job[] = [];
    let more = false;
    for await (const job of c.jobs({
      states,
      worker: (v.worker as string) ?? "",
      labels: keyValues(v.label, "--label"),
      pageSize: Math.min(1000, limit + 1),
      orderBy,
      arrayParent: (v.array as string) ?? "",
      includeTasks: Boolean(v.tasks),
    })) {
      if (list.length >= limit) {
        more = true;
        break;
      }
      list.push(job);
    }
    if (more) process.stderr.write(`crms: the first ${limit} shown, more matched: --limit N for more (0: all)\n`);
    const output = v.output as Output | undefined;
    emit(
      output,
      list.map(jobJson),
      list.map((j) => j.id),
      () => jobsTable(list, output === "wide"),
    );
    if (!v.watch) return 0;
    const shown = (j: Job) =>
      (!states.length || states.includes(j.state)) &&
      (!v.worker || j.worker === v.worker) &&
      (v.array ? j.arrayParent === v.array : Boolean(v.tasks) || !j.arrayParent) &&
      Object.entries(keyValues(v.label, "--label")).every(([k, val]) => j.spec?.labels[k] === val);
    return watchLoop(
      c.watchJobs([], { signal: stopOnSignal() }),
      (ev) => ev.job,
      (j) => j.id,
      shown,
      (all) => all.sort((a, b) => Number(b.id) - Number(a.id) || b.id.localeCompare(a.id)).slice(0, limit),
      (rows, header) => {
        const t = jobsTable(rows, output === "wide");
        return header ? t : t.split("\n").slice(1).join("\n");
      },
      jobJson,
      output,
      list,
    );
  });
}

/** An AbortSignal that fires on Ctrl-C or SIGTERM (ends a watch with exit 0). */
function stopOnSignal(): AbortSignal {
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  return controller.signal;
}

/**
 * `-w`: follows a watch after the listing. On a terminal the table is redrawn
 * in place at each change; into a pipe each change is one more row (or one
 * JSON line with -o json), like `kubectl get -w`. Ends with 0 on Ctrl-C.
 */
async function watchLoop<E extends { type: number }, T>(
  events: AsyncIterable<E>,
  itemOf: (e: E) => T | undefined,
  keyOf: (t: T) => string,
  shown: (t: T) => boolean,
  order: (all: T[]) => T[],
  render: (rows: T[], header: boolean) => string,
  json: (t: T) => unknown,
  output: Output | undefined,
  initial: T[],
): Promise<number> {
  const { WatchEventType } = await import("../../gen/crms/v1/job_pb.js");
  const tty = Boolean(process.stdout.isTTY) && output !== "json" && output !== "yaml" && output !== "name";
  const items = new Map(initial.map((t) => [keyOf(t), t]));
  let synced = false;
  try {
    for await (const ev of events) {
      if (ev.type === WatchEventType.SYNCED) {
        synced = true;
        continue;
      }
      const item = itemOf(ev);
      if (!item) continue;
      const key = keyOf(item);
      const deleted = ev.type === WatchEventType.DELETED;
      const before = items.get(key);
      if (deleted || !shown(item)) items.delete(key);
      else items.set(key, item);
      // The watch starts with every existing record: only changes after the listing are news.
      if (!synced && ev.type === WatchEventType.EXISTING) continue;
      if (!deleted && !shown(item) && !before) continue;
      if (tty) {
        process.stdout.write(`\x1b[H\x1b[2J${render(order([...items.values()]), true)}\n`);
      } else if (output === "json") {
        process.stdout.write(`${JSON.stringify({ type: deleted ? "DELETED" : "PUT", object: json(item) })}\n`);
      } else if (output === "yaml") {
        emit("yaml", [{ type: deleted ? "DELETED" : "PUT", object: json(item) }], [], () => "");
      } else if (output === "name") {
        process.stdout.write(`${key}\n`);
      } else {
        process.stdout.write(`${render([item], false)}${deleted ? "  (deleted)" : ""}\n`);
      }
    }
  } catch (err) {
    if ((err as { code?: number }).code !== grpcStatus.CANCELLED) throw err;
  }
  return 0;
}

async function jobCommand(cmd: string, args: string[]): Promise<number> {
  const { values: v, positionals } = parse(args, {
    grace: { type: "string" },
    force: { type: "boolean" },
    on: { type: "string" },
    failed: { type: "boolean" },
  });
  const id = one(positionals, "job id");
  if (cmd === "run" && !v.on) throw new CliError("usage: crms run ID --on WORKER", 2);
  return withClient(v, async (c) => {
    switch (cmd) {
      case "job": {
        const job = await c.getJob(id);
        emit(v.output as Output | undefined, jobJson(job), [job.id], () => jobDetail(job));
        return 0;
      }
      case "kill": {
        const job = await c.kill(id, int(v.grace, "--grace"), undefined, Boolean(v.force));
        print(`job ${id} ${job.state === JobState.KILLED ? "killed" : "is being killed"}`);
        return 0;
      }
      case "hold":
        await c.hold(id);
        print(`job ${id} held`);
        return 0;
      case "run":
      case "release":
        if (v.on) {
          await c.runJob(id, v.on as string);
          print(`job ${id} will run on ${v.on}`);
          return 0;
        }
        await c.release(id);
        print(`job ${id} released`);
        return 0;
      case "requeue": {
        const job = await c.requeue(id, Boolean(v.failed));
        print(`job ${id} requeued (${jobState(job.state)})`);
        return 0;
      }
      default:
        await c.deleteJob(id);
        print(`job ${id} deleted`);
        return 0;
    }
  });
}

async function history(args: string[]): Promise<number> {
  const { values: v, positionals } = parse(
    args,
    {
      since: { type: "string" },
      until: { type: "string" },
      state: { type: "string", multiple: true },
      user: { type: "string" },
      queue: { type: "string" },
      worker: { type: "string" },
      name: { type: "string" },
      label: { type: "string", multiple: true },
      limit: { type: "string" },
    },
    ["csv"],
  );
  if (positionals.length) throw new CliError(`unexpected argument ${positionals[0]}`, 2);
  const output = (v.output as string | undefined) ?? "table";
  const states = ((v.state as string[] | undefined) ?? []).flatMap((s) => s.split(",")).map(stateOf);
  // A table, JSON or YAML is built in memory before it is printed: by default only the newest
  // LIST_ROWS (a long history held a million rows, and printing them all ended the CLI out of memory).
  // CSV streams row by row, so a month of jobs need not fit in memory: all of them unless --limit.
  const limit = int(v.limit, "--limit", output === "csv" ? 0 : LIST_ROWS) || Number.POSITIVE_INFINITY;
  const since = v.since ? cliParse(() => parseWhen(v.since as string, "--since")) : undefined;
  const until = v.until ? cliParse(() => parseWhen(v.until as string, "--until")) : undefined;
  return withClient(v, async (c) => {
    const list: Job[] = [];
    if (output === "csv") process.stdout.write(csvHeader());
    let n = 0;
    let more = false;
    for await (const job of c.history({
      since,
      until,
      states,
      owner: (v.user as string) ?? "",
      queue: (v.queue as string) ?? "",
      worker: (v.worker as string) ?? "",
      nameGlob: (v.name as string) ?? "",
      labels: keyValues(v.label, "--label"),
      pageSize: Math.min(1000, limit + 1),
    })) {
      if (n >= limit) {
        more = true;
        break;
      }
      n++;
      if (output === "csv") process.stdout.write(csvRow(job));
      else list.push(job);
    }
    if (output !== "csv") {
      emit(
        output as Output,
        list.map(jobJson),
        list.map((j) => j.id),
        () => historyTable(list),
      );
    }
    if (more) {
      process.stderr.write(`crms: the newest ${limit} shown, more matched: --limit N for more (0: all), or -o csv\n`);
    }
    return 0;
  });
}

async function logs(args: string[]): Promise<number> {
  const { values: v, positionals } = parse(args, { follow: { type: "boolean", short: "f" } });
  const id = one(positionals, "job id");
  return withClient(v, async (c) => {
    for await (const chunk of c.output(id, Boolean(v.follow))) {
      (chunk.stream === 2 ? process.stderr : process.stdout).write(chunk.data);
    }
    return 0;
  });
}

async function workerCommand(cmd: string, args: string[]): Promise<number> {
  const own: Flags =
    cmd === "stop"
      ? { "keep-runs": { type: "boolean" } }
      : cmd === "workers"
        ? { watch: { type: "boolean", short: "w" } }
        : {};
  const { values: v, positionals } = parse(args, own);
  const output = v.output as Output | undefined;
  return withClient(v, async (c) => {
    if (cmd === "workers") {
      const list: Worker[] = [];
      for await (const w of c.workers()) list.push(w);
      emit(
        output,
        list.map(workerJson),
        list.map((w) => w.name),
        () => workersTable(list),
      );
      if (!v.watch) return 0;
      return watchLoop(
        c.watchWorkers({ signal: stopOnSignal() }),
        (ev) => ev.worker,
        (w) => w.name,
        () => true,
        (all) => all.sort((a, b) => a.name.localeCompare(b.name)),
        (rows, header) => {
          const t = workersTable(rows);
          return header ? t : t.split("\n").slice(1).join("\n");
        },
        workerJson,
        output,
        list,
      );
    }
    if (cmd === "worker" && positionals[0] === "forget" && positionals.length === 2) {
      const name = positionals[1] as string;
      await c.forgetWorker(name);
      print(`worker ${name} forgotten`);
      return 0;
    }
    const name = one(positionals, "worker name");
    if (cmd === "resume") {
      await c.resume(name);
      print(`worker ${name} resumed: it takes new jobs again`);
    } else if (cmd === "worker") {
      const w = await c.getWorker(name);
      emit(output, workerJson(w), [w.name], () => workerDetail(w));
    } else if (cmd === "drain") {
      await c.drain(name);
      print(`worker ${name} draining: no new jobs, running ones finish`);
    } else {
      const keepRuns = Boolean(v["keep-runs"]);
      await c.stopWorker(name, undefined, keepRuns);
      print(`worker ${name} told to stop${keepRuns ? ", leaving its runs to its next start" : ""}`);
    }
    return 0;
  });
}

/** `crms admin token create|list|revoke`. */
async function token(c: CrmsClient, positionals: string[], v: Record<string, unknown>): Promise<number> {
  const [sub, ...rest] = positionals;
  if (sub === "create") {
    if (!v.name || !v.role)
      throw new CliError("token create needs --name NAME --role admin|submitter|reader|worker", 2);
    const bootstrap = Boolean(v.bootstrap);
    if (bootstrap) {
      process.stderr.write(
        "bootstrap: if this server is open (no token yet), this first token turns authentication on: " +
          "from now on every client and worker needs a token (CRMS_TOKEN or --token)\n",
      );
    }
    const r = await c.createToken(v.name as string, v.role as string, (v.worker as string) ?? "", { bootstrap });
    if (v.output === "json") printJson({ id: r.token?.id, name: r.token?.name, role: r.token?.role, secret: r.secret });
    else {
      process.stderr.write(
        `created token ${r.token?.id} (${r.token?.role} ${r.token?.name}); the secret is shown once:\n`,
      );
      print(r.secret);
    }
    return 0;
  }
  if (sub === "list") {
    const list = await c.listTokens();
    if (v.output === "json") printJson(list.map((t) => ({ id: t.id, name: t.name, role: t.role, worker: t.worker })));
    else
      print(
        table(
          ["ID", "NAME", "ROLE", "WORKER"],
          list.map((t) => [t.id, t.name, t.role, t.worker || "-"]),
        ),
      );
    return 0;
  }
  if (sub === "revoke") {
    const t = await c.revokeToken(one(rest, "token id"));
    print(`revoked token ${t?.id} (${t?.role} ${t?.name})`);
    return 0;
  }
  throw new CliError("usage: crms admin token create --name N --role R [--worker W] | list | revoke ID", 2);
}

async function admin(args: string[]): Promise<number> {
  const { values: v, positionals } = parse(args, {
    "keep-finished": { type: "string" },
    name: { type: "string" },
    role: { type: "string" },
    worker: { type: "string" },
    bootstrap: { type: "boolean" },
  });
  const sub = positionals[0] ?? "status";
  return withClient(v, async (c) => {
    switch (sub) {
      case "status":
        break;
      case "token":
        return token(c, positionals.slice(1), v);
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
        const keep = v["keep-finished"] === undefined ? undefined : int(v["keep-finished"], "--keep-finished");
        const r = await c.recover(keep);
        print(`compacted to revision ${r.compactedRevision}`);
        if (keep !== undefined) print(`deleted ${r.deletedJobs} finished jobs (kept the newest ${keep})`);
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
        throw new CliError(
          `unknown admin command ${sub}; one of status, compact, defrag, disarm, recover, gc, token`,
          2,
        );
    }
    const s = await c.clusterStatus();
    if (v.output === "json" || v.output === "yaml") {
      emit(v.output, toJson(GetClusterStatusResponseSchema, s), [], () => "");
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
    print(
      `Workers:    ${s.workersUp} up of ${s.workers}${s.workersDown ? ` (${s.workersDown} down)` : ""}; slots ${s.slotsUsed}/${s.slotsTotal} used`,
    );
    print(`Jobs:       ${s.jobs.map((j) => `${jobState(j.state)} ${j.count}`).join(", ") || "none"}`);
    print(
      `Unfinished: ${s.unfinishedJobs} of ${s.maxJobs > 0n ? `${s.maxJobs} allowed (--max-jobs)` : "no cap"} (array tasks included)`,
    );
    print(`Replica:    ${s.replica} (scheduler leader: ${s.schedulerLeader || "none"})`);
    const o = s.lastEtcdOutage;
    if (!s.etcdReachable) print(`etcd:       NOT REACHABLE from this replica; writes answer UNAVAILABLE`);
    if (o) print(`Last etcd outage: ${etcdOutage(o)}`);
    const h = s.history;
    if (h)
      print(
        `History:    ${h.kind} ${h.location}, ${h.up ? "up" : `DOWN (${h.error})`}; ${h.pendingJobs} jobs to write, lag ${h.lagSeconds.toFixed(1)}s; schema ${h.schemaVersion}`,
      );
    else print("History:    none (jobs are gone once etcd retention deletes them)");
    if (s.retentionWaiting)
      print(`Retention:  WAITING, deletes nothing until the history confirms (${s.retentionWaiting})`);
    return 0;
  });
}

/** Runs the CLI with argv (without node and script) and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const { cmd, args } = hoistGlobals(argv);
  if (!cmd) {
    process.stdout.write(USAGE);
    return wantsHelp(args) ? 0 : 2;
  }
  if (cmd === "help") {
    const topic = args.find((a) => !a.startsWith("-"));
    if (!topic) {
      process.stdout.write(USAGE);
      return 0;
    }
    const text = usageOf(topic, USAGE);
    if (!text) throw new CliError(`unknown command ${topic}; see crms --help`, 2);
    print(text);
    return 0;
  }
  // `crms CMD --help` shows that command's usage and does nothing else (not even start a worker).
  if (wantsHelp(args)) {
    const text = usageOf(cmd, USAGE);
    if (!text) throw new CliError(`unknown command ${cmd}; see crms --help`, 2);
    print(text);
    return 0;
  }
  if (cmd === "completion") {
    const shell = args.find((a) => !a.startsWith("-")) ?? "";
    const script = completionScript(shell);
    if (!script) throw new CliError("usage: crms completion bash|zsh|fish", 2);
    process.stdout.write(script);
    return 0;
  }
  if (cmd === "--version" || cmd === "version") {
    // bin/crms.js runs dist/ (compiled) while it is as new as the sources, else the sources.
    print(`${VERSION} (${import.meta.url.endsWith(".ts") ? "from the TypeScript sources" : "compiled"})`);
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
    case "run":
    case "requeue":
    case "delete":
      return jobCommand(cmd, args);
    case "logs":
      return logs(args);
    case "history":
      return history(args);
    case "usage":
      return usage(args, withClient);
    case "workers":
    case "worker":
      if (cmd === "worker" && (args.length === 0 || args[0]?.startsWith("-"))) {
        const { worker } = await import("../cmd/worker.js");
        return worker(args);
      }
      return workerCommand(cmd, args);
    case "drain":
    case "resume":
    case "stop":
      return workerCommand(cmd, args);
    case "admin":
      return admin(args);
    case "queue":
      return queueCommand(args, withClient);
    case "server": {
      const { server } = await import("../cmd/server.js");
      return server(args);
    }
    case "dev": {
      const { dev } = await import("../cmd/dev.js");
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
    if (e.code === grpcStatus.UNAVAILABLE && !e.details.startsWith("history database"))
      return `UNAVAILABLE: cannot reach the crms server (${e.details}); is it running? (--server or CRMS_SERVER)`;
    return `${name}: ${e.details}`;
  }
  return e.message ?? String(err);
}
