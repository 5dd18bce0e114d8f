/**
 * etcd's KV Range and Txn on etcd3's own connections, with codecs of their
 * own. etcd3 sends every call through @grpc/proto-loader's protobufjs objects
 * (64-bit fields as strings, every default filled in, a oneof name per
 * message); a Txn of the store or a page of a listing costs several times its
 * bytes in objects a store never reads. Here a Range or Txn request is
 * written straight from the store's own shapes and a response is read into
 * just what the store keeps: keys and values as views of the received bytes,
 * revisions as numbers. Everything else of etcd3 stays: its hosts, TLS,
 * authentication token, call options (deadlines), fault handling (retries,
 * breakers) and its error classes (`castGrpcError`).
 *
 * The field numbers are etcd's `etcdserverpb` and `mvccpb` (rpc.proto and
 * kv.proto of etcd 3.4, as etcd3 ships them).
 */

import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { castGrpcError, type Etcd3, EtcdInvalidAuthTokenError } from "etcd3";
import { perObject } from "../memo.js";

/** A key and its value as etcd holds it. */
export interface WireKeyValue {
  key: Buffer;
  value: Buffer;
  create: number;
  mod: number;
  version: number;
  /** The lease's id in decimal ("0": none), as etcd3 gives it. */
  lease: string;
}

/** A Range's answer. */
export interface WireRange {
  /** The store's revision the range was read at. */
  revision: number;
  kvs: WireKeyValue[];
  /** More keys in the range than `limit` let through. */
  more: boolean;
  /** Keys in the range (all of them, whatever the limit). */
  count: number;
}

export interface WireRangeRequest {
  key: Uint8Array;
  /** The end of the range, exclusive; none: the key alone. */
  end?: Uint8Array;
  limit?: number;
  /** The revision to read at; none or 0: the newest. */
  revision?: number;
  keysOnly?: boolean;
  countOnly?: boolean;
}

/** A Txn's compare: the key's mod or create revision equal to `revision` (0: absent). */
export interface WireCompare {
  key: Uint8Array;
  target: "mod" | "create";
  revision: number;
}

/** A Txn's operation. */
export type WireOp =
  | { put: { key: Uint8Array; value: Uint8Array; lease?: string } }
  | { delete: { key: Uint8Array; end?: Uint8Array } }
  | { range: WireRangeRequest };

/** A Txn's answer: per operation of the branch taken, a Range's answer or nothing. */
export interface WireTxn {
  revision: number;
  succeeded: boolean;
  responses: (WireRange | undefined)[];
}

/** etcd's `Compare.CompareTarget` and `Compare.CompareResult`. */
const TARGET_CREATE = 1;
const TARGET_MOD = 2;

function rangeRequest(w: BinaryWriter, r: WireRangeRequest): BinaryWriter {
  w.tag(1, 2).bytes(r.key);
  if (r.end) w.tag(2, 2).bytes(r.end);
  if (r.limit) w.tag(3, 0).int64(r.limit);
  if (r.revision) w.tag(4, 0).int64(r.revision);
  if (r.keysOnly) w.tag(8, 0).bool(true);
  if (r.countOnly) w.tag(9, 0).bool(true);
  return w;
}

function requestOp(w: BinaryWriter, field: number, op: WireOp): void {
  w.tag(field, 2).fork();
  if ("put" in op) {
    w.tag(2, 2).fork().tag(1, 2).bytes(op.put.key).tag(2, 2).bytes(op.put.value);
    if (op.put.lease && op.put.lease !== "0") w.tag(3, 0).int64(op.put.lease);
    w.join();
  } else if ("delete" in op) {
    w.tag(3, 2).fork().tag(1, 2).bytes(op.delete.key);
    if (op.delete.end) w.tag(2, 2).bytes(op.delete.end);
    w.join();
  } else {
    w.tag(1, 2).fork();
    rangeRequest(w, op.range).join();
  }
  w.join();
}

