/**
 * Case generation for the gRPC fuzz test: per RPC, malformed and extreme
 * request payloads as raw protobuf bytes, plus the safety oracle that keeps
 * the fuzzer from sending anything that could legitimately change state
 * (a valid SubmitJob, a kill of a live job, a valid worker Hello...).
 */
import { type DescMessage, type DescService, fromBinary, type MessageShape, toJson } from "@bufbuild/protobuf";
import { AdminService } from "../../gen/crms/v1/admin_pb.js";
import {
  JobService,
  JobState,
  JobStateSchema,
  type ListJobsRequest,
  type SubmitJobRequest,
  type WatchJobsRequest,
} from "../../gen/crms/v1/job_pb.js";
import { type AttachRequest, type ListWorkersRequest, WorkerService } from "../../gen/crms/v1/worker_pb.js";
import {
  cat,
  type Data,
  EXTREME_INTS,
  f32,
  f64,
  fieldOfWireType,
  fl,
  fmap,
  fv,
  HOSTILE_STRINGS,
  hugeString,
  INVALID_UTF8,
  nestGroups,
  nestLen,
  type Rng,
  repeat,
  tag,
  varint,
  WT,
} from "./fuzz-wire.js";

export type Kind = "unary" | "server_streaming" | "bidi_streaming";

export interface Rpc {
  service: string;
  name: string;
  path: string;
  kind: Kind;
  input: DescMessage;
  /** Maintenance RPCs that change etcd on purpose: only undecodable payloads go there. */
  maintenance: boolean;
  /** OK is a correct answer to a well-formed request (reads, and HoldJob of a HELD job). */
  okAllowed: boolean;
}

export const MAINTENANCE = new Set([
  "Compact",
  "Defragment",
  "DisarmAlarms",
  "Recover",
  "RunRetention",
  // A created token would turn authentication on for the rest of the run.
  "CreateToken",
  "RevokeToken",
]);
const OK_ALLOWED = new Set([
  "GetJob",
  "ListJobs",
  "WatchJobs",
  "StreamOutput",
  "HoldJob",
  "ListWorkers",
  "GetWorker",
  "WatchWorkers",
  "GetClusterStatus",
  "ListTokens",
]);

export const SERVICES: DescService[] = [JobService, WorkerService, AdminService];

/** Every RPC of the three crms services, from the generated descriptors. */
export function allRpcs(): Rpc[] {
  const out: Rpc[] = [];
  for (const s of SERVICES) {
    for (const m of s.methods) {
      if (m.methodKind === "client_streaming") throw new Error(`unexpected client streaming ${m.name}`);
      out.push({
        service: s.typeName,
        name: m.name,
        path: `/${s.typeName}/${m.name}`,
        kind: m.methodKind,
        input: m.input,
        maintenance: MAINTENANCE.has(m.name),
        okAllowed: OK_ALLOWED.has(m.name),
      });
    }
  }
  return out;
}

/** What the fuzzer knows about the cluster (the snapshot it must not disturb). */
export interface Known {
  finished: string;
  held: string;
  running: string;
  worker: string;
  /** Every job id in the snapshot and its state. */
  states: Map<string, JobState>;
}

/** One case: the messages to send on one call. */
export interface Case {
  rpc: Rpc;
  /** The generator that made it (reported with failures). */
  gen: string;
  /** One message for unary and server streaming; any number for Attach. */
  messages: Buffer[];
  /** Attach only: half-close after writing the messages. */
  endStream?: boolean;
  /** When set, the only acceptable outcomes. */
  expect?: string[];
  /** Override of the path (calls to methods that do not exist). */
  path?: string;
}

// ---- local decoding: the same schema and library the server decodes with ----

export function tryDecode<T extends DescMessage>(schema: T, bytes: Buffer): MessageShape<T> | undefined {
  try {
    return fromBinary(schema, bytes);
  } catch {
    return undefined;
  }
}

const NUL = (s: string) => s.includes("\0");
const bytesOf = (s: string) => Buffer.byteLength(s);
/** Worker.name per the contract: letters, digits, '.', '_' and '-', up to 128 bytes. */
const CONTRACT_WORKER_NAME = /^[A-Za-z0-9._-]+$/;
const contractWorkerName = (n: string) => CONTRACT_WORKER_NAME.test(n) && bytesOf(n) <= 128;

