/**
 * Reading the command line, shared by the CLI's client commands (src/cli)
 * and the launchers here: parsing against the flag tables of src/config.ts,
 * option values checked, every mistake a usage error (exit 2).
 */
import { parseArgs } from "node:util";
import type { ClientSecurity } from "../../clients/typescript/src/client.js";
import { COMMON_FLAGS, type Flags } from "../config.js";

/** A user-facing failure: printed as one line, exit code 1 (or `exitCode`). */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

/** The values of `-o`: tables for people, json/yaml/name for scripts. */
export const OUTPUTS = ["table", "wide", "json", "yaml", "name"] as const;
export type Output = (typeof OUTPUTS)[number];

/** `-o` checked against the choices (and `extra`, e.g. history's csv); undefined means the table. */
export function outputOf(value: unknown, extra: string[] = []): Output | undefined {
  if (value === undefined) return undefined;
  if (!OUTPUTS.includes(value as Output) && !extra.includes(value as string)) {
    throw new Error(`-o must be one of ${[...OUTPUTS, ...extra].join(", ")} (got ${JSON.stringify(value)})`);
  }
  return value as Output;
}

/**
 * `--priority -5`: a value that looks like a negative number (and any value of
 * --sort, whose "-" means descending) is the option's value, not an option.
 */
export function joinValues(args: string[], options: Flags): string[] {
  const long = new Map<string, string>();
  for (const [name, o] of Object.entries(options)) {
    if (o.type !== "string") continue;
    long.set(`--${name}`, name);
    if (o.short) long.set(`-${o.short}`, name);
  }
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a === "--") {
      out.push(...args.slice(i));
      break;
    }
    const name = long.get(a);
    const next = args[i + 1];
    if (name && next?.startsWith("-") && (/^-\d/.test(next) || name === "sort")) {
      out.push(`--${name}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

/** True when --help or -h is among a command's options (not after `--`, where the job's own arguments are). */
export function wantsHelp(args: string[]): boolean {
  const end = args.indexOf("--");
  return (end < 0 ? args : args.slice(0, end)).some((a) => a === "--help" || a === "-h");
}

/** Parses a command's arguments with the common options; `-o` must be one of OUTPUTS or of `outputs` (e.g. history's csv). */
export function parse(args: string[], options: Flags = {}, outputs: string[] = []) {
  const all: Flags = { ...COMMON_FLAGS, ...options };
  let parsed: ReturnType<typeof parseArgs<{ options: typeof all; allowPositionals: true; strict: true }>>;
  try {
    parsed = parseArgs({ args: joinValues(args, all), options: all, allowPositionals: true, strict: true });
  } catch (err) {
    throw new CliError(err instanceof Error ? err.message : String(err), 2);
  }
  if (!outputs.includes(parsed.values.output as string)) {
    cliParse(() => outputOf(parsed.values.output, outputs));
  }
  return parsed;
}

/** Runs a parser of an option's text; its error becomes a usage error (exit 2). */
export function cliParse<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw new CliError((err as Error).message, 2);
  }
}

/** `--label K=V` (repeated) as a record. */
export function keyValues(list: unknown, what: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of (list as string[] | undefined) ?? []) {
    const i = item.indexOf("=");
    if (i <= 0) throw new CliError(`${what} must be KEY=VALUE (got ${JSON.stringify(item)})`, 2);
    out[item.slice(0, i)] = item.slice(i + 1);
  }
  return out;
}

/** A whole number ≥ 0, `fallback` when the option is absent. */
export function int(value: unknown, what: string, fallback = 0): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new CliError(`${what} must be a whole number ≥ 0 (got ${value})`, 2);
  return n;
}

const SIZE_UNITS: Record<string, number> = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

/**
 * A size in bytes: plain bytes (`1048576`) or a number with a binary suffix
 * K, M, G or T (`4G` = 4 GiB; `512Mi`, `1.5GiB` and `4gb` read the same way);
 * `fallback` when the option is absent.
 */
export function byteSize(value: unknown, what: string, fallback = 0): number {
  if (value === undefined) return fallback;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(?:([KMGT])(?:iB|i|B)?|B)?\s*$/i.exec(String(value));
  const unit = m?.[2]?.toUpperCase() ?? "";
  const n = m ? Math.floor(Number(m[1]) * (SIZE_UNITS[unit] as number)) : Number.NaN;
  if (!m || (!unit && m[1]?.includes(".")) || !Number.isSafeInteger(n)) {
    throw new CliError(`${what} must be a size: bytes, or a number with K, M, G or T (got ${value})`, 2);
  }
  return n;
}

/** A fraction in [0, 1), `fallback` when the option is absent. */
export function fraction(value: unknown, what: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!(n >= 0 && n < 1)) throw new CliError(`${what} must be a fraction from 0 to below 1 (got ${value})`, 2);
  return n;
}

/** The TLS and token options of the command line (the environment fills the rest). */
export function securityOf(v: Record<string, unknown>): ClientSecurity {
  return {
    ca: v.ca as string | undefined,
    cert: v.cert as string | undefined,
    key: v.key as string | undefined,
    tls: v.tls as boolean | undefined,
    token: v.token as string | undefined,
    tokenFile: v["token-file"] as string | undefined,
  };
}

/** Resolves with the name of the first SIGINT or SIGTERM. */
export function untilSignal(): Promise<string> {
  return new Promise((resolve) => {
    const on = (sig: string) => () => resolve(sig);
    process.once("SIGINT", on("SIGINT"));
    process.once("SIGTERM", on("SIGTERM"));
  });
}
