/**
 * The compiled decoder (src/rpc/binary.ts) against protobuf-es's fromBinary:
 * the same messages, property for property and in the same order, for every
 * message of the contract filled at random; and the cases it leaves to
 * fromBinary (unknown fields, bad input) answered exactly as fromBinary does.
 */
import { isDeepStrictEqual } from "node:util";
import { create, type DescField, type DescMessage, fromBinary, ScalarType, toBinary } from "@bufbuild/protobuf";
import { nestedTypes } from "@bufbuild/protobuf/reflect";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import test from "ava";
import { file_crms_v1_admin } from "../gen/crms/v1/admin_pb.js";
import { file_crms_v1_job, JobSchema, JobSpecSchema, JobState } from "../gen/crms/v1/job_pb.js";
import { file_crms_v1_queue } from "../gen/crms/v1/queue_pb.js";
import { file_crms_v1_worker } from "../gen/crms/v1/worker_pb.js";
import { decodeMessage, isCompiled } from "../src/rpc/binary.js";

const messages = [file_crms_v1_job, file_crms_v1_worker, file_crms_v1_admin, file_crms_v1_queue].flatMap((file) =>
  [...nestedTypes(file)].filter((t): t is DescMessage => t.kind === "message"),
);

/** A small deterministic generator, so a failure can be run again. */
function random(seed: number) {
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
  const int = (n: number) => Math.floor(next() * n);
  return { next, int, chance: (p: number) => next() < p };
}
type Random = ReturnType<typeof random>;

function scalar(type: ScalarType, rnd: Random): unknown {
  switch (type) {
    case ScalarType.STRING:
      return ["", "a", "héllo ✓", "x".repeat(rnd.int(300)), "__proto__"][rnd.int(5)];
    case ScalarType.BOOL:
      return rnd.chance(0.5);
    case ScalarType.BYTES:
      return Uint8Array.from({ length: rnd.int(40) }, () => rnd.int(256));
    case ScalarType.DOUBLE:
      return [0, -1.5, 1e300, Number.NaN, rnd.next()][rnd.int(5)];
    case ScalarType.FLOAT:
      return [0, 0.5, -2, 1024][rnd.int(4)];
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return [0, -1, 2 ** 31 - 1, -(2 ** 31), rnd.int(1000)][rnd.int(5)];
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return [0, 1, 2 ** 32 - 1, rnd.int(100000)][rnd.int(4)];
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return [0n, 1n, 2n ** 64n - 1n, BigInt(rnd.int(1e9))][rnd.int(4)];
    default:
      return [0n, -1n, 2n ** 63n - 1n, -(2n ** 63n), BigInt(rnd.int(1e9))][rnd.int(5)];
  }
}

function value(f: DescField, rnd: Random, depth: number): unknown {
  switch (f.fieldKind) {
    case "scalar":
      return scalar(f.scalar, rnd);
    case "enum":
      return f.enum.values[rnd.int(f.enum.values.length)]?.number ?? 0;
    case "message":
      return fill(f.message, rnd, depth + 1);
    case "list":
      return Array.from({ length: rnd.int(4) }, () =>
        f.listKind === "message"
          ? fill(f.message, rnd, depth + 1)
          : f.listKind === "enum"
            ? (f.enum.values[rnd.int(f.enum.values.length)]?.number ?? 0)
            : scalar(f.scalar, rnd),
      );
    case "map": {
      const record: Record<string, unknown> = {};
      for (let i = rnd.int(4); i > 0; i--) {
        const key = String(scalar(f.mapKey, rnd));
        record[key] =
          f.mapKind === "message"
            ? fill(f.message, rnd, depth + 1)
            : f.mapKind === "enum"
              ? (f.enum.values[0]?.number ?? 0)
              : scalar(f.scalar, rnd);
      }
      return record;
    }
  }
}

/** A message of this schema with a random half of its fields set (and nested ones, three levels deep). */
function fill(desc: DescMessage, rnd: Random, depth = 0): Record<string, unknown> {
  const init: Record<string, unknown> = {};
  if (depth > 3) return create(desc) as never;
  for (const member of desc.members) {
    if (!rnd.chance(0.5)) continue;
    if (member.kind === "oneof") {
      const f = member.fields[rnd.int(member.fields.length)];
      if (f) init[member.localName] = { case: f.localName, value: value(f, rnd, depth) };
    } else {
      init[member.localName] = value(member, rnd, depth);
    }
  }
  return create(desc, init as never) as never;
}

/** Same values, same prototypes, and the same property order at every level. */
function same(a: unknown, b: unknown): boolean {
  if (!isDeepStrictEqual(a, b)) return false;
  if (a === null || typeof a !== "object" || ArrayBuffer.isView(a)) return true;
  const ka = Object.keys(a);
  const kb = Object.keys(b as object);
  return (
    ka.join("\0") === kb.join("\0") &&
    ka.every((key) => same((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key]))
  );
}

