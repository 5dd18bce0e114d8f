/** The defaults README documents are the ones src/config.ts defines (and the server and the CLI use). */
import { readFileSync } from "node:fs";
import test from "ava";
import { SERVER_DEFAULTS as D, DEFAULT_OUTPUT_CAP, SERVER_FLAGS, WORKER_DEFAULTS } from "../src/config.js";

const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");

test("README's crms server flag table shows the defaults of src/config.ts", (t) => {
  const expected: Record<string, string> = {
    "--compaction-interval S": String(D.compactionIntervalSeconds),
    "--compaction-revisions N": String(D.compactionRevisions),
    "--compaction-keep-revisions N": String(D.compactionKeepRevisions),
    "--compaction-db-fraction F": String(D.compactionDbFraction),
    "--quota-bytes N": `${D.quotaBytes / 1024 ** 3} GiB`,
    "--retention-age S": String(D.retentionAgeSeconds),
    "--retention-count N": String(D.retentionCount),
    "--retention-interval S": String(D.retentionIntervalSeconds),
    "--tail-bytes N": String(D.tailBytes),
    "--max-jobs-per-user N": String(D.maxJobsPerUser),
    "--heap-growth P": String(D.heapGrowthPercent),
  };
  const rows = new Map(
    [...readme.matchAll(/^\| `(--[a-z-]+ [A-Z])` \| ([^|]+) \|/gm)].map((m) => [
      m[1] as string,
      (m[2] as string).trim(),
    ]),
  );
  for (const [flag, value] of Object.entries(expected)) {
    t.is(rows.get(flag), value, `README row for ${flag}`);
    t.true(Object.hasOwn(SERVER_FLAGS, flag.slice(2).split(" ")[0] as string), `${flag} is a crms server flag`);
  }
});

test("README's output cap and log retention defaults are those of src/config.ts", (t) => {
  t.is(WORKER_DEFAULTS.shipOutputBytes, DEFAULT_OUTPUT_CAP);
  t.is(D.outputCapBytes, DEFAULT_OUTPUT_CAP);
  t.true(readme.includes(`${DEFAULT_OUTPUT_CAP / 1024 ** 2} MiB for both streams`));
  t.true(
    readme.includes(
      `\`--logs-retention-age S\` after it was stored (default ${D.logsRetentionAgeSeconds / 86400} days)`,
    ),
  );
  t.true(
    readme.includes(`\`--logs-retention-bytes N\` stored bytes (default ${D.logsRetentionBytes / 1024 ** 3} GiB)`),
  );
});
