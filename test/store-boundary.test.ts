/** The store is the only code that touches etcd: no file outside src/store imports etcd3, the key schema or the store's internals. */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import test from "ava";

const SRC = new URL("../src/", import.meta.url).pathname;

/** Every `from "..."` specifier of each .ts file under src/ outside src/store. */
function importsOutsideStore(): Array<[file: string, specifier: string]> {
  const out: Array<[string, string]> = [];
  for (const file of readdirSync(SRC, { recursive: true, encoding: "utf8" })) {
    if (!file.endsWith(".ts") || file.startsWith("store/")) continue;
    const text = readFileSync(join(SRC, file), "utf8");
    for (const m of text.matchAll(/\bfrom\s+"([^"]+)"/g)) out.push([file, m[1] as string]);
  }
  return out;
}

test("outside src/store nothing imports etcd3, the store's key schema or its internals", (t) => {
  const imports = importsOutsideStore();
  t.true(imports.length > 100, "the scan found the imports");
  const crossing = imports.filter(([, s]) => s === "etcd3" || /\/store\/(keys|internals)\.js$/.test(s));
  t.deepEqual(crossing, []);
});
