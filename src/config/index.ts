import type { Config, Env, ParseContext, VariableSpec } from './schema.js';
import * as v from './schema.js';

export { type Config, ConfigError, VARIABLES } from './schema.js';

/** A variable's setting, trimmed; blank counts as unset. */
function setting(env: Env, name: string): string | undefined {
  const raw = env[name];
  return raw === undefined || raw.trim() === '' ? undefined : raw.trim();
}

/**
 * Validates the environment into one frozen Config. Walks every declared variable (schema.ts),
 * so each is checked even when nothing below reads it, and throws ConfigError (one line naming
 * the variable) on any bad value.
 */
export function loadConfig(env: Env = process.env): Config {
  const parsed = new Map<VariableSpec, unknown>();
  const context: ParseContext = {
    env,
    get<T>(variable: VariableSpec<T>): T {
      if (!parsed.has(variable)) parsed.set(variable, variable.parse(setting(env, variable.name), context));
      return parsed.get(variable) as T;
    },
  };
  for (const variable of v.VARIABLES) context.get(variable);
  const get = context.get;

  const adminEmail = get(v.ADMIN_EMAIL);
  const adminPassword = get(v.ADMIN_PASSWORD);
  const { secret, generated } = get(v.LATCH_SECRET);
  const config: Config = {
    port: get(v.PORT),
    issuer: get(v.ISSUER),
    database: get(v.DATABASE_URL),
    secret,
    secretGenerated: generated,
    admin: adminEmail !== undefined && adminPassword !== undefined ? { email: adminEmail, password: adminPassword } : undefined,
    ttl: {
      accessToken: get(v.ACCESS_TOKEN_TTL),
      refreshToken: get(v.REFRESH_TOKEN_TTL),
      refreshReuseWindow: get(v.REFRESH_REUSE_WINDOW),
      idToken: get(v.ID_TOKEN_TTL),
      session: get(v.SESSION_TTL),
      deviceCode: get(v.DEVICE_CODE_TTL),
    },
    trustProxy: get(v.TRUST_PROXY),
    webConcurrency: get(v.WEB_CONCURRENCY),
    shutdown: { graceSeconds: get(v.SHUTDOWN_GRACE), timeoutSeconds: get(v.SHUTDOWN_TIMEOUT) },
    purgeIntervalSeconds: get(v.PURGE_INTERVAL),
    dataDir: get(v.DATA_DIR),
    logLevel: get(v.LOG_LEVEL),
    metricsToken: get(v.METRICS_TOKEN),
    production: get(v.NODE_ENV),
    registration: get(v.REGISTRATION),
    requireVerifiedEmail: get(v.REQUIRE_VERIFIED_EMAIL),
    mail: { smtpUrl: get(v.SMTP_URL), from: get(v.SMTP_FROM) },
    redisUrl: get(v.REDIS_URL),
    rateLimitStore: get(v.RATE_LIMIT_STORE),
    argon2: {
      memoryCost: get(v.ARGON2_MEMORY_KIB),
      timeCost: get(v.ARGON2_TIME_COST),
      parallelism: get(v.ARGON2_PARALLELISM),
    },
    patMaxTtlDays: get(v.PAT_MAX_TTL_DAYS),
    limits: {
      loginMaxFailures: get(v.LOGIN_MAX_FAILURES),
      loginLockoutSeconds: get(v.LOGIN_LOCKOUT_SECONDS),
      loginLockoutMaxSeconds: get(v.LOGIN_LOCKOUT_MAX_SECONDS),
      loginIpFailuresPerHour: get(v.LOGIN_IP_FAILURES_PER_HOUR),
      registrationsPerIpPerHour: get(v.REGISTRATIONS_PER_IP_PER_HOUR),
      mailsPerAddressPerHour: get(v.MAILS_PER_ADDRESS_PER_HOUR),
      apiRequestsPerMinute: get(v.API_REQUESTS_PER_MINUTE),
      apiAuthFailuresPerMinute: get(v.API_AUTH_FAILURES_PER_MINUTE),
    },
  };
  return Object.freeze(config);
}
