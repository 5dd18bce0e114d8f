/**
 * Test PKI made with the openssl binary: a CA, a server certificate for
 * 127.0.0.1/localhost and client certificates, in a temp directory.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Pki {
  dir: string;
  ca: string;
  caKey: string;
  /** Issues a certificate signed by this CA; returns its cert and key paths. */
  issue(name: string, kind: "server" | "client"): { cert: string; key: string };
}

const openssl = (args: string[], cwd: string) => execFileSync("openssl", args, { cwd, stdio: "pipe" });

/** A new CA in its own directory. */
export function createPki(label: string, dir = mkdtempSync(join(tmpdir(), `crms-pki-${label}-`))): Pki {
  const ca = join(dir, `${label}-ca.pem`);
  const caKey = join(dir, `${label}-ca-key.pem`);
  openssl(
    ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", caKey, "-out", ca, "-days", "2"].concat([
      "-subj",
      `/CN=crms test ${label} CA`,
    ]),
    dir,
  );
  return {
    dir,
    ca,
    caKey,
    issue(name, kind) {
      const key = join(dir, `${name}-key.pem`);
      const csr = join(dir, `${name}.csr`);
      const cert = join(dir, `${name}.pem`);
      const ext = join(dir, `${name}.ext`);
      writeFileSync(
        ext,
        kind === "server"
          ? "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
          : "extendedKeyUsage=clientAuth\n",
      );
      openssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", `/CN=${name}`], dir);
      openssl(
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", caKey, "-CAcreateserial", "-out", cert, "-days", "2"].concat([
          "-extfile",
          ext,
        ]),
        dir,
      );
      return { cert, key };
    },
  };
}
