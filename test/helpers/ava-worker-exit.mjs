/**
 * Loaded by ava in every test worker (package.json "ava.require"). ava 7's
 * child-process worker, once its tests ended, sends "worker-finished" and
 * waits for the main process to answer "free-worker" before it exits; now
 * and then that answer never comes (seen in CI: every test of the file
 * passed, the worker idle with no handle but its IPC channel, the run stuck
 * until CI's time limit). This gives the worker 30 s for the answer, then lets
 * it exit as it would have (ava's main process then sees a clean exit and
 * counts the file as finished with the results it already received).
 */
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const require = createRequire(import.meta.url);
// The same module instance ava's worker uses (the CommonJS cache is keyed by path;
// ava's exports map hides the file, so it is found from the package's entry point).
const channel = require(join(dirname(require.resolve("ava")), "..", "lib", "worker", "channel.cjs"));
const freed = channel.workerFreed;
let arm = () => {};
channel.workerFreed = new Promise((resolve) => {
  freed.then(resolve, resolve);
  arm = () => {
    const timer = setTimeout(() => {
      process.stderr.write(`ava worker: no "free-worker" answer 30 s after finishing; exiting\n`);
      resolve(undefined);
    }, 30_000);
    timer.unref();
  };
});
const send = channel.send;
channel.send = (evt, ...rest) => {
  if (evt?.type === "worker-finished") arm();
  return send(evt, ...rest);
};

/**
 * Once ava is done with the file, the worker exits when nothing holds its
 * event loop. A file that leaves a handle open (a socket, a child, a timer)
 * would keep the worker, and with it the whole run, waiting forever; after
 * 10 s this names what is still open, kills the child processes among it
 * and exits.
 */
let testFile = "";
channel.options.then((options) => {
  testFile = String(options.file ?? "").replace(/^file:\/\//, "");
});
const describe = (h) => {
  const name = h?.constructor?.name ?? typeof h;
  if (Array.isArray(h?.spawnargs)) return `${name} ${h.spawnargs.join(" ").slice(0, 120)}`;
  if (h?.remotePort) return `${name} to ${h.remoteAddress}:${h.remotePort}`;
  const local = typeof h?.address === "function" ? h.address() : undefined;
  if (local?.port) return `${name} on ${local.address}:${local.port}`;
  return name;
};
import("ava").then(({ registerCompletionHandler }) =>
  registerCompletionHandler(() => {
    const timer = setTimeout(() => {
      const own = new Set([process.stdin, process.stdout, process.stderr, process.channel]);
      const handles = process._getActiveHandles().filter((h) => !own.has(h));
      const open = [...handles.map(describe), ...process.getActiveResourcesInfo()].join("; ");
      // Children left behind (an etcd whose test failed before its teardown was registered) would
      // outlive the worker and the run, holding ports and CPU: they end with it.
      const children = handles.filter((h) => Array.isArray(h?.spawnargs) && h.pid && h.exitCode === null);
      for (const c of children) c.kill("SIGKILL");
      const killed = children.length ? `; killed ${children.map((c) => c.pid).join(", ")}` : "";
      process.stderr.write(`ava worker: ${testFile} still holds [${open}] 10 s after its tests; exiting${killed}\n`);
      process.exit(0);
    }, 10_000);
    timer.unref();
  }),
);
