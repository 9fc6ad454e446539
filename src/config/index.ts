import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';

import { type Config, ConfigError, type DatabaseConfig, type LogLevel, type RateLimitStore, type RegistrationMode } from './schema.js';

export { type Config, ConfigError, VARIABLES } from './schema.js';

type Env = Record<string, string | undefined>;

const LOCAL_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

function value(env: Env, name: string): string | undefined {
  const raw = env[name];
  return raw === undefined || raw.trim() === '' ? undefined : raw.trim();
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = value(env, name);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, `must be a whole number (got "${raw}")`);
  const n = Number(raw);
  if (n < min || n > max) throw new ConfigError(name, `must be between ${min} and ${max} (got ${n})`);
  return n;
}

function boolean(env: Env, name: string, fallback: boolean): boolean {
  const raw = value(env, name)?.toLowerCase();
  if (raw === undefined) return fallback;
  if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
  if (['0', 'false', 'no', 'off'].includes(raw)) return false;
  throw new ConfigError(name, `must be true or false (got "${raw}")`);
}

function parseDatabase(env: Env, dataDir: string): DatabaseConfig {
  const raw = value(env, 'DATABASE_URL');
  if (raw === undefined) return { client: 'sqlite', filename: join(dataDir, 'latch.sqlite') };
  if (raw.startsWith('postgres://') || raw.startsWith('postgresql://')) {
    try {
      new URL(raw);
    } catch {
      throw new ConfigError('DATABASE_URL', 'is not a valid postgres:// URL');
    }
    return { client: 'pg', connectionString: raw };
  }
  if (raw.startsWith('sqlite:')) {
    const path = raw.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, '');
    if (!path) throw new ConfigError('DATABASE_URL', 'sqlite: needs a file path (sqlite:PATH)');
    return { client: 'sqlite', filename: path === ':memory:' ? path : resolve(path) };
  }
  throw new ConfigError('DATABASE_URL', `must start with postgres://, postgresql:// or sqlite: (got "${raw.split(':')[0]}:…")`);
}

function parseIssuer(env: Env, port: number, production: boolean): string {
  const raw = value(env, 'ISSUER') ?? `http://localhost:${port}`;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError('ISSUER', `is not an absolute URL (got "${raw}")`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new ConfigError('ISSUER', 'must be an http: or https: URL');
  }
  if (url.search || url.hash) throw new ConfigError('ISSUER', 'must not have a query or fragment');
  // OpenID Connect Discovery §3 / RFC 8414 §2: the issuer is https, except for local development.
  if (production && url.protocol === 'http:' && !LOCAL_HOSTS.has(url.hostname)) {
    throw new ConfigError('ISSUER', 'must be https in production (http is allowed only for localhost)');
  }
  return raw.replace(/\/+$/, '');
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const raw = value(env, name)?.toLowerCase();
  if (raw === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(raw)) throw new ConfigError(name, `must be one of ${allowed.join(', ')} (got "${raw}")`);
  return raw as T;
}

function parseSmtp(env: Env): string | undefined {
  const raw = value(env, 'SMTP_URL');
  if (raw === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError('SMTP_URL', 'is not a valid URL (smtp://[user:pass@]host:port or smtps://…)');
  }
  if (url.protocol !== 'smtp:' && url.protocol !== 'smtps:') throw new ConfigError('SMTP_URL', `must start with smtp:// or smtps:// (got "${url.protocol}//")`);
  return raw;
}

