/**
 * API tokens: random secrets handed to people and workers, kept by the store
 * only as the SHA-256 of the secret (src/store/tokens.ts), with a name (the
 * identity that owns jobs), a role and, for a worker token, the worker name it
 * binds. This file makes and checks secrets over those records.
 */
import { createHash, randomBytes } from "node:crypto";
import { CrmsError, invalid, notFound } from "../errors.js";
import type { Identity } from "../rpc/context.js";
import { checkWorkerName } from "../rpc/names.js";
import type { TokenRecord, TokenRecords } from "../store/tokens.js";

export type { TokenRecord };
export type Role = Identity["role"];
export const ROLES: readonly Role[] = ["admin", "submitter", "reader", "worker"];

/** The SHA-256 of a secret, hex. */
export function hashToken(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}

/** Checks a token's name, role and worker binding. */
export function checkTokenSpec(spec: { name: string; role: string; worker?: string }): void {
  checkWorkerName(spec.name, "token name");
  if (!ROLES.includes(spec.role as Role)) {
    throw invalid(`role ${JSON.stringify(spec.role)} is not one of ${ROLES.join(", ")}`);
  }
  if (spec.role === "worker") checkWorkerName(spec.worker ?? "", "worker name of a worker token");
  else if (spec.worker) throw invalid("only a worker token is bound to a worker name");
}

/** Where the token records are kept, by the hash of their secret: the store's `tokens` (etcd, watched). */
export type TokenRecordStore = Pick<TokenRecords, "size" | "get" | "create" | "list" | "delete">;

/** The API tokens: secrets made, looked up and revoked over the records the store keeps. */
export class Tokens {
  constructor(private readonly records: TokenRecordStore) {}

  /** How many tokens exist (0: none configured). */
  get size(): number {
    return this.records.size;
  }

  /** The record of a secret, if it is a live token. */
  lookup(secret: string): TokenRecord | undefined {
    return this.records.get(hashToken(secret));
  }

  /** Creates a token (or stores a given secret, for bootstrapping); returns the secret once. */
  async create(
    spec: { name: string; role: string; worker?: string },
    secret = `crms_${randomBytes(24).toString("base64url")}`,
  ): Promise<{ secret: string; record: TokenRecord }> {
    checkTokenSpec(spec);
    if (secret.length < 16) throw invalid("a token secret must be at least 16 characters");
    const hash = hashToken(secret);
    const record: TokenRecord = {
      id: hash.slice(0, 16),
      name: spec.name,
      role: spec.role as Role,
      ...(spec.role === "worker" ? { worker: spec.worker } : {}),
      createdAt: new Date().toISOString(),
    };
    if (!(await this.records.create(hash, record))) {
      throw new CrmsError("ALREADY_EXISTS", `token ${record.id} already exists`);
    }
    return { secret, record };
  }

  /** Every token record, read from etcd (not the cache), sorted by name then id. */
  async list(): Promise<TokenRecord[]> {
    return [...(await this.records.list()).values()].sort(
      (a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id),
    );
  }

  /** Revokes the token with this id. */
  async revoke(id: string): Promise<TokenRecord> {
    if (!/^[0-9a-f]{16}$/.test(id)) throw invalid(`token id ${JSON.stringify(id.slice(0, 40))} is not 16 hex digits`);
    for (const [hash, record] of await this.records.list()) {
      if (record.id !== id) continue;
      await this.records.delete(hash);
      return record;
    }
    throw notFound(`token ${id} does not exist`);
  }
}
