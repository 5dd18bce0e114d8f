/**
 * The store: the only code that talks to etcd about crms records. Every state
 * change is one compare-and-put on the record's mod revision, sent through the
 * group-commit batcher; reads come from list+watch caches.
 */
import { create, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ConsecutiveBreaker, circuitBreaker, handleWhen, noop, retry } from "cockatiel";
import {
  Etcd3,
  EtcdLeaseInvalidError,
  GRPCDeadlineExceededError,
  GRPCUnavailableError,
  type IOptions,
  type Lease,
} from "etcd3";
import { type Job, JobSchema, type JobSpec, JobState } from "../../gen/crms/v1/job_pb.js";
import { type Worker, WorkerSchema } from "../../gen/crms/v1/worker_pb.js";
import { CrmsError, notFound } from "../errors.js";
import { compareIds } from "../ids.js";
import { Batcher, type Compare, MAX_TXN_OPS, type Write } from "./batcher.js";
import { type Entry, PrefixCache } from "./cache.js";
import { holdableJobs, OverCapacity } from "./capacity.js";
import { decode, encode } from "./codec.js";
import { EtcdHealth, notReachable } from "./health.js";
import { registerInternals } from "./internals.js";
import { JobIndex } from "./job-index.js";
import { Keys } from "./keys.js";
import { QueueRecords } from "./queues.js";
import { TokenRecords } from "./tokens.js";

/** TLS and password auth towards etcd (etcd3's `credentials` and `auth` options). */
export type EtcdSecurity = Partial<Pick<IOptions, "credentials" | "auth">>;

/** What others may see of the group-commit batcher: its counters, its `txn` events and whether it is busy, not `commit`. */
export type BatcherView = Pick<Batcher, "stats" | "events" | "busy">;

/**
 * A new job placed in its own create (the scheduler's, when it leads and the
 * job is the next it would place): the assigned record written instead of the
 * pending one, compares that must hold with it (the leader's fence), and
 * `settle`, told whether that record was written (else the job is created
 * pending and placed by a pass).
 */
export interface CreatePlacement {
  job: Job;
  compares: Compare[];
  settle(written: boolean): void;
}

/** How to reach etcd and where crms keeps its keys. */
export interface StoreOptions {
  /** etcd client URLs, e.g. ["http://127.0.0.1:2379"]. */
  endpoints: string[];
  /** Key prefix, default "crms/". */
  prefix?: string;
  /** This replica's id (unique per process). */
  replicaId: string;
  /** TTL of the replica lease in seconds (default 10). */
  leaseTtl?: number;
  /** TLS and auth towards etcd. */
  etcd?: EtcdSecurity;
  /** Job records this replica can load (default from the heap limit): with more in etcd, open() throws OverCapacity. */
  holdableJobs?: number;
}

/**
 * What a mutation returns: the new value, or undefined for "no change".
 * `current` is the cached record itself (not a copy): a mutation must build a
 * new object (spread, or `transition()`), never modify `current` in place.
 */
export type Mutation<T> = (current: Readonly<T>) => T | undefined;

/** One decision of the compare-and-put loop: an answer without writing, or writes and what to do once they commit. */
type Step<R> = { done: R } | { writes: Write[]; commit: (revision: number) => R };

const MAX_UPDATE_TRIES = 60;

/** Only a member that cannot be reached counts against it: a full etcd (NOSPACE)
 * must not open etcd3's default circuit breaker, or reads would fail too. */
function isUnreachable(err: Error): boolean {
  return err instanceof GRPCUnavailableError || err instanceof GRPCDeadlineExceededError;
}

/**
 * etcd3's fault handling. A breaker per member steers calls to the other
 * members while one is down; with a single member there is nowhere to steer,
 * and an open breaker only turned a stall into seconds of refusals after etcd
 * returned, so it is off (crms's own health check answers writes fast instead).
 */
function faultHandling(members: number): IOptions["faultHandling"] {
  return {
    host: () =>
      members > 1
        ? circuitBreaker(handleWhen(isUnreachable), { halfOpenAfter: 1000, breaker: new ConsecutiveBreaker(3) })
        : noop,
    global: retry(handleWhen(isUnreachable), { maxAttempts: 2 }),
  };
}

