/**
 * The fault tests' cluster, all real processes, set up as the README's
 * "Running a cluster" section says: a 3-member etcd on loopback, control-plane
 * replicas as `crms server` processes, workers as `crms worker` processes given
 * every replica's address. Faults are injected with signals on these processes.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CrmsClient, type Job, JobState } from "../../clients/typescript/src/client.js";
import { CRMS_BIN } from "./cluster.js";
import { type EtcdCluster, freePort, startEtcdCluster } from "./etcd.js";

export interface Proc {
  name: string;
  process: ChildProcess;
  output: () => string;
  signal(sig: NodeJS.Signals): void;
  exited: Promise<void>;
}

function spawnCrms(name: string, args: string[], env: Record<string, string> = {}): Proc {
  const proc = spawn(process.execPath, [CRMS_BIN, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
  let out = "";
  const keep = (d: Buffer) => {
    out += d;
    if (out.length > 200_000) out = out.slice(-100_000);
  };
  proc.stdout?.on("data", keep);
  proc.stderr?.on("data", keep);
  return {
    name,
    process: proc,
    output: () => out,
    signal: (sig) => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(sig);
    },
    exited: new Promise<void>((r) => proc.once("exit", () => r())),
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** The run shim the workers need to re-adopt runs; throws naming the install step when it is missing. */
export function requireShim(): string {
  const shim = join(CRMS_BIN, "..", "crms-shim");
  if (!existsSync(shim)) {
    throw new Error(`${shim} is missing: run scripts/setup.sh (it builds the run shim with \`go build\`)`);
  }
  return shim;
}

export interface Replica extends Proc {
  address: string;
  /** A client bound to this replica only. */
  client: CrmsClient;
}

export class FaultCluster {
  readonly replicas: Replica[] = [];
  readonly workers: Proc[] = [];
  readonly clients: CrmsClient[] = [];
  readonly dir = mkdtempSync(join(tmpdir(), "crms-faults-"));
  /** Each job run appends "<job id> <attempt> <worker> <pid>" here (see `markerCommand`). */
  readonly runsFile = join(this.dir, "runs");
  /** Each worker's data directory by name (a restart with the same name reuses it). */
  readonly dataDirs = new Map<string, string>();

  private constructor(
    readonly etcd: EtcdCluster,
    readonly graceSeconds: number,
    readonly heartbeatSeconds?: number,
  ) {}

