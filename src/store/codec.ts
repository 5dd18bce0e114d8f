/** Value encoding of stored records: protobuf binary, never JSON. */
import { type DescMessage, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { decodeMessage } from "../rpc/binary.js";

/** Encodes a message for etcd. */
export function encode<T extends DescMessage>(schema: T, value: MessageShape<T>): Buffer {
  const bytes = toBinary(schema, value);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Decodes a stored value. */
export function decode<T extends DescMessage>(schema: T, bytes: Uint8Array): MessageShape<T> {
  return decodeMessage(schema, bytes);
}
