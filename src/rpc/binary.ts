/**
 * A faster `fromBinary` for the contract's messages.
 *
 * protobuf-es builds every message, nested ones included, by walking a list
 * of its fields and adding them one by one; for a job record that is about
 * 2.5 µs of the 3.4 µs a decode takes here, and a replica decodes every job
 * record when it starts (a million of them over a backlog). This decoder
 * compiles each message's reader to code of its own (see build()) and reads
 * the wire with protobuf-es's own BinaryReader.
 *
 * It gives exactly what `fromBinary` gives, or defers to it: a schema it does
 * not cover (proto2 or editions, groups, wrapper or Struct fields) is left to
 * `fromBinary` whole, and so is any message that does not read cleanly (an
 * unknown field, which `fromBinary` keeps in `$unknown`; a wire type that does
 * not match its field; a truncated or malformed input, whose error then comes
 * from `fromBinary`).
 */
import {
  type DescEnum,
  type DescField,
  type DescMessage,
  fromBinary,
  type MessageShape,
  ScalarType,
} from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { isWrapperDesc } from "@bufbuild/protobuf/wkt";

type Message = Record<string, unknown>;

interface Compiled {
  create(): Message;
  read(m: Message, r: BinaryReader, end: number, depth: number): void;
}

/** Thrown inside the fast path when a message must be read by fromBinary instead. */
class Defer extends Error {}
const DEFER = new Defer();

/** protobuf-es's edition number for proto3 files. */
const EDITION_PROTO3 = 999;
/** fromBinary's default recursion limit. */
const MAX_DEPTH = 100;

const compiled = new WeakMap<DescMessage, Compiled | null>();

/** Decodes a message: the same result as protobuf-es's fromBinary, faster for the contract's messages. */
export function decodeMessage<T extends DescMessage>(schema: T, bytes: Uint8Array): MessageShape<T> {
  const c = compile(schema);
  if (c) {
    try {
      const r = new BinaryReader(bytes);
      const m = c.create();
      c.read(m, r, bytes.byteLength, 0);
      return m as MessageShape<T>;
    } catch {
      // Anything the fast path does not read cleanly is read (or refused) by protobuf-es itself.
    }
  }
  return fromBinary(schema, bytes);
}

/** True when decodeMessage reads this schema's messages itself (not through fromBinary). */
export function isCompiled(schema: DescMessage): boolean {
  return compile(schema) !== null;
}

/** The compiled decoder of a schema, or null when it (or a message it holds) is not covered. */
function compile(desc: DescMessage): Compiled | null {
  const known = compiled.get(desc);
  if (known !== undefined) return known;
  if (!covered(desc, new Set())) {
    compiled.set(desc, null);
    return null;
  }
  return build(desc);
}

/** True when every message reachable from `desc` is proto3 with no field kind this decoder leaves to fromBinary. */
function covered(desc: DescMessage, seen: Set<DescMessage>): boolean {
  if (seen.has(desc)) return true;
  seen.add(desc);
  if (desc.file.edition !== EDITION_PROTO3) return false;
  for (const f of desc.fields) {
    if (f.fieldKind === "message" && f.delimitedEncoding) return false;
    if (f.fieldKind === "list" && f.listKind === "message" && f.delimitedEncoding) return false;
    // Closed enums keep unknown values in $unknown, in a singular field, a list or a map alike.
    if (f.enum && !f.enum.open) return false;
    const child = f.message;
    if (!child) continue;
    if (isWrapperDesc(child) || child.typeName === "google.protobuf.Struct") return false;
    if (!covered(child, seen)) return false;
  }
  return true;
}

/**
 * Compiles a message's create and read into code of their own (as protobufjs
 * does): each property name is a literal, so every store is a monomorphic
 * one and the zero message is one object literal. Closures shared by every
 * field, as protobuf-es has, see every message shape at one site and run
 * several times slower than this. Names and literals come from the compiled-in
 * descriptors, quoted with JSON.stringify.
 */