test("every message of the contract decodes as fromBinary decodes it", (t) => {
  t.true(messages.length > 40, `found ${messages.length} messages`);
  let checked = 0;
  for (const desc of messages) {
    t.true(isCompiled(desc), `${desc.typeName} is read by the compiled path`);
    for (let seed = 1; seed <= 60; seed++) {
      const bytes = toBinary(desc, fill(desc, random(seed * 7919 + desc.typeName.length)) as never);
      const want = fromBinary(desc, bytes);
      const got = decodeMessage(desc, bytes);
      if (!same(got, want)) {
        t.fail(
          `${desc.typeName} seed ${seed}: ${JSON.stringify(got, (_k, v) => (typeof v === "bigint" ? `${v}n` : v))}`,
        );
        return;
      }
      checked++;
    }
  }
  t.is(checked, messages.length * 60);
});

test("a pending job record decodes to the same Job", (t) => {
  const job = create(JobSchema, {
    id: "123",
    state: JobState.PENDING,
    requestId: "b393402b-0117-4de3-b44f-9f87a17b3f30",
    queue: "default",
    spec: { command: ["echo", "hi"], name: "sweep", labels: { team: "a" }, resources: { cpus: 1 } },
    submitTime: { seconds: 1_700_000_000n, nanos: 5 },
  });
  const bytes = toBinary(JobSchema, job);
  t.true(same(decodeMessage(JobSchema, bytes), fromBinary(JobSchema, bytes)));
});

test("a repeated message field merges and packed and unpacked lists both read, as fromBinary", (t) => {
  const w = new BinaryWriter();
  // spec twice: the second occurrence merges into the first.
  w.tag(2, WireType.LengthDelimited).bytes(
    toBinary(JobSpecSchema, create(JobSpecSchema, { name: "a", command: ["x"] })),
  );
  w.tag(2, WireType.LengthDelimited).bytes(
    toBinary(JobSpecSchema, create(JobSpecSchema, { command: ["y"], priority: 3 })),
  );
  // a map entry with no key and one with no value
  const entry = new BinaryWriter().tag(2, WireType.LengthDelimited).string("v").finish();
  const spec = new BinaryWriter().tag(5, WireType.LengthDelimited).bytes(entry).finish();
  w.tag(2, WireType.LengthDelimited).bytes(spec);
  w.tag(3, WireType.Varint).int32(99); // an enum value the contract does not name
  const bytes = w.finish();
  const got = decodeMessage(JobSchema, bytes);
  t.true(same(got, fromBinary(JobSchema, bytes)));
  t.deepEqual(got.spec?.command, ["x", "y"]);
  t.is(got.spec?.name, "a");
  t.deepEqual(got.spec?.labels, { "": "v" });
  t.is(got.state as number, 99);
});

test("what the compiled path does not read is answered by fromBinary itself", (t) => {
  // An unknown field is kept in $unknown, as fromBinary keeps it, so writing the record again keeps it.
  const known = toBinary(JobSchema, create(JobSchema, { id: "7" }));
  const unknown = new BinaryWriter().tag(999, WireType.LengthDelimited).string("from a newer crms").finish();
  const withUnknown = new Uint8Array([...known, ...unknown]);
  const got = decodeMessage(JobSchema, withUnknown);
  t.true(same(got, fromBinary(JobSchema, withUnknown)));
  t.deepEqual(toBinary(JobSchema, got), withUnknown);
  // A truncated record and invalid UTF-8 fail with fromBinary's own error.
  const full = toBinary(JobSchema, create(JobSchema, { id: "8", spec: { command: ["a long command line"] } }));
  const truncated = full.subarray(0, full.length - 3);
  t.throws(() => decodeMessage(JobSchema, truncated), {
    message: t.throws(() => fromBinary(JobSchema, truncated))?.message,
  });
  const badUtf8 = new Uint8Array([(1 << 3) | 2, 2, 0xc3, 0x28]);
  t.throws(() => decodeMessage(JobSchema, badUtf8), {
    message: t.throws(() => fromBinary(JobSchema, badUtf8))?.message,
  });
  // A wire type that does not match the field.
  const wrongType = new BinaryWriter().tag(3, WireType.LengthDelimited).string("x").finish();
  const a = (() => {
    try {
      return decodeMessage(JobSchema, wrongType);
    } catch (err) {
      return String(err);
    }
  })();
  const b = (() => {
    try {
      return fromBinary(JobSchema, wrongType);
    } catch (err) {
      return String(err);
    }
  })();
  t.true(same(a, b));
});
