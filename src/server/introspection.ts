/**
 * The standard grpc.health.v1 service and server reflection, so grpcurl works
 * without .proto files. Reflection is fed the descriptors protobuf-es generated.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema, file_google_protobuf_timestamp } from "@bufbuild/protobuf/wkt";
import type * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { HealthImplementation, protoPath as healthProto } from "grpc-health-check";
import { file_crms_v1_admin } from "../../gen/crms/v1/admin_pb.js";
import { file_crms_v1_job } from "../../gen/crms/v1/job_pb.js";
import { file_crms_v1_worker } from "../../gen/crms/v1/worker_pb.js";

/** Every crms service name, as health and reflection list them. */
export const SERVICE_NAMES = ["crms.v1.JobService", "crms.v1.WorkerService", "crms.v1.AdminService"];

/** The serialized FileDescriptorSet of the crms contract. */
export function contractDescriptorSet(): Uint8Array {
  const files = [file_google_protobuf_timestamp, file_crms_v1_job, file_crms_v1_worker, file_crms_v1_admin];
  return toBinary(FileDescriptorSetSchema, create(FileDescriptorSetSchema, { file: files.map((f) => f.proto) }));
}

/** Adds health (all services SERVING) and reflection to a server; returns the health switch. */
export function addIntrospection(server: grpc.Server): HealthImplementation {
  const health = new HealthImplementation({
    "": "SERVING",
    ...Object.fromEntries(SERVICE_NAMES.map((n) => [n, "SERVING"])),
  });
  health.addToServer(server);
  const crms = protoLoader.loadFileDescriptorSetFromBuffer(Buffer.from(contractDescriptorSet()));
  const healthDef = protoLoader.loadSync(healthProto);
  new ReflectionService({ ...crms, ...healthDef }).addToServer(server);
  return health;
}