/**
 * Why a SubmitJobRequest is invalid by the contract alone (job.proto comments),
 * or undefined if it might be valid. Only requests with a reason are ever sent.
 */
export function submitViolation(req: SubmitJobRequest): string | undefined {
  const s = req.spec;
  if (!s) return "no spec";
  if (s.command.length === 0) return "empty command";
  if (!s.command[0]) return "empty program";
  if (s.command.length > 1024) return "more than 1,024 argv items";
  if (s.command.reduce((n, a) => n + bytesOf(a), 0) > 128 * 1024) return "argv over 128 KiB";
  if (s.command.some(NUL)) return "NUL in argv";
  if (NUL(s.name)) return "NUL in name";
  if (bytesOf(s.name) > 256) return "name over 256 bytes";
  const env = Object.entries(s.env);
  if (env.length > 256) return "more than 256 env entries";
  if (env.reduce((n, [k, v]) => n + bytesOf(k) + bytesOf(v), 0) > 64 * 1024) return "env over 64 KiB";
  if (env.some(([k, v]) => NUL(k) || NUL(v))) return "NUL in env";
  if (Object.keys(s.labels).length > 64) return "more than 64 labels";
  for (const m of [s.labels, s.constraints])
    if (Object.entries(m).some(([k, v]) => NUL(k) || NUL(v))) return "NUL in labels/constraints";
  if (NUL(s.workingDir)) return "NUL in working_dir";
  if (s.targetWorker && !contractWorkerName(s.targetWorker)) return "target worker is not a worker name";
  if (NUL(req.requestId)) return "NUL in request_id";
  if (bytesOf(req.requestId) > 128) return "request_id over 128 bytes";
  return undefined;
}

const JOB_ID_FORM = /^[1-9][0-9]{0,15}$/;
const JOB_STATES = new Set(JobStateSchema.values.map((v) => v.number));

/**
 * Why a read request is invalid by the contract alone (its .proto comments:
 * enum values it defines, page tokens it gave, revisions that are not negative,
 * the documented limits), or undefined. Such a request must be refused with
 * INVALID_ARGUMENT: never answered OK, nor with an empty page.
 */
export function readViolation(rpcName: string, d: Record<string, unknown>): string | undefined {
  switch (rpcName) {
    case "ListJobs": {
      const r = d as unknown as ListJobsRequest;
      if (r.states.some((s) => !JOB_STATES.has(s))) return "unknown JobState";
      if (r.pageToken && !JOB_ID_FORM.test(r.pageToken)) return "page token ListJobs never gives";
      if (r.pageSize > 1000) return "page_size over 1,000";
      if (r.worker && !contractWorkerName(r.worker)) return "worker is not a worker name";
      if (r.arrayParent && !JOB_ID_FORM.test(r.arrayParent)) return "array_parent is not a job id";
      return undefined;
    }
    case "ListWorkers": {
      const r = d as unknown as ListWorkersRequest;
      if (r.pageToken && !contractWorkerName(r.pageToken)) return "page token ListWorkers never gives";
      if (r.pageSize > 1000) return "page_size over 1,000";
      return undefined;
    }
    case "WatchJobs": {
      const r = d as unknown as WatchJobsRequest;
      if (r.afterRevision < 0n) return "negative after_revision";
      if (r.ids.length > 10_000) return "more than 10,000 ids";
      if (r.ids.some((id) => !JOB_ID_FORM.test(id))) return "an id that is not a job id";
      return undefined;
    }
  }
  return undefined;
}

function attachMayAttach(msg: AttachRequest): boolean {
  if (msg.msg.case !== "hello") return false;
  const h = msg.msg.value;
  return contractWorkerName(h.name) && h.slots >= 1 && h.slots <= 100_000;
}

/**
 * Why a case must not be sent (it could change state the test keeps fixed),
 * or undefined when it is safe. Decodes exactly as the server would.
 */
