/**
 * An open server (loopback, no token) stays open until someone creates its
 * first token on purpose: CreateToken without bootstrap is refused and changes
 * nothing; `crms admin token create --bootstrap` says what it does and turns
 * authentication on.
 */
import { status } from "@grpc/grpc-js";
import test from "ava";
import { cli, TestCluster } from "./helpers/cluster.js";

test("the first token of an open server needs --bootstrap; without it nothing changes and nobody is locked out", async (t) => {
  const cluster = await TestCluster.start();
  t.teardown(() => cluster.stop());
  const anyone = cluster.client();
  const refused = await anyone.createToken("mallory", "admin").catch((e) => e);
  t.is(refused.code, status.FAILED_PRECONDITION);
  t.regex(refused.details, /open.*--bootstrap/);
  t.is(cluster.server.tokens.size, 0, "no token was made");
  t.truthy(await anyone.listJobs(), "the server is still open");

  const env = { ...process.env, CRMS_SERVER: cluster.address };
  const plain = await cli(["admin", "token", "create", "--name", "mallory", "--role", "admin"], env);
  t.is(plain.code, 1);
  t.regex(plain.stderr, /FAILED_PRECONDITION.*--bootstrap/);

  const made = await cli(["admin", "token", "create", "--bootstrap", "--name", "alice", "--role", "admin"], env);
  t.is(made.code, 0, made.stderr);
  t.regex(made.stderr, /bootstrap:.*turns authentication on.*every client and worker needs a token/);
  const secret = made.stdout.trim();
  await cluster.waitFor(() => cluster.server.tokens.size === 1, 10_000, "the token in the cache");
  const locked = await anyone.listJobs().catch((e) => e);
  t.is(locked.code, status.UNAUTHENTICATED, "authentication is on now");
  t.truthy(await cluster.client(secret).listJobs(), "the bootstrap token works");
  // Once tokens exist, --bootstrap changes nothing: an admin token is needed as for any token.
  const again = await cli(["admin", "token", "create", "--bootstrap", "--name", "eve", "--role", "admin"], env);
  t.regex(again.stderr, /UNAUTHENTICATED/);
});
