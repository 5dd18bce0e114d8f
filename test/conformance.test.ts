/**
 * Issue #3's conformance test: the same scenario (submit, watch to
 * SUCCEEDED, read output, kill a running job, unknown id, invalid request)
 * run by the TypeScript, Python and Go clients' conformance programs as
 * child processes against one real cluster (etcd, control plane, a real
 * `crms worker` process). Each prints one JSON line; each must show the
 * expected states and codes, and all three must be equal but for "client".
 *
 * It needs python3 (clients/python/setup-venv.sh builds the client's venv)
 * and go (builds clients/go/cmd/conformance); a missing one fails the test.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import test from "ava";
import { TestCluster } from "./helpers/cluster.js";

const exec = promisify(execFile);
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const TSX = join(ROOT, "node_modules", ".bin", "tsx");

const EXPECTED = {
  final_state: "SUCCEEDED",
  output: "conformance\n",
  killed_state: "KILLED",
  unknown_code: "NOT_FOUND",
  invalid_code: "INVALID_ARGUMENT",
};
type Line = typeof EXPECTED & { client: string };

/** Runs a program; on failure the error says what ran and what it printed. */
async function run(what: string, file: string, args: string[], cwd = ROOT, timeout = 240_000): Promise<string> {
  try {
    const { stdout } = await exec(file, args, { cwd, timeout, maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stdout?: string; stderr?: string };
    const missing = e.code === "ENOENT" ? ` (${file} is not installed or not on PATH)` : "";
    throw new Error(`${what} failed${missing}: ${e.message}\nstdout: ${e.stdout ?? ""}\nstderr: ${e.stderr ?? ""}`);
  }
}

/** Builds (if missing) and refreshes the Python client's venv; returns its python. */
async function pythonOfClient(): Promise<string> {
  const out = await run("clients/python/setup-venv.sh (python3 needed)", "bash", [
    join(ROOT, "clients/python/setup-venv.sh"),
  ]);
  const python = out.trim().split("\n").pop();
  if (!python) throw new Error(`clients/python/setup-venv.sh printed no python path: ${out}`);
  return python;
}

/** Builds the Go conformance program into dir; returns its path. */
async function goConformance(dir: string): Promise<string> {
  const bin = join(dir, "conformance-go");
  await run(
    "go build ./cmd/conformance (go needed)",
    "go",
    ["build", "-o", bin, "./cmd/conformance"],
    join(ROOT, "clients/go"),
  );
  return bin;
}

function parseLine(client: string, stdout: string): Line {
  const lines = stdout.trim().split("\n");
  const last = lines[lines.length - 1] ?? "";
  try {
    return JSON.parse(last) as Line;
  } catch {
    throw new Error(`${client} conformance program printed no JSON line:\n${stdout}`);
  }
}

test("the TypeScript, Python and Go clients see the same states and codes for the same scenario", async (t) => {
  t.timeout(600_000);
  const dir = mkdtempSync(join(tmpdir(), "crms-conformance-"));
  // Toolchains first (in parallel): a missing one fails here with its name.
  const [python, goBin] = await Promise.all([pythonOfClient(), goConformance(dir)]);

  const cluster = await TestCluster.start();
  t.teardown(async () => {
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  // Three programs at once, each with one job in a slot at a time (two at most).
  await cluster.startWorker("conformance-w1", 6);

  const address = cluster.address;
  const programs: [string, string, string[]][] = [
    ["typescript", TSX, [join(ROOT, "examples/conformance.ts"), address]],
    ["python", python, [join(ROOT, "clients/python/examples/conformance.py"), address]],
    ["go", goBin, [address]],
  ];
  const lines = await Promise.all(
    programs.map(async ([client, file, args]) =>
      parseLine(client, await run(`${client} conformance program`, file, args)),
    ),
  );

  for (const line of lines) {
    const text = JSON.stringify(line);
    t.log(text);
    console.log(text);
  }
  // Each client individually, then all three equal apart from "client".
  const observed = lines.map(({ client: _client, ...rest }) => rest);
  for (const [i, [client]] of programs.entries()) {
    t.is(lines[i]?.client, client);
    t.deepEqual(observed[i], EXPECTED, `${client} observed ${JSON.stringify(lines[i])}`);
    t.deepEqual(observed[i], observed[0], `${client} differs from ${programs[0]?.[0]}`);
  }
});