/** Encodes a TxnRequest. */
export function encodeTxn(compares: readonly WireCompare[], success: readonly WireOp[], failure: readonly WireOp[]) {
  const w = new BinaryWriter();
  for (const c of compares) {
    // result EQUAL is 0, the default: not written.
    w.tag(1, 2).fork();
    w.tag(2, 0).int32(c.target === "mod" ? TARGET_MOD : TARGET_CREATE);
    w.tag(3, 2).bytes(c.key);
    w.tag(c.target === "mod" ? 6 : 5, 0).int64(c.revision);
    w.join();
  }
  for (const op of success) requestOp(w, 2, op);
  for (const op of failure) requestOp(w, 3, op);
  return w.finish();
}

/** Encodes a RangeRequest. */
export function encodeRange(r: WireRangeRequest): Uint8Array {
  return rangeRequest(new BinaryWriter(), r).finish();
}

/**
 * Reads protobuf's wire format from a Buffer: only what etcd's answers use
 * (varints, length-delimited fields), numbers as doubles (revisions and
 * counts stay far below 2^53).
 */
class Reader {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  varint(): number {
    const b = this.buf;
    let value = 0;
    let scale = 1;
    for (;;) {
      if (this.pos >= this.end) throw new Error("etcd answer: truncated varint");
      const byte = b[this.pos++] as number;
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 0x80;
    }
  }

  /** A varint as a decimal string (an int64 that may pass 2^53: a lease id). */
  varint64(): string {
    const start = this.pos;
    const n = this.varint();
    if (n <= Number.MAX_SAFE_INTEGER) return String(n);
    let v = 0n;
    for (let i = this.pos - 1; i >= start; i--) v = (v << 7n) | BigInt((this.buf[i] as number) & 0x7f);
    return BigInt.asIntN(64, v).toString();
  }

  /** The bounds of a length-delimited field's bytes; moves past them. */
  delimited(): number {
    const len = this.varint();
    const start = this.pos;
    this.pos += len;
    if (this.pos > this.end) throw new Error("etcd answer: truncated field");
    return start;
  }

  /** Enters a length-delimited field: its end; the position is its start. */
  sub(): number {
    const start = this.delimited();
    const end = this.pos;
    this.pos = start;
    return end;
  }

  view(start: number): Buffer {
    return this.buf.subarray(start, this.pos);
  }

  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 2) this.delimited();
    else if (wire === 1) this.pos += 8;
    else if (wire === 5) this.pos += 4;
    else throw new Error(`etcd answer: wire type ${wire}`);
  }
}

const EMPTY = Buffer.alloc(0);

/** ResponseHeader: its revision (field 3). */
function headerRevision(r: Reader, end: number): number {
  let revision = 0;
  while (r.pos < end) {
    const tag = r.varint();
    if (tag === 0x18) revision = r.varint();
    else r.skip(tag & 7);
  }
  return revision;
}

function keyValue(r: Reader, end: number): WireKeyValue {
  const kv: WireKeyValue = { key: EMPTY, value: EMPTY, create: 0, mod: 0, version: 0, lease: "0" };
  while (r.pos < end) {
    const tag = r.varint();
    if (tag === 0x0a) kv.key = r.view(r.delimited());
    else if (tag === 0x10) kv.create = r.varint();
    else if (tag === 0x18) kv.mod = r.varint();
    else if (tag === 0x20) kv.version = r.varint();
    else if (tag === 0x2a) kv.value = r.view(r.delimited());
    else if (tag === 0x30) kv.lease = r.varint64();
    else r.skip(tag & 7);
  }
  return kv;
}

function rangeResponse(r: Reader, end: number): WireRange {
  const out: WireRange = { revision: 0, kvs: [], more: false, count: 0 };
  while (r.pos < end) {
    const tag = r.varint();
    if (tag === 0x12) out.kvs.push(keyValue(r, r.sub()));
    else if (tag === 0x0a) out.revision = headerRevision(r, r.sub());
    else if (tag === 0x18) out.more = r.varint() !== 0;
    else if (tag === 0x20) out.count = r.varint();
    else r.skip(tag & 7);
  }
  return out;
}

