/**
 * How far the control plane's heap may grow past what survived its last full
 * collection (`crms server --heap-growth PERCENT`).
 *
 * V8 picks that factor itself, between 1.1 and 4 (it grows the heap more the
 * less time it spends collecting), and returns the pages to the system only
 * after some idle seconds. A replica that takes submits at thousands a second
 * therefore sat at about three times its live heap: 1,860 bytes of RSS per
 * pending job right after 200,000 submits, 575 once idle. A fixed 30 %
 * (V8's `--heap-growing-percent`, read at every full collection, so it can be
 * set once the process runs) keeps it near the live size at no cost in submit
 * rate measured here (bench/README.md, "Fifth round"): Go's GOGC is the same
 * trade, with 100 % as its default. It is set once the replica has loaded its
 * jobs: a load builds the whole live set at once, and under a fixed 30 % it
 * collects again and again on the way (restarts over a million pending jobs,
 * alternating: 12.9 and 10.8 s with 30 % from the start, 10.0 and 9.8 s
 * without).
 */
import { setFlagsFromString } from "node:v8";

/** Sets the heap's growth after a full collection to (1 + percent/100) × what survived; 0 leaves it to V8. */
export function setHeapGrowth(percent: number): void {
  if (percent > 0) setFlagsFromString(`--heap-growing-percent=${percent}`);
}
