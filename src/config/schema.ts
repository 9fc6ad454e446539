/**
 * Every environment variable Latch reads, declared once: name, default, one sentence of
 * documentation and a parser. The README's configuration table is checked against this list
 * by test/config.test.ts, so the two cannot drift apart.
 */

import { ConfigError } from '../errors/index.js';

export { ConfigError };

export interface VariableSpec {
  /** Environment variable name. */
  name: string;
  /** Default as shown in the README (a literal value or a description). */
  default: string;
  /** One sentence for the README table. */
  doc: string;
}

export const VARIABLES: readonly VariableSpec[] = [
  { name: 'PORT', default: '3000', doc: 'TCP port the HTTP server listens on.' },
  { name: 'ISSUER', default: 'http://localhost:$PORT', doc: 'Public issuer URL; every endpoint in discovery is derived from it. Must be https in production (except localhost).' },
  { name: 'DATABASE_URL', default: 'SQLite file data/latch.sqlite', doc: '`postgres://…` for PostgreSQL, `sqlite:PATH` for an SQLite file.' },
  { name: 'LATCH_SECRET', default: 'generated into data/latch-secret (not in production)', doc: 'Master secret (at least 32 characters): keys client-secret HMACs, encrypts signing keys, signs cookies and CSRF tokens. Required in production.' },
  { name: 'ADMIN_EMAIL', default: '(unset)', doc: 'With ADMIN_PASSWORD: create this superuser at start when no account has that email.' },
  { name: 'ADMIN_PASSWORD', default: '(unset)', doc: 'Password of the ADMIN_EMAIL superuser (used only when it is created).' },
  { name: 'ACCESS_TOKEN_TTL', default: '900', doc: 'Access-token lifetime in seconds (a resource server may set its own).' },
  { name: 'REFRESH_TOKEN_TTL', default: '604800', doc: 'Refresh-token lifetime in seconds.' },
  { name: 'ID_TOKEN_TTL', default: '3600', doc: 'ID-token lifetime in seconds.' },
  { name: 'SESSION_TTL', default: '1209600', doc: 'Browser sign-in session lifetime in seconds.' },
  { name: 'TRUST_PROXY', default: 'false', doc: 'Trust X-Forwarded-Proto/-Host/-For from a reverse proxy (needed for an https issuer behind a TLS-terminating proxy).' },
  { name: 'WEB_CONCURRENCY', default: '1', doc: 'Number of worker processes serving one port (node:cluster); 1 serves from the main process.' },
  { name: 'SHUTDOWN_GRACE', default: '1', doc: 'Seconds to keep accepting connections after SIGTERM while /readyz answers 503, so load balancers stop routing first.' },
  { name: 'SHUTDOWN_TIMEOUT', default: '10', doc: 'Seconds in-flight requests may take to finish after the listener closes; then connections are cut.' },
  { name: 'PURGE_INTERVAL', default: '60', doc: 'Seconds between purges of expired provider state (codes, tokens, sessions).' },
  { name: 'DATA_DIR', default: 'data', doc: 'Folder for the default SQLite file and the generated development secret.' },
  { name: 'LOG_LEVEL', default: 'info', doc: 'One of error, warn, info, debug.' },
  { name: 'METRICS_TOKEN', default: '(unset)', doc: 'When set, `GET /metrics` requires `Authorization: Bearer <METRICS_TOKEN>`; unset, /metrics is open to anyone who can reach the port.' },
  { name: 'REGISTRATION', default: 'open (closed in production)', doc: '`open`: anyone signs up from the login page; `invite`: only with an invitation link; `closed`: accounts are created by administrators.' },
  { name: 'REQUIRE_VERIFIED_EMAIL', default: 'false', doc: 'Refuse sign-in until the account has verified its email address.' },
  { name: 'SMTP_URL', default: '(unset: mails go to the log and data/outbox/)', doc: '`smtp://[user:pass@]host:port`, or `smtps://` for TLS: where Latch sends mail.' },
  { name: 'SMTP_FROM', default: 'Latch <no-reply@ISSUER host>', doc: 'Sender of every mail.' },
  { name: 'REDIS_URL', default: '(unset)', doc: '`redis://…`: keep rate-limit counters in Redis, shared by every instance.' },
  { name: 'RATE_LIMIT_STORE', default: 'redis with REDIS_URL, else memory', doc: '`memory` (one process), `database` (the SQL database, shared by instances) or `redis`.' },
  { name: 'ARGON2_MEMORY_KIB', default: '19456', doc: 'argon2id memory cost in KiB (OWASP: 19 MiB).' },
  { name: 'ARGON2_TIME_COST', default: '2', doc: 'argon2id iterations.' },
  { name: 'ARGON2_PARALLELISM', default: '1', doc: 'argon2id lanes.' },
  { name: 'LOGIN_MAX_FAILURES', default: '5', doc: 'Consecutive failed logins for one account from one IP before that pair is locked.' },
  { name: 'LOGIN_LOCKOUT_SECONDS', default: '60', doc: 'First lockout; each further lockout doubles it.' },
  { name: 'LOGIN_LOCKOUT_MAX_SECONDS', default: '900', doc: 'Longest lockout.' },
  { name: 'LOGIN_IP_FAILURES_PER_HOUR', default: '50', doc: 'Failed logins per IP per hour (unknown emails count too).' },
  { name: 'REGISTRATIONS_PER_IP_PER_HOUR', default: '10', doc: 'Sign-ups per IP per hour.' },
  { name: 'MAILS_PER_ADDRESS_PER_HOUR', default: '5', doc: 'Reset and verification mails per address per hour.' },
  { name: 'PAT_MAX_TTL_DAYS', default: '365', doc: 'Longest lifetime a personal access token may be given, in days (the default lifetime is 90 days, or this when shorter).' },
  { name: 'NODE_ENV', default: 'development', doc: '`production` enforces LATCH_SECRET and an https issuer.' },
];

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

export type RegistrationMode = 'open' | 'invite' | 'closed';
export type RateLimitStore = 'memory' | 'database' | 'redis';

export type DatabaseConfig =
  | { client: 'sqlite'; filename: string }
  | { client: 'pg'; connectionString: string };

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
    readonly idToken: number;
    readonly session: number;
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
