/**
 * Building blocks for the gRPC fuzz test: a seeded PRNG, a raw protobuf wire
 * writer (so messages can be malformed on purpose: wrong wire types, bad
 * varints, invalid UTF-8, deep nesting) and pools of hostile values.
 */

/** A small, fast, seedable PRNG (sfc32 seeded by splitmix32); same seed, same cases. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(readonly seed: number) {
    let s = seed >>> 0;
    const next = () => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next();
    for (let i = 0; i < 12; i++) this.u32();
  }

  /** A uniform 32-bit unsigned integer. */
  u32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) >>> 0;
    return t;
  }

  /** A float in [0, 1). */
  float(): number {
    return this.u32() / 4294967296;
  }

  /** An integer in [lo, hi] (inclusive). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.float() * (hi - lo + 1));
  }

  bool(p = 0.5): boolean {
    return this.float() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)] as T;
  }

  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }
}

// ---- wire format ----

export const WT = { VARINT: 0, I64: 1, LEN: 2, SGROUP: 3, EGROUP: 4, I32: 5 } as const;

/** A varint; negative numbers are written as 64-bit two's complement (10 bytes), like int32/int64. */
export function varint(v: bigint | number): Buffer {
  let n = BigInt(v);
  if (n < 0n) n = BigInt.asUintN(64, n);
  const out: number[] = [];
  while (n >= 0x80n) {
    out.push(Number(n & 0x7fn) | 0x80);
    n >>= 7n;
  }
  out.push(Number(n));
  return Buffer.from(out);
}

export function tag(field: number, wireType: number): Buffer {
  return varint((BigInt(field) << 3n) | BigInt(wireType));
}

export type Data = Buffer | string;
const buf = (d: Data) => (typeof d === "string" ? Buffer.from(d, "utf8") : d);

/** A varint field. */
export function fv(field: number, v: bigint | number): Buffer {
  return Buffer.concat([tag(field, WT.VARINT), varint(v)]);
}

/** A length-delimited field (string, bytes, message, packed). */
export function fl(field: number, data: Data): Buffer {
  const b = buf(data);
  return Buffer.concat([tag(field, WT.LEN), varint(b.length), b]);
}

export function f64(field: number, v: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt.asUintN(64, v));
  return Buffer.concat([tag(field, WT.I64), b]);
}

export function f32(field: number, v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return Buffer.concat([tag(field, WT.I32), b]);
}

/** A map<string,string> entry. */
export function fmap(field: number, k: Data, v: Data): Buffer {
  return fl(field, Buffer.concat([fl(1, k), fl(2, v)]));
}

export function cat(...parts: Buffer[]): Buffer {
  return Buffer.concat(parts);
}

/** `count` copies of a field, without building the array of parts twice. */
export function repeat(count: number, part: (i: number) => Buffer): Buffer {
  const parts: Buffer[] = new Array(count);
  for (let i = 0; i < count; i++) parts[i] = part(i);
  return Buffer.concat(parts);
}

/** `depth` length-delimited fields nested in each other around `inner` (written in one pass). */
export function nestLen(field: number, depth: number, inner: Buffer = Buffer.alloc(0)): Buffer {
  const t = tag(field, WT.LEN);
  const lens: number[] = new Array(depth);
  let size = inner.length;
  for (let i = depth - 1; i >= 0; i--) {
    lens[i] = size;
    size += t.length + varint(size).length;
  }
  const parts: Buffer[] = [];
  for (let i = 0; i < depth; i++) parts.push(t, varint(lens[i] as number));
  parts.push(inner);
  return Buffer.concat(parts);
}

/** `depth` nested groups (start ... end) of one field number. */
export function nestGroups(field: number, depth: number): Buffer {
  const s = tag(field, WT.SGROUP);
  const e = tag(field, WT.EGROUP);
  return Buffer.concat([...new Array(depth).fill(s), ...new Array(depth).fill(e)]);
}

