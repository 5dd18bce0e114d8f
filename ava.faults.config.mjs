// Fault tests (a 3-member etcd, 2 `crms server` replicas, 3 `crms worker` processes; SIGKILL/SIGSTOP): `npm run test:faults`.
export default {
  extensions: { ts: "module" },
  nodeArguments: ["--import=tsx"],
  files: ["test/faults/**/*.test.ts"],
  timeout: "300s",
  concurrency: 1,
  workerThreads: false,
  require: ["./test/helpers/ava-worker-exit.mjs"],
  verbose: true,
};
