/**
 * The import direction of design.md and style.md, checked over every
 * `import`/`export ... from` and `import()` in src/ (and the TypeScript
 * client): entry points (cli, web, cmd) → server → services (auth beside
 * them) → scheduler → store (the only importer of etcd3); src/errors.ts,
 * src/log.ts, src/config.ts, src/ids.ts, src/events.ts, src/memo.ts, src/rpc and gen are leaves anyone
 * may import; nothing imports upward and no files import each other in a
 * cycle. Type-only imports count: a layer that names another's types depends
 * on it.
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import test from "ava";

const root = fileURLToPath(new URL("..", import.meta.url));

/** The parts of the code an import rule talks about. */
type Part =
  | "leaf"
  | "store"
  | "history"
  | "scheduler"
  | "auth"
  | "services"
  | "server"
  | "web"
  | "worker"
  | "cmd"
  | "cli"
  | "clients";

/**
 * What each part may import besides itself and the leaves. Downward only:
 * store and history (the SQL job history) are the bottom; the scheduler uses
 * the store; auth sits beside services (services call its checks, auth knows
 * nothing of services); the server wires services to grpc-js; web and cmd
 * (the process launchers) start servers; the worker knows only the contract
 * (the client package); the CLI calls the client and dispatches its launcher
 * commands to cmd; the TypeScript client is a package of its own.
 */
const MAY_IMPORT: Record<Part, Part[]> = {
  leaf: [],
  store: [],
  history: [],
  scheduler: ["store"],
  auth: ["scheduler", "store", "history"],
  services: ["auth", "scheduler", "store", "history"],
  server: ["services", "auth", "scheduler", "store", "history"],
  web: ["server", "services", "auth", "scheduler", "store", "history"],
  worker: ["clients"],
  cmd: ["web", "server", "services", "auth", "scheduler", "store", "history", "worker", "clients"],
  cli: ["cmd", "server", "services", "auth", "scheduler", "store", "history", "clients"],
  clients: [],
};

/** Packages only some parts may import (a prefix matches a package and its subpaths). */
const PACKAGE_RULES: Array<{ pkg: string; only?: Part[]; never?: Part[]; why: string }> = [
  { pkg: "etcd3", only: ["store"], why: "the store is the only code that touches etcd" },
  {
    pkg: "@grpc/grpc-js",
    never: ["store", "services", "scheduler"],
    why: "no transport below the server",
  },
  { pkg: "@connectrpc/", never: ["store", "services", "scheduler"], why: "no transport below the server" },
];

/** Files private to their folder: the etcd key schema and the store's etcd internals are the store's alone. */
const PRIVATE_FILES: Record<string, string> = {
  "src/store/keys.ts": "src/store/",
  "src/store/internals.ts": "src/store/",
};

const LEAF_FILES = new Set([
  "src/errors.ts",
  "src/log.ts",
  "src/config.ts",
  "src/ids.ts",
  "src/events.ts",
  "src/memo.ts",
]);

/** The part a file belongs to; undefined for a file no rule places (itself a failure). */
function partOf(file: string): Part | undefined {
  if (LEAF_FILES.has(file) || file.startsWith("src/rpc/") || file.startsWith("gen/")) return "leaf";
  if (file.startsWith("clients/typescript/src/")) return "clients";
  const m = /^src\/([^/]+)\//.exec(file);
  const folder = m?.[1];
  return folder && folder in MAY_IMPORT && folder !== "leaf" && folder !== "clients" ? (folder as Part) : undefined;
}

function tsFiles(dir: string): string[] {
  return readdirSync(join(root, dir), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith(".ts") && !e.name.endsWith(".d.ts"))
    .map((e) => relative(root, join(e.parentPath, e.name)))
    .sort();
}

interface Import {
  from: string;
  /** A repository path (src/x.ts) for a relative import, else the package specifier. */
  to: string;
  typeOnly: boolean;
}

/** The imports of a file: static (also `export ... from`, type-only) and dynamic. */
function importsOf(file: string, text: string): Import[] {
  // Comments may quote imports; strings may hold "//" (URLs), which only a line comment start outside one matches.
  const code = text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:"'`\\])\/\/.*$/gm, "$1");
  const found: Array<{ spec: string; typeOnly: boolean }> = [];
  for (const m of code.matchAll(/(?:^|[;}\n])\s*(import|export)(\s+type)?\b([^;"'`]*?)\bfrom\s*["']([^"']+)["']/g)) {
    found.push({ spec: m[4] as string, typeOnly: Boolean(m[2]) });
  }
  for (const m of code.matchAll(/(?:^|[;}\n])\s*import\s*["']([^"']+)["']/g))
    found.push({ spec: m[1] as string, typeOnly: false });
  for (const m of code.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g))
    found.push({ spec: m[1] as string, typeOnly: false });
  return found.map(({ spec, typeOnly }) => ({
    from: file,
    to: spec.startsWith(".") ? relative(root, join(root, dirname(file), spec)).replace(/\.js$/, ".ts") : spec,
    typeOnly,
  }));
}

