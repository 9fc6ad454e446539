import { isAbsolute, join, resolve } from 'node:path';

import { ConfigError } from './errors.js';
import { boolean, generatedSecret, integer, issuer, oneOf } from './parsers.js';

/**
 * Every environment variable Latch reads, declared once: name, default, one sentence of
 * documentation and a parser. `loadConfig` walks VARIABLES; the README's configuration table is
 * checked against it in both directions by test/config.test.ts, so the two cannot drift apart.
 */

export { ConfigError };

export type Env = Record<string, string | undefined>;

/** What a parser may read besides its own value. */
export interface ParseContext {
  /** The raw environment (for a value taken exactly as given, such as a password). */
  readonly env: Env;
  /** Another variable's value, parsed on first use: declarations may come in any order. */
  get<T>(variable: VariableSpec<T>): T;
}

export interface VariableSpec<T = unknown> {
  /** Environment variable name. */
  readonly name: string;
  /** Default as shown in the README (a literal value, parsed like a configured one, or a description). */
  readonly default: string;
  /** One sentence for the README table. */
  readonly doc: string;
  /** The value from the trimmed setting (undefined when unset or blank); throws ConfigError naming the variable. */
  parse(raw: string | undefined, context: ParseContext): T;
}

/** A variable whose default is described rather than a literal (derived from other variables, or unset). */
const declare = <T>(name: string, defaultText: string, doc: string, parse: (raw: string | undefined, context: ParseContext) => T): VariableSpec<T> => ({ name, default: defaultText, doc, parse });

/** A variable whose literal default is parsed exactly like a configured value: written once. */
const literal = <T>(name: string, defaultValue: string, doc: string, parse: (raw: string, context: ParseContext) => T): VariableSpec<T> => ({ name, default: defaultValue, doc, parse: (raw, context) => parse(raw ?? defaultValue, context) });

const int = (name: string, defaultValue: number, min: number, max: number, doc: string) => literal(name, String(defaultValue), doc, (raw) => integer(name, raw, min, max));
const bool = (name: string, defaultValue: boolean, doc: string) => literal(name, String(defaultValue), doc, (raw) => boolean(name, raw));

function database(raw: string | undefined, dataDir: string, timeouts: PostgresTimeouts): DatabaseConfig {
  if (raw === undefined) return { client: 'sqlite', filename: join(dataDir, 'latch.sqlite') };
  if (raw.startsWith('postgres://') || raw.startsWith('postgresql://')) {
    try {
      new URL(raw);
    } catch {
      throw new ConfigError('DATABASE_URL', 'is not a valid postgres:// URL');
    }
    return { client: 'pg', connectionString: raw, timeouts };
  }
  if (raw.startsWith('sqlite:')) {
    const path = raw.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, '');
    if (!path) throw new ConfigError('DATABASE_URL', 'sqlite: needs a file path (sqlite:PATH)');
    return { client: 'sqlite', filename: path === ':memory:' ? path : resolve(path) };
  }
  throw new ConfigError('DATABASE_URL', `must start with postgres://, postgresql:// or sqlite: (got "${raw.split(':')[0]}:…")`);
}

function smtpUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError('SMTP_URL', 'is not a valid URL (smtp://[user:pass@]host:port or smtps://…)');
  }
  if (url.protocol !== 'smtp:' && url.protocol !== 'smtps:') throw new ConfigError('SMTP_URL', `must start with smtp:// or smtps:// (got "${url.protocol}//")`);
  return raw;
}

