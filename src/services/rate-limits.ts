import { createHash } from 'node:crypto';

import { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterPostgres, RateLimiterRedis, RateLimiterSQLite, type RateLimiterAbstract, type RateLimiterRes } from 'rate-limiter-flexible';

import type { Config } from '../config/index.js';
import { isPostgres, type Db } from '../db/knex.js';
import type { Logger } from '../lib/logger.js';

/**
 * Named limits on abusable actions. Keys are built by callers (an IP, an address, an
 * account+IP pair); answers say whether the action may go on and, if not, for how long.
 */
export type LimiterName = 'login_account_ip' | 'login_ip' | 'register_ip' | 'mail_address' | 'api_caller' | 'api_auth_failures_ip';

/** Every counter kept in the store: the limiters plus the login guard's lock and lockout history. */
export type CounterName = LimiterName | 'login_lock' | 'login_lockouts' | 'device_code_ip' | 'device_poll' | 'device_slow_down';

export type LimitDecision = { allowed: true } | { allowed: false; retryAfterSeconds: number };

export interface Limits {
  /** Counts one event (a failure, a sign-up, a mail) against `key`. */
  hit(name: LimiterName, key: string): Promise<LimitDecision>;
  /** Whether `key` is currently refused, without counting. */
  check(name: LimiterName, key: string): Promise<LimitDecision>;
  /** Forgets `key` (a successful login clears its account+IP failures). */
  reset(name: LimiterName, key: string): Promise<void>;
}

const HOUR = 3600;
const DAY = 24 * HOUR;

/** Points and windows (seconds) of each counter, from configuration. */
export function limiterSettings(limits: Config['limits']): Record<CounterName, { points: number; duration: number }> {
  return {
    // Consecutive failed logins of one account from one IP; a success deletes the count, so the
    // window only bounds how long a forgotten count lingers. The login guard locks at `points`.
    login_account_ip: { points: limits.loginMaxFailures, duration: DAY },
    login_ip: { points: limits.loginIpFailuresPerHour, duration: HOUR },
    register_ip: { points: limits.registrationsPerIpPerHour, duration: HOUR },
    mail_address: { points: limits.mailsPerAddressPerHour, duration: HOUR },
    // Admin API: requests of one caller (token subject), and rejected tokens from one IP.
    api_caller: { points: limits.apiRequestsPerMinute, duration: 60 },
    api_auth_failures_ip: { points: limits.apiAuthFailuresPerMinute, duration: 60 },
    // A lock is written with its own length (set); the duration is only a default.
    login_lock: { points: 1, duration: limits.loginLockoutMaxSeconds },
    // How many lockouts an account+IP pair had lately: each one doubles the next.
    login_lockouts: { points: Number.MAX_SAFE_INTEGER, duration: DAY },
    // Device flow (oidc/device-flow.ts): wrong user codes from one IP in 15 minutes; the window of
    // a device code's last poll (written with its current interval); slow_down answers per code.
    device_code_ip: { points: 5, duration: 15 * 60 },
    device_poll: { points: 1, duration: 5 },
    device_slow_down: { points: Number.MAX_SAFE_INTEGER, duration: DAY },
  };
}

/** The state of one key of a counter: events in the current window, and the time left in it. */
export interface Count {
  count: number;
  msLeft: number;
}

/**
 * One fixed-window counter per key, in the configured store. Every operation is a single atomic
 * statement in the store (an upsert in SQL, a Lua script or MULTI in Redis), so instances sharing
 * the store never lose an increment.
 */
export interface Counter {
  readonly name: CounterName;
  readonly points: number;
  readonly duration: number;
  /** Adds `n` (negative to give back) to key's count; the first event opens a window of `duration`. */
  add(key: string, n?: number): Promise<Count>;
  /** Key's count in the current window, or null when it has none. */
  get(key: string): Promise<Count | null>;
  /** Overwrites key's count, in a window of `seconds` from now. */
  set(key: string, count: number, seconds: number): Promise<void>;
  delete(key: string): Promise<void>;
}

