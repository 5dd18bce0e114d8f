/**
 * Workers refuse names the server would refuse before creating anything, and
 * take the server's INVALID_ARGUMENT or PERMISSION_DENIED on Attach as final:
 * they print the reason and exit non-zero instead of retrying forever.
 */
import { mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import anyTest, { type TestFn } from "ava";
import { cli, TestCluster } from "./helpers/cluster.js";

const test = anyTest as TestFn<{ cluster: TestCluster }>;

test.before(async (t) => {
  t.context.cluster = await TestCluster.start();
});
test.after.always(async (t) => {
  await t.context.cluster?.stop();
});

/** Everything under dir, as relative paths. */
const tree = (dir: string): string[] => readdirSync(dir, { recursive: true }).map(String).sort();

for (const [name, why] of [
  ["x/../../escape", /contains "\/"/],
  ["..", /'\.' and '\.\.'/],
  [".hidden", /must start with a letter or a digit/],
] as const) {
  test(`crms worker --name ${JSON.stringify(name)} creates nothing, says why and exits non-zero`, async (t) => {
    const base = mkdtempSync(join(tmpdir(), "crms-names-"));
    const home = join(base, "home");
    const r = await cli(["worker", "--name", name, "--server", t.context.cluster.address], {
      ...process.env,
      CRMS_HOME: home,
    });
    t.not(r.code, 0, r.stderr);
    t.regex(r.stderr, why);
    t.notRegex(r.stderr, /only letters, digits.*\.\./, "the message does not claim '..' has only allowed characters");
    t.deepEqual(tree(base), [], "nothing was created, inside CRMS_HOME or outside it");
  });
}

test("the server's message for '..' says what is wrong", async (t) => {
  const err = await t.context.cluster
    .client()
    .getWorker("..")
    .catch((e) => e);
  t.is(err.code, status.INVALID_ARGUMENT);
  t.regex(err.details, /'\.' and '\.\.'/);
  t.notRegex(err.details, /may hold only/);
});

test("an Attach refused with INVALID_ARGUMENT is final: the worker prints the server's reason and exits non-zero", async (t) => {
  const home = mkdtempSync(join(tmpdir(), "crms-names-"));
  const r = await cli(
    ["worker", "--name", "too-many-slots", "--slots", "200000", "--server", t.context.cluster.address],
    {
      ...process.env,
      CRMS_HOME: home,
    },
  );
  t.not(r.code, 0, r.stderr);
  t.regex(r.stderr, /refused.*slots must be between 1 and 100000.*not retrying/s);
  t.is(r.stderr.match(/disconnected from/g)?.length, 1, `one attempt, not a retry loop:\n${r.stderr}`);
});
