/** Entry point of the `crms` binary. */
import { CliError } from "../cmd/flags.js";
import { describeError, main } from "./main.js";
import { quietOnEpipe } from "./output.js";

quietOnEpipe();

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`crms: ${describeError(err)}\n`);
  process.exitCode = err instanceof CliError ? err.exitCode : 1;
}

// Anything still holding the loop open after the command is done must not hang the shell.
setTimeout(() => process.exit(), 1500).unref();