export function unsafeReason(c: Case, known: Known): string | undefined {
  if (c.path) return undefined; // no such method
  const { rpc } = c;
  if (rpc.maintenance) {
    return c.messages.some((m) => tryDecode(rpc.input, m) !== undefined) ? "maintenance payload decodes" : undefined;
  }
  const isKnownIn = (id: string, pred: (s: JobState) => boolean) => {
    const s = known.states.get(id);
    return s !== undefined && pred(s);
  };
  const final = (s: JobState) =>
    s === JobState.SUCCEEDED || s === JobState.FAILED || s === JobState.KILLED || s === JobState.LOST;
  for (const m of c.messages) {
    const d = tryDecode(rpc.input, m) as Record<string, unknown> | undefined;
    if (!d) continue;
    switch (rpc.name) {
      case "SubmitJob":
        if (!submitViolation(d as unknown as SubmitJobRequest)) return "SubmitJob might be valid";
        break;
      case "KillJob":
        if (isKnownIn(d.id as string, (s) => !final(s))) return "kill of a live known job";
        break;
      case "ReleaseJob":
        if (isKnownIn(d.id as string, (s) => s === JobState.HELD)) return "release of the held job";
        break;
      case "DeleteJob":
        if (isKnownIn(d.id as string, final)) return "delete of a finished job";
        break;
      case "HoldJob":
        if (isKnownIn(d.id as string, (s) => s === JobState.PENDING)) return "hold of a pending job";
        break;
      case "DrainWorker":
      case "StopWorker":
        if (d.name === known.worker) return "drain/stop of the real worker";
        break;
      case "Attach":
        if (attachMayAttach(d as unknown as AttachRequest)) return "Hello that may attach";
        break;
    }
  }
  return undefined;
}

/** Bounds strings, arrays and objects (keys too) for printing. */
function shrinkJson(v: unknown): unknown {
  const str = (x: string) => (x.length > 60 ? `${x.slice(0, 40)}…(${x.length} chars)` : x);
  if (typeof v === "string") return str(v);
  if (Array.isArray(v)) {
    const head = v.slice(0, 4).map(shrinkJson);
    return v.length > 6 ? [...head, `…(${v.length} items)`] : v.map(shrinkJson);
  }
  if (v && typeof v === "object") {
    const entries = Object.entries(v);
    const out: Record<string, unknown> = {};
    for (const [k, x] of entries.slice(0, entries.length > 6 ? 4 : 6)) out[str(k)] = shrinkJson(x);
    if (entries.length > 6) out["…"] = `${entries.length} keys`;
    return out;
  }
  return v;
}

/** A short, bounded description of a payload (decoded JSON when it decodes). */
export function describePayload(rpc: Rpc, bytes: Buffer): string {
  const d = tryDecode(rpc.input, bytes);
  if (!d) return "(does not decode)";
  try {
    return JSON.stringify(shrinkJson(toJson(rpc.input, d as never)));
  } catch (err) {
    return `(decodes; toJson failed: ${String(err).slice(0, 80)})`;
  }
}

// ---- value pools ----

function randomAscii(rng: Rng, n: number): string {
  let s = "";
  for (let i = 0; i < n; i++) s += String.fromCharCode(rng.int(0, 0x7f));
  return s;
}

function randomUnicode(rng: Rng, n: number): string {
  let s = "";
  for (let i = 0; i < n; i++) {
    let cp = rng.bool(0.5) ? rng.int(0x80, 0xffff) : rng.int(0x10000, 0x10ffff);
    if (cp >= 0xd800 && cp <= 0xdfff) cp = 0xfffd;
    s += String.fromCodePoint(cp);
  }
  return s;
}

function idVariants(id: string): string[] {
  return [
    `${id}\0`,
    `\0${id}`,
    ` ${id}`,
    `${id} `,
    `0${id}`,
    `${id}\n`,
    `+${id}`,
    `-${id}`,
    `${id}.0`,
    `${id}/`,
    `../${id}`,
    `${id}/../${id}`,
    `jobs/${id}`,
    `${id}${"0".repeat(16)}`,
  ];
}