export const PORT = int('PORT', 3000, 0, 65535, 'TCP port the HTTP server listens on.');
export const ISSUER = declare('ISSUER', 'http://localhost:$PORT', 'Public issuer URL; every endpoint in discovery is derived from it. Must be https in production (except localhost).', (raw, c) => issuer(raw ?? `http://localhost:${c.get(PORT)}`, c.get(NODE_ENV)));
export const DATABASE_URL = declare('DATABASE_URL', 'SQLite file data/latch.sqlite', '`postgres://…` for PostgreSQL, `sqlite:PATH` for an SQLite file.', (raw, c) =>
  database(raw, c.get(DATA_DIR), { statementMs: c.get(DB_STATEMENT_TIMEOUT_MS), connectMs: c.get(DB_CONNECT_TIMEOUT_MS) }),
);
export const DB_STATEMENT_TIMEOUT_MS = int('DB_STATEMENT_TIMEOUT_MS', 5000, 0, 3_600_000, 'PostgreSQL: milliseconds one statement may run (`statement_timeout`, set per connection) before the request answers 503; 0 = no limit.');
export const DB_CONNECT_TIMEOUT_MS = int('DB_CONNECT_TIMEOUT_MS', 3000, 100, 600_000, 'PostgreSQL: milliseconds to open a connection, and to wait for a free one from the pool, before the request answers 503.');
export const LATCH_SECRET = declare('LATCH_SECRET', 'generated into data/latch-secret (not in production)', 'Master secret (at least 32 characters): keys client-secret HMACs, encrypts signing keys, signs cookies and CSRF tokens. Required in production.', (raw, c) => {
  if (raw === undefined) {
    if (c.get(NODE_ENV)) throw new ConfigError('LATCH_SECRET', 'is required when NODE_ENV=production');
    return { secret: generatedSecret(c.get(DATA_DIR)), generated: true };
  }
  if (raw.length < 32) throw new ConfigError('LATCH_SECRET', 'must be at least 32 characters');
  return { secret: raw, generated: false };
});
export const ADMIN_EMAIL = declare('ADMIN_EMAIL', '(unset)', 'With ADMIN_PASSWORD: create this superuser at start when no account has that email.', (raw) => raw);
export const ADMIN_PASSWORD = declare('ADMIN_PASSWORD', '(unset)', 'Password of the ADMIN_EMAIL superuser (used only when it is created).', (_raw, c) => {
  // Taken as given: a password may begin or end with spaces.
  const password = c.env.ADMIN_PASSWORD || undefined;
  const email = c.get(ADMIN_EMAIL);
  if ((email === undefined) !== (password === undefined)) {
    throw new ConfigError(email === undefined ? 'ADMIN_EMAIL' : 'ADMIN_PASSWORD', 'must be set together with ' + (email === undefined ? 'ADMIN_PASSWORD' : 'ADMIN_EMAIL'));
  }
  return password;
});
export const ACCESS_TOKEN_TTL = int('ACCESS_TOKEN_TTL', 900, 1, 31_536_000, 'Access-token lifetime in seconds (a resource server may set its own).');
export const REFRESH_TOKEN_TTL = int('REFRESH_TOKEN_TTL', 604_800, 1, 31_536_000, 'Refresh-token lifetime in seconds.');
export const REFRESH_REUSE_WINDOW = int('REFRESH_REUSE_WINDOW', 30, 0, 300, 'Seconds during which a client that presents the refresh token it just rotated gets the same new refresh token again (a retry after a lost response), as long as the new one is unused; 0 turns it off (every reuse revokes the grant).');
export const ID_TOKEN_TTL = int('ID_TOKEN_TTL', 3600, 1, 31_536_000, 'ID-token lifetime in seconds.');
export const DEVICE_CODE_TTL = int('DEVICE_CODE_TTL', 600, 5, 86_400, 'Lifetime in seconds of a device authorization (RFC 8628 device_code and user_code); polls after it answer expired_token.');
export const SESSION_TTL = int('SESSION_TTL', 1_209_600, 60, 31_536_000, 'Browser sign-in session lifetime in seconds.');
export const TRUST_PROXY = bool('TRUST_PROXY', false, 'Trust X-Forwarded-Proto/-Host/-For from a reverse proxy (needed for an https issuer behind a TLS-terminating proxy).');
export const WEB_CONCURRENCY = int('WEB_CONCURRENCY', 1, 1, 64, 'Number of worker processes serving one port (node:cluster); 1 serves from the main process.');
export const SHUTDOWN_GRACE = int('SHUTDOWN_GRACE', 1, 0, 300, 'Seconds to keep accepting connections after SIGTERM while /readyz answers 503, so load balancers stop routing first.');
export const SHUTDOWN_TIMEOUT = int('SHUTDOWN_TIMEOUT', 10, 1, 3600, 'Seconds in-flight requests may take to finish after the listener closes; then connections are cut.');
export const PURGE_INTERVAL = int('PURGE_INTERVAL', 60, 1, 86_400, 'Seconds between purges of expired provider state (codes, tokens, sessions).');
export const DATA_DIR = literal('DATA_DIR', 'data', 'Folder for the default SQLite file and the generated development secret.', (raw) => (isAbsolute(raw) ? raw : resolve(raw)));
export const LOG_LEVEL = literal('LOG_LEVEL', 'info', 'One of error, warn, info, debug.', (raw) => oneOf<LogLevel>('LOG_LEVEL', raw, ['error', 'warn', 'info', 'debug']));
export const METRICS_TOKEN = declare('METRICS_TOKEN', '(unset)', 'When set, `GET /metrics` requires `Authorization: Bearer <METRICS_TOKEN>`; unset, /metrics is open to anyone who can reach the port.', (raw) => {
  if (raw !== undefined && !/^[\x21-\x7e]+$/.test(raw)) throw new ConfigError('METRICS_TOKEN', 'must be printable ASCII without spaces');
  return raw;
});
export const REGISTRATION = declare('REGISTRATION', 'open (closed in production)', '`open`: anyone signs up from the login page; `invite`: only with an invitation link; `closed`: accounts are created by administrators.', (raw, c) => oneOf<RegistrationMode>('REGISTRATION', raw ?? (c.get(NODE_ENV) ? 'closed' : 'open'), ['open', 'invite', 'closed']));
export const REQUIRE_VERIFIED_EMAIL = bool('REQUIRE_VERIFIED_EMAIL', false, 'Refuse sign-in until the account has verified its email address.');
export const SMTP_URL = declare('SMTP_URL', '(unset: mails go to the log and data/outbox/)', '`smtp://[user:pass@]host:port`, or `smtps://` for TLS: where Latch sends mail.', (raw) => (raw === undefined ? undefined : smtpUrl(raw)));
export const SMTP_FROM = declare('SMTP_FROM', 'Latch <no-reply@ISSUER host>', 'Sender of every mail.', (raw, c) => {
  const from = raw ?? `Latch <no-reply@${new URL(c.get(ISSUER)).hostname}>`;
  if (/[\r\n]/.test(from) || !/@/.test(from)) throw new ConfigError('SMTP_FROM', 'must be an address like "Name <user@example.com>"');
  return from;
});
export const REDIS_URL = declare('REDIS_URL', '(unset)', '`redis://…`: keep rate-limit counters in Redis, shared by every instance.', (raw) => {
  if (raw !== undefined && !/^rediss?:\/\//.test(raw)) throw new ConfigError('REDIS_URL', 'must start with redis:// or rediss://');
  return raw;
});
export const RATE_LIMIT_STORE = declare('RATE_LIMIT_STORE', 'redis with REDIS_URL, else memory', '`memory` (one process), `database` (the SQL database, shared by instances) or `redis`.', (raw, c) => {
  const redis = c.get(REDIS_URL);
  const store = oneOf<RateLimitStore>('RATE_LIMIT_STORE', raw ?? (redis ? 'redis' : 'memory'), ['memory', 'database', 'redis']);
  if (store === 'redis' && !redis) throw new ConfigError('RATE_LIMIT_STORE', 'is redis but REDIS_URL is not set');
  return store;
});
export const ARGON2_MEMORY_KIB = int('ARGON2_MEMORY_KIB', 19_456, 1024, 4_194_304, 'argon2id memory cost in KiB (OWASP: 19 MiB).');
export const ARGON2_TIME_COST = int('ARGON2_TIME_COST', 2, 1, 100, 'argon2id iterations.');
export const ARGON2_PARALLELISM = int('ARGON2_PARALLELISM', 1, 1, 64, 'argon2id lanes.');
export const LOGIN_MAX_FAILURES = int('LOGIN_MAX_FAILURES', 5, 1, 1000, 'Consecutive failed logins for one account from one IP before that pair is locked.');
export const LOGIN_LOCKOUT_SECONDS = int('LOGIN_LOCKOUT_SECONDS', 60, 1, 86_400, 'First lockout; each further lockout doubles it.');
export const LOGIN_LOCKOUT_MAX_SECONDS = int('LOGIN_LOCKOUT_MAX_SECONDS', 900, 1, 604_800, 'Longest lockout.');
export const LOGIN_IP_FAILURES_PER_HOUR = int('LOGIN_IP_FAILURES_PER_HOUR', 50, 1, 1_000_000, 'Failed logins per IP per hour (unknown emails count too).');
export const REGISTRATIONS_PER_IP_PER_HOUR = int('REGISTRATIONS_PER_IP_PER_HOUR', 10, 1, 1_000_000, 'Sign-ups per IP per hour.');
export const MAILS_PER_ADDRESS_PER_HOUR = int('MAILS_PER_ADDRESS_PER_HOUR', 5, 1, 1_000_000, 'Reset and verification mails per address per hour.');
export const API_REQUESTS_PER_MINUTE = int('API_REQUESTS_PER_MINUTE', 600, 1, 10_000_000, 'Admin API requests per caller (token subject) per minute; beyond it 429 with `Retry-After`.');
export const API_AUTH_FAILURES_PER_MINUTE = int('API_AUTH_FAILURES_PER_MINUTE', 30, 1, 10_000_000, 'Admin API requests with a rejected token per IP per minute; beyond it the address gets 429.');
export const PAT_MAX_TTL_DAYS = int('PAT_MAX_TTL_DAYS', 365, 1, 3650, 'Longest lifetime a personal access token may be given, in days (the default lifetime is 90 days, or this when shorter).');
export const NODE_ENV = literal('NODE_ENV', 'development', '`production` enforces LATCH_SECRET and an https issuer.', (raw) => raw === 'production');

/** Every variable, in the order of the README table. */
export const VARIABLES: readonly VariableSpec[] = [
  PORT,
  ISSUER,
  DATABASE_URL,
  DB_STATEMENT_TIMEOUT_MS,
  DB_CONNECT_TIMEOUT_MS,
  LATCH_SECRET,
  ADMIN_EMAIL,
  ADMIN_PASSWORD,
  ACCESS_TOKEN_TTL,
  REFRESH_TOKEN_TTL,
  REFRESH_REUSE_WINDOW,
  ID_TOKEN_TTL,
  SESSION_TTL,
  DEVICE_CODE_TTL,
  TRUST_PROXY,
  WEB_CONCURRENCY,
  SHUTDOWN_GRACE,
  SHUTDOWN_TIMEOUT,
  PURGE_INTERVAL,
  DATA_DIR,
  LOG_LEVEL,
  METRICS_TOKEN,
  REGISTRATION,
  REQUIRE_VERIFIED_EMAIL,
  SMTP_URL,
  SMTP_FROM,
  REDIS_URL,
  RATE_LIMIT_STORE,
  ARGON2_MEMORY_KIB,
  ARGON2_TIME_COST,
  ARGON2_PARALLELISM,
  LOGIN_MAX_FAILURES,
  LOGIN_LOCKOUT_SECONDS,
  LOGIN_LOCKOUT_MAX_SECONDS,
  LOGIN_IP_FAILURES_PER_HOUR,
  REGISTRATIONS_PER_IP_PER_HOUR,
  MAILS_PER_ADDRESS_PER_HOUR,
  API_REQUESTS_PER_MINUTE,
  API_AUTH_FAILURES_PER_MINUTE,
  PAT_MAX_TTL_DAYS,
  NODE_ENV,
];

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

export type RegistrationMode = 'open' | 'invite' | 'closed';
export type RateLimitStore = 'memory' | 'database' | 'redis';

/** How long a PostgreSQL request may wait for the database before it is answered 503. */
export interface PostgresTimeouts {
  /** Per statement (`statement_timeout`); 0 = none. */
  readonly statementMs: number;
  /** Opening a connection, and waiting for one from the pool. */
  readonly connectMs: number;
}

export type DatabaseConfig =
  | { client: 'sqlite'; filename: string }
  | { client: 'pg'; connectionString: string; timeouts?: PostgresTimeouts };

export interface Config {
  readonly port: number;
  readonly issuer: string;
  readonly database: DatabaseConfig;
  /** Master secret; always set after loading (generated in development). */
  readonly secret: string;
  /** True when the secret was generated into the data folder rather than configured. */
  readonly secretGenerated: boolean;
  readonly admin: { readonly email: string; readonly password: string } | undefined;
  readonly ttl: {
    readonly accessToken: number;
    readonly refreshToken: number;
    /** REFRESH_REUSE_WINDOW: seconds a rotated refresh token may be presented again (0: never). */
    readonly refreshReuseWindow: number;
    readonly idToken: number;
    readonly session: number;
    readonly deviceCode: number;
  };
  readonly trustProxy: boolean;
  readonly webConcurrency: number;
  readonly shutdown: { readonly graceSeconds: number; readonly timeoutSeconds: number };
  readonly purgeIntervalSeconds: number;
  readonly dataDir: string;
  readonly logLevel: LogLevel;
  /** Bearer token required by GET /metrics; undefined leaves it open. */
  readonly metricsToken: string | undefined;
  readonly production: boolean;
  readonly registration: RegistrationMode;
  readonly requireVerifiedEmail: boolean;
  readonly mail: { readonly smtpUrl: string | undefined; readonly from: string };
  readonly redisUrl: string | undefined;
  readonly rateLimitStore: RateLimitStore;
  readonly argon2: { readonly memoryCost: number; readonly timeCost: number; readonly parallelism: number };
  /** Longest personal-access-token lifetime, in days. */
  readonly patMaxTtlDays: number;
  readonly limits: {
    readonly loginMaxFailures: number;
    readonly loginLockoutSeconds: number;
    readonly loginLockoutMaxSeconds: number;
    readonly loginIpFailuresPerHour: number;
    readonly registrationsPerIpPerHour: number;
    readonly mailsPerAddressPerHour: number;
    /** Admin API requests per caller (token subject) per minute. */
    readonly apiRequestsPerMinute: number;
    /** Admin API requests with a rejected token, per IP per minute. */
    readonly apiAuthFailuresPerMinute: number;
  };
}
