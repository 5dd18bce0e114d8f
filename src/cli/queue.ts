/**
 * `crms queue create|list|show|update|delete`: queues and their fair share,
 * as tables for people and `-o json|yaml|name` for scripts.
 */
import { toJson } from "@bufbuild/protobuf";
import type { CrmsClient } from "../../clients/typescript/src/client.js";
import { type Queue, QueueSchema } from "../../gen/crms/v1/queue_pb.js";
import { CliError, parse } from "../cmd/flags.js";
import { table, time } from "./format.js";
import { emit, type Output } from "./output.js";
import { uint32 } from "./resources.js";

/** The usage lines of `crms queue`, for the CLI's usage text. */
export const QUEUE_USAGE = `Queues:
  queue create NAME [--weight W (1)] [--max-running N] [--max-cpus N] [--max-gpus N]
               [--preemptible]
                                    create a queue (admin): its share is its weight against the
                                    other queues' with work; limits 0 mean none; --preemptible:
                                    every job of it may be preempted
  queue list [-o json|yaml|name]    every queue ("default" first): settings, running, pending,
                                    share of the cluster against its target share
  queue show NAME [-o json|yaml]    one queue: settings, running/pending, share against target,
                                    and per user: running, pending, share, target, decayed usage
  queue update NAME [--weight W] [--max-running N] [--max-cpus N] [--max-gpus N]
               [--preemptible | --no-preemptible]
                                    change a queue (admin); what is not given keeps its value
  queue delete NAME                 delete a queue (admin): refused while it has unfinished jobs
`;

/** The options of `crms queue` (for completion). */
export const QUEUE_FLAGS = [
  "--weight",
  "--max-running",
  "--max-cpus",
  "--max-gpus",
  "--preemptible",
  "--no-preemptible",
];

/** The subcommands of `crms queue`. */
export const QUEUE_SUBCOMMANDS = ["create", "list", "show", "update", "delete"];

/** Calls fn with a client connected as the command line says (main's withClient). */
export type WithClient = <T>(v: Record<string, unknown>, fn: (c: CrmsClient) => Promise<T>) => Promise<T>;

const print = (s: string) => process.stdout.write(`${s}\n`);

/** `--weight`: a finite number ≥ 0 (0 means 1). */
function weightOf(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  const w = Number(value);
  if (value === "" || !Number.isFinite(w) || w < 0) {
    throw new CliError(`--weight must be a number ≥ 0 (got ${value})`, 2);
  }
  return w;
}

/** A fraction as a percentage: 0.25 -> "25.0%". */
const percent = (x: number) => `${(x * 100).toFixed(1)}%`;

/** Cost-seconds, shortened. */
const usage = (x: number) => (x === 0 ? "0" : x < 100 ? x.toFixed(2) : x.toFixed(0));

const limit = (n: number) => (n ? String(n) : "-");

/** The CLI's `-o json|yaml` form of a queue: the API's JSON with zero values shown. */
export function queueJson(q: Queue): unknown {
  return toJson(QueueSchema, q, { alwaysEmitImplicit: true });
}

/** `crms queue list`'s table. */
export function queuesTable(queues: Queue[]): string {
  return table(
    ["NAME", "WEIGHT", "MAX RUNNING", "MAX CPUS", "MAX GPUS", "PREEMPTIBLE", "RUNNING", "PENDING", "SHARE", "TARGET"],
    queues.map((q) => [
      q.name,
      String(q.weight),
      limit(q.maxRunning),
      limit(q.maxCpus),
      limit(q.maxGpus),
      q.preemptible ? "yes" : "no",
      String(q.status?.running ?? 0),
      String(q.status?.pending ?? 0n),
      percent(q.status?.share ?? 0),
      percent(q.status?.targetShare ?? 0),
    ]),
  );
}