/** A hostile job id: NUL, control characters, unicode, near-misses of real ids, invalid UTF-8. */
export function hostileId(rng: Rng, known: Known): Data {
  const ids = [...known.states.keys()];
  const r = rng.float();
  if (r < 0.4) return rng.pick(HOSTILE_STRINGS);
  if (r < 0.58) return rng.pick(idVariants(rng.pick(ids)));
  if (r < 0.68) return rng.pick(ids);
  if (r < 0.74) return String(rng.int(1000, 2 ** 31)); // well-formed, unknown
  if (r < 0.84) return cat(Buffer.from(rng.bool() ? rng.pick(ids) : ""), rng.pick(INVALID_UTF8));
  if (r < 0.92) return randomAscii(rng, rng.int(1, 24));
  return randomUnicode(rng, rng.int(1, 12));
}

/** A hostile worker name: path traversal, NUL, unicode, near-misses of the real worker. */
export function hostileName(rng: Rng, known: Known): Data {
  const w = known.worker;
  const r = rng.float();
  if (r < 0.42) return rng.pick(HOSTILE_STRINGS);
  if (r < 0.62)
    return rng.pick([
      `${w}\0`,
      `\0${w}`,
      ` ${w}`,
      `${w} `,
      `${w}\n`,
      w.toUpperCase(),
      `../${w}`,
      `${w}/..`,
      `./${w}`,
      `${w}/x`,
      `workers/${w}`,
      `${w}*`,
      `${w}%00`,
      `${w}\u200b`,
      `${w}\u0301`,
      `${w}${"x".repeat(128)}`,
    ]);
  if (r < 0.7) return w;
  if (r < 0.76) return rng.pick(["nobody", "x", "ghost-worker", "a.b_c-d", "Z".repeat(128)]);
  if (r < 0.84) return cat(Buffer.from(rng.bool() ? w : ""), rng.pick(INVALID_UTF8));
  if (r < 0.92) return randomAscii(rng, rng.int(1, 24));
  return randomUnicode(rng, rng.int(1, 12));
}

function hostileText(rng: Rng): Data {
  const r = rng.float();
  if (r < 0.6) return rng.pick(HOSTILE_STRINGS);
  if (r < 0.75) return randomAscii(rng, rng.int(0, 40));
  if (r < 0.9) return randomUnicode(rng, rng.int(0, 20));
  return rng.pick(INVALID_UTF8);
}

const extreme = (rng: Rng) => rng.pick(EXTREME_INTS);

function shuffle<T>(rng: Rng, items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}

/** Some unknown fields that still decode (skipped by the parser). */
function junkFields(rng: Rng, n: number): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const field = rng.pick([17, 99, 1000, 2047, 19_000, 2 ** 29 - 1]);
    const wt = rng.pick([WT.VARINT, WT.I64, WT.LEN, WT.I32]);
    parts.push(fieldOfWireType(rng, field, wt));
  }
  return cat(...parts);
}

// ---- structured, hostile but (mostly) decodable requests per RPC ----

