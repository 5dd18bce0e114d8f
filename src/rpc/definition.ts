/**
 * grpc-js service definitions built from protobuf-es descriptors, shared by
 * the server and the client so both speak the generated types and nothing else.
 */
import { create, type DescMessage, type DescService, type MessageShape, toBinary } from "@bufbuild/protobuf";
import type { MethodDefinition, ServiceDefinition } from "@grpc/grpc-js";
import { decodeMessage } from "./binary.js";

/** The grpc-js path of a method: `/crms.v1.JobService/SubmitJob`. */
export function methodPath(service: DescService, method: string): string {
  return `/${service.typeName}/${method}`;
}

function serializer<T extends DescMessage>(schema: T) {
  return (value: MessageShape<T>): Buffer => {
    const bytes = toBinary(schema, create(schema, value as never));
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

function deserializer<T extends DescMessage>(schema: T) {
  return (bytes: Buffer): MessageShape<T> => decodeMessage(schema, bytes);
}

/** A request that could not be decoded; the server edge answers it with INVALID_ARGUMENT. */
export class UndecodableRequest {
  constructor(readonly message: string) {}
}

/**
 * Server-side request decoding never throws: grpc-js would turn a throw into
 * INTERNAL before any crms code runs. A bad message becomes an UndecodableRequest.
 */
function requestDeserializer<T extends DescMessage>(schema: T) {
  return (bytes: Buffer): MessageShape<T> | UndecodableRequest => {
    try {
      return decodeMessage(schema, bytes);
    } catch (err) {
      return new UndecodableRequest(
        `request is not a valid ${schema.typeName}: ${err instanceof Error ? err.message : err}`,
      );
    }
  };
}

/** Builds the grpc-js ServiceDefinition of a protobuf-es service. */
export function serviceDefinition(service: DescService): ServiceDefinition {
  const definition: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const method of service.methods) {
    definition[method.localName] = {
      path: methodPath(service, method.name),
      originalName: method.name,
      requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
      responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
      requestSerialize: serializer(method.input) as (value: unknown) => Buffer,
      requestDeserialize: requestDeserializer(method.input),
      responseSerialize: serializer(method.output) as (value: unknown) => Buffer,
      responseDeserialize: deserializer(method.output),
    };
  }
  return definition as ServiceDefinition;
}