export interface RateLimiting {
  /** Which store holds the counters. */
  readonly store: Config['rateLimitStore'];
  counter(name: CounterName): Counter;
  limits: Limits;
  /** Called with the limiter's name each time a request is refused (feeds the metrics). */
  onRejection(listener: (limiter: LimiterName) => void): void;
  /** Reports a refusal decided outside `limits` (the login guard). */
  rejected(limiter: LimiterName): void;
  /** Called each time an operation failed on the shared store and was done in this process instead. */
  onStoreError(listener: () => void): void;
  /**
   * Whether the shared store is failing: true from an operation that failed on it until one
   * succeeds again (always false for the memory store).
   */
  degraded(): boolean;
  /** Deletes expired counters (database store; the others expire keys themselves). */
  purgeExpired(): Promise<void>;
  /** Closes the Redis connection, if any. */
  close(): Promise<void>;
}

const seconds = (ms: number) => Math.max(1, Math.ceil(ms / 1000));

/**
 * Keys are hashed before they reach a store: bounded length (PostgreSQL's varchar(255), Redis
 * key size), no NUL bytes (which PostgreSQL text cannot hold), and no addresses in clear in
 * the rate-limit table.
 */
const hashKey = (key: string) => createHash('sha256').update(key).digest('base64url');

const toCount = (res: RateLimiterRes): Count => ({ count: res.consumedPoints, msLeft: Math.max(0, res.msBeforeNext) });

/**
 * A counter over a shared store that fails open: when the store errors (Redis down, database
 * unreachable), the operation is done on an in-process counter instead and a warning is logged,
 * so an outage weakens the limits to per-process ones rather than failing every login.
 */
function makeCounter(name: CounterName, settings: { points: number; duration: number }, primary: RateLimiterAbstract, fallback: RateLimiterAbstract | undefined, store: { failed(err: unknown): void; ok(): void }, ready: () => Promise<void>): Counter {
  async function run<T>(op: (l: RateLimiterAbstract) => Promise<T>): Promise<T> {
    if (!fallback) return op(primary);
    let result: T;
    try {
      await ready();
      result = await op(primary);
    } catch (err) {
      store.failed(err);
      return op(fallback);
    }
    store.ok();
    return result;
  }
  return {
    name,
    points: settings.points,
    duration: settings.duration,
    async add(key, n = 1) {
      const k = hashKey(key);
      return toCount(await run((l) => (n >= 0 ? l.penalty(k, n) : l.reward(k, -n))));
    },
    async get(key) {
      const k = hashKey(key);
      const res = await run((l) => l.get(k));
      return res && res.consumedPoints !== 0 ? toCount(res) : null;
    },
    async set(key, count, secs) {
      const k = hashKey(key);
      await run((l) => l.set(k, count, Math.max(1, Math.ceil(secs))));
    },
    async delete(key) {
      const k = hashKey(key);
      await run((l) => l.delete(k));
    },
  };
}

/** The Limits interface over counters: a hit beyond `points` in the window is refused. */
export function limitsOver(counter: (name: LimiterName) => Counter, rejected: (name: LimiterName) => void = () => undefined): Limits {
  return {
    async hit(name, key) {
      const c = counter(name);
      const { count, msLeft } = await c.add(key);
      if (count <= c.points) return { allowed: true };
      rejected(name);
      return { allowed: false, retryAfterSeconds: seconds(msLeft) };
    },
    async check(name, key) {
      const c = counter(name);
      const state = await c.get(key);
      if (!state || state.count < c.points) return { allowed: true };
      rejected(name);
      return { allowed: false, retryAfterSeconds: seconds(state.msLeft) };
    },
    async reset(name, key) {
      await counter(name).delete(key);
    },
  };
}

const TABLE = 'rate_limits';
const WARN_EVERY_MS = 60_000;

/**
 * Builds the counters in the store configuration names:
 *
 * - `memory`: rate-limiter-flexible's RateLimiterMemory, exact for one process only;
 * - `database`: RateLimiterPostgres / RateLimiterSQLite on our knex instance, in the
 *   `rate_limits` table (created by a migration), shared by every instance on the database;
 * - `redis`: RateLimiterRedis over ioredis at REDIS_URL, keys under `latch:<issuer hash>:rl:` so
 *   that two Latch services sharing a Redis keep separate counters.
 *
 * The shared stores fail open to in-process counters (see makeCounter).
 */