function jobSpecHostile(rng: Rng, known: Known): Buffer {
  const parts: Buffer[] = [];
  const feature = () => rng.bool(0.45);
  // command
  const cmdMode = rng.int(0, 9);
  if (cmdMode === 0) parts.push(repeat(rng.pick([1025, 10_000, 100_000]), (i) => fl(1, i % 7 === 0 ? "" : "a")));
  else if (cmdMode === 1) parts.push(fl(1, ""), fl(1, "x"));
  else if (cmdMode === 2) {
    /* no command */
  } else if (cmdMode === 3) parts.push(fl(1, "sh"), fl(1, "-c"), fl(1, "a".repeat(128 * 1024)));
  else {
    const n = rng.int(1, 6);
    for (let i = 0; i < n; i++) parts.push(fl(1, i === 0 && rng.bool(0.5) ? "echo" : hostileText(rng)));
  }
  if (feature()) parts.push(fl(2, rng.bool(0.2) ? "n".repeat(257) : hostileText(rng)));
  if (feature()) {
    const m = rng.int(0, 4);
    if (m === 0) parts.push(repeat(10_000, (i) => fmap(3, `K${i}`, "v")));
    else if (m === 1) parts.push(repeat(257, (i) => fmap(3, `K${i}`, "")));
    else if (m === 2)
      parts.push(fmap(3, rng.pick(["A=B", "=", "", "\0", "PATH", "LD_PRELOAD", "a b"]), hostileText(rng)));
    else if (m === 3) parts.push(fmap(3, "BIG", "v".repeat(64 * 1024)));
    else parts.push(fmap(3, hostileText(rng), hostileText(rng)));
  }
  if (feature()) parts.push(fl(4, rng.pick(["../../../../", "/", "\0", "x".repeat(4097), "~", "$HOME", "C:\\"])));
  for (const field of [5, 6]) {
    if (!feature()) continue;
    const m = rng.int(0, 3);
    if (m === 0) parts.push(fmap(field, rng.pick(["a=b", "=", "k=v=w", "", " ", "\0", "ключ", "a/b", "-x"]), "v"));
    else if (m === 1) parts.push(repeat(65, (i) => fmap(field, `l${i}`, "v")));
    else if (m === 2) parts.push(fmap(field, hostileText(rng), hostileText(rng)));
    else parts.push(fmap(field, "k", "v".repeat(5000)));
  }
  if (feature()) parts.push(fl(7, hostileName(rng, known)));
  if (feature()) parts.push(fv(8, extreme(rng)));
  for (const field of [9, 10, 12, 13]) if (feature()) parts.push(fv(field, extreme(rng)));
  if (feature()) parts.push(fv(11, rng.pick([0n, 1n, 2n, 2n ** 64n - 1n])));
  return cat(...shuffle(rng, parts));
}

/** A SubmitJobRequest with hostile fields and, last in the server's check order, a sure violation. */
function submitHostile(rng: Rng, known: Known): Buffer {
  const parts: Buffer[] = [];
  const specMode = rng.int(0, 9);
  if (specMode > 0) parts.push(fl(1, jobSpecHostile(rng, known)));
  // The request id is checked last by the contract's rules: make it the sure violation most of the time.
  const rid = rng.int(0, 5);
  if (rid <= 2) parts.push(fl(2, rng.pick(["r".repeat(129), "r\0", "\0", "é".repeat(65), `${"r".repeat(128)}/`])));
  else if (rid === 3) parts.push(fl(2, hostileText(rng)));
  else if (rid === 4) parts.push(fl(1, fl(2, "bad\0name"))); // merged into spec: name with NUL
  return cat(...parts);
}

function listJobsHostile(rng: Rng, known: Known): Buffer {
  const parts: Buffer[] = [];
  if (rng.bool(0.6)) {
    const n = rng.pick([1, 2, 3, 8, 1000, 100_000]);
    const states = Array.from({ length: Math.min(n, 8) }, () =>
      rng.pick([0n, 1n, 2n, 4n, 5n, 8n, 9n, 999n, -1n, 2n ** 31n - 1n, -(2n ** 31n), 2n ** 32n + 4n]),
    );
    const list = n > 8 ? Array.from({ length: n }, (_, i) => states[i % states.length] as bigint) : states;
    if (rng.bool()) parts.push(fl(1, cat(...list.map((s) => varint(s)))));
    else parts.push(...list.map((s) => fv(1, s)));
  }
  if (rng.bool(0.4)) parts.push(fl(2, hostileName(rng, known)));
  if (rng.bool(0.4)) {
    const n = rng.pick([1, 2, 100, 10_000]);
    parts.push(repeat(n, () => fmap(3, hostileText(rng), hostileText(rng))));
  }
  if (rng.bool(0.5)) parts.push(fv(4, extreme(rng)));
  if (rng.bool(0.4)) parts.push(fl(5, rng.bool(0.8) ? hostileId(rng, known) : rng.pick(FOREIGN_TOKENS)));
  return cat(...shuffle(rng, parts));
}

/** Page tokens no crms RPC gives: base64 (other APIs' style), punctuation, a worker name for ListJobs. */
const FOREIGN_TOKENS = ["Mg==", "!!", "eyJpZCI6Mn0", "-1", "0", "w1", "..", "."];

