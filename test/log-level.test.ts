/** An unknown log level is refused, never read as "log everything". */
import test from "ava";
import { createLogger, createTextLogger, type LogLevel } from "../src/log.js";
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

test("createTextLogger writes '<time> <prefix>: <msg> key=value' lines at its level and above", (t) => {
  const lines: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((s: string) => lines.push(s) > 0) as typeof process.stderr.write;
  try {
    const log = createTextLogger("info", "worker w1");
    log.debug("per job");
    log.info("attached to x");
    log.warn("slow", { ms: 12, target: "a:1" });
  } finally {
    process.stderr.write = write;
  }
  t.is(lines.length, 2, lines.join(""));
  t.regex(lines[0] as string, /^\d{4}-\d\d-\d\dT[\d:.]+Z worker w1: attached to x\n$/);
  t.regex(lines[1] as string, /Z worker w1: slow ms=12 target=a:1\n$/);
});