function build(desc: DescMessage): Compiled {
  // Registered first: a message that holds itself resolves to this instance.
  const self: Compiled = { create: () => ({}), read: () => undefined };
  compiled.set(desc, self);
  const k: unknown[] = [];
  const ref = (value: unknown): string => {
    k.push(value);
    return `k[${k.length - 1}]`;
  };
  const q = (text: string): string => JSON.stringify(text);
  // The zero message as protobuf-es's create() builds it: $typeName, then each
  // member in declaration order; absent singular messages and unset optional
  // scalars have no property at all.
  const props = [`$typeName: ${q(desc.typeName)}`];
  for (const member of desc.members) {
    const name = q(member.localName);
    if (member.kind === "oneof") props.push(`${name}: { case: undefined }`);
    else if (member.fieldKind === "list") props.push(`${name}: []`);
    else if (member.fieldKind === "map") props.push(`${name}: {}`);
    else if (member.fieldKind !== "message" && member.presence === 2 /* IMPLICIT */) {
      const zero = zeroValue(member);
      props.push(`${name}: ${typeof zero === "object" || typeof zero === "bigint" ? ref(zero) : JSON.stringify(zero)}`);
    }
  }
  const cases: string[] = [];
  for (const f of desc.fields) {
    const name = q(f.localName);
    const tag = (wt: number) => `case ${((f.number << 3) | wt) >>> 0}:`;
    switch (f.fieldKind) {
      case "scalar":
      case "enum": {
        const expr = f.fieldKind === "enum" ? "r.int32()" : scalarExpr(f.scalar, f.longAsString, f.utf8Validation);
        const wt = f.fieldKind === "enum" ? WireType.Varint : scalarWireType(f.scalar);
        if (f.oneof) cases.push(`${tag(wt)} m[${q(f.oneof.localName)}] = { case: ${name}, value: ${expr} }; break;`);
        else cases.push(`${tag(wt)} m[${name}] = ${expr}; break;`);
        break;
      }
      case "message": {
        const child = ref(childReader(f.message));
        if (f.oneof) {
          const group = q(f.oneof.localName);
          cases.push(
            `${tag(WireType.LengthDelimited)} { const p = m[${group}]; m[${group}] = { case: ${name}, value: ${child}(r, p.case === ${name} ? p.value : undefined, depth) }; } break;`,
          );
        } else cases.push(`${tag(WireType.LengthDelimited)} m[${name}] = ${child}(r, m[${name}], depth); break;`);
        break;
      }
      case "list": {
        if (f.listKind === "message") {
          cases.push(
            `${tag(WireType.LengthDelimited)} m[${name}].push(${ref(childReader(f.message))}(r, undefined, depth)); break;`,
          );
          break;
        }
        const type = f.listKind === "enum" ? ScalarType.INT32 : f.scalar;
        const expr = scalarExpr(type, f.listKind === "scalar" && f.longAsString, f.utf8Validation);
        const wt = scalarWireType(type);
        cases.push(`${tag(wt)} m[${name}].push(${expr}); break;`);
        if (wt !== WireType.LengthDelimited) {
          // Packed: one length-delimited run of values.
          cases.push(
            `${tag(WireType.LengthDelimited)} { const e = r.uint32() + r.pos; const a = m[${name}]; while (r.pos < e) a.push(${expr}); if (r.pos !== e) throw D; } break;`,
          );
        }
        break;
      }
      case "map":
        cases.push(`${tag(WireType.LengthDelimited)} ${ref(mapEntryReader(f))}(m[${name}], r, depth); break;`);
        break;
    }
  }
  const source = `
    return {
      create() { return { ${props.join(", ")} }; },
      read(m, r, end, depth) {
        if (depth > ${MAX_DEPTH}) throw D;
        while (r.pos < end) {
          switch (r.uint32()) {
            ${cases.join("\n            ")}
            default: throw D;
          }
        }
        if (r.pos !== end) throw D;
      },
    };`;
  const made = new Function("k", "D", source)(k, DEFER) as Compiled;
  self.create = made.create;
  self.read = made.read;
  return self;
}

/** The zero value protobuf-es's create() gives an implicit-presence scalar or enum field. */
function zeroValue(f: DescField & { fieldKind: "scalar" | "enum" }): unknown {
  return f.fieldKind === "enum" ? enumZero(f.enum) : scalarZero(f.scalar, f.longAsString);
}

/** An enum's zero value: its first value. */
function enumZero(e: DescEnum): number {
  return e.values[0]?.number ?? 0;
}