  /** etcd (3 members unless `etcdMembers`), `replicas` servers, then `workers` workers given every replica's address. */
  static async start(
    opts: {
      replicas?: number;
      workers?: number;
      slots?: number;
      grace?: number;
      etcdMembers?: number;
      heartbeat?: number;
    } = {},
  ) {
    const etcd = await startEtcdCluster(opts.etcdMembers ?? 3);
    const cluster = new FaultCluster(etcd, opts.grace ?? 6, opts.heartbeat);
    try {
      for (let i = 0; i < (opts.replicas ?? 2); i++) await cluster.startReplica(`r${i}`);
      // Worker i lists replica i first, so workers are spread over the replicas.
      for (let i = 0; i < (opts.workers ?? 3); i++)
        await cluster.startWorker(`w${i}`, opts.slots ?? 4, cluster.replicas[i % cluster.replicas.length]);
      await cluster.leader();
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  /** Every replica's address, as clients and workers are given them. */
  get addresses(): string {
    return this.replicas.map((r) => r.address).join(",");
  }

  async startReplica(name: string, port?: number): Promise<Replica> {
    const address = `127.0.0.1:${port ?? (await freePort())}`;
    const proc = spawnCrms(name, [
      "server",
      "--listen",
      address,
      "--etcd",
      this.etcd.endpoints.join(","),
      "--grace",
      String(this.graceSeconds),
      ...(this.heartbeatSeconds ? ["--heartbeat", String(this.heartbeatSeconds)] : []),
      "--log-level",
      "info",
      // Several replicas: embedded history is for one replica alone.
      "--no-history",
    ]);
    const client = new CrmsClient(address);
    const replica: Replica = { ...proc, address, client };
    await waitFor(
      async () => {
        if (proc.process.exitCode !== null) throw new Error(`replica ${name} exited:\n${proc.output()}`);
        return client.clusterStatus({ timeoutMs: 1000 }).then(
          () => true,
          () => false,
        );
      },
      30_000,
      `replica ${name} to serve`,
    );
    const old = this.replicas.findIndex((r) => r.name === name);
    if (old >= 0) this.replicas[old] = replica;
    else this.replicas.push(replica);
    return replica;
  }

  /**
   * Starts `crms worker --server <every replica>`; `first` puts one replica
   * (or another address, e.g. a proxy's) first in its list, `only` gives
   * these addresses alone. A worker started again under a name keeps its
   * data directory (it re-adopts its runs).
   */
  async startWorker(name: string, slots: number, first?: Replica | string, only?: string[]): Promise<Proc> {
    const rest = this.replicas.filter((r) => r !== first).map((r) => r.address);
    const order = only ?? (first === undefined ? rest : [typeof first === "string" ? first : first.address, ...rest]);
    const dataDir = this.dataDirs.get(name) ?? mkdtempSync(join(this.dir, `${name}-`));
    this.dataDirs.set(name, dataDir);
    const proc = spawnCrms(
      name,
      ["worker", "--name", name, "--slots", String(slots), "--server", order.join(","), "--data-dir", dataDir],
      { CRMS_HEARTBEAT_SECONDS: "1" },
    );
    this.workers.push(proc);
    await waitFor(
      async () =>
        (
          await this.client()
            .getWorker(name)
            .catch(() => undefined)
        )?.state === 1,
      30_000,
      `worker ${name} to attach\n${proc.output()}`,
    );
    return proc;
  }

  /** A client given every replica's address (fails over). */
  client(): CrmsClient {
    const c = new CrmsClient(this.addresses);
    this.clients.push(c);
    return c;
  }

  /** The replica leading the scheduler, as every live replica reports it. */
  async leader(timeoutMs = 30_000): Promise<Replica> {
    let found: Replica | undefined;
    await waitFor(
      async () => {
        for (const r of this.replicas) {
          if (r.process.exitCode !== null || r.process.signalCode !== null) continue;
          const s = await r.client.clusterStatus({ timeoutMs: 1000 }).catch(() => undefined);
          if (s?.schedulerLeader && s.schedulerLeader === s.replica) found = r;
        }
        return found !== undefined;
      },
      timeoutMs,
      "a scheduler leader",
    );
    return found as Replica;
  }

  /** The command a job runs to record each run of it in `runsFile`, then `then`. */
  markerCommand(then = "true"): string[] {
    return ["sh", "-c", `echo "$CRMS_JOB_ID $CRMS_ATTEMPT $CRMS_WORKER $$" >> ${this.runsFile}; ${then}`];
  }

  private runsText(): string {
    try {
      return readFileSync(this.runsFile, "utf8");
    } catch {
      return ""; // nothing ran yet
    }
  }

  /** Runs recorded per job id. */
  runs(): Map<string, string[]> {
    const runs = new Map<string, string[]>();
    for (const line of this.runsText().split("\n")) {
      const [id, attempt, worker] = line.split(" ");
      if (!id) continue;
      runs.set(id, [...(runs.get(id) ?? []), `${attempt}@${worker}`]);
    }
    return runs;
  }

  /** Every job record, through any replica. */
  async allJobs(): Promise<Job[]> {
    const out: Job[] = [];
    for await (const j of this.client().jobs({}, { timeoutMs: 30_000 })) out.push(j);
    return out;
  }

  async stop(): Promise<void> {
    for (const c of this.clients) c.close();
    for (const r of this.replicas) r.client.close();
    const all = [...this.workers, ...this.replicas];
    for (const p of all) {
      p.signal("SIGCONT");
      p.signal("SIGTERM");
    }
    await Promise.race([Promise.all(all.map((p) => p.exited)), sleep(10_000)]);
    for (const p of all) p.signal("SIGKILL");
    // Runs orphaned by killed or stopped workers.
    for (const line of this.runsText().split("\n")) {
      const pid = Number(line.split(" ")[3]);
      if (pid > 0) {
        try {
          process.kill(-pid, "SIGKILL");
        } catch {
          // gone
        }
      }
    }
    await this.etcd.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Counts for a fault test's summary line. */
export interface Summary {
  faults: number;
  submitted: number;
  acknowledged: number;
  finished: number;
  lost: number;
  duplicated: number;
  /** Commands that ran to their end more than once (counted by the tests that mark ends). */
  ranTwice?: number;
}

export function summaryLine(test: string, s: Summary): string {
  const twice = s.ranTwice === undefined ? "" : ` ran_twice=${s.ranTwice}`;
  return `FAULTS ${test}: faults injected=${s.faults} submitted=${s.submitted} acknowledged=${s.acknowledged} finished=${s.finished} lost=${s.lost} duplicated=${s.duplicated}${twice}`;
}

export const isFinished = (j: Job | undefined) => j?.state === JobState.SUCCEEDED;

/**
 * Checks acknowledged jobs against etcd's records and the runs file: each
 * acknowledged request id must name exactly one job that SUCCEEDED exactly
 * once. `lost` counts acknowledged jobs missing or not SUCCEEDED; `duplicated`
 * counts jobs with two job records for one request id, two runs of one
 * attempt, or more than one SUCCEEDED attempt.
 */
export async function account(
  cluster: FaultCluster,
  acknowledged: Map<string, string>,
): Promise<{ finished: number; lost: number; duplicated: number; jobs: Map<string, Job>; problems: string[] }> {
  const jobs = await cluster.allJobs();
  const byRequest = new Map<string, Job[]>();
  for (const j of jobs) byRequest.set(j.requestId, [...(byRequest.get(j.requestId) ?? []), j]);
  const runs = cluster.runs();
  const byId = new Map(jobs.map((j) => [j.id, j]));
  const problems: string[] = [];
  let finished = 0;
  let lost = 0;
  let duplicated = 0;
  for (const [requestId, id] of acknowledged) {
    const records = byRequest.get(requestId) ?? [];
    const job = byId.get(id);
    if (!job || !isFinished(job)) {
      lost++;
      problems.push(`lost: ${id} (${job ? JobState[job.state] : "missing"})`);
      continue;
    }
    finished++;
    const attemptRuns = runs.get(id) ?? [];
    const perAttempt = new Set(attemptRuns.map((r) => r.split("@")[0]));
    const successes = job.attempts.filter((a) => a.outcome === JobState.SUCCEEDED).length;
    if (records.length !== 1 || perAttempt.size !== attemptRuns.length || successes !== 1) {
      duplicated++;
      problems.push(`duplicated: ${id} records=${records.length} runs=${attemptRuns.join(",")} successes=${successes}`);
    }
  }
  return { finished, lost, duplicated, jobs: byId, problems };
}

/**
 * A command (for a cluster's `dir`) that records its run in the runs file, and
 * marks its start ("s") and its end ("e") in a file of its own, printing around a sleep.
 */
export function markedCommand(dir: string, seconds: number): string[] {
  const mark = join(dir, "mark-$CRMS_JOB_ID");
  return [
    "sh",
    "-c",
    `echo "$CRMS_JOB_ID $CRMS_ATTEMPT $CRMS_WORKER $$" >> ${join(dir, "runs")}; echo s >> ${mark}; echo "begin $CRMS_JOB_ID"; sleep ${seconds}; echo "end $CRMS_JOB_ID"; echo e >> ${mark}`,
  ];
}

/** What each job's mark file holds ("se" per run that ran to its end). */
export function marks(dir: string, ids: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const id of ids) {
    let text = "";
    try {
      text = readFileSync(join(dir, `mark-${id}`), "utf8");
    } catch {
      // never ran
    }
    out.set(id, text.replace(/\n/g, ""));
  }
  return out;
}
