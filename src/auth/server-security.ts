/**
 * The control plane's security options: TLS and mutual TLS on its ports, TLS
 * and password auth towards etcd, the refusal to listen beyond loopback open,
 * and bootstrapping the first admin token.
 */
import { readFileSync, writeFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "../log.js";
import type { EtcdSecurity } from "../store/store.js";
import { hashToken, type Tokens } from "./tokens.js";

export interface SecurityOptions {
  /** PEM certificate chain and key of the server (both, or neither). */
  tlsCert?: string;
  tlsKey?: string;
  /** PEM CA bundle: clients must present a certificate it signed (mutual TLS). */
  clientCa?: string;
  /** Listen beyond loopback without TLS and tokens anyway. */
  insecure?: boolean;
  /** File holding the bootstrap admin token: read if it exists, else created (mode 0600) when no admin token exists. */
  adminTokenFile?: string;
  /** TLS and password auth towards etcd (see etcdSecurity). */
  etcdTls?: EtcdSecurity;
}

const read = (path: string, what: string): Buffer => {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(`cannot read ${what} ${path}: ${(err as Error).message}`);
  }
};

/** Whether the TLS options ask for TLS; throws when only half of the pair is given. */
export function tlsEnabled(o: SecurityOptions): boolean {
  if (!!o.tlsCert !== !!o.tlsKey) throw new Error("--tls-cert and --tls-key go together: give both or neither");
  if (o.clientCa && !o.tlsCert) throw new Error("--client-ca needs --tls-cert and --tls-key (mutual TLS is TLS)");
  return !!o.tlsCert;
}

/** The gRPC server credentials: insecure, TLS, or TLS requiring client certificates from clientCa. */
export function serverCredentials(o: SecurityOptions): grpc.ServerCredentials {
  if (!tlsEnabled(o)) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(
    o.clientCa ? read(o.clientCa, "client CA") : null,
    [{ cert_chain: read(o.tlsCert as string, "TLS certificate"), private_key: read(o.tlsKey as string, "TLS key") }],
    !!o.clientCa,
  );
}

/** True for a host that only this machine can reach. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[(.*)\]$/, "$1");
  return h === "localhost" || h === "::1" || /^127\./.test(h);
}

/**
 * Decides what listening on o.listen means. Beyond loopback with neither TLS
 * nor a token (nor --insecure) it refuses; beyond loopback without client
 * certificates tokens are required (even before any exists).
 */
export function exposure(
  o: SecurityOptions & { listen: string },
  tokenCount: number,
): { refuse?: string; requireTokens: boolean } {
  const host = o.listen.slice(0, o.listen.lastIndexOf(":"));
  if (isLoopback(host) || o.insecure) return { requireTokens: false };
  const tls = tlsEnabled(o);
  if (!tls && tokenCount === 0 && !o.adminTokenFile) {
    return {
      refuse:
        `refusing to listen on ${o.listen} (beyond loopback) with neither TLS nor tokens: anyone who can reach it ` +
        "could run commands on every worker. Give --tls-cert/--tls-key (and --client-ca), or --admin-token-file, " +
        "or --insecure to accept the risk",
      requireTokens: true,
    };
  }
  return { requireTokens: !o.clientCa };
}

/** Registers (or first creates) the bootstrap admin token of o.adminTokenFile. */
export async function bootstrapAdminToken(tokens: Tokens, o: SecurityOptions, log: Logger): Promise<void> {
  const file = o.adminTokenFile;
  if (!file) return;
  let secret: string | undefined;
  try {
    secret = readFileSync(file, "utf8").trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  if (secret) {
    if (tokens.lookup(secret)) return;
    const { record } = await tokens.create({ name: "admin", role: "admin" }, secret).catch(async (err) => {
      // Another replica registered it first.
      if ((await tokens.list()).some((t) => t.id === hashToken(secret as string).slice(0, 16))) return { record: null };
      throw err;
    });
    if (record) log.info("bootstrap admin token registered", { file, token: record.id });
    return;
  }
  if ((await tokens.list()).some((t) => t.role === "admin")) {
    throw new Error(`${file} does not exist but an admin token does: use \`crms admin token create\` with it`);
  }
  const created = await tokens.create({ name: "admin", role: "admin" });
  writeFileSync(file, `${created.secret}\n`, { mode: 0o600, flag: "wx" });
  log.warn("bootstrap admin token created; keep it secret", { file, token: created.record.id });
}

/** The store's options for TLS towards etcd and etcd password auth, from the files and user the flags name. */
export function etcdSecurity(o: {
  etcdCa?: string;
  etcdCert?: string;
  etcdKey?: string;
  etcdUser?: string;
  etcdPassword?: string;
}): EtcdSecurity | undefined {
  const out: EtcdSecurity = {};
  if (o.etcdCa || o.etcdCert || o.etcdKey) {
    if (!o.etcdCa) throw new Error("--etcd-cert/--etcd-key need --etcd-ca");
    if (!!o.etcdCert !== !!o.etcdKey) throw new Error("--etcd-cert and --etcd-key go together");
    out.credentials = {
      rootCertificate: read(o.etcdCa, "etcd CA"),
      ...(o.etcdCert ? { certChain: read(o.etcdCert, "etcd certificate") } : {}),
      ...(o.etcdKey ? { privateKey: read(o.etcdKey, "etcd key") } : {}),
    };
  }
  if (o.etcdUser) out.auth = { username: o.etcdUser, password: o.etcdPassword ?? "" };
  return Object.keys(out).length ? out : undefined;
}