/** The BinaryReader method of each scalar type. */
const READ: Record<ScalarType, string> = {
  [ScalarType.DOUBLE]: "double",
  [ScalarType.FLOAT]: "float",
  [ScalarType.INT64]: "int64",
  [ScalarType.UINT64]: "uint64",
  [ScalarType.INT32]: "int32",
  [ScalarType.FIXED64]: "fixed64",
  [ScalarType.FIXED32]: "fixed32",
  [ScalarType.BOOL]: "bool",
  [ScalarType.STRING]: "string",
  [ScalarType.BYTES]: "bytes",
  [ScalarType.UINT32]: "uint32",
  [ScalarType.SFIXED32]: "sfixed32",
  [ScalarType.SFIXED64]: "sfixed64",
  [ScalarType.SINT32]: "sint32",
  [ScalarType.SINT64]: "sint64",
};
const LONG = new Set([ScalarType.INT64, ScalarType.UINT64, ScalarType.SINT64, ScalarType.FIXED64, ScalarType.SFIXED64]);
const BIT64 = new Set([ScalarType.DOUBLE, ScalarType.FIXED64, ScalarType.SFIXED64]);
const BIT32 = new Set([ScalarType.FLOAT, ScalarType.FIXED32, ScalarType.SFIXED32]);

function scalarZero(type: ScalarType, longAsString: boolean): unknown {
  if (type === ScalarType.STRING) return "";
  if (type === ScalarType.BOOL) return false;
  if (type === ScalarType.BYTES) return new Uint8Array(0);
  if (LONG.has(type)) return longAsString ? "0" : BigInt(0);
  return 0;
}

function scalarWireType(type: ScalarType): number {
  if (type === ScalarType.STRING || type === ScalarType.BYTES) return WireType.LengthDelimited;
  if (BIT64.has(type)) return WireType.Bit64;
  if (BIT32.has(type)) return WireType.Bit32;
  return WireType.Varint;
}

/** The BinaryReader call that reads one scalar as protobuf-es represents it (the reader is `r`). */
function scalarExpr(type: ScalarType, longAsString: boolean, utf8Validation: boolean): string {
  if (type === ScalarType.STRING) return `r.string(${utf8Validation})`;
  const call = `r.${READ[type]}()`;
  return longAsString && LONG.has(type) ? `String(${call})` : call;
}

/** Reads a length-delimited child message into `into` (a fresh one when undefined: a repeated occurrence merges). */
function childReader(desc: DescMessage): (r: BinaryReader, into: Message | undefined, depth: number) => Message {
  let c: Compiled | undefined;
  return (r, into, depth) => {
    c ??= compile(desc) as Compiled;
    const child = into ?? c.create();
    const len = r.uint32();
    c.read(child, r, r.pos + len, depth + 1);
    return child;
  };
}

/** Reads one map entry into the record, as protobuf-es does (a missing key or value is the zero value). */
function mapEntryReader(
  f: DescField & { fieldKind: "map" },
): (record: Message, r: BinaryReader, depth: number) => void {
  const readKey = new Function("r", `return ${scalarExpr(f.mapKey, false, f.utf8Validation)};`) as (
    r: BinaryReader,
  ) => unknown;
  const keyZero = scalarZero(f.mapKey, false);
  let readValue: (r: BinaryReader, prev: unknown, depth: number) => unknown;
  let valueZero: () => unknown;
  if (f.mapKind === "message") {
    const read = childReader(f.message);
    readValue = (r, prev, depth) => read(r, prev as Message | undefined, depth);
    valueZero = () => (compile(f.message) as Compiled).create();
  } else {
    const type = f.mapKind === "enum" ? ScalarType.INT32 : f.scalar;
    readValue = new Function("r", `return ${scalarExpr(type, false, f.utf8Validation)};`) as (
      r: BinaryReader,
    ) => unknown;
    const zero = f.mapKind === "enum" ? enumZero(f.enum) : scalarZero(type, false);
    valueZero = type === ScalarType.BYTES ? () => new Uint8Array(0) : () => zero;
  }
  return (record, r, depth) => {
    const end = r.uint32() + r.pos;
    let key: unknown;
    let value: unknown;
    while (r.pos < end) {
      const tag = r.uint32();
      const no = tag >>> 3;
      if (no === 1) key = readKey(r);
      else if (no === 2) value = readValue(r, value, depth);
      else r.skip(tag & 7, no);
    }
    if (r.pos !== end) throw DEFER;
    const name = String(key ?? keyZero);
    const v = value ?? valueZero();
    // As protobuf-es's setOwn: a key may be "__proto__".
    if (name === "__proto__")
      Object.defineProperty(record, name, { value: v, writable: true, enumerable: true, configurable: true });
    else record[name] = v;
  };
}