function watchJobsHostile(rng: Rng, known: Known): Buffer {
  const parts: Buffer[] = [];
  const n = rng.pick([0, 1, 2, 5, 100_000]);
  if (n === 100_000) parts.push(repeat(n, (i) => fl(1, String(i + 1))));
  else for (let i = 0; i < n; i++) parts.push(fl(1, hostileId(rng, known)));
  if (rng.bool(0.6)) parts.push(fv(2, extreme(rng)));
  return cat(...shuffle(rng, parts));
}

function helloBody(rng: Rng, known: Known): Buffer {
  const parts: Buffer[] = [];
  // name and slots: at least one of them is invalid (the safety oracle drops the rest)
  const badName = rng.bool(0.6);
  parts.push(
    fl(
      1,
      badName
        ? rng.pick<Data>([hostileName(rng, known), "", "../x", "a b", "-x", "x".repeat(129), "w\0"])
        : rng.pick([known.worker, "fuzz-new", "n"]),
    ),
  );
  if (!badName || rng.bool(0.5))
    parts.push(fv(2, badName ? extreme(rng) : rng.pick([0n, -1n, 100_001n, 2n ** 32n - 1n, 2n ** 32n])));
  if (rng.bool(0.3)) parts.push(repeat(rng.pick([1, 100, 10_000]), (i) => fmap(3, `l${i}=x`, "\0")));
  if (rng.bool(0.3)) parts.push(fl(4, hostileText(rng)));
  if (rng.bool(0.3)) parts.push(fl(5, hostileText(rng)));
  if (rng.bool(0.25)) {
    const n = rng.pick([1, 3, 100_000]);
    parts.push(
      repeat(n, () =>
        fl(6, cat(fl(1, rng.pick([known.running, known.held, known.finished, "x"])), fv(2, extreme(rng)), fv(3, -1n))),
      ),
    );
  }
  if (rng.bool(0.25))
    parts.push(
      fl(7, cat(fl(1, rng.pick([known.running, known.held, known.finished])), fv(2, 1n), fv(3, 0n), fv(9, 1n))),
    );
  return cat(...shuffle(rng, parts));
}

/** An AttachRequest that is not a valid Hello. */
function attachNonHello(rng: Rng, known: Known): Buffer {
  const id = rng.pick([known.running, known.held, known.finished, "999999", "\0"]);
  switch (rng.int(0, 5)) {
    case 0:
      return fl(2, fv(1, extreme(rng)));
    case 1:
      return fl(3, cat(fl(1, id), fv(2, 1n), fv(3, extreme(rng))));
    case 2:
      return fl(4, cat(fl(1, id), fv(2, 1n), fv(3, 0n), fl(6, "out"), fv(9, 1n)));
    case 3:
      return fl(5, cat(fv(1, 1n), fv(2, 1n), fl(3, "data"), fv(4, -1n), fv(5, 1n)));
    case 4:
      return Buffer.alloc(0); // an AttachRequest with no message set
    default:
      return cat(fl(1, helloBody(rng, known)), fl(2, fv(1, 1n))); // hello then heartbeat: the oneof keeps the last
  }
}

