/**
 * `crms submit`'s resource, queue and owner options: `--cpus N --memory 4G
 * --gpus N --resource NAME=N --queue Q --preemptible`, and the owner label the
 * CLI sets on a connection without a token (the server puts the token's name
 * there when tokens are on).
 */
import { userInfo } from "node:os";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { type ClientSecurity, securityFromEnv } from "../../clients/typescript/src/security.js";
import type { JobSpecSchema } from "../../gen/crms/v1/job_pb.js";
import { byteSize, CliError, int, keyValues } from "../cmd/flags.js";
import type { Flags } from "../config.js";
import { OWNER_LABEL } from "../rpc/names.js";

/** submit's options for resources and queues. */
export const RESOURCE_FLAGS = {
  cpus: { type: "string" },
  memory: { type: "string" },
  gpus: { type: "string" },
  resource: { type: "string", multiple: true },
  queue: { type: "string" },
  preemptible: { type: "boolean" },
} satisfies Flags;

const UINT32_MAX = 2 ** 32 - 1;

/** A whole number from 0 to 2^32-1 (a uint32 field), `fallback` when the option is absent. */
export function uint32(value: unknown, what: string, fallback = 0): number {
  const n = int(value, what, fallback);
  if (n > UINT32_MAX) throw new CliError(`${what} must be at most ${UINT32_MAX} (got ${value})`, 2);
  return n;
}

type SpecInit = MessageInitShape<typeof JobSpecSchema>;

/** The spec fields of the resource and queue options (resources unset when none is given: the server's default). */
export function resourceSpec(v: Record<string, unknown>): Pick<SpecInit, "resources" | "queue" | "preemptible"> {
  const named: Record<string, bigint> = {};
  for (const [k, n] of Object.entries(keyValues(v.resource, "--resource"))) {
    if (!/^\d+$/.test(n) || !Number.isSafeInteger(Number(n))) {
      throw new CliError(`--resource must be NAME=N, N a whole number (got ${k}=${n})`, 2);
    }
    named[k] = BigInt(n);
  }
  const given = ["cpus", "memory", "gpus", "resource"].some((k) => v[k] !== undefined);
  return {
    resources: given
      ? {
          cpus: uint32(v.cpus, "--cpus"),
          memoryBytes: BigInt(byteSize(v.memory, "--memory")),
          gpus: uint32(v.gpus, "--gpus"),
          named,
        }
      : undefined,
    queue: (v.queue as string | undefined) ?? "",
    preemptible: Boolean(v.preemptible),
  };
}

/** The OS user running the CLI ("" if the system cannot tell). */
function osUser(): string {
  try {
    return userInfo().username;
  } catch {
    return process.env.USER ?? "";
  }
}

/**
 * The job's labels with crms.io/owner set to the OS user when the connection
 * carries no token and the user did not set it: on an open server that is
 * who fair share counts the job against.
 */
export function withOwner(labels: Record<string, string>, security: ClientSecurity): Record<string, string> {
  const s = securityFromEnv(security);
  if (s.token || s.tokenFile || labels[OWNER_LABEL] !== undefined) return labels;
  const user = osUser();
  return user ? { ...labels, [OWNER_LABEL]: user } : labels;
}
