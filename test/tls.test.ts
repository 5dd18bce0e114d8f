/**
 * TLS and mutual TLS on the control plane's gRPC port, and TLS plus password
 * auth towards a real etcd started with TLS flags. Certificates are made with openssl.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import test from "ava";
import { Etcd3 } from "etcd3";
import { CrmsClient } from "../clients/typescript/src/client.js";
import { etcdSecurity } from "../src/auth/server-security.js";
import { startServer } from "../src/server/server.js";
import { createPki } from "./helpers/certs.js";
import { CRMS_BIN, cli } from "./helpers/cluster.js";
import { startEtcd } from "./helpers/etcd.js";

const pki = createPki("good");
const other = createPki("other");
const server = pki.issue("server", "server");
const client = pki.issue("client", "client");
const stranger = other.issue("stranger", "client");

async function codeOf(c: CrmsClient): Promise<number> {
  try {
    await c.listJobs({}, { timeoutMs: 5000 });
    return status.OK;
  } catch (err) {
    return (err as { code: number }).code;
  } finally {
    c.close();
  }
}

test("mutual TLS: only a client with a certificate from the client CA gets through", async (t) => {
  const etcd = await startEtcd();
  const cp = await startServer({
    listen: "127.0.0.1:0",
    etcd: [etcd.endpoint],
    logLevel: "error",
    tlsCert: server.cert,
    tlsKey: server.key,
    clientCa: pki.ca,
  });
  t.teardown(async () => {
    await cp.stop();
    await etcd.stop();
  });
  const addr = cp.address;
  t.is(await codeOf(CrmsClient.secure(addr, { ca: pki.ca, cert: client.cert, key: client.key })), status.OK);
  // TLS without a client certificate: the handshake fails.
  t.is(await codeOf(CrmsClient.secure(addr, { ca: pki.ca })), status.UNAVAILABLE);
  // A certificate from another CA: refused.
  t.is(
    await codeOf(CrmsClient.secure(addr, { ca: pki.ca, cert: stranger.cert, key: stranger.key })),
    status.UNAVAILABLE,
  );
  // Plaintext against the TLS port.
  t.is(await codeOf(new CrmsClient(addr)), status.UNAVAILABLE);
  // Not trusting the server's CA.
  t.is(await codeOf(CrmsClient.secure(addr, { ca: other.ca, cert: client.cert, key: client.key })), status.UNAVAILABLE);

  // The CLI takes the same from the environment.
  const env = { ...process.env, CRMS_CA: pki.ca, CRMS_CERT: client.cert, CRMS_KEY: client.key };
  const ok = await cli(["jobs", "--server", addr, "-o", "json"], env);
  t.is(ok.code, 0, ok.stderr);
  const bad = await cli(["jobs", "--server", addr, "--ca", pki.ca], process.env);
  t.is(bad.code, 1);
  t.regex(bad.stderr, /UNAVAILABLE/);
});

test("a TLS worker process attaches with CA and client certificate from flags and runs a job", async (t) => {
  const etcd = await startEtcd();
  const cp = await startServer({
    listen: "127.0.0.1:0",
    etcd: [etcd.endpoint],
    logLevel: "error",
    tlsCert: server.cert,
    tlsKey: server.key,
    clientCa: pki.ca,
  });
  const dataDir = mkdtempSync(join(tmpdir(), "crms-tls-worker-"));
  const proc = spawn(
    process.execPath,
    [CRMS_BIN, "worker", "--name", "tw", "--server", cp.address, "--data-dir", dataDir].concat([
      "--ca",
      pki.ca,
      "--cert",
      client.cert,
      "--key",
      client.key,
    ]),
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  proc.stderr.on("data", (d) => (out += d));
  t.teardown(async () => {
    proc.kill("SIGTERM");
    await new Promise((r) => proc.once("exit", r));
    await cp.stop();
    await etcd.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });
  const c = CrmsClient.secure(cp.address, { ca: pki.ca, cert: client.cert, key: client.key });
  t.teardown(() => c.close());
  const job = await c.submit({ command: ["echo", "over tls"] });
  const done = await c.wait(job.id, { timeoutMs: 30_000 }).catch((err) => t.fail(`${err}\n${out}`));
  t.is(done?.exitCode, 0);
  t.is(Buffer.from(done?.stdoutTail ?? []).toString(), "over tls\n");
});

async function startTlsEtcd(extra: string[] = []) {
  const etcdServer = pki.issue("etcd", "server");
  const creds = etcdSecurity({ etcdCa: pki.ca, etcdCert: client.cert, etcdKey: client.key });
  let probe: Etcd3 | undefined;
  const etcd = await startEtcd(
    [
      "--cert-file",
      etcdServer.cert,
      "--key-file",
      etcdServer.key,
      "--trusted-ca-file",
      pki.ca,
      "--client-cert-auth",
      ...extra,
    ],
    undefined,
    {
      ready: async (endpoint) => {
        probe ??= new Etcd3({ hosts: [endpoint], ...creds });
        await probe.get("probe");
      },
    },
  );
  const ready = probe as Etcd3 | undefined;
  if (!ready) throw new Error("etcd with TLS started without its probe");
  return {
    endpoint: etcd.endpoint,
    probe: ready,
    async stop() {
      ready.close();
      await etcd.stop();
    },
  };
}

test("the control plane reaches etcd over TLS with a client certificate and password auth", async (t) => {
  const etcd = await startTlsEtcd();
  t.teardown(() => etcd.stop());
  // Password auth on etcd: a root user, then a crms user with a role on the crms/ prefix.
  await etcd.probe.user("root").create("rootpw");
  await etcd.probe
    .role("root")
    .create()
    .catch(() => undefined);
  await etcd.probe.user("root").addRole("root");
  await etcd.probe.role("crms").create();
  await etcd.probe.role("crms").grant({ permission: "Readwrite", range: etcd.probe.range({ prefix: "crms/" }) });
  await etcd.probe.user("crms").create("crmspw");
  await etcd.probe.user("crms").addRole("crms");
  await etcd.probe.auth.authEnable({});

  // Without credentials etcd refuses, so the control plane does not start.
  await t.throwsAsync(
    startServer({
      listen: "127.0.0.1:0",
      etcd: [etcd.endpoint],
      logLevel: "silent",
      etcdTls: etcdSecurity({
        etcdCa: pki.ca,
        etcdCert: client.cert,
        etcdKey: client.key,
        etcdUser: "crms",
        etcdPassword: "wrong",
      }),
    }),
  );
  const cp = await startServer({
    listen: "127.0.0.1:0",
    etcd: [etcd.endpoint],
    logLevel: "error",
    etcdTls: etcdSecurity({
      etcdCa: pki.ca,
      etcdCert: client.cert,
      etcdKey: client.key,
      etcdUser: "crms",
      etcdPassword: "crmspw",
    }),
  });
  t.teardown(() => cp.stop());
  const c = new CrmsClient(cp.address);
  t.teardown(() => c.close());
  const job = await c.submit({ command: ["true"], hold: true });
  // The record is in etcd, read back as root.
  const root = new Etcd3({
    hosts: [etcd.endpoint],
    ...etcdSecurity({
      etcdCa: pki.ca,
      etcdCert: client.cert,
      etcdKey: client.key,
      etcdUser: "root",
      etcdPassword: "rootpw",
    }),
  });
  t.teardown(() => root.close());
  t.truthy(await root.get(`crms/jobs/${job.id}`).buffer());
});