/** A structured, hostile request for one RPC (decodes in most cases). */
export function structured(rpc: Rpc, rng: Rng, known: Known): Buffer {
  switch (rpc.name) {
    case "SubmitJob":
      return submitHostile(rng, known);
    case "GetJob":
    case "HoldJob":
    case "ReleaseJob":
    case "DeleteJob": {
      const parts = [fl(1, hostileId(rng, known))];
      if (rng.bool(0.15)) parts.push(fl(1, hostileId(rng, known))); // repeated singular field: last wins
      if (rng.bool(0.15)) parts.push(junkFields(rng, rng.int(1, 3)));
      return cat(...shuffle(rng, parts));
    }
    case "KillJob": {
      const parts = [fl(1, hostileId(rng, known))];
      if (rng.bool(0.7)) parts.push(fv(2, extreme(rng)));
      return cat(...shuffle(rng, parts));
    }
    case "StreamOutput": {
      const parts = [fl(1, hostileId(rng, known))];
      if (rng.bool(0.5)) parts.push(fv(2, rng.pick([0n, 1n, 2n, 2n ** 64n - 1n])));
      return cat(...shuffle(rng, parts));
    }
    case "ListJobs":
      return listJobsHostile(rng, known);
    case "WatchJobs":
      return watchJobsHostile(rng, known);
    case "ListWorkers": {
      const parts: Buffer[] = [];
      if (rng.bool(0.7)) parts.push(fv(1, extreme(rng)));
      if (rng.bool(0.6)) parts.push(fl(2, rng.bool(0.8) ? hostileName(rng, known) : rng.pick(FOREIGN_TOKENS)));
      return cat(...shuffle(rng, parts));
    }
    case "GetWorker":
    case "DrainWorker":
    case "StopWorker": {
      const parts = [fl(1, hostileName(rng, known))];
      if (rng.bool(0.15)) parts.push(fl(1, hostileName(rng, known)));
      return cat(...parts);
    }
    case "Attach":
      return rng.bool(0.5) ? fl(1, helloBody(rng, known)) : attachNonHello(rng, known);
    default:
      // Empty request messages (WatchWorkers, GetClusterStatus, maintenance): only unknown fields.
      return junkFields(rng, rng.int(0, 4));
  }
}

// ---- malformations of any payload ----

export function randomBytes(rng: Rng): Buffer {
  return rng.bytes(rng.pick([rng.int(1, 8), rng.int(0, 64), rng.int(64, 512), 4096]));
}

export function truncated(rpc: Rpc, rng: Rng, known: Known): Buffer {
  for (let i = 0; i < 5; i++) {
    const b = structured(rpc, rng, known);
    if (b.length >= 2) return b.subarray(0, rng.int(1, b.length - 1));
  }
  return Buffer.from([0x0a, 0x05, 0x31]); // a length running past the end
}

export function bitFlipped(rpc: Rpc, rng: Rng, known: Known): Buffer {
  const b = Buffer.from(structured(rpc, rng, known));
  if (b.length === 0) return Buffer.from([rng.u32() & 0xff]);
  const n = rng.int(1, 4);
  for (let i = 0; i < n; i++) {
    const at = rng.int(0, b.length - 1);
    b[at] = (b[at] as number) ^ (1 << rng.int(0, 7));
  }
  return b;
}

function naturalWireTypes(rpc: Rpc, no: number): number[] {
  const f = rpc.input.fields.find((x) => x.number === no);
  if (!f) return [];
  if (f.fieldKind === "scalar" && f.scalar !== 9 && f.scalar !== 12) return [WT.VARINT]; // not string/bytes
  if (f.fieldKind === "enum") return [WT.VARINT];
  if (f.fieldKind === "list" && f.listKind !== "message" && !(f.listKind === "scalar" && f.scalar === 9))
    return [WT.VARINT, WT.LEN];
  return [WT.LEN];
}

/** A known field with a wire type that is not its own (or not a wire type at all), next to a plausible request. */
export function wrongWireType(rpc: Rpc, rng: Rng, known: Known): Buffer {
  const numbers = rpc.input.fields.map((f) => f.number);
  const no = numbers.length ? rng.pick(numbers) : rng.int(1, 4);
  const natural = naturalWireTypes(rpc, no);
  const candidates = [0, 1, 2, 3, 4, 5, 6, 7].filter((wt) => !natural.includes(wt));
  const bad = fieldOfWireType(rng, no, rng.pick(candidates));
  const base = structured(rpc, rng, known);
  return rng.bool() ? cat(bad, base) : cat(base, bad);
}

