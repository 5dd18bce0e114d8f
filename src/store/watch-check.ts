/**
 * Watch silence detection: a watch can stall without an error (a half-open
 * connection to an etcd member, a member that stopped sending). Every
 * `intervalMs`, each cache whose watch has been silent for `silentMs` asks
 * etcd whether its prefix changed past the cache's revision; if so it relists
 * and rewatches (PrefixCache.checkProgress), so the copy equals etcd again.
 */
import type { Logger } from "../log.js";
import type { PrefixCache } from "./cache.js";

export function startWatchChecks(
  caches: PrefixCache<unknown>[],
  options: { intervalMs?: number; silentMs?: number } = {},
  log?: Logger,
): () => void {
  let running = false;
  const timer = setInterval(async () => {
    if (running) return;
    running = true;
    try {
      for (const cache of caches) {
        const relisted = await cache.checkProgress(options.silentMs ?? 15_000).catch(() => false);
        if (relisted) log?.warn("watch was silent while etcd changed: relisted", { prefix: cache.prefix });
      }
    } finally {
      running = false;
    }
  }, options.intervalMs ?? 5_000);
  timer.unref();
  return () => clearInterval(timer);
}
