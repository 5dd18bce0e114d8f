/** bin/crms.js runs the compiled dist/ only while it is as new as every source file. */
import { execFile } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import test from "ava";

const run = promisify(execFile);
const REPO = resolve(import.meta.dirname, "..");

test("bin/crms.js runs dist/ while it is fresh, and the sources once a source file is newer or dist/ is gone", async (t) => {
  t.timeout(120_000);
  // A copy of the checkout's layout: its own bin/crms.js, src/ and dist/, the repo's modules and generated code.
  const root = mkdtempSync(join(tmpdir(), "crms-bin-"));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, "bin"));
  copyFileSync(join(REPO, "bin", "crms.js"), join(root, "bin", "crms.js"));
  for (const dir of ["node_modules", "gen"]) symlinkSync(join(REPO, dir), join(root, dir));
  mkdirSync(join(root, "src"));
  for (const entry of readdirSync(join(REPO, "src"))) symlinkSync(join(REPO, "src", entry), join(root, "src", entry));
  writeFileSync(join(root, "package.json"), '{"type":"module"}\n');
  const tsc = join(REPO, "node_modules", "typescript", "bin", "tsc");
  await run(process.execPath, [tsc, "-p", join(REPO, "tsconfig.build.json"), "--outDir", join(root, "dist")]);

  const version = async () => (await run(process.execPath, [join(root, "bin", "crms.js"), "--version"])).stdout;
  t.regex(await version(), /^0\.\d+\.\d+ \(compiled\)\n$/);
  // An edit after the build: the sources run, never the stale dist/.
  writeFileSync(join(root, "src", "edited.ts"), "export {};\n");
  t.regex(await version(), /\(from the TypeScript sources\)/);
  rmSync(join(root, "src", "edited.ts"));
  t.regex(await version(), /\(compiled\)/);
  rmSync(join(root, "dist"), { recursive: true });
  t.regex(await version(), /\(from the TypeScript sources\)/);
});