/** Decodes a RangeResponse. */
export function decodeRange(buf: Buffer): WireRange {
  return rangeResponse(new Reader(buf, 0, buf.length), buf.length);
}

/** Decodes a TxnResponse: a ResponseOp's range answer is read, its other kinds are left out. */
export function decodeTxn(buf: Buffer): WireTxn {
  const r = new Reader(buf, 0, buf.length);
  const out: WireTxn = { revision: 0, succeeded: false, responses: [] };
  while (r.pos < buf.length) {
    const tag = r.varint();
    if (tag === 0x1a) {
      const stop = r.sub();
      let range: WireRange | undefined;
      while (r.pos < stop) {
        const inner = r.varint();
        if (inner === 0x0a) range = rangeResponse(r, r.sub());
        else r.skip(inner & 7);
      }
      out.responses.push(range);
    } else if (tag === 0x0a) out.revision = headerRevision(r, r.sub());
    else if (tag === 0x10) out.succeeded = r.varint() !== 0;
    else r.skip(tag & 7);
  }
  return out;
}

/** What of a grpc-js client this module calls (etcd3's, on one of its hosts). */
interface UnaryClient {
  makeUnaryRequest<Req, Res>(
    method: string,
    serialize: (req: Req) => Buffer,
    deserialize: (res: Buffer) => Res,
    argument: Req,
    metadata: unknown,
    options: object,
    callback: (err: Error | null, res?: Res) => void,
  ): unknown;
}

/** What of etcd3's connection pool this module uses (its own fields, not in its typings). */
interface Pool {
  withConnection<R>(
    service: "KV",
    fn: (args: { client: UnaryClient; metadata: unknown }) => Promise<R> | R,
  ): Promise<R>;
  callOptionsFactory?:
    | ((ctx: { service: string; method: string; params: unknown; isStream: boolean }) => object)
    | object;
  globalPolicy: { execute<R>(fn: () => Promise<R>): Promise<R> };
  authenticator: { invalidateMetadata(): void };
}

const identity = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

/** The KvWire of an etcd3 client (one per client). */
export const kvWire = perObject((etcd: Etcd3) => new KvWire(etcd));

/** Range and Txn on an etcd3 client's connections. */
export class KvWire {
  readonly #pool: Pool;

  constructor(etcd: Etcd3) {
    this.#pool = (etcd as unknown as { pool: Pool }).pool;
  }

  range(r: WireRangeRequest): Promise<WireRange> {
    return this.#call("range", "/etcdserverpb.KV/Range", encodeRange(r), decodeRange);
  }

  txn(compares: readonly WireCompare[], success: readonly WireOp[], failure: readonly WireOp[]): Promise<WireTxn> {
    return this.#call("txn", "/etcdserverpb.KV/Txn", encodeTxn(compares, success, failure), decodeTxn);
  }

  /** As etcd3's `exec`: its retry policy around a call on one of its hosts, a new token once if etcd refused the old. */
  #call<T>(method: string, path: string, req: Uint8Array, decode: (b: Buffer) => T, renewed = false): Promise<T> {
    const pool = this.#pool;
    const factory = pool.callOptionsFactory;
    return pool.globalPolicy
      .execute(() =>
        pool.withConnection(
          "KV",
          ({ client, metadata }) =>
            new Promise<T>((resolve, reject) => {
              // Per attempt, as etcd3 does (a deadline counts from the attempt).
              const options =
                typeof factory === "function"
                  ? factory({ service: "KV", method, params: req, isStream: false })
                  : factory;
              client.makeUnaryRequest(path, identity, decode, req, metadata, options ?? {}, (err, res) => {
                if (err) reject(castGrpcError(err));
                else resolve(res as T);
              });
            }),
        ),
      )
      .catch((err: unknown) => {
        if (err instanceof EtcdInvalidAuthTokenError && !renewed) {
          pool.authenticator.invalidateMetadata();
          return this.#call(method, path, req, decode, true);
        }
        throw err;
      });
  }
}
