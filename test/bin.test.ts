/** bin/crms.js runs the compiled dist/ only while it is as new as every source file. */
import { execFile } from "node:child_process";
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import test from "ava";

const run = promisify(execFile);
const REPO = resolve(import.meta.dirname, "..");

test("bin/crms.js runs dist/ while it is fresh or there are no sources, and the sources once a source file (src, gen, clients/typescript/src) is newer or dist/ is gone", async (t) => {
  t.timeout(120_000);
  // A copy of the checkout's layout: its own bin/crms.js, src/ and dist/, the repo's modules and generated code.
  const root = mkdtempSync(join(tmpdir(), "crms-bin-"));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, "bin"));
  copyFileSync(join(REPO, "bin", "crms.js"), join(root, "bin", "crms.js"));
  for (const dir of ["node_modules", "gen"]) symlinkSync(join(REPO, dir), join(root, dir));
  for (const dir of ["src", join("clients", "typescript", "src")]) {
    mkdirSync(join(root, dir), { recursive: true });
    for (const entry of readdirSync(join(REPO, dir))) symlinkSync(join(REPO, dir, entry), join(root, dir, entry));
  }
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
  // The TypeScript client's sources count too: the CLI is built from them.
  writeFileSync(join(root, "clients", "typescript", "src", "edited.ts"), "export {};\n");
  t.regex(await version(), /\(from the TypeScript sources\)/);
  rmSync(join(root, "clients", "typescript", "src", "edited.ts"));
  // A packed crms ships dist/ and no sources (nor tsx): dist/ runs.
  for (const dir of ["src", "gen", "clients"]) renameSync(join(root, dir), join(root, `${dir}.away`));
  t.regex(await version(), /\(compiled\)/);
  for (const dir of ["src", "gen", "clients"]) renameSync(join(root, `${dir}.away`), join(root, dir));
  rmSync(join(root, "dist"), { recursive: true });
  t.regex(await version(), /\(from the TypeScript sources\)/);
});

test("bin/crms.js without dist/ nor tsx (npm ci --omit=dev) says to build, and exits 1", async (t) => {
  const root = mkdtempSync(join(tmpdir(), "crms-bin-nodev-"));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, "bin"));
  copyFileSync(join(REPO, "bin", "crms.js"), join(root, "bin", "crms.js"));
  symlinkSync(join(REPO, "src"), join(root, "src"));
  mkdirSync(join(root, "node_modules"));
  for (const entry of readdirSync(join(REPO, "node_modules")).filter((e) => e !== "tsx"))
    symlinkSync(join(REPO, "node_modules", entry), join(root, "node_modules", entry));
  writeFileSync(join(root, "package.json"), '{"type":"module"}\n');
  const err = await t.throwsAsync(run(process.execPath, [join(root, "bin", "crms.js"), "--version"]));
  t.is((err as { code?: number }).code, 1);
  t.regex(
    (err as { stderr?: string }).stderr ?? "",
    /dist\/ is not built and tsx .* is not installed: run `npm run build`/,
  );
});