/** The etcd client of a store (or of a read-only view of one). */
function connect(options: StoreOptions): Etcd3 {
  return new Etcd3({
    hosts: options.endpoints,
    dialTimeout: 5000,
    faultHandling: faultHandling(options.endpoints.length),
    defaultCallOptions: (ctx) => ({ deadline: Date.now() + (ctx.isStream ? 365 * 86400_000 : 10_000) }),
    grpcOptions: { "grpc.max_receive_message_length": 64 * 1024 * 1024 },
    ...options.etcd,
  });
}

/** After a few lost races, wait a little (jittered) so contending replicas do not livelock. */
function backoff(attempt: number): Promise<void> | undefined {
  if (attempt < 3) return undefined;
  return new Promise((r) => setTimeout(r, Math.random() * Math.min(50, 2 * attempt)));
}
const ID_BLOCK = 1000;

/**
 * The store. Its etcd client, key schema and batcher are private: other code
 * reads and writes crms records through its methods and caches (the store's
 * own election, maintenance and status modules reach them by `internals`).
 */
export class Store {
  readonly #etcd: Etcd3;
  readonly #keys: Keys;
  readonly #batcher: Batcher;
  /** The batcher's counters and Txn events, for /metrics and benchmarks. */
  readonly batcher: BatcherView;
  /** The API token records (a watched copy, and etcd for changes). */
  readonly tokens: TokenRecords;
  readonly queues: QueueRecords;
  readonly jobs: PrefixCache<Job>;
  readonly workers: PrefixCache<Worker>;
  readonly jobIndex: JobIndex;
  readonly replicaId: string;
  private lease!: Lease;
  private leaseIdValue = "0";
  private idNext = 0;
  private idEnd = 0;
  private idReserving?: Promise<void>;
  /** Called after the replica lease was lost and a new one granted. */
  onLeaseRenewed?: () => void;
  /** Whether etcd answers; guards every write. */
  readonly health: EtcdHealth;