/** Broken tags and varints: field 0, field numbers past 2^29, 11-byte varints, lengths past the end. */
export function brokenEncoding(rpc: Rpc, rng: Rng, known: Known): Buffer {
  const base = rng.bool(0.5) ? structured(rpc, rng, known) : Buffer.alloc(0);
  const bad = rng.pick([
    tag(0, WT.VARINT),
    cat(tag(0, WT.LEN), Buffer.from([0])),
    varint(2n ** 32n), // tag overflowing uint32
    cat(varint((2n ** 29n) << 3n), Buffer.from([0])), // field number 2^29
    Buffer.from([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), // 11-byte varint
    Buffer.from([0x08, 0x80]), // truncated varint
    Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), // length 2^32-1
    Buffer.from([0x0a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]), // length overflowing
    Buffer.from([0x0a, 0x10, 0x31]), // length past the end
    Buffer.from([0x0c]), // end group without start
    Buffer.from([0x0b]), // start group without end
    Buffer.from([0x0b, 0x14]), // start group 1, end group 2
    f64(1, 2n ** 63n),
    f32(2, 0xffffffff),
    Buffer.from([0x0e]), // wire type 6
    Buffer.from([0x0f, 0x00]), // wire type 7
  ]);
  return rng.bool() ? cat(base, bad) : cat(bad, base);
}

/** A string field of the request set to invalid UTF-8 (proto3 strings must be valid). */
export function invalidUtf8(rpc: Rpc, rng: Rng, known: Known): Buffer {
  const strings = rpc.input.fields.filter(
    (f) => (f.fieldKind === "scalar" || f.fieldKind === "list") && f.scalar === 9,
  );
  const bad = rng.pick(INVALID_UTF8);
  if (strings.length === 0) {
    // No string field of its own: put invalid UTF-8 in a map key/value or nested string where there is one.
    return cat(structured(rpc, rng, known), fl(1, cat(fl(1, bad))));
  }
  const f = rng.pick(strings);
  return cat(structured(rpc, rng, known), fl(f.number, cat(Buffer.from(rng.pick(["", "1", "w"])), bad)));
}

/** Deep nesting: groups beyond the recursion limit, thousands of nested length-delimited fields. */
export function deepNesting(rpc: Rpc, rng: Rng, known: Known): Buffer {
  const base = structured(rpc, rng, known);
  switch (rng.int(0, 3)) {
    case 0:
      return cat(base, nestGroups(99, rng.pick([101, 1000, 50_000])));
    case 1:
      return cat(base, nestLen(99, rng.pick([100, 10_000, 100_000])));
    case 2: {
      // Known message-typed field nested inside itself as raw bytes.
      const msgField = rpc.input.fields.find((f) => f.fieldKind === "message" || f.fieldKind === "map");
      return cat(base, nestLen(msgField?.number ?? 1, rng.pick([50, 5000])));
    }
    default:
      return cat(base, nestGroups(rng.pick([1, 2, 3]), rng.pick([200, 20_000])));
  }
}

/** One field repeated thousands of times. */
export function duplicated(rpc: Rpc, rng: Rng, known: Known): Buffer {
  const one = structured(rpc, rng, known);
  const n = Math.max(2, Math.min(rng.pick([1000, 20_000]), Math.floor((4 * 1024 * 1024) / Math.max(1, one.length))));
  return repeat(n, () => one);
}

/** A 1-10 MB string in a string field (or an unknown field when there is none). */
export function huge(rpc: Rpc, rng: Rng, known: Known): Buffer {
  const big = hugeString(rng);
  if (rpc.name === "SubmitJob") {
    const where = rng.int(0, 4);
    const spec = [
      cat(fl(1, "echo"), fl(1, big)),
      cat(fl(1, "echo"), fl(2, big)),
      cat(fl(1, "echo"), fmap(3, "K", big)),
      cat(fl(1, "echo"), fmap(5, cat(Buffer.from("a=b"), big), "v")), // label key with '=': named in the error?
      cat(fl(1, "echo"), fmap(6, "k", big)),
    ][where] as Buffer;
    return cat(fl(1, spec), fl(2, "r".repeat(129)));
  }
  if (rpc.name === "Attach") return fl(1, cat(fl(1, big), fv(2, 1n)));
  const strings = rpc.input.fields.filter((f) => f.fieldKind === "scalar" && f.scalar === 9);
  if (strings.length) return cat(structured(rpc, rng, known), fl(rng.pick(strings).number, big));
  if (rpc.name === "ListJobs") return fmap(3, big, "v");
  if (rpc.name === "WatchJobs") return fl(1, big);
  return fl(99, big);
}
