/**
 * @crms/client: the TypeScript client of crms, shared by the CLI, the tests and
 * users. `CrmsClient` makes typed calls over the contract (failover across
 * addresses, a retried submit with one request id, watch, output, queues, TLS
 * and tokens); the generated messages, enums and services of proto/crms/v1 are
 * exported beside it for anything it does not wrap.
 */
export * from "../../../gen/crms/v1/admin_pb.js";
export * from "../../../gen/crms/v1/job_pb.js";
export * from "../../../gen/crms/v1/queue_pb.js";
export * from "../../../gen/crms/v1/worker_pb.js";
export { isFinal } from "../../../src/rpc/states.js";
export { CrmsClient, defaultServer } from "./client.js";
export { addressesOf, type RetryOptions } from "./failover.js";
export { authMetadata, type ClientSecurity, channelCredentials, securityFromEnv } from "./security.js";
export type { CallOptions } from "./transport.js";
