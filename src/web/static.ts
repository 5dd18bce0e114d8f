/**
 * The dashboard's static files: the bundle web/build.mjs writes to web/dist,
 * built here at start-up when it is missing or older than its sources, and
 * served from memory with headers that keep the page to its own origin.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { gzipSync } from "node:zlib";
import type { Logger } from "../log.js";

/** The files the page is made of, by URL path. Nothing else is served. */
const FILES: Record<string, { file: string; type: string }> = {
  "/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/index.html": { file: "index.html", type: "text/html; charset=utf-8" },
  "/app.js": { file: "app.js", type: "text/javascript; charset=utf-8" },
  "/app.css": { file: "app.css", type: "text/css; charset=utf-8" },
  "/favicon.svg": { file: "favicon.svg", type: "image/svg+xml" },
};

/** The page talks only to the origin it came from. */
const SECURITY_HEADERS: Record<string, string> = {
  "Content-Security-Policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Resource-Policy": "same-origin",
};

/**
 * The repository's web/ folder (from src/web or from dist/src/web after tsc);
 * in a packed crms, which ships web/dist and not the page's sources, that one.
 */
export function webRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, "web", "build.mjs")) || existsSync(join(dir, "web", "dist", "index.html")))
      return join(dir, "web");
    dir = dirname(dir);
  }
  throw new Error("cannot find the web/ folder of crms");
}

function newestMtime(path: string): number {
  const st = statSync(path, { throwIfNoEntry: false });
  if (!st) return 0;
  if (!st.isDirectory()) return st.mtimeMs;
  let newest = st.mtimeMs;
  for (const name of readdirSync(path)) newest = Math.max(newest, newestMtime(join(path, name)));
  return newest;
}

/** True when web/dist is missing a file or older than a source it is built from. */
export function bundleIsStale(root = webRoot()): boolean {
  const dist = join(root, "dist");
  const built = Math.min(
    ...["index.html", "app.js", "app.css"].map((f) => statSync(join(dist, f), { throwIfNoEntry: false })?.mtimeMs ?? 0),
  );
  if (!built) return true;
  const sources = [join(root, "src"), join(root, "index.html"), join(root, "build.mjs"), join(root, "..", "gen")];
  return sources.some((s) => newestMtime(s) > built);
}

/** Builds the bundle if it is stale; returns false (and logs) when it cannot. */
export async function ensureBundle(log: Logger, root = webRoot()): Promise<boolean> {
  if (!bundleIsStale(root)) return true;
  try {
    const { buildWeb } = (await import(pathToFileURL(join(root, "build.mjs")).href)) as {
      buildWeb(options?: { quiet?: boolean }): Promise<unknown>;
    };
    await buildWeb({ quiet: true });
    log.info("web page built", { dir: join(root, "dist") });
    return true;
  } catch (err) {
    log.warn("web page could not be built; serving the API only", { error: String(err) });
    return existsSync(join(root, "dist", "app.js"));
  }
}

const NOT_BUILT = `<!doctype html><meta charset="utf-8"><title>crms</title>
<p>The crms page is not built. Run <code>node web/build.mjs</code> and restart the server.</p>`;

/** A request handler for the page's files, read once into memory. */
export function createStaticHandler(root = webRoot()) {
  const cache = new Map<string, { body: Buffer; gzip: Buffer; etag: string }>();
  const read = (file: string) => {
    let entry = cache.get(file);
    if (!entry) {
      let body: Buffer;
      try {
        body = readFileSync(join(root, "dist", file));
      } catch {
        return undefined;
      }
      const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"`;
      entry = { body, gzip: gzipSync(body), etag };
      cache.set(file, entry);
    }
    return entry;
  };
  return (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? "/").split("?", 1)[0] as string;
    const entry = FILES[path];
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(entry ? 405 : 404, entry ? { Allow: "GET, HEAD" } : {}).end();
      return;
    }
    if (!entry) {
      res.writeHead(404, { "Content-Type": "text/plain; charset=utf-8" }).end("not found\n");
      return;
    }
    const file = read(entry.file);
    if (!file) {
      const missing = entry.file === "index.html" ? NOT_BUILT : "";
      res.writeHead(entry.file === "index.html" ? 503 : 404, { "Content-Type": entry.type }).end(missing);
      return;
    }
    // Revalidated on every load (no-cache), answered 304 while unchanged.
    const headers: Record<string, string | number> = {
      "Content-Type": entry.type,
      "Cache-Control": "no-cache",
      ETag: file.etag,
      Vary: "Accept-Encoding",
    };
    if (req.headers["if-none-match"] === file.etag) {
      res.writeHead(304, headers).end();
      return;
    }
    const gzip = /\bgzip\b/.test(String(req.headers["accept-encoding"] ?? ""));
    const body = gzip ? file.gzip : file.body;
    if (gzip) headers["Content-Encoding"] = "gzip";
    headers["Content-Length"] = body.length;
    res.writeHead(200, headers);
    res.end(req.method === "HEAD" ? undefined : body);
  };
}