const files = [...tsFiles("src"), ...tsFiles("clients/typescript/src")];
const imports = files.flatMap((f) => importsOf(f, readFileSync(join(root, f), "utf8")));
const local = (i: Import) => i.to.startsWith("src/") || i.to.startsWith("gen/") || i.to.startsWith("clients/");
const show = (i: Import) => `${i.from} → ${i.to}${i.typeOnly ? " (type)" : ""}`;

test("the scanner finds static, type-only, re-exported and dynamic imports", (t) => {
  const text = [
    'import { a } from "./a.js";',
    'import type {\n  B,\n} from "../b/b.js";',
    'export { c } from "./c.js";',
    '/** import { x } from "./not.js" */',
    'const url = "http://x"; // import("./nor.js")',
    'const m = await import("../cmd/server.js");',
    'import "./side.js";',
  ].join("\n");
  t.deepEqual(
    importsOf("src/cli/main.ts", text).map((i) => `${i.to}${i.typeOnly ? " type" : ""}`),
    ["src/cli/a.ts", "src/b/b.ts type", "src/cli/c.ts", "src/cli/side.ts", "src/cmd/server.ts"],
  );
  t.true(imports.length > 300, `${imports.length} imports found in ${files.length} files`);
});

test("every source file belongs to a part of the layering", (t) => {
  t.deepEqual(
    files.filter((f) => !partOf(f)),
    [],
    "a new folder under src/ needs its place in MAY_IMPORT",
  );
});

test("nothing imports upward: each part imports only itself, the parts below it and the leaves", (t) => {
  const bad = imports
    .filter(local)
    .filter((i) => {
      const from = partOf(i.from);
      const to = partOf(i.to);
      if (!from || !to || from === to || to === "leaf") return false;
      return !MAY_IMPORT[from].includes(to);
    })
    .map((i) => `${show(i)}: ${partOf(i.from)} may not import ${partOf(i.to)}`);
  t.deepEqual(bad, []);
});

test("the store's key schema and internals (src/store/keys.ts, internals.ts) are imported only inside src/store", (t) => {
  const bad = imports
    .filter((i) => i.to in PRIVATE_FILES && !i.from.startsWith(PRIVATE_FILES[i.to] as string))
    .map(show);
  t.deepEqual(bad, []);
});

test("leaves import only leaves (src/errors.ts, src/log.ts, src/config.ts, src/ids.ts, src/events.ts, src/memo.ts, src/rpc, gen)", (t) => {
  const bad = imports.filter((i) => local(i) && partOf(i.from) === "leaf" && partOf(i.to) !== "leaf").map(show);
  t.deepEqual(bad, []);
});

test("only src/store imports etcd3; no grpc-js or Connect under src/store, src/services, src/scheduler", (t) => {
  const bad: string[] = [];
  for (const i of imports.filter((x) => !local(x))) {
    const part = partOf(i.from);
    for (const rule of PACKAGE_RULES) {
      if (!(i.to === rule.pkg || i.to.startsWith(rule.pkg.endsWith("/") ? rule.pkg : `${rule.pkg}/`))) continue;
      const allowed = part && (rule.only ? rule.only.includes(part) : !rule.never?.includes(part));
      if (!allowed) bad.push(`${show(i)}: ${rule.why}`);
    }
  }
  t.deepEqual(bad, []);
});

test("no import cycles among source files", (t) => {
  const graph = new Map<string, Set<string>>(files.map((f) => [f, new Set()]));
  for (const i of imports) if (graph.has(i.to) && i.to !== i.from) graph.get(i.from)?.add(i.to);
  // Tarjan's strongly connected components: each with more than one file is a cycle.
  let index = 0;
  const order = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const visit = (v: string) => {
    order.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!order.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v) as number, order.get(w) as number));
    }
    if (low.get(v) === order.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop() as string;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1) cycles.push(scc.sort());
    }
  };
  for (const f of graph.keys()) if (!order.has(f)) visit(f);
  t.deepEqual(
    cycles.map((c) => c.join(" ↔ ")),
    [],
  );
});
