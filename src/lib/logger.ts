import { createRequire } from 'node:module';

import { pino, type DestinationStream, type LoggerOptions } from 'pino';
import type PinoPretty from 'pino-pretty';

import type { LogLevel } from '../config/schema.js';

export interface Logger {
  error(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  debug(msg: string, fields?: Record<string, unknown>): void;
  /**
   * The per-request line (middleware/request.ts) at info level, message "request". Loggers
   * without it get `info('request', fields)`.
   */
  request?(fields: Record<string, unknown>): void;
}

/**
 * Field names that must never reach a log line, whatever a caller passes (defence in depth: no
 * code logs bodies, headers or query strings in the first place).
 */
const SECRET_FIELDS = ['password', 'secret', 'client_secret', 'token', 'access_token', 'refresh_token', 'id_token', 'authorization', 'cookie', 'headers'];
const REDACT = [...SECRET_FIELDS, ...SECRET_FIELDS.map((f) => `*.${f}`)];

/**
 * pino-pretty is a devDependency: a human-readable console in development, when someone is
 * watching the terminal. Loaded lazily so production installs (no devDependencies) never need it.
 */
function prettyStream(): DestinationStream | undefined {
  if (process.env.NODE_ENV === 'production' || !process.stderr.isTTY) return undefined;
  try {
    const pretty = createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;
    return pretty({ destination: 2, sync: true, colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid' });
  } catch {
    return undefined;
  }
}

/**
 * pino: one JSON object per line on stderr (`{"level":"info","time":"…ISO…","pid":…,"msg":"…",
 * …fields}`), easy to ship to any log pipeline. `write`, when given, receives each line instead
 * (tests record them); pino-pretty is used only without it, outside production, on a terminal.
 */
export function createLogger(level: LogLevel, write?: (line: string) => void): Logger {
  const pretty = write ? undefined : prettyStream();
  const options: LoggerOptions = {
    level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: REDACT, censor: '[redacted]' },
    // Level names rather than numbers in JSON lines (pino-pretty wants the numbers).
    ...(pretty ? {} : { formatters: { level: (label: string) => ({ level: label }) } }),
  };
  const destination: DestinationStream = write ? { write } : (pretty ?? pino.destination({ dest: 2, sync: true }));
  const p = pino(options, destination);
  const log = (lvl: LogLevel) => (msg: string, fields?: Record<string, unknown>) => {
    if (fields) p[lvl](fields, msg);
    else p[lvl](msg);
  };
  // The request line's fields are fixed and never secret (method, route, path without its
  // query, status, duration, ids): written on every request, it skips the redaction pass.
  const requests = pino({ ...options, redact: undefined }, destination);
  const request = requests.isLevelEnabled('info') ? (fields: Record<string, unknown>) => requests.info(fields, 'request') : () => undefined;
  return { error: log('error'), warn: log('warn'), info: log('info'), debug: log('debug'), request };
}
