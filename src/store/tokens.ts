/**
 * API token records in etcd: one JSON record per token under Keys.tokens,
 * keyed by the SHA-256 of its secret (the store never sees a secret). Every
 * replica keeps a watched copy, so a created or revoked token takes effect
 * everywhere without a restart. Hashing, roles and checks are auth's
 * (src/auth/tokens.ts); this file only reads and writes the records.
 */
import type { Etcd3 } from "etcd3";
import { PrefixCache } from "./cache.js";
import type { Keys } from "./keys.js";

/** The roles a token can carry. */
export type TokenRole = "admin" | "submitter" | "reader" | "worker";

/** What etcd holds for one token (never the secret). */
export interface TokenRecord {
  /** Short public id (first 16 hex digits of the hash), used to list and revoke. */
  id: string;
  /** The identity: owner of the jobs submitted with it. */
  name: string;
  role: TokenRole;
  /** For role worker: the only worker name it may attach as. */
  worker?: string;
  /** ISO time of creation. */
  createdAt: string;
}

/** The token records of one key prefix: a watched copy for lookups, etcd itself for changes and listings. */
export class TokenRecords {
  private readonly cache: PrefixCache<TokenRecord>;

  constructor(
    private readonly etcd: Etcd3,
    private readonly keys: Keys,
  ) {
    this.cache = new PrefixCache(etcd, keys.tokens, (b) => JSON.parse(b.toString()) as TokenRecord);
  }

  /** Lists and watches the records. */
  start(): Promise<void> {
    return this.cache.start();
  }

  close(): Promise<void> {
    return this.cache.close();
  }

  /** How many tokens this replica's copy holds (0: none configured). */
  get size(): number {
    return this.cache.entries.size;
  }

  /** The record of a secret's hash in this replica's copy, if it is a live token. */
  get(hash: string): TokenRecord | undefined {
    return this.cache.entries.get(hash)?.value;
  }

  /**
   * Writes the record of a hash unless one exists (false then); resolves once
   * this replica's copy has it, so it is in effect here when the RPC returns.
   */
  async create(hash: string, record: TokenRecord): Promise<boolean> {
    const key = this.keys.token(hash);
    const res = await this.etcd
      .if(key, "Create", "==", 0)
      .then(this.etcd.put(key).value(JSON.stringify(record)))
      .commit();
    if (!res.succeeded) return false;
    await this.seen((t) => t.has(hash));
    return true;
  }

  /** Every record by hash, read from etcd (not the copy). */
  async list(): Promise<Map<string, TokenRecord>> {
    const all = await this.etcd.getAll().prefix(this.keys.tokens).strings();
    return new Map(
      Object.entries(all).map(([key, value]) => [key.slice(this.keys.tokens.length), JSON.parse(value) as TokenRecord]),
    );
  }

  /** Deletes the record of a hash; resolves once this replica's copy no longer has it. */
  async delete(hash: string): Promise<void> {
    await this.etcd.delete().key(this.keys.token(hash)).exec();
    await this.seen((t) => !t.has(hash));
  }

  /** Waits (up to 5 s) until this replica's copy satisfies cond. */
  private async seen(cond: (entries: Map<string, unknown>) => boolean): Promise<void> {
    for (const deadline = Date.now() + 5000; !cond(this.cache.entries) && Date.now() < deadline; ) {
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}
