/**
 * The standard grpc.health.v1 service and server reflection, so grpcurl works
 * without .proto files. Reflection is fed the descriptors protobuf-es generated.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
  file_google_protobuf_timestamp,
} from "@bufbuild/protobuf/wkt";
import type * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { HealthImplementation, protoPath as healthProto } from "grpc-health-check";
import { file_crms_v1_admin } from "../../gen/crms/v1/admin_pb.js";
import { file_crms_v1_job } from "../../gen/crms/v1/job_pb.js";
import { file_crms_v1_queue } from "../../gen/crms/v1/queue_pb.js";
import { file_crms_v1_worker } from "../../gen/crms/v1/worker_pb.js";

/** Health service name that is NOT_SERVING while etcd refuses writes (NOSPACE). */
export const WRITES_HEALTH = "crms.writes";

/** Every crms service name, as health and reflection list them. */
export const SERVICE_NAMES = [
  "crms.v1.JobService",
  "crms.v1.WorkerService",
  "crms.v1.AdminService",
  "crms.v1.QueueService",
];

const contractFiles = [
  file_google_protobuf_timestamp,
  file_crms_v1_job,
  file_crms_v1_worker,
  file_crms_v1_admin,
  file_crms_v1_queue,
];

/** The serialized FileDescriptorSet of the crms contract. */
export function contractDescriptorSet(): Uint8Array {
  return toBinary(
    FileDescriptorSetSchema,
    create(FileDescriptorSetSchema, { file: contractFiles.map((f) => f.proto) }),
  );
}

/**
 * protobufjs names a map's entry message after the field ("Statuses"), where
 * protoc (and grpcurl's checks) expect "StatusesEntry": rename them.
 */
function fixMapEntries(def: protoLoader.PackageDefinition): protoLoader.PackageDefinition {
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(def)) {
    const protos = (value as { fileDescriptorProtos?: Buffer[] }).fileDescriptorProtos;
    if (!protos) {
      out[name] = value;
      continue;
    }
    const fixed = protos.map((bytes) => {
      const file = fromBinary(FileDescriptorProtoSchema, bytes);
      for (const msg of file.messageType) {
        for (const nested of msg.nestedType) {
          if (!nested.options?.mapEntry || nested.name.endsWith("Entry")) continue;
          const old = nested.name;
          nested.name = `${old}Entry`;
          for (const f of msg.field) if (f.typeName === old) f.typeName = `.${file.package}.${msg.name}.${nested.name}`;
        }
      }
      return toBinary(FileDescriptorProtoSchema, file);
    });
    out[name] = { ...value, fileDescriptorProtos: fixed };
  }
  return out as protoLoader.PackageDefinition;
}

/** Adds health (all services SERVING) and reflection to a server; returns the health switch. */
export function addIntrospection(server: grpc.Server): HealthImplementation {
  const health = new HealthImplementation({
    "": "SERVING",
    ...Object.fromEntries(SERVICE_NAMES.map((n) => [n, "SERVING"])),
  });
  health.addToServer(server);
  // Reflection reads only `fileDescriptorProtos` from a package definition: hand it the
  // descriptors protobuf-es generated, file by file, so names and imports stay exact.
  const healthDef = fixMapEntries(protoLoader.loadSync(healthProto));
  const crms = {
    "crms.v1": { fileDescriptorProtos: contractFiles.map((f) => toBinary(FileDescriptorProtoSchema, f.proto)) },
  };
  new ReflectionService({ ...healthDef, ...crms } as unknown as protoLoader.PackageDefinition).addToServer(server);
  return health;
}
