import { RateLimiterMemory, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';

import type { Config } from '../config/index.js';

/**
 * Named limits on abusable actions. Keys are built by callers (an IP, an address, an
 * account+IP pair); answers say whether the action may go on and, if not, for how long.
 */
export type LimiterName = 'login_account_ip' | 'login_ip' | 'register_ip' | 'mail_address';

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

/** Points and windows of each limiter, from configuration. */
export function limiterSettings(limits: Config['limits']): Record<LimiterName, { points: number; duration: number; blockDuration?: number }> {
  return {
    // The Nth consecutive failure locks the pair; the window is long enough that "consecutive"
    // holds across a slow attacker (a success resets it).
    login_account_ip: { points: limits.loginMaxFailures, duration: 24 * HOUR, blockDuration: limits.loginLockoutSeconds },
    login_ip: { points: limits.loginIpFailuresPerHour, duration: HOUR },
    register_ip: { points: limits.registrationsPerIpPerHour, duration: HOUR },
    mail_address: { points: limits.mailsPerAddressPerHour, duration: HOUR },
  };
}

const seconds = (ms: number) => Math.max(1, Math.ceil(ms / 1000));

/** Adapts rate-limiter-flexible limiters to the Limits interface. */
export function limitsFrom(limiters: Record<LimiterName, RateLimiterAbstract>): Limits {
  return {
    async hit(name, key) {
      try {
        await limiters[name].consume(key);
        return { allowed: true };
      } catch (res) {
        if (res instanceof RateLimiterRes) return { allowed: false, retryAfterSeconds: seconds(res.msBeforeNext) };
        throw res;
      }
    },
    async check(name, key) {
      const res = await limiters[name].get(key);
      if (!res || res.remainingPoints > 0) return { allowed: true };
      return { allowed: false, retryAfterSeconds: seconds(res.msBeforeNext) };
    },
    async reset(name, key) {
      await limiters[name].delete(key);
    },
  };
}

/** In-process limits (RATE_LIMIT_STORE=memory): exact for one process only. */
export function createMemoryLimits(limits: Config['limits']): Limits {
  const settings = limiterSettings(limits);
  const make = (n: LimiterName) => new RateLimiterMemory({ keyPrefix: n, ...settings[n] });
  return limitsFrom({ login_account_ip: make('login_account_ip'), login_ip: make('login_ip'), register_ip: make('register_ip'), mail_address: make('mail_address') });
}
