/**
 * Job ids, as every layer orders them: decimal digits without leading zeros,
 * drawn in blocks from one counter, so a longer id is a later one.
 */

/** Compares two job ids as numbers (ids are decimal digits without leading zeros). */
export function compareIds(a: string, b: string): number {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}