/** One field of the given number with the given wire type and an arbitrary plausible payload. */
export function fieldOfWireType(rng: Rng, field: number, wireType: number): Buffer {
  switch (wireType) {
    case WT.VARINT:
      return fv(field, rng.pick([0n, 1n, 127n, 2n ** 32n - 1n, 2n ** 63n - 1n, -1n]));
    case WT.I64:
      return f64(field, BigInt(rng.u32()) << 20n);
    case WT.LEN:
      return fl(field, rng.bytes(rng.int(0, 12)));
    case WT.SGROUP:
      return rng.bool() ? cat(tag(field, WT.SGROUP), tag(field, WT.EGROUP)) : tag(field, WT.SGROUP);
    case WT.EGROUP:
      return tag(field, WT.EGROUP);
    case WT.I32:
      return f32(field, rng.u32());
    default:
      // 6 and 7 are not wire types at all.
      return cat(tag(field, wireType), rng.bytes(rng.int(0, 4)));
  }
}

// ---- hostile values ----

/** Bytes that are not valid UTF-8 (a proto3 string must be). */
export const INVALID_UTF8: Buffer[] = [
  Buffer.from([0xff]),
  Buffer.from([0xc0, 0x80]), // overlong NUL
  Buffer.from([0xed, 0xa0, 0x80]), // UTF-16 surrogate
  Buffer.from([0xf4, 0x90, 0x80, 0x80]), // past U+10FFFF
  Buffer.from([0x31, 0xe2, 0x82]), // "1" then a truncated sequence
  Buffer.from([0x77, 0x31, 0x80]),
];

/** Strings that are valid UTF-8 but hostile as ids, names, keys and tokens. */
export const HOSTILE_STRINGS: string[] = [
  "",
  " ",
  "  ",
  "\t",
  "\n",
  "\r\n",
  "\0",
  "\0\0\0",
  "1\0",
  "\x001",
  "a\0b",
  "\x01",
  "\x1b[2J",
  "\x7f",
  "\u0085",
  "\u200b",
  "\u202e1",
  "\ufeff1",
  "\uffff",
  "\ufffd",
  "😀",
  "w😀",
  "ö",
  "１", // fullwidth digit one
  "١", // Arabic-Indic digit one
  "../x",
  "..",
  ".",
  "/",
  "./",
  "..\\x",
  "x/../../etc/passwd",
  "/etc/passwd",
  "%2e%2e%2f",
  "%00",
  "*",
  "?",
  "[a-z]",
  "$(id)",
  "`id`",
  "'; DROP TABLE jobs; --",
  "<script>",
  "{}",
  "null",
  "undefined",
  "NaN",
  "true",
  "0",
  "00",
  "01",
  "-1",
  "+1",
  "1e3",
  "0x10",
  "1.0",
  "1 ",
  " 1",
  "\t1",
  "18446744073709551615",
  "9223372036854775807",
  "99999999999999999",
  "9999999999999999",
  "1000000000000000",
  "4294967295",
  "__proto__",
  "constructor",
  "hasOwnProperty",
  "a=b",
  "=",
  "==",
  "k=v=w",
  "-",
  "_",
  ".hidden",
  "-leading-dash",
  "a".repeat(128),
  "a".repeat(129),
  "é".repeat(64),
  "é".repeat(65),
  "x".repeat(257),
  "1".repeat(16),
  "1".repeat(17),
  "1".repeat(1000),
];

/** Extreme varint values for numeric fields (written as raw varints). */
export const EXTREME_INTS: bigint[] = [
  0n,
  1n,
  -1n,
  2n ** 31n - 1n,
  -(2n ** 31n),
  2n ** 31n,
  2n ** 32n - 1n,
  2n ** 32n,
  2n ** 53n,
  2n ** 63n - 1n,
  -(2n ** 63n),
  2n ** 64n - 1n,
  999n,
  1001n,
  100_001n,
];

/** A 1 to 10 MB string of a few kinds (ASCII, multi-byte, NUL-laden, digits). */
export function hugeString(rng: Rng, minMb = 1, maxMb = 10): Buffer {
  const size = rng.int(minMb * 1024 * 1024, maxMb * 1024 * 1024);
  const unit = rng.pick(["a", "7", "é", "😀", "\0", "../", "\u202e", "=", " "]);
  const u = Buffer.from(unit);
  const b = Buffer.alloc(size - (size % u.length), u);
  return b;
}
