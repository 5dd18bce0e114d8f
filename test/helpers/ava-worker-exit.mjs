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