export function createRateLimiting(deps: { config: Pick<Config, 'limits' | 'rateLimitStore' | 'redisUrl' | 'issuer'>; db: Db; logger: Logger }): RateLimiting {
  const { config, db, logger } = deps;
  const settings = limiterSettings(config.limits);
  const store = config.rateLimitStore;
  const listeners: ((limiter: LimiterName) => void)[] = [];

  // One warning a minute at most while the store is failing, with how many errors it hid.
  let lastWarn = 0;
  let hidden = 0;
  const onStoreError = (err: unknown) => {
    const now = Date.now();
    if (now - lastWarn < WARN_EVERY_MS) {
      hidden++;
      return;
    }
    logger.warn('rate-limit store unavailable: counting in this process only until it is back (fail open)', { store, err: err instanceof Error ? err.message : String(err), suppressed: hidden });
    lastWarn = now;
    hidden = 0;
  };

  // Degraded from an operation that fell back to memory until one succeeds on the store again:
  // recovery needs no restart, the next operation after the store is back tries it first.
  let degraded = false;
  const storeErrorListeners: (() => void)[] = [];
  const storeState = {
    failed(err: unknown) {
      degraded = true;
      for (const l of storeErrorListeners) l();
      onStoreError(err);
    },
    ok() {
      if (!degraded) return;
      degraded = false;
      logger.info('rate-limit store is back: limits are shared again', { store });
    },
  };

  let redis: Redis | undefined;
  let connecting: Promise<void> | undefined;
  let ready = async () => undefined as void;
  let make: (name: CounterName) => RateLimiterAbstract;
  if (store === 'redis') {
    if (!config.redisUrl) throw new Error('RATE_LIMIT_STORE=redis needs REDIS_URL');
    // No offline queue and one retry: while Redis is unreachable every command fails at once
    // (and the counter falls back to memory) instead of waiting for a reconnection; a Redis that
    // accepts connections but does not answer is cut off by the command timeout. ioredis keeps
    // reconnecting in the background. lazyConnect: the CLI builds services and never connects.
    const client = new Redis(config.redisUrl, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: 1000, connectTimeout: 2000 });
    client.on('error', onStoreError);
    redis = client;
    // The first operation waits (at most 2 s) for the first connection.
    ready = () => {
      connecting ??= Promise.race([client.connect().catch(() => undefined), new Promise<void>((r) => setTimeout(r, 2000).unref())]);
      return connecting;
    };
    const namespace = createHash('sha256').update(config.issuer).digest('hex').slice(0, 12);
    make = (name) => new RateLimiterRedis({ storeClient: client, keyPrefix: `latch:${namespace}:rl:${name}`, rejectIfRedisNotReady: true, ...settings[name] });
  } else if (store === 'database') {
    const postgres = isPostgres(db);
    make = (name) => {
      const opts = { storeClient: db, storeType: 'knex', tableName: TABLE, tableCreated: true, clearExpiredByTimeout: false, keyPrefix: name, ...settings[name] };
      return postgres ? new RateLimiterPostgres(opts) : new RateLimiterSQLite(opts);
    };
  } else {
    make = (name) => new RateLimiterMemory({ keyPrefix: name, ...settings[name] });
  }

  const shared = store !== 'memory';
  const counters = new Map<CounterName, Counter>();
  const counter = (name: CounterName): Counter => {
    let c = counters.get(name);
    if (!c) {
      const fallback = shared ? new RateLimiterMemory({ keyPrefix: name, ...settings[name] }) : undefined;
      c = makeCounter(name, settings[name], make(name), fallback, storeState, ready);
      counters.set(name, c);
    }
    return c;
  };
  const rejected = (limiter: LimiterName) => {
    for (const l of listeners) l(limiter);
  };

  return {
    store,
    counter,
    limits: limitsOver(counter, rejected),
    onRejection(listener) {
      listeners.push(listener);
    },
    rejected,
    onStoreError(listener) {
      storeErrorListeners.push(listener);
    },
    degraded: () => degraded,
    async purgeExpired() {
      if (store !== 'database') return;
      try {
        // Both libraries' clearExpired deletes rows whose window ended before the given time.
        await (make('login_ip') as unknown as { clearExpired(ms: number): Promise<unknown> }).clearExpired(Date.now());
      } catch (err) {
        logger.warn('rate-limit purge failed', { err: err instanceof Error ? err.message : String(err) });
      }
    },
    async close() {
      if (!redis) return;
      const client = redis;
      redis = undefined;
      if (client.status === 'ready') {
        try {
          await client.quit();
          return;
        } catch {
          // fall through: cut the connection
        }
      }
      client.disconnect();
    },
  };
}