/** `crms queue show`'s text: settings, load and share, then a table per user. */
export function queueDetail(q: Queue): string {
  const s = q.status;
  const lines: Array<[string, string]> = [
    ["Name", q.name],
    ["Weight", String(q.weight)],
    ["Max running", q.maxRunning ? `${q.maxRunning} jobs` : "no limit"],
    ["Max cpus", q.maxCpus ? String(q.maxCpus) : "no limit"],
    ["Max gpus", q.maxGpus ? String(q.maxGpus) : "no limit"],
    ["Preemptible", q.preemptible ? "yes (every job of the queue)" : "no (only jobs submitted --preemptible)"],
    ["Created", q.createTime ? time(q.createTime) : "- (built in)"],
    ["Running", `${s?.running ?? 0} jobs (${s?.cpus ?? 0} cpus, ${s?.gpus ?? 0} gpus)`],
    ["Pending", `${s?.pending ?? 0n} jobs`],
    ["Share", `${percent(s?.share ?? 0)} of the cluster; target ${percent(s?.targetShare ?? 0)}`],
  ];
  const w = Math.max(...lines.map(([k]) => k.length));
  let out = lines.map(([k, v]) => `${`${k}:`.padEnd(w + 2)}${v}`).join("\n");
  const users = s?.users ?? [];
  out += users.length
    ? `\n\nUsers:\n${table(
        ["USER", "RUNNING", "PENDING", "SHARE", "TARGET", "DECAYED USAGE"],
        users.map((u) => [
          u.user || "(none)",
          String(u.running),
          String(u.pending),
          percent(u.share),
          percent(u.targetShare),
          usage(u.decayedUsage),
        ]),
      )}`
    : "\n\nUsers: none with running or pending jobs";
  return out;
}

/** `crms queue SUB ...`. */
export async function queueCommand(args: string[], withClient: WithClient): Promise<number> {
  const { values: v, positionals } = parse(args, {
    weight: { type: "string" },
    "max-running": { type: "string" },
    "max-cpus": { type: "string" },
    "max-gpus": { type: "string" },
    preemptible: { type: "boolean" },
    "no-preemptible": { type: "boolean" },
  });
  const [sub, ...rest] = positionals;
  const output = v.output as Output | undefined;
  const name = () => {
    const [first, ...more] = rest;
    if (!first || more.length) throw new CliError(`usage: crms queue ${sub} NAME`, 2);
    return first;
  };
  if (v.preemptible && v["no-preemptible"]) throw new CliError("--preemptible or --no-preemptible, not both", 2);
  const weight = weightOf(v.weight);
  const limits = {
    maxRunning: v["max-running"] === undefined ? undefined : uint32(v["max-running"], "--max-running"),
    maxCpus: v["max-cpus"] === undefined ? undefined : uint32(v["max-cpus"], "--max-cpus"),
    maxGpus: v["max-gpus"] === undefined ? undefined : uint32(v["max-gpus"], "--max-gpus"),
  };
  const show = (q: Queue) => emit(output, queueJson(q), [q.name], () => queueDetail(q));
  switch (sub) {
    case "create": {
      const n = name();
      if (v["no-preemptible"]) throw new CliError("--no-preemptible is for update (a new queue is not preemptible)", 2);
      return withClient(v, async (c) => {
        const q = await c.createQueue({
          name: n,
          weight: weight ?? 1,
          maxRunning: limits.maxRunning ?? 0,
          maxCpus: limits.maxCpus ?? 0,
          maxGpus: limits.maxGpus ?? 0,
          preemptible: Boolean(v.preemptible),
        });
        if (output) show(q);
        else print(`queue ${q.name} created (weight ${q.weight})`);
        return 0;
      });
    }
    case "list":
      if (rest.length) throw new CliError("usage: crms queue list", 2);
      return withClient(v, async (c) => {
        const queues = await c.listQueues();
        emit(
          output,
          queues.map(queueJson),
          queues.map((q) => q.name),
          () => queuesTable(queues),
        );
        return 0;
      });
    case "show": {
      const n = name();
      return withClient(v, async (c) => {
        show(await c.getQueue(n));
        return 0;
      });
    }
    case "update": {
      const n = name();
      return withClient(v, async (c) => {
        // Update replaces every setting: start from the current ones.
        const cur = await c.getQueue(n);
        const q = await c.updateQueue({
          name: n,
          weight: weight ?? cur.weight,
          maxRunning: limits.maxRunning ?? cur.maxRunning,
          maxCpus: limits.maxCpus ?? cur.maxCpus,
          maxGpus: limits.maxGpus ?? cur.maxGpus,
          preemptible: v.preemptible ? true : v["no-preemptible"] ? false : cur.preemptible,
        });
        if (output) show(q);
        else print(`queue ${q.name} updated`);
        return 0;
      });
    }
    case "delete": {
      const n = name();
      return withClient(v, async (c) => {
        await c.deleteQueue(n);
        print(`queue ${n} deleted`);
        return 0;
      });
    }
    default:
      throw new CliError(
        `${sub ? `unknown queue command ${sub}` : "a queue command is needed"}; one of ${QUEUE_SUBCOMMANDS.join(", ")}`,
        2,
      );
  }
}
