/**
 * What a client or worker presents to the control plane: a CA to trust, a
 * client certificate and key (mutual TLS), and a bearer token. Each comes from
 * an option or else from the environment (CRMS_CA, CRMS_CERT, CRMS_KEY, CRMS_TOKEN,
 * CRMS_TOKEN_FILE).
 */
import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";

export interface ClientSecurity {
  /** PEM CA bundle to verify the server with; turns TLS on. */
  ca?: string;
  /** PEM client certificate and key (mutual TLS); turn TLS on. */
  cert?: string;
  key?: string;
  /** Use TLS with the system's CAs even without ca. */
  tls?: boolean;
  /** Bearer token. */
  token?: string;
  /** File holding the bearer token. */
  tokenFile?: string;
}

function read(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(`cannot read ${what} ${path}: ${(err as Error).message}`);
  }
}

/** The options, completed from the environment where not given. */
export function securityFromEnv(o: ClientSecurity = {}, env: NodeJS.ProcessEnv = process.env): ClientSecurity {
  return {
    ca: o.ca || env.CRMS_CA || undefined,
    cert: o.cert || env.CRMS_CERT || undefined,
    key: o.key || env.CRMS_KEY || undefined,
    tls: o.tls || env.CRMS_TLS === "1" || undefined,
    token: o.token || env.CRMS_TOKEN || undefined,
    tokenFile: o.tokenFile || env.CRMS_TOKEN_FILE || undefined,
  };
}

/** Channel credentials: insecure unless a CA, a client certificate or tls is given. */
export function channelCredentials(o: ClientSecurity): grpc.ChannelCredentials {
  if (!!o.cert !== !!o.key) throw new Error("a client certificate and its key go together (--cert and --key)");
  if (!o.ca && !o.cert && !o.tls) return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(
    o.ca ? read(o.ca, "CA") : null,
    o.key ? read(o.key, "client key") : null,
    o.cert ? read(o.cert, "client certificate") : null,
  );
}

/** The authorization metadata for the token, if any. */
export function authMetadata(o: ClientSecurity): Record<string, string> {
  const token = o.token || (o.tokenFile ? read(o.tokenFile, "token file").toString().trim() : "");
  return token ? { authorization: `Bearer ${token}` } : {};
}
