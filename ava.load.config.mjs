// Long load tests (etcd at a 16 MiB quota with 50,000 jobs, NOSPACE and recovery): `npm run test:load`.
export default {
  extensions: { ts: "module" },
  nodeArguments: ["--import=tsx"],
  files: ["test/load/**/*.test.ts"],
  timeout: "600s",
  concurrency: 1,
  workerThreads: false,
  require: ["./test/helpers/ava-worker-exit.mjs"],
};
