/**
 * The worker sessions of this replica: the registry (registry.ts) with its
 * parts, the pushes (pushes.ts), the report applier (reports.ts), the watchdog
 * (watchdog.ts), hello reconciliation (reconcile.ts) and the output relay (relay.ts).
 */
export { HELLO_TIMEOUT_MS, Sessions, STOPPED } from "./registry.js";