  private constructor(private readonly options: StoreOptions) {
    this.#etcd = connect(options);
    this.#keys = new Keys(options.prefix ?? "crms/");
    this.replicaId = options.replicaId;
    this.#batcher = new Batcher(this.#etcd);
    this.batcher = this.#batcher;
    this.health = new EtcdHealth((timeoutMs) =>
      this.#etcd.kv.range(
        { key: Buffer.from(this.#keys.idseq), count_only: true },
        { deadline: Date.now() + timeoutMs },
      ),
    );
    this.#batcher.guard = (fn) => this.health.guard(fn);
    this.#batcher.blocked = () =>
      this.health.reachable ? undefined : notReachable(this.health.last?.lostAt ?? new Date());
    this.health.on("restored", () => void this.checkLease());
    // Pending jobs (the backlog) are kept encoded: about 0.1 KB each instead of 2.5 KB.
    this.jobs = new PrefixCache(
      this.#etcd,
      this.#keys.jobs,
      (b) => decode(JobSchema, b),
      {
        keep: (job) => job.state === JobState.PENDING,
        encode: (job) => encode(JobSchema, job),
        hot: 8192,
      },
      // Job ids are decimal numbers: a large list is split by digit.
      { alphabet: "0123456789" },
    );
    this.workers = new PrefixCache(this.#etcd, this.#keys.workers, (b) => decode(WorkerSchema, b));
    this.jobIndex = new JobIndex(this.jobs);
    this.tokens = new TokenRecords(this.#etcd, this.#keys);
    this.queues = new QueueRecords(this.#etcd, this.#keys);
    registerInternals(this, {
      etcd: this.#etcd,
      keys: this.#keys,
      batcher: this.#batcher,
      memberClient: (endpoint) => this.#memberClient(endpoint),
    });
  }

  /**
   * Connects, grants the replica lease and fills the caches. `beforeLoad`
   * runs before the caches fill, for indexes that should follow the load's
   * events instead of reading every record again afterwards.
   */
  static async open(options: StoreOptions, beforeLoad?: (store: Store) => void): Promise<Store> {
    const store = new Store(options);
    try {
      // Counted before anything is loaded (or this replica announced): a set too large for the
      // heap is refused with the figures instead of ending the process out of memory mid-load.
      const records = Number(await store.#etcd.getAll().prefix(store.#keys.jobs).count());
      const holdable = options.holdableJobs ?? holdableJobs();
      if (records > holdable) throw new OverCapacity(records, holdable);
    } catch (err) {
      store.#etcd.close();
      throw err;
    }
    beforeLoad?.(store);
    try {
      await store.grantLease();
      await Promise.all([store.jobs.start(), store.workers.start(), store.tokens.start(), store.queues.start()]);
      store.health.start();
      // The keep-alive may miss a revoked lease (etcd3's known weak spot): ask etcd now and then.
      store.leaseCheck = setInterval(() => {
        if (store.health.reachable) void store.checkLease();
      }, 5000);
      store.leaseCheck.unref();
    } catch (err) {
      store.#etcd.close();
      throw err;
    }
    return store;
  }

  /** The id of the replica lease, to bind worker records to. */
  get leaseId(): string {
    return this.leaseIdValue;
  }

  private async grantLease(): Promise<void> {
    const lease = this.#etcd.lease(this.options.leaseTtl ?? 10);
    this.leaseIdValue = await lease.grant();
    this.lease = lease;
    await this.#etcd.put(this.#keys.replica(this.replicaId)).value(this.replicaId).lease(this.leaseIdValue).exec();
    lease.on("lost", () => {
      if (this.closed) return;
      void this.renewLease();
    });
  }

  private renewing?: Promise<void>;
  private leaseCheck?: NodeJS.Timeout;

  /** Grants a new replica lease (once, however many callers noticed the loss), retrying until etcd answers. */
  private renewLease(): Promise<void> {
    this.renewing ??= (async () => {
      this.lease.release();
      for (let delay = 200; !this.closed; delay = Math.min(delay * 2, 2000)) {
        // A grant sent into a stalled etcd would only be answered (or leak) when it returns.
        if (!this.health.reachable) {
          await new Promise((r) => this.health.once("restored", r));
          continue;
        }
        try {
          await this.grantLease();
          const outage = this.health.last;
          // The loss belongs to the outage in progress or just ended (keep-alive answers come late).
          if (outage && (!outage.restoredAt || Date.now() - outage.restoredAt.getTime() < 60_000))
            outage.leaseRenewed = true;
          this.onLeaseRenewed?.();
          return;
        } catch {
          await new Promise((r) => setTimeout(r, delay));
        }
      }
    })().finally(() => (this.renewing = undefined));
    return this.renewing;
  }

  /**
   * Asks etcd whether the replica lease still exists (a lease can be revoked
   * while etcd stalled without the keep-alive noticing); grants a new one if not.
   */
  async checkLease(): Promise<void> {
    if (this.closed || this.renewing) return;
    try {
      const res = await this.#etcd.leaseClient.leaseTimeToLive({ ID: this.leaseIdValue });
      if (Number(res.TTL) > 0) return;
    } catch (err) {
      if (!(err instanceof EtcdLeaseInvalidError)) return; // etcd away again: the next return checks
    }
    await this.renewLease();
  }

  /** A write named a lease etcd no longer has: the replica lease is gone. */
  private leaseGone(err: unknown): void {
    if (err instanceof EtcdLeaseInvalidError || /requested lease not found/.test(String(err))) void this.renewLease();
  }

  private closed = false;
  private members = new Map<string, Etcd3>();

  /** A client bound to one member, for per-member maintenance (status, defragment). */
  #memberClient(endpoint: string): Etcd3 {
    let client = this.members.get(endpoint);
    if (!client) {
      client = new Etcd3({ ...this.options.etcd, hosts: [endpoint], dialTimeout: 3000 });
      this.members.set(endpoint, client);
    }
    return client;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.health.stop();
    clearInterval(this.leaseCheck);
    for (const c of this.members.values()) c.close();
    await Promise.all([this.jobs.close(), this.workers.close(), this.tokens.close(), this.queues.close()]);
    await this.lease?.revoke().catch(() => undefined);
    this.#etcd.close();
  }

  // ---- ids ----

  private async reserveIds(): Promise<void> {
    for (let i = 0; i < MAX_UPDATE_TRIES; i++) {
      const res = await this.health.guard(() => this.#etcd.kv.range({ key: Buffer.from(this.#keys.idseq) }));
      const kv = res.kvs[0];
      const start = kv ? Number(kv.value.toString()) : 1;
      const mod = kv ? Number(kv.mod_revision) : 0;
      const out = await this.#batcher.commit(
        [{ key: this.#keys.idseq, target: "mod", revision: mod }],
        [{ type: "put", key: this.#keys.idseq, value: Buffer.from(String(start + ID_BLOCK)) }],
      );
      if (out.ok) {
        this.idNext = start;
        this.idEnd = start + ID_BLOCK;
        return;
      }
    }
    throw new CrmsError("UNAVAILABLE", "could not reserve job ids: too much contention");
  }

  /** A new job id, unique across replicas and increasing within this one. */
  async nextId(): Promise<string> {
    while (this.idNext >= this.idEnd) {
      if (!this.idReserving) this.idReserving = this.reserveIds().finally(() => (this.idReserving = undefined));
      await this.idReserving;
    }
    return String(this.idNext++);
  }

  // ---- jobs ----

  /**
   * Creates a job. With a request id, a second create with the same id
   * returns the first job instead (idempotent submit; the id it drew is skipped).
   */
  async createJob(
    spec: JobSpec,
    requestId: string,
    check?: (id: string) => void,
    /** Who submitted it and its queue (Job.user, Job.queue). */
    owner?: { user: string; queue: string },
    /** The scheduler's placement of the new record, when it can place it at once (see CreatePlacement). */
    place?: (job: Job) => CreatePlacement | undefined,
  ): Promise<{ job: Job; existing: boolean }> {
    // No read first: the request id key's create compare decides, and only a
    // repeated request id (a retry) pays for looking up the first job.
    const id = await this.nextId();
    check?.(id);
    const job = create(JobSchema, {
      id,
      spec,
      state: spec.hold ? JobState.HELD : JobState.PENDING,
      submitTime: timestampFromDate(new Date()),
      requestId,
      user: owner?.user ?? "",
      queue: owner?.queue ?? "",
    });
    const write = async (record: Job, fence: Compare[]) => {
      const compares: Compare[] = [{ key: this.#keys.job(id), target: "create", revision: 0 }, ...fence];
      const bytes = encode(JobSchema, record);
      const writes: Write[] = [{ type: "put", key: this.#keys.job(id), value: bytes }];
      if (requestId) {
        compares.push({ key: this.#keys.reqid(requestId), target: "create", revision: 0 });
        writes.push({ type: "put", key: this.#keys.reqid(requestId), value: Buffer.from(id) });
      }
      const out = await this.#batcher.commit(compares, writes);
      // With its encoding: a pending record is cached encoded, and is not encoded a second time.
      if (out.ok) this.jobs.apply(id, { value: record, mod: out.revision, create: out.revision, lease: "0" }, bytes);
      return out.ok;
    };
    const placed = place?.(job);
    if (placed) {
      let ok = false;
      try {
        ok = await write(placed.job, placed.compares);
      } finally {
        placed.settle(ok);
      }
      if (ok) return { job: placed.job, existing: false };
      // The fence failed (no longer the leader) or the request id is taken: create it as it came.
    }
    if (await write(job, [])) return { job, existing: false };
    const known = requestId ? await this.jobByRequestId(requestId) : undefined;
    if (known) return { job: known, existing: true };
    throw new CrmsError("ABORTED", `job ${id} could not be created; retry`);
  }

  /**
   * Writes new job records and the changed record of their creator (an array
   * parent) in one Txn that holds only if the creator is unchanged since `mod`
   * and the fence holds. False when a compare failed (nothing was written).
   */
  async createJobsWith(creator: Job, mod: number, jobs: Job[], fence: Compare[]): Promise<boolean> {
    const key = this.#keys.job(creator.id);
    const compares: Compare[] = [{ key, target: "mod", revision: mod }, ...fence];
    const writes: Write[] = [{ type: "put", key, value: encode(JobSchema, creator) }];
    const encoded = jobs.map((job) => encode(JobSchema, job));
    jobs.forEach((job, i) => {
      compares.push({ key: this.#keys.job(job.id), target: "create", revision: 0 });
      writes.push({ type: "put", key: this.#keys.job(job.id), value: encoded[i] as Buffer });
    });
    const out = await this.#batcher.commit(compares, writes);
    if (!out.ok) return false;
    const entry = this.jobs.entries.get(creator.id);
    this.jobs.apply(creator.id, {
      value: creator,
      mod: out.revision,
      create: entry?.create ?? out.revision,
      lease: "0",
    });
    jobs.forEach((job, i) => {
      this.jobs.apply(job.id, { value: job, mod: out.revision, create: out.revision, lease: "0" }, encoded[i]);
    });
    return true;
  }

  /** The job a request id created, if any (read from etcd). */
  async jobByRequestId(requestId: string): Promise<Job | undefined> {
    const res = await this.health.guard(() => this.#etcd.kv.range({ key: Buffer.from(this.#keys.reqid(requestId)) }));
    const kv = res.kvs[0];
    if (!kv) return undefined;
    return (await this.fetchJob(kv.value.toString()))?.value;
  }

  /** The cached job, or undefined. */
  job(id: string): Job | undefined {
    return this.jobs.entries.get(id)?.value;
  }

  /** Reads a job from etcd (linearizable), bypassing the cache. */
  fetchJob(id: string): Promise<Entry<Job> | undefined> {
    return this.readEntry(this.jobs, id, this.#keys.job(id), JobSchema);
  }

  /**
   * Changes a job with compare-and-put on its mod revision, retrying on a
   * conflict with the fresh record (the mutation runs again on it). Extra
   * compares (a leader's fencing token) must hold too, or ABORTED is thrown.
   */
  updateJob(id: string, mutate: Mutation<Job>, fence: Compare[] = []): Promise<Job> {
    return this.serialized(`job/${id}`, () => this.tryUpdateJob(id, mutate, fence));
  }

  private locks = new Map<string, Promise<unknown>>();

  /** Runs updates of one record one after another in this process, so they never race each other. */
  private serialized<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.locks.set(key, tail);
    void tail.then(() => {
      if (this.locks.get(key) === tail) this.locks.delete(key);
    });
    return next;
  }

  private tryUpdateJob(id: string, mutate: Mutation<Job>, fence: Compare[]): Promise<Job> {
    const key = this.#keys.job(id);
    return this.guaranteedUpdate(this.jobs, id, key, JobSchema, fence, `job ${id}`, "update", (entry): Step<Job> => {
      if (!entry) throw notFound(`job ${id} not found`);
      const next = mutate(entry.value);
      if (!next) return { done: entry.value };
      const bytes = encode(JobSchema, next);
      return {
        writes: [{ type: "put", key, value: bytes }],
        commit: (revision) => {
          this.jobs.apply(id, { value: next, mod: revision, create: entry.create, lease: "0" }, bytes);
          return next;
        },
      };
    });
  }

  /** Deletes a job (and its request id) if `check` accepts the current record. */
  deleteJob(id: string, check: (job: Job) => void): Promise<void> {
    const key = this.#keys.job(id);
    return this.guaranteedUpdate(this.jobs, id, key, JobSchema, [], `job ${id}`, "delete", (entry) => {
      if (!entry) throw notFound(`job ${id} not found`);
      check(entry.value);
      const writes: Write[] = [{ type: "delete", key }];
      if (entry.value.requestId) writes.push({ type: "delete", key: this.#keys.reqid(entry.value.requestId) });
      return { writes, commit: (revision) => this.jobs.applyDelete(id, revision) };
    });
  }

  /**
   * The one compare-and-put loop (Kubernetes' GuaranteedUpdate): `step` decides
   * on the record as this replica has it; the write compares its mod revision
   * (and the fence). A failed compare goes again on the record etcd returned.
   * A step that refuses (throws) or changes nothing on the cached record is not
   * trusted either: the cache may lag, so the record is re-read from etcd and,
   * if it differs, the step runs again on it. Bounded by MAX_UPDATE_TRIES.
   */
  private async guaranteedUpdate<D extends DescMessage, R>(
    cache: PrefixCache<MessageShape<D>>,
    name: string,
    key: string,
    schema: D,
    fence: Compare[],
    what: string,
    verb: string,
    step: (entry: Entry<MessageShape<D>> | undefined) => Step<R>,
  ): Promise<R> {
    let entry = cache.entries.get(name);
    let fresh = false;
    const reread = async (): Promise<boolean> => {
      const current = await this.readEntry(cache, name, key, schema);
      fresh = true;
      if ((current?.mod ?? 0) === (entry?.mod ?? 0)) return false;
      entry = current;
      return true;
    };
    for (let i = 0; i < MAX_UPDATE_TRIES; i++) {
      let next: Step<R>;
      try {
        next = step(entry);
      } catch (err) {
        if (!fresh && (await reread())) continue;
        throw err;
      }
      if ("done" in next) {
        if (!fresh && (await reread())) continue;
        return next.done;
      }
      const out = await this.#batcher.commit(
        [{ key, target: "mod", revision: entry?.mod ?? 0 }, ...fence],
        next.writes,
      );
      if (out.ok) return next.commit(out.revision);
      for (const f of fence) {
        const s = out.current.get(f.key);
        if ((f.target === "mod" ? (s?.mod ?? 0) : (s?.create ?? 0)) !== f.revision) {
          throw new CrmsError("ABORTED", `fencing check on ${f.key} failed: no longer allowed to write`);
        }
      }
      const s = out.current.get(key);
      entry = s ? { value: decode(schema, s.value), mod: s.mod, create: s.create, lease: s.lease } : undefined;
      fresh = true;
      if (entry) cache.apply(name, entry);
      await backoff(i);
    }
    throw new CrmsError("ABORTED", `${what} changed too often to ${verb}; retry`);
  }

  /** Reads one record from etcd (linearizable) into its cache. */
  private async readEntry<D extends DescMessage>(
    cache: PrefixCache<MessageShape<D>>,
    name: string,
    key: string,
    schema: D,
  ): Promise<Entry<MessageShape<D>> | undefined> {
    const res = await this.health.guard(() => this.#etcd.kv.range({ key: Buffer.from(key) }));
    const kv = res.kvs[0];
    if (!kv) return undefined;
    const entry = {
      value: decode(schema, kv.value),
      mod: Number(kv.mod_revision),
      create: Number(kv.create_revision),
      lease: String(kv.lease),
    };
    cache.apply(name, entry);
    return entry;
  }

  // ---- workers ----

  /** The cached worker record, or undefined. */
  worker(name: string): Worker | undefined {
    return this.workers.entries.get(name)?.value;
  }

  /**
   * Creates or changes a worker record with compare-and-put. A new record is
   * bound to this replica's lease; a changed one keeps the lease it has unless
   * `rebind` is set (a new stream attached here).
   */
  async updateWorker(
    name: string,
    mutate: (w: Readonly<Worker> | undefined) => Worker | undefined,
    rebind = false,
  ): Promise<Worker | undefined> {
    return this.writeWorker(name, mutate, (entry) => (!entry || rebind ? this.leaseId : entry.lease));
  }

  /**
   * Creates or changes a worker record bound to no lease (a DOWN record, kept
   * whatever happens to the replicas), with compare-and-put; extra compares
   * (the leader's fence) must hold too, or ABORTED is thrown.
   */
  updateWorkerUnbound(
    name: string,
    mutate: (w: Readonly<Worker> | undefined) => Worker | undefined,
    fence: Compare[] = [],
  ): Promise<Worker | undefined> {
    return this.writeWorker(name, mutate, () => "0", fence);
  }

  private async writeWorker(
    name: string,
    mutate: (w: Readonly<Worker> | undefined) => Worker | undefined,
    leaseOf: (entry: Entry<Worker> | undefined) => string,
    fence: Compare[] = [],
  ): Promise<Worker | undefined> {
    const key = this.#keys.worker(name);
    // Not with a lease known to be gone: wait for its successor (granted once etcd answers).
    if (this.renewing) {
      if (!this.health.reachable) throw notReachable(this.health.last?.lostAt ?? new Date());
      await this.renewing;
    }
    const written = this.guaranteedUpdate(
      this.workers,
      name,
      key,
      WorkerSchema,
      fence,
      `worker ${name}`,
      "update",
      (entry) => {
        const next = mutate(entry?.value);
        if (!next) return { done: entry?.value };
        const lease = leaseOf(entry);
        return {
          writes: [{ type: "put", key, value: encode(WorkerSchema, next), lease }],
          commit: (revision) => {
            this.workers.apply(name, { value: next, mod: revision, create: entry?.create ?? revision, lease });
            return next;
          },
        };
      },
    );
    return written.catch((err) => {
      this.leaseGone(err);
      throw err;
    });
  }

  /** Deletes a worker record if it still has the mod revision `mod`. */
  async deleteWorker(name: string, mod: number): Promise<boolean> {
    const key = this.#keys.worker(name);
    const out = await this.#batcher.commit([{ key, target: "mod", revision: mod }], [{ type: "delete", key }]);
    if (out.ok) this.workers.applyDelete(name, out.revision);
    return out.ok;
  }

  /** Records that retention deleted jobs up to this id (for NOT_FOUND messages). */
  async noteExpired(id: string): Promise<void> {
    // Compare-and-put on the marker's mod revision: a concurrent lower id never overwrites a higher one.
    const key = this.#keys.expired;
    for (let i = 0; i < MAX_UPDATE_TRIES; i++) {
      const kv = (await this.#etcd.kv.range({ key: Buffer.from(key) })).kvs[0];
      if (compareIds(id, kv?.value.toString() ?? "0") <= 0) return;
      const out = await this.#batcher.commit(
        [{ key, target: "mod", revision: kv ? Number(kv.mod_revision) : 0 }],
        [{ type: "put", key, value: Buffer.from(id) }],
      );
      if (out.ok) return;
      await backoff(i);
    }
    throw new CrmsError("ABORTED", "the expired-jobs marker changed too often to update; retry");
  }

  /** True if retention has deleted jobs up to at least this id. */
  async mayHaveExpired(id: string): Promise<boolean> {
    const res = await this.#etcd.kv.range({ key: Buffer.from(this.#keys.expired) });
    const known = res.kvs[0]?.value.toString();
    return known !== undefined && compareIds(id, known) <= 0;
  }

  /** The current store revision (a cheap read). */
  async revision(): Promise<number> {
    const res = await this.#etcd.kv.range({ key: Buffer.from(this.#keys.idseq), count_only: true });
    return Number(res.header.revision);
  }

  /** Ids of the other live replicas (their lease-bound records under replicas/). */
  async otherReplicas(): Promise<string[]> {
    const ids = await this.#etcd.getAll().prefix(this.#keys.replicas).keys();
    return ids.map((k) => k.slice(this.#keys.replicas.length)).filter((id) => id !== this.replicaId);
  }
}

/**
 * What a replica over capacity (see capacity.ts) reads straight from etcd, one
 * job or one run of ids at a time, with the token records (a watched copy: they
 * are few) to check its callers against. Nothing else is loaded, nothing written.
 */
export class ReadOnlyJobs {
  readonly #etcd: Etcd3;
  readonly #keys: Keys;
  readonly tokens: TokenRecords;

  private constructor(options: StoreOptions) {
    this.#etcd = connect(options);
    this.#keys = new Keys(options.prefix ?? "crms/");
    this.tokens = new TokenRecords(this.#etcd, this.#keys);
  }

  static async open(options: StoreOptions): Promise<ReadOnlyJobs> {
    const r = new ReadOnlyJobs(options);
    try {
      await r.tokens.start();
    } catch (err) {
      r.#etcd.close();
      throw err;
    }
    return r;
  }

  /** One job record, or undefined. */
  async job(id: string): Promise<Job | undefined> {
    const kv = (await this.#etcd.kv.range({ key: Buffer.from(this.#keys.job(id)) })).kvs[0];
    return kv ? decode(JobSchema, kv.value) : undefined;
  }

  /**
   * The ids given so far: from the first retention has not deleted to the
   * last a replica may have drawn (ids are reserved in blocks, so some near
   * the end may never have been used).
   */
  async idRange(): Promise<{ first: number; last: number }> {
    const [expired, next] = await Promise.all(
      [this.#keys.expired, this.#keys.idseq].map(async (k) =>
        Number((await this.#etcd.kv.range({ key: Buffer.from(k) })).kvs[0]?.value.toString() ?? 0),
      ),
    );
    return { first: (expired ?? 0) + 1, last: (next ?? 1) - 1 };
  }

  /** The jobs with ids from `from` to `to` (at most MAX_TXN_OPS of them), read at one revision, in id order; absent ids are left out. */
  async jobsIn(from: number, to: number): Promise<Job[]> {
    const ids: string[] = [];
    for (let id = from; id <= to && ids.length < MAX_TXN_OPS; id++) ids.push(String(id));
    if (ids.length === 0) return [];
    const res = await this.#etcd.kv.txn({
      compare: [],
      success: ids.map((id) => ({ request_range: { key: Buffer.from(this.#keys.job(id)) } })),
      failure: [],
    });
    const jobs: Job[] = [];
    for (const r of res.responses) {
      const kv = r.response_range?.kvs[0];
      if (kv) jobs.push(decode(JobSchema, kv.value));
    }
    return jobs;
  }

  async close(): Promise<void> {
    await this.tokens.close();
    this.#etcd.close();
  }
}

export type { Entry };
