/** The one structured logger every layer is given: JSON lines on stderr, levels validated. */
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

/** A JSON-lines logger on stderr. */
export function createLogger(level: LogLevel = "info", base: Record<string, unknown> = {}): Logger {
  const min = levels[parseLogLevel(level)];
  const line = (lvl: Exclude<LogLevel, "silent">) => (msg: string, fields?: Record<string, unknown>) => {
    if (levels[lvl] < min) return;
    process.stderr.write(
      `${JSON.stringify({ time: new Date().toISOString(), level: lvl, msg, ...base, ...fields })}\n`,
    );
  };
  return { debug: line("debug"), info: line("info"), warn: line("warn"), error: line("error") };
}
