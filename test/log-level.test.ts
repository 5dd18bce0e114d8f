/** An unknown log level is refused, never read as "log everything". */
import test from "ava";
import { createLogger, type LogLevel } from "../src/log.js";
import { cli } from "./helpers/cluster.js";

test("crms server --log-level with an unknown level exits 2 naming the levels, before it starts anything", async (t) => {
  const r = await cli(
    ["server", "--log-level", "verbose", "--listen", "127.0.0.1:0", "--etcd", "http://127.0.0.1:1"],
    process.env,
  );
  t.is(r.code, 2, r.stderr);
  t.regex(r.stderr, /log level must be one of debug, info, warn, error, silent \(got "verbose"\)/);
});

test("createLogger refuses an unknown level instead of logging at debug", (t) => {
  t.throws(() => createLogger("verbose" as LogLevel), { message: /log level must be one of/ });
  t.notThrows(() => createLogger("warn"));
});
