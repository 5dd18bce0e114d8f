/** Entry point of the `crms` binary. */
import { CliError, wantsHelp } from "../cmd/flags.js";
import { quietOnEpipe } from "./output.js";

quietOnEpipe();

const argv = process.argv.slice(2);

/**
 * `crms worker` and `crms server` run for days: they start without loading the
 * CLI's own modules (tables, YAML, help texts: about 5 MB of RSS a worker).
 * Anything else, and either of them with --help or a global option first, goes
 * through the CLI.
 */
async function daemon(): Promise<((args: string[]) => Promise<number>) | undefined> {
  const [cmd, first] = argv;
  if (wantsHelp(argv.slice(1))) return undefined;
  if (cmd === "worker" && (first === undefined || first.startsWith("-")))
    return (await import("../cmd/worker.js")).worker;
  if (cmd === "server") return (await import("../cmd/server.js")).server;
  return undefined;
}

try {
  const direct = await daemon();
  process.exitCode = direct ? await direct(argv.slice(1)) : await (await import("./main.js")).main(argv);
} catch (err) {
  const { describeError } = await import("./main.js");
  process.stderr.write(`crms: ${describeError(err)}\n`);
  process.exitCode = err instanceof CliError ? err.exitCode : 1;
}

// Anything still holding the loop open after the command is done must not hang the shell.
setTimeout(() => process.exit(), 1500).unref();