function parseRedis(env: Env): string | undefined {
  const raw = value(env, 'REDIS_URL');
  if (raw === undefined) return undefined;
  if (!/^rediss?:\/\//.test(raw)) throw new ConfigError('REDIS_URL', 'must start with redis:// or rediss://');
  return raw;
}

/** Reads or creates the development secret in the data folder. */
function generatedSecret(dataDir: string): string {
  const file = join(dataDir, 'latch-secret');
  try {
    const existing = readFileSync(file, 'utf8').trim();
    if (existing.length >= 32) return existing;
  } catch {
    // not there yet: created below
  }
  mkdirSync(dataDir, { recursive: true });
  const secret = randomBytes(32).toString('base64url');
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  return secret;
}

/**
 * Validates the environment into one frozen Config. Throws ConfigError (one line naming the
 * variable) on any bad value.
 */
export function loadConfig(env: Env = process.env): Config {
  const production = value(env, 'NODE_ENV') === 'production';
  const port = integer(env, 'PORT', 3000, 0, 65535);
  const dataDirRaw = value(env, 'DATA_DIR') ?? 'data';
  const dataDir = isAbsolute(dataDirRaw) ? dataDirRaw : resolve(dataDirRaw);

  let secret = value(env, 'LATCH_SECRET');
  let secretGenerated = false;
  if (secret === undefined) {
    if (production) throw new ConfigError('LATCH_SECRET', 'is required when NODE_ENV=production');
    secret = generatedSecret(dataDir);
    secretGenerated = true;
  } else if (secret.length < 32) {
    throw new ConfigError('LATCH_SECRET', 'must be at least 32 characters');
  }

  const adminEmail = value(env, 'ADMIN_EMAIL');
  const adminPassword = env.ADMIN_PASSWORD;
  if ((adminEmail === undefined) !== (adminPassword === undefined || adminPassword === '')) {
    throw new ConfigError(adminEmail === undefined ? 'ADMIN_EMAIL' : 'ADMIN_PASSWORD', 'must be set together with ' + (adminEmail === undefined ? 'ADMIN_PASSWORD' : 'ADMIN_EMAIL'));
  }

  const logLevel = (value(env, 'LOG_LEVEL') ?? 'info').toLowerCase();
  if (!['error', 'warn', 'info', 'debug'].includes(logLevel)) {
    throw new ConfigError('LOG_LEVEL', `must be one of error, warn, info, debug (got "${logLevel}")`);
  }

  const metricsToken = value(env, 'METRICS_TOKEN');
  if (metricsToken !== undefined && !/^[\x21-\x7e]+$/.test(metricsToken)) {
    throw new ConfigError('METRICS_TOKEN', 'must be printable ASCII without spaces');
  }

  const issuer = parseIssuer(env, port, production);
  const redisUrl = parseRedis(env);
  const mailFrom = value(env, 'SMTP_FROM') ?? `Latch <no-reply@${new URL(issuer).hostname}>`;
  if (/[\r\n]/.test(mailFrom) || !/@/.test(mailFrom)) throw new ConfigError('SMTP_FROM', 'must be an address like "Name <user@example.com>"');
  const rateLimitStore = oneOf<RateLimitStore>(env, 'RATE_LIMIT_STORE', ['memory', 'database', 'redis'], redisUrl ? 'redis' : 'memory');
  if (rateLimitStore === 'redis' && !redisUrl) throw new ConfigError('RATE_LIMIT_STORE', 'is redis but REDIS_URL is not set');

  const config: Config = {
    port,
    issuer,
    database: parseDatabase(env, dataDir),
    secret,
    secretGenerated,
    admin: adminEmail !== undefined && adminPassword ? { email: adminEmail, password: adminPassword } : undefined,
    ttl: {
      accessToken: integer(env, 'ACCESS_TOKEN_TTL', 900, 1, 31_536_000),
      refreshToken: integer(env, 'REFRESH_TOKEN_TTL', 604_800, 1, 31_536_000),
      idToken: integer(env, 'ID_TOKEN_TTL', 3600, 1, 31_536_000),
      session: integer(env, 'SESSION_TTL', 1_209_600, 60, 31_536_000),
    },
    trustProxy: boolean(env, 'TRUST_PROXY', false),
    webConcurrency: integer(env, 'WEB_CONCURRENCY', 1, 1, 64),
    shutdown: { graceSeconds: integer(env, 'SHUTDOWN_GRACE', 1, 0, 300), timeoutSeconds: integer(env, 'SHUTDOWN_TIMEOUT', 10, 1, 3600) },
    purgeIntervalSeconds: integer(env, 'PURGE_INTERVAL', 60, 1, 86_400),
    dataDir,
    logLevel: logLevel as LogLevel,
    metricsToken,
    production,
    registration: oneOf<RegistrationMode>(env, 'REGISTRATION', ['open', 'invite', 'closed'], production ? 'closed' : 'open'),
    requireVerifiedEmail: boolean(env, 'REQUIRE_VERIFIED_EMAIL', false),
    mail: { smtpUrl: parseSmtp(env), from: mailFrom },
    redisUrl,
    rateLimitStore,
    argon2: {
      memoryCost: integer(env, 'ARGON2_MEMORY_KIB', 19_456, 1024, 4_194_304),
      timeCost: integer(env, 'ARGON2_TIME_COST', 2, 1, 100),
      parallelism: integer(env, 'ARGON2_PARALLELISM', 1, 1, 64),
    },
    patMaxTtlDays: integer(env, 'PAT_MAX_TTL_DAYS', 365, 1, 3650),
    limits: {
      loginMaxFailures: integer(env, 'LOGIN_MAX_FAILURES', 5, 1, 1000),
      loginLockoutSeconds: integer(env, 'LOGIN_LOCKOUT_SECONDS', 60, 1, 86_400),
      loginLockoutMaxSeconds: integer(env, 'LOGIN_LOCKOUT_MAX_SECONDS', 900, 1, 604_800),
      loginIpFailuresPerHour: integer(env, 'LOGIN_IP_FAILURES_PER_HOUR', 50, 1, 1_000_000),
      registrationsPerIpPerHour: integer(env, 'REGISTRATIONS_PER_IP_PER_HOUR', 10, 1, 1_000_000),
      mailsPerAddressPerHour: integer(env, 'MAILS_PER_ADDRESS_PER_HOUR', 5, 1, 1_000_000),
      apiRequestsPerMinute: integer(env, 'API_REQUESTS_PER_MINUTE', 600, 1, 10_000_000),
      apiAuthFailuresPerMinute: integer(env, 'API_AUTH_FAILURES_PER_MINUTE', 30, 1, 10_000_000),
    },
  };
  return Object.freeze(config);
}
