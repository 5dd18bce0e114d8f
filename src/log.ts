/** The one logger every layer is given (server, services, store, scheduler, worker); levels validated. */
/** A structured log function: a message and fields (job, worker, error...). */
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

const levels = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 } as const;
export type LogLevel = keyof typeof levels;

/** A log level by name; an unknown name is refused, never read as "log everything". */
export function parseLogLevel(name: string): LogLevel {
  if (Object.hasOwn(levels, name)) return name as LogLevel;
  throw new Error(`log level must be one of ${Object.keys(levels).join(", ")} (got ${JSON.stringify(name)})`);
}

/** A logger that writes each line at `level` or above through `write`. */
function leveled(
  level: LogLevel,
  write: (level: Exclude<LogLevel, "silent">, msg: string, fields?: Record<string, unknown>) => void,
): Logger {
  const min = levels[parseLogLevel(level)];
  const at = (lvl: Exclude<LogLevel, "silent">) => (msg: string, fields?: Record<string, unknown>) => {
    if (levels[lvl] >= min) write(lvl, msg, fields);
  };
  return { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}

/** A JSON-lines logger on stderr (the control plane's). */
export function createLogger(level: LogLevel = "info", base: Record<string, unknown> = {}): Logger {
  return leveled(level, (lvl, msg, fields) =>
    process.stderr.write(
      `${JSON.stringify({ time: new Date().toISOString(), level: lvl, msg, ...base, ...fields })}\n`,
    ),
  );
}

/**
 * A logger for people on stderr (the worker's): `<time> <prefix>: <msg>`, then
 * the fields as ` key=value`.
 */
export function createTextLogger(level: LogLevel = "info", prefix = ""): Logger {
  return leveled(level, (_lvl, msg, fields) => {
    const extra = Object.entries(fields ?? {})
      .map(([k, v]) => ` ${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
      .join("");
    process.stderr.write(`${new Date().toISOString()} ${prefix ? `${prefix}: ` : ""}${msg}${extra}\n`);
  });
}

/** A logger that drops everything (the default of parts built without one, as in tests). */
export const silentLogger: Logger = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };
