#!/usr/bin/env node
// Runs the compiled CLI (npm run build, done by scripts/setup.sh) when it is
// at least as new as every source file (src/, gen/, clients/typescript/src/),
// else the TypeScript sources through tsx (so an edited checkout never runs
// stale code; a packed crms has dist/ and no sources, so tsx is a dev tool).
// Compiled, a worker or server needs ~40 MB less memory and a CLI call starts
// in half the time.
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const dist = join(root, "dist", "src", "cli", "run.js");

/** Whether any .ts file under dir changed after `since` (ms); a packed crms has no sources. */
function changedSince(dir, since) {
  if (!existsSync(dir)) return false;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const file = join(dir, entry.name);
    if (entry.isDirectory() ? changedSince(file, since) : file.endsWith(".ts") && statSync(file).mtimeMs > since)
      return true;
  }
  return false;
}

const built = existsSync(dist) ? statSync(dist).mtimeMs : 0;
const sources = ["src", "gen", join("clients", "typescript", "src")];
if (built > 0 && !sources.some((dir) => changedSince(join(root, dir), built))) {
  await import(dist);
} else {
  const tsx = await import("tsx/esm/api").catch(() => null);
  if (!tsx) {
    console.error(
      `crms: ${built ? "dist/ is older than the sources" : "dist/ is not built"} and tsx (a development ` +
        "dependency) is not installed: run `npm run build`, or `npm ci` to install the development tools",
    );
    process.exit(1);
  }
  tsx.register();
  await import("../src/cli/run.ts");
}
