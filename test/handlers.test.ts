/**
 * The handlers and the call pipeline without etcd, as connect-es tests its
 * handlers: called directly with a test context, through the pipeline
 * (src/server/pipeline.ts), and through the Connect and grpc-js adapters. The
 * store is a stand-in with empty caches, so only the logic that needs no etcd
 * runs: request checks, authorization, the stream cap and error mapping.
 * The type-level checks at the end fail `tsc`, not ava, if the typing breaks.
 */
import { EventEmitter } from "node:events";
import { create, type DescService } from "@bufbuild/protobuf";
import { Code as ConnectCode, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import test, { type ExecutionContext } from "ava";
import { GRPCUnavailableError } from "etcd3";
import { AdminService } from "../gen/crms/v1/admin_pb.js";
import {
  GetJobRequestSchema,
  JobService,
  SubmitJobRequestSchema,
  WatchEventType,
  WatchJobsRequestSchema,
  type WatchJobsResponse,
} from "../gen/crms/v1/job_pb.js";
import { GetWorkerRequestSchema, WorkerService } from "../gen/crms/v1/worker_pb.js";
import { type AuthOptions, Authorizer } from "../src/auth/policy.js";
import { StreamLimiter } from "../src/auth/stream-limit.js";
import { type Code, CrmsError } from "../src/errors.js";
import type { Logger } from "../src/log.js";
import type { CallContext } from "../src/rpc/context.js";
import { serviceDefinition } from "../src/rpc/definition.js";
import type { ServiceHandlers } from "../src/rpc/handlers.js";
import { addService, grpcStatuses } from "../src/server/grpc.js";
import { type Arrival, type CallRules, streamCall, unaryCall } from "../src/server/pipeline.js";
import type { ServiceDeps } from "../src/services/context.js";
import { createJobService } from "../src/services/job-service.js";
import type { Sessions } from "../src/services/sessions/index.js";
import { createWorkerService } from "../src/services/worker-service.js";
import type { Store } from "../src/store/store.js";
import { adaptService, connectCodes, toConnectError } from "../src/web/connect.js";

type Line = { level: string; msg: string; fields?: Record<string, unknown> };

/** A logger that keeps its lines, to check what the pipeline logs. */
function recorder(): { log: Logger; lines: Line[] } {
  const lines: Line[] = [];
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>) => lines.push({ level, msg, fields });
  return { log: { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") }, lines };
}

/** A store with empty caches and no etcd behind it: enough for checks that come before any read. */
function stubDeps(log: Logger): ServiceDeps {
  const cache = () => Object.assign(new EventEmitter(), { entries: new Map(), revision: 7 });
  const store = { jobs: cache(), workers: cache(), job: () => undefined, worker: () => undefined };
  return {
    store: store as unknown as Store,
    election: undefined as never,
    log,
    options: { heartbeatSeconds: 5, killGraceSeconds: 10, quotaBytes: 2 ** 31, tailBytes: 2048 },
  };
}

function services(log: Logger) {
  const deps = stubDeps(log);
  const sessions = {} as Sessions;
  return { jobs: createJobService(deps, sessions), workers: createWorkerService(deps, sessions) };
}

/** A test context (connect-es's createHandlerContext, for crms's CallContext), with its abort. */
function arrival(token?: string, peer = "ipv4:127.0.0.1:40000"): Arrival & { abort(): void } {
  const controller = new AbortController();
  return {
    signal: controller.signal,
    metadata: token ? { authorization: `Bearer ${token}` } : {},
    peer,
    abort: () => controller.abort(new Error("client went away")),
  };
}

/** Tokens by secret, as the token store's lookup gives them (hashing is the store's business, not this test's). */
const TOKENS: Record<string, { name: string; role: string; worker?: string }> = {
  "reader-secret": { name: "rita", role: "reader" },
  "submitter-secret": { name: "sam", role: "submitter" },
};

function authorizer(): Authorizer {
  const tokens = { size: Object.keys(TOKENS).length, lookup: (secret: string) => TOKENS[secret] };
  return new Authorizer({ tokens: tokens as unknown as AuthOptions["tokens"], exposed: true });
}

function rulesWith(log: Logger, streams?: StreamLimiter): CallRules {
  const auth = authorizer();
  return { log, authorize: (method, metadata) => auth.check(method, metadata), streams };
}

async function refused(t: ExecutionContext, p: Promise<unknown>, code: Code, message?: RegExp): Promise<CrmsError> {
  const err = await t.throwsAsync(p, { instanceOf: CrmsError });
  t.is(err?.code, code, err?.message);
  if (message) t.regex(err?.message ?? "", message);
  return err as CrmsError;
}

const ctx = (): CallContext => arrival();

test("handlers called directly refuse bad requests with INVALID_ARGUMENT before reading the store", async (t) => {
  const { jobs, workers } = services(recorder().log);
  await refused(t, jobs.submitJob(create(SubmitJobRequestSchema, {}), ctx()), "INVALID_ARGUMENT", /spec is required/);
  const empty = create(SubmitJobRequestSchema, { spec: { command: [] } });
  await refused(t, jobs.submitJob(empty, ctx()), "INVALID_ARGUMENT", /command is empty/);
  await refused(t, jobs.getJob(create(GetJobRequestSchema, { id: "abc" })), "INVALID_ARGUMENT");
  const badName = create(GetWorkerRequestSchema, { name: "../etc" });
  await refused(t, workers.getWorker(badName), "INVALID_ARGUMENT", /worker name/);
  const tooMany = create(WatchJobsRequestSchema, { ids: Array.from({ length: 10_001 }, (_, i) => String(i + 1)) });
  t.throws(() => jobs.watchJobs(tooMany, ctx()), { instanceOf: CrmsError });
});

test("the pipeline authorizes a call before its handler runs, and gives the handler the caller", async (t) => {
  const { log } = recorder();
  const rules = rulesWith(log);
  let calls = 0;
  const handler = async (c: CallContext) => {
    calls++;
    return c.identity;
  };
  await refused(t, unaryCall(rules, "JobService.GetJob", arrival(), handler), "UNAUTHENTICATED", /bearer token/);
  await refused(t, unaryCall(rules, "JobService.GetJob", arrival("nope"), handler), "UNAUTHENTICATED", /not valid/);
  const submit = unaryCall(rules, "JobService.SubmitJob", arrival("reader-secret"), handler);
  await refused(t, submit, "PERMISSION_DENIED", /role reader \(token rita\) may not call JobService.SubmitJob/);
  t.is(calls, 0);
  t.deepEqual(await unaryCall(rules, "JobService.GetJob", arrival("reader-secret"), handler), {
    name: "rita",
    role: "reader",
  });
  t.is(calls, 1);
  // Streams too, before the handler opens anything.
  const watch = streamCall(rules, "JobService.WatchJobs", arrival(), () => {
    calls++;
    return (async function* () {})();
  });
  await refused(t, watch.next(), "UNAUTHENTICATED");
  t.is(calls, 1);
});

test("the stream cap counts a client's open streams and gives them back when they end or the client goes", async (t) => {
  const { log } = recorder();
  const streams = new StreamLimiter(2);
  const rules = rulesWith(log, streams);
  const { jobs } = services(log);
  const watch = (a: Arrival) =>
    streamCall(rules, "JobService.WatchJobs", a, (c) => jobs.watchJobs(create(WatchJobsRequestSchema, {}), c));
  const first = watch(arrival("reader-secret"));
  const second = arrival("reader-secret");
  const secondWatch = watch(second);
  t.is(((await first.next()).value as WatchJobsResponse).type, WatchEventType.SYNCED);
  t.is(((await secondWatch.next()).value as WatchJobsResponse).type, WatchEventType.SYNCED);
  t.is(streams.count("token:rita"), 2);
  await refused(t, watch(arrival("reader-secret")).next(), "RESOURCE_EXHAUSTED", /token rita already holds 2/);
  // Another client (a connection without a token would be counted by its address) is not affected.
  const other = watch(arrival("submitter-secret"));
  await other.next();
  t.is(streams.count("token:sam"), 1);
  // Ended by the server side (the iterator closed) or by the client going away: given back.
  await first.return(undefined);
  t.is(streams.count("token:rita"), 1);
  second.abort();
  t.is(streams.count("token:rita"), 0);
  t.deepEqual(await secondWatch.next(), { done: true, value: undefined });
  // A worker's Attach stream never counts.
  const attach = streamCall(rules, "WorkerService.Attach", arrival("reader-secret"), async function* () {
    yield 1;
  });
  await refused(t, attach.next(), "PERMISSION_DENIED");
  const open = streamCall({ log, streams }, "WorkerService.Attach", arrival(), async function* () {
    yield 1;
  });
  await open.next();
  t.is(streams.total(), 1);
  await other.return(undefined);
  t.is(streams.total(), 0);
});

test("the pipeline maps what handlers throw to crms codes, logging INTERNAL ones once with the method", async (t) => {
  const { log, lines } = recorder();
  const rules: CallRules = { log };
  const notFound = new CrmsError("NOT_FOUND", "job 9 not found");
  t.is(
    await t.throwsAsync(
      unaryCall(rules, "JobService.GetJob", arrival(), async () => {
        throw notFound;
      }),
    ),
    notFound,
  );
  await refused(
    t,
    unaryCall(rules, "JobService.ListJobs", arrival(), async () => {
      throw new GRPCUnavailableError("14 UNAVAILABLE: connection refused");
    }),
    "UNAVAILABLE",
    /^etcd is not available$/,
  );
  t.deepEqual(lines, []);
  const boom = await refused(
    t,
    unaryCall(rules, "JobService.GetJob", arrival(), async () => {
      throw new TypeError("x is undefined");
    }),
    "INTERNAL",
    /x is undefined/,
  );
  t.is(lines.length, 1);
  t.like(lines[0], { level: "error", msg: "internal error", fields: { method: "JobService.GetJob" } });
  t.regex(String(lines[0]?.fields?.error), /TypeError: x is undefined/);
  // A stream fails after what it sent, with the mapped error.
  const stream = streamCall(rules, "JobService.StreamOutput", arrival(), async function* () {
    yield "first";
    throw new Error("lost");
  });
  t.deepEqual(await stream.next(), { done: false, value: "first" });
  await refused(t, stream.next(), "INTERNAL", /lost/);
  t.is(lines.length, 2);
  // The transports' edges map the pipeline's errors again without logging them again.
  const connectErr = toConnectError(boom, log, "JobService.GetJob");
  t.is(connectErr.code, ConnectCode.Internal);
  t.is(connectErr.rawMessage, "x is undefined");
  t.is(toConnectError(notFound, log, "JobService.GetJob").code, ConnectCode.NotFound);
  t.is(lines.length, 2);
});

test("each transport has a status for every crms code, with gRPC's numbers", (t) => {
  const codes = Object.keys(grpcStatuses) as Code[];
  t.is(codes.length, 12);
  t.deepEqual(Object.keys(connectCodes).sort(), [...codes].sort());
  for (const c of codes) {
    t.is(grpcStatuses[c], grpc.status[c], c);
    // Connect's codes are gRPC's numbers (Connect has no OK).
    t.is(connectCodes[c] as number, grpc.status[c] as number, c);
  }
});

test("the Connect adapter runs handlers through the pipeline (in memory, as connect-es tests routers)", async (t) => {
  const { log } = recorder();
  const streams = new StreamLimiter(1);
  const rules = rulesWith(log, streams);
  const { jobs } = services(log);
  const transport = createRouterTransport((router) => {
    router.service(JobService, adaptService(JobService, jobs, log, rules.authorize, streams));
  });
  const client = createClient(JobService, transport);
  const headers = { authorization: "Bearer reader-secret" };
  const code = async (p: Promise<unknown>) => (await t.throwsAsync(p, { instanceOf: ConnectError }))?.code;
  t.is(await code(client.getJob({ id: "1" })), ConnectCode.Unauthenticated);
  t.is(await code(client.getJob({ id: "abc" }, { headers })), ConnectCode.InvalidArgument);
  t.is(await code(client.submitJob({ spec: { command: ["true"] } }, { headers })), ConnectCode.PermissionDenied);
  const controller = new AbortController();
  const watch = client.watchJobs({}, { headers, signal: controller.signal })[Symbol.asyncIterator]();
  t.is((await watch.next()).value?.type, WatchEventType.SYNCED);
  t.is(streams.count("token:rita"), 1);
  const over = client.watchJobs({}, { headers })[Symbol.asyncIterator]();
  t.is(await code(over.next()), ConnectCode.ResourceExhausted);
  controller.abort();
  await watch.next().catch(() => undefined);
  await new Promise((resolve) => setTimeout(resolve, 10));
  t.is(streams.count("token:rita"), 0);
});

test("the grpc-js adapter answers the pipeline's errors with their statuses", async (t) => {
  const { log } = recorder();
  const rules = rulesWith(log, new StreamLimiter(1));
  const { jobs } = services(log);
  const server = new grpc.Server();
  addService(server, JobService, jobs, log, rules.authorize, rules.streams);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  t.teardown(() => server.forceShutdown());
  const Client = grpc.makeGenericClientConstructor(serviceDefinition(JobService), "JobService");
  const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as Record<
    string,
    (...args: unknown[]) => grpc.ClientReadableStream<unknown>
  >;
  t.teardown(() => (client as unknown as grpc.Client).close());
  const md = new grpc.Metadata();
  md.set("authorization", "Bearer reader-secret");
  const unary = (method: string, req: unknown, metadata = new grpc.Metadata()) =>
    new Promise<grpc.ServiceError>((resolve, reject) =>
      client[method]?.(req, metadata, (err: grpc.ServiceError | null) =>
        err ? resolve(err) : reject(new Error("ok")),
      ),
    );
  t.like(await unary("getJob", { id: "1" }), { code: grpc.status.UNAUTHENTICATED });
  t.like(await unary("getJob", { id: "abc" }, md), { code: grpc.status.INVALID_ARGUMENT });
  t.like(await unary("submitJob", { spec: { command: ["true"] } }, md), { code: grpc.status.PERMISSION_DENIED });
  const streamError = (call: grpc.ClientReadableStream<unknown>) =>
    new Promise<grpc.ServiceError>((resolve) => {
      call.on("data", () => {});
      call.on("error", resolve);
    });
  const open = client.watchJobs?.({}, md) as grpc.ClientReadableStream<unknown>;
  open.on("error", () => {}); // CANCELLED, below
  await new Promise((resolve) => open.once("data", resolve));
  t.like(await streamError(client.watchJobs?.({}, md) as grpc.ClientReadableStream<unknown>), {
    code: grpc.status.RESOURCE_EXHAUSTED,
  });
  t.like(await streamError(client.watchJobs?.({ ids: ["x"] }, md) as grpc.ClientReadableStream<unknown>), {
    code: grpc.status.RESOURCE_EXHAUSTED,
  });
  open.cancel();
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.like(await streamError(client.watchJobs?.({ ids: ["x"] }, md) as grpc.ClientReadableStream<unknown>), {
    code: grpc.status.INVALID_ARGUMENT,
  });
});

/** Compiles only if `handlers` is a complete handler map of `service`. */
function accepts<S extends DescService>(_service: S, _handlers: ServiceHandlers<S>): true {
  return true;
}

test("handler maps are checked against the service descriptors by the type-checker", (t) => {
  const { jobs, workers } = services(recorder().log);
  t.true(accepts(JobService, jobs));
  t.true(accepts(WorkerService, { ...workers, uploadOutput: async () => ({ received: 0n }) }));
  const { getJob, ...rest } = jobs;
  // @ts-expect-error: a misspelt handler (getJbo) is not a JobService RPC, and getJob is missing.
  t.true(accepts(JobService, { ...rest, getJbo: getJob }));
  // @ts-expect-error: a missing handler.
  t.true(accepts(JobService, rest));
  // @ts-expect-error: WorkerService's uploadOutput is in createLogService, not here.
  t.true(accepts(WorkerService, workers));
  // @ts-expect-error: a handler must answer its RPC's response message.
  t.true(accepts(JobService, { ...jobs, getJob: async () => ({ workers: [] }) }));
  // @ts-expect-error: nor take another RPC's request.
  t.true(accepts(JobService, { ...jobs, getJob: async (_req: { name: string }) => ({}) }));
  // The adapters take nothing else (never called: built only for the type-checker).
  const wrongService = () =>
    // @ts-expect-error: a WorkerService map for JobService.
    addService(new grpc.Server(), JobService, workers, recorder().log);
  t.is(typeof wrongService, "function");
  t.true(accepts(AdminService, {} as ServiceHandlers<typeof AdminService>));
});
