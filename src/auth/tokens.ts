/**
 * API tokens: random secrets handed to people and workers, stored in etcd only
 * as the SHA-256 of the secret (under Keys.tokens), with a name (the identity
 * that owns jobs), a role and, for a worker token, the worker name it binds.
 * Every replica keeps a watched copy, so a created or revoked token takes
 * effect everywhere without a restart.
 */
import { createHash, randomBytes } from "node:crypto";
import type { Etcd3 } from "etcd3";
import { CrmsError, invalid, notFound } from "../errors.js";
import type { Identity } from "../services/context.js";
import { checkWorkerName } from "../services/validate.js";
import { PrefixCache } from "../store/cache.js";
import type { Keys } from "../store/keys.js";

export type Role = Identity["role"];
export const ROLES: readonly Role[] = ["admin", "submitter", "reader", "worker"];

/** What etcd holds for one token (never the secret). */
export interface TokenRecord {
  /** Short public id (first 16 hex digits of the hash), used to list and revoke. */
  id: string;
  /** The identity: owner of the jobs submitted with it. */
  name: string;
  role: Role;
  /** For role worker: the only worker name it may attach as. */
  worker?: string;
  /** ISO time of creation. */
  createdAt: string;
}

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

/** The token records of one key prefix, read and written in etcd. */
export class TokenStore {
  readonly cache: PrefixCache<TokenRecord>;

  constructor(
    private readonly etcd: Etcd3,
    private readonly keys: Keys,
  ) {
    this.cache = new PrefixCache(etcd, keys.tokens, (b) => JSON.parse(b.toString()) as TokenRecord);
  }

  /** Lists and watches the tokens. */
  start(): Promise<void> {
    return this.cache.start();
  }

  close(): Promise<void> {
    return this.cache.close();
  }

  /** Waits (up to 5 s) until this replica's copy satisfies cond, so a change is in effect here when its RPC returns. */
  private async seen(cond: (entries: Map<string, unknown>) => boolean): Promise<void> {
    for (const deadline = Date.now() + 5000; !cond(this.cache.entries) && Date.now() < deadline; ) {
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** How many tokens exist (0: none configured). */
  get size(): number {
    return this.cache.entries.size;
  }

  /** The record of a secret, if it is a live token. */
  lookup(secret: string): TokenRecord | undefined {
    return this.cache.entries.get(hashToken(secret))?.value;
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
    const key = this.keys.token(hash);
    const res = await this.etcd
      .if(key, "Create", "==", 0)
      .then(this.etcd.put(key).value(JSON.stringify(record)))
      .commit();
    if (!res.succeeded) throw new CrmsError("ALREADY_EXISTS", `token ${record.id} already exists`);
    await this.seen((t) => t.has(hash));
    return { secret, record };
  }

  /** Every token record, read from etcd (not the cache), sorted by name then id. */
  async list(): Promise<TokenRecord[]> {
    const all = await this.etcd.getAll().prefix(this.keys.tokens).strings();
    return Object.values(all)
      .map((v) => JSON.parse(v) as TokenRecord)
      .sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
  }

  /** Revokes the token with this id. */
  async revoke(id: string): Promise<TokenRecord> {
    if (!/^[0-9a-f]{16}$/.test(id)) throw invalid(`token id ${JSON.stringify(id.slice(0, 40))} is not 16 hex digits`);
    const all = await this.etcd.getAll().prefix(this.keys.tokens).strings();
    for (const [key, value] of Object.entries(all)) {
      const record = JSON.parse(value) as TokenRecord;
      if (record.id !== id) continue;
      await this.etcd.delete().key(key).exec();
      await this.seen((t) => !t.has(key.slice(this.keys.tokens.length)));
      return record;
    }
    throw notFound(`token ${id} does not exist`);
  }
}
