/**
 * Summarises a V8 .cpuprofile (node --cpu-prof): top functions by self time,
 * and self time by area (a src/ file, a package in node_modules, node
 * internals, GC, idle).
 *
 *   tsx bench/profile-top.ts FILE_OR_DIR [--top 25] [--json]
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { numFlag, parseFlags } from "./lib/util.js";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  file: string;
  /** The monotonic-clock window (µs) the summary covers, if it was limited to one. */
  window?: [number, number];
  totalMs: number;
  busyMs: number;
  top: { fn: string; where: string; selfMs: number; pct: number }[];
  areas: { area: string; selfMs: number; pct: number }[];
  /** crms's own functions (src/) by total time: their own plus everything they call. */
  inclusive: { fn: string; where: string; totalMs: number; pct: number }[];
}

/** Where a function lives, shortened: "src/store/batcher.ts:120", "@grpc/grpc-js", "node:internal/...". */
function place(url: string, line: number): string {
  if (!url) return "";
  const u = url.replace(/^file:\/\//, "");
  const nm = u.lastIndexOf("node_modules/");
  if (nm >= 0) {
    const rest = u.slice(nm + "node_modules/".length).split("/");
    const pkg = rest[0]?.startsWith("@") ? `${rest[0]}/${rest[1]}` : (rest[0] ?? "");
    return `${pkg}/${rest.slice(rest[0]?.startsWith("@") ? 2 : 1).join("/")}:${line + 1}`;
  }
  // tsx-compiled sources report line 0: the file is what helps then.
  const at = line > 0 ? `:${line + 1}` : "";
  const m = /\/(src|gen|bench|bin)\/(.*)$/.exec(u);
  if (m) return `${m[1]}/${m[2]}${at}`;
  return `${u}${at}`;
}

function area(fn: string, url: string): string {
  if (!url) {
    if (fn === "(garbage collector)") return "GC";
    if (fn === "(idle)") return "idle";
    if (fn === "(program)") return "(program: native, not attributed)";
    return fn || "(native)";
  }
  const u = url.replace(/^file:\/\//, "");
  const nm = u.lastIndexOf("node_modules/");
  if (nm >= 0) {
    const rest = u.slice(nm + "node_modules/".length).split("/");
    return rest[0]?.startsWith("@") ? `${rest[0]}/${rest[1]}` : (rest[0] ?? "node_modules");
  }
  if (u.startsWith("node:")) return `node:${u.slice(5).split("/").slice(0, 2).join("/")}`;
  const m = /\/(src|gen|bench|bin)\/(.*)$/.exec(u);
  if (m) return `${m[1]}/${m[2]}`;
  return u;
}

/**
 * Summarises a profile; with `window` ([from, to] in µs of the monotonic clock
 * that process.hrtime and V8's sample timestamps share) only samples taken
 * inside it count, e.g. the job phase of a run without start-up and shutdown.
 */
export function summarise(file: string, topN = 25, window?: [number, number]): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  let t = profile.startTime;
  const inWindow = window && window[0] >= profile.startTime && window[1] <= profile.endTime ? window : undefined;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    t += dt;
    if (inWindow && (t < inWindow[0] || t > inWindow[1])) return;
    self.set(id, (self.get(id) ?? 0) + dt);
  });
  // Total (inclusive) time of src/ functions: each sample counts once for every src function on its stack.
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const inclusive = new Map<string, { fn: string; where: string; us: number }>();
  for (const [id, us] of self) {
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const n = byId.get(cur);
      if (!n || !/\/src\//.test(n.callFrame.url) || n.callFrame.url.includes("node_modules")) continue;
      const fn = n.callFrame.functionName || "(anonymous)";
      const where = place(n.callFrame.url, n.callFrame.lineNumber);
      const key = `${fn}@${where}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const e = inclusive.get(key) ?? { fn, where, us: 0 };
      e.us += us;
      inclusive.set(key, e);
    }
  }
  const byFn = new Map<string, { fn: string; where: string; us: number }>();
  const byArea = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of self) {
    const n = byId.get(id);
    if (!n) continue;
    const { functionName, url, lineNumber } = n.callFrame;
    total += us;
    if (functionName === "(idle)") idle += us;
    const fn = functionName || "(anonymous)";
    const where = place(url, lineNumber);
    const key = `${fn}@${where}`;
    const e = byFn.get(key) ?? { fn, where, us: 0 };
    e.us += us;
    byFn.set(key, e);
    const a = area(functionName, url);
    byArea.set(a, (byArea.get(a) ?? 0) + us);
  }
  const busy = total - idle;
  const pct = (us: number) => Math.round((us / Math.max(1, busy)) * 1000) / 10;
  return {
    file,
    window: inWindow,
    totalMs: Math.round(total / 1000),
    busyMs: Math.round(busy / 1000),
    top: [...byFn.values()]
      .filter((e) => e.fn !== "(idle)")
      .sort((a, b) => b.us - a.us)
      .slice(0, topN)
      .map((e) => ({ fn: e.fn, where: e.where, selfMs: Math.round(e.us / 1000), pct: pct(e.us) })),
    areas: [...byArea]
      .filter(([a]) => a !== "idle")
      .sort((a, b) => b[1] - a[1])
      .slice(0, topN)
      .map(([a, us]) => ({ area: a, selfMs: Math.round(us / 1000), pct: pct(us) })),
    inclusive: [...inclusive.values()]
      .filter((e) => e.fn !== "(anonymous)")
      .sort((a, b) => b.us - a.us)
      .slice(0, topN)
      .map((e) => ({ fn: e.fn, where: e.where, totalMs: Math.round(e.us / 1000), pct: pct(e.us) })),
  };
}

/** The newest .cpuprofile in a directory (or the file itself). */
export function newestProfile(path: string): string | undefined {
  if (!statSync(path).isDirectory()) return path;
  const files = readdirSync(path)
    .filter((f) => f.endsWith(".cpuprofile"))
    .map((f) => join(path, f))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  return files[0];
}

export function formatSummary(s: ProfileSummary): string {
  const scope = s.window ? ` (job phase only, ${Math.round((s.window[1] - s.window[0]) / 1000)} ms)` : "";
  const lines = [
    `profile ${s.file}${scope}: ${s.busyMs} ms busy of ${s.totalMs} ms sampled`,
    "",
    "top self time (% of busy):",
  ];
  for (const t of s.top)
    lines.push(`  ${String(t.pct).padStart(5)}%  ${String(t.selfMs).padStart(6)} ms  ${t.fn}  ${t.where}`);
  lines.push("", "self time by area (% of busy):");
  for (const a of s.areas) lines.push(`  ${String(a.pct).padStart(5)}%  ${String(a.selfMs).padStart(6)} ms  ${a.area}`);
  lines.push("", "crms functions by total time, callees included (% of busy):");
  for (const t of s.inclusive) {
    lines.push(`  ${String(t.pct).padStart(5)}%  ${String(t.totalMs).padStart(6)} ms  ${t.fn}  ${t.where}`);
  }
  return lines.join("\n");
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { positionals, flags } = parseFlags(process.argv.slice(2));
  const target = positionals[0];
  if (!target) {
    process.stderr.write("usage: tsx bench/profile-top.ts FILE_OR_DIR [--top 25] [--json]\n");
    process.exit(2);
  }
  const file = newestProfile(target);
  if (!file) {
    process.stderr.write(`no .cpuprofile in ${target}\n`);
    process.exit(1);
  }
  const s = summarise(file, numFlag(flags, "top", 25));
  process.stdout.write(flags.has("json") ? `${JSON.stringify(s)}\n` : `${formatSummary(s)}\n`);
}
