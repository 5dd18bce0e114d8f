#!/usr/bin/env node
/**
 * Builds the crms dashboard: web/src/main.ts and web/src/app.css bundled by
 * esbuild, with web/index.html and web/favicon.svg, into web/dist. The control
 * plane also calls buildWeb() at start-up when web/dist is missing or stale.
 *
 *   node web/build.mjs            minified build into web/dist
 *   node web/build.mjs --dev      unminified, with source maps
 */
import { copyFile, mkdir, mkdtemp, readdir, rename, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import * as esbuild from "esbuild";

const root = dirname(fileURLToPath(import.meta.url));

/**
 * Builds into a temporary folder, then renames each file into place, so that a
 * server reading web/dist never sees a half-written file.
 * @param {{ outdir?: string, minify?: boolean, sourcemap?: boolean, quiet?: boolean }} [options]
 * @returns {Promise<Record<string, number>>} bytes per output file
 */
export async function buildWeb(options = {}) {
  const { outdir = join(root, "dist"), minify = true, sourcemap = false, quiet = false } = options;
  await mkdir(outdir, { recursive: true });
  const tmp = await mkdtemp(join(outdir, ".build-"));
  try {
    await esbuild.build({
      entryPoints: { app: join(root, "src", "main.ts"), "app-style": join(root, "src", "app.css") },
      outdir: tmp,
      bundle: true,
      format: "esm",
      platform: "browser",
      target: ["es2022", "chrome109", "firefox115", "safari16"],
      minify,
      sourcemap,
      legalComments: "none",
      logLevel: quiet ? "silent" : "warning",
      tsconfig: join(root, "tsconfig.json"),
    });
    // esbuild names a CSS entry after its entry point; the page wants app.css.
    await rename(join(tmp, "app-style.css"), join(tmp, "app.css"));
    if (sourcemap) await rename(join(tmp, "app-style.css.map"), join(tmp, "app.css.map")).catch(() => {});
    await copyFile(join(root, "index.html"), join(tmp, "index.html"));
    await copyFile(join(root, "favicon.svg"), join(tmp, "favicon.svg"));
    const sizes = {};
    // index.html last: once it is new, everything it loads is too.
    const files = (await readdir(tmp)).filter((f) => f !== "index.html");
    files.push("index.html");
    for (const f of files) {
      sizes[f] = (await stat(join(tmp, f))).size;
      await rename(join(tmp, f), join(outdir, f));
    }
    return sizes;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const dev = process.argv.includes("--dev");
  const sizes = await buildWeb({ minify: !dev, sourcemap: dev });
  for (const [file, size] of Object.entries(sizes))
    console.log(`web/dist/${file.padEnd(14)} ${(size / 1024).toFixed(1).padStart(7)} KiB`);
}
