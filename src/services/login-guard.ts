import { isIPv4, isIPv6 } from 'node:net';

import type { Config } from '../config/index.js';
import type { Count, Counter, CounterName, LimiterName } from './rate-limits.js';

/**
 * Brute-force protection of sign-in: the one place that decides whether a login attempt may be
 * verified, and what a failure does.
 *
 * - Per account+IP pair (keyed on the lowercased email as typed, so an unknown address behaves
 *   exactly like a known one and the lockout reveals nothing): the Nth consecutive failure
 *   (LOGIN_MAX_FAILURES, 5) locks the pair for LOGIN_LOCKOUT_SECONDS (60). After a lock ends the
 *   pair has one attempt: another failure locks it again for twice as long, up to
 *   LOGIN_LOCKOUT_MAX_SECONDS (900). While locked, attempts are refused before the password is
 *   looked at, so even the right password is refused. A success clears the consecutive count;
 *   the lockout history (which sets the next lock's length) is kept until 24 hours after the
 *   pair's last lockout.
 * - Per IP: LOGIN_IP_FAILURES_PER_HOUR (50) failed logins, whatever the address (unknown ones
 *   too), then attempts from that IP are refused until the hour's window ends.
 *
 * Counts are taken BEFORE the credential is verified (a reservation, given back on success), so a
 * burst of parallel attempts gets no more guesses than sequential ones: the attempt holding the
 * last allowed failure marks the pair "pending" (a short lock) until its outcome is known.
 *
 * Wrong MFA codes count like wrong passwords: the MFA step calls begin()/fail()/succeed() (or
 * check() then recordFailure()/recordSuccess()) with the account's email and the request IP.
 */

export type LoginLimiter = Extract<LimiterName, 'login_account_ip' | 'login_ip'>;

export interface LoginRefusal {
  allowed: false;
  limiter: LoginLimiter;
  retryAfterSeconds: number;
}

/** A lock that a failure started: worth an audit event. */
export interface LockoutStarted {
  limiter: LoginLimiter;
  /** How long attempts are refused, in seconds. */
  seconds: number;
  /** For an account+IP lock: the how-many-th lockout of the pair within the history window. */
  lockout?: number;
}

export interface LoginAttempt {
  allowed: true;
  /** The credential was wrong: counts the failure; resolves with the locks it started. */
  fail(): Promise<LockoutStarted[]>;
  /** The credential was right: clears the pair's consecutive failures. */
  succeed(): Promise<void>;
  /** The credential could not be checked (an error): gives the reserved attempt back. */
  release(): Promise<void>;
}

export interface LoginGuard {
  /** Before verifying a credential: refused while locked; otherwise reserves one attempt. */
  begin(email: string, ip: string): Promise<LoginAttempt | LoginRefusal>;
  /** Whether an attempt would be refused now, without reserving one. */
  check(email: string, ip: string): Promise<{ allowed: true } | LoginRefusal>;
  /** A failure that was not reserved with begin() (e.g. a wrong MFA code after check()). */
  recordFailure(email: string, ip: string): Promise<LockoutStarted[]>;
  /** A success that was not reserved with begin(). */
  recordSuccess(email: string, ip: string): Promise<void>;
}

export interface LoginGuardSettings {
  maxFailures: number;
  lockoutSeconds: number;
  lockoutMaxSeconds: number;
  ipFailuresPerHour: number;
}

export const guardSettings = (limits: Config['limits']): LoginGuardSettings => ({
  maxFailures: limits.loginMaxFailures,
  lockoutSeconds: limits.loginLockoutSeconds,
  lockoutMaxSeconds: limits.loginLockoutMaxSeconds,
  ipFailuresPerHour: limits.loginIpFailuresPerHour,
});

/** How long the attempt holding a pair's last allowed failure keeps others waiting at most. */
export const PENDING_SECONDS = 10;
const HISTORY_SECONDS = 24 * 3600;

/**
 * The address a per-IP limit counts: an IPv4 address (IPv4-mapped IPv6 unwrapped), or an IPv6
 * address's /64 network, since one subscriber usually holds a whole /64 and could otherwise
 * rotate through addresses.
 */
export function ipKey(raw: string): string {
  let ip = raw.trim().toLowerCase();
  const zone = ip.indexOf('%');
  if (zone >= 0) ip = ip.slice(0, zone);
  if (ip.startsWith('::ffff:') && isIPv4(ip.slice(7))) return ip.slice(7);
  if (isIPv4(ip)) return ip;
  if (!isIPv6(ip)) return ip || 'unknown';
  const [head = '', tail = ''] = ip.includes('::') ? ip.split('::') : [ip, ''];
  const groups = (s: string) => (s ? s.split(':') : []).flatMap((g) => {
    if (!g.includes('.')) return [g];
    const [a, b, c, d] = g.split('.').map(Number) as [number, number, number, number];
    return [((a << 8) | b).toString(16), ((c << 8) | d).toString(16)];
  });
  const h = groups(head);
  const t = groups(tail);
  const all = [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
  return `${all.slice(0, 4).map((g) => Number.parseInt(g, 16).toString(16)).join(':')}::/64`;
}

/** The account+IP pair: the address as typed (trimmed, lowercased) and the IP's key. */
export const pairKey = (email: string, ip: string) => JSON.stringify([email.trim().toLowerCase(), ipKey(ip)]);

const secondsOf = (ms: number) => Math.max(1, Math.ceil(ms / 1000));

/** Length of the `lockout`-th lock: the first lasts `lockoutSeconds`, each further one twice as long, capped. */
export function lockSeconds(settings: LoginGuardSettings, lockout: number): number {
  const doubled = settings.lockoutSeconds * 2 ** Math.min(Math.max(0, lockout - 1), 40);
  return Math.min(doubled, Math.max(settings.lockoutMaxSeconds, settings.lockoutSeconds));
}

export function createLoginGuard(deps: { counter: (name: CounterName) => Counter; settings: LoginGuardSettings; onRejection?: (limiter: LoginLimiter) => void }): LoginGuard {
  const { settings } = deps;
  const failures = deps.counter('login_account_ip');
  const perIp = deps.counter('login_ip');
  const locks = deps.counter('login_lock');
  const history = deps.counter('login_lockouts');
  const max = settings.maxFailures;

  const refuse = (limiter: LoginLimiter, ms: number): LoginRefusal => {
    deps.onRejection?.(limiter);
    return { allowed: false, limiter, retryAfterSeconds: secondsOf(ms) };
  };

  /** Gives back one counted event; a window that ended meanwhile must not go negative. */
  async function giveBack(counter: Counter, key: string) {
    const after = await counter.add(key, -1);
    if (after.count < 0) await counter.delete(key);
  }

  async function lock(pair: string): Promise<LockoutStarted> {
    const { count: lockout } = await history.add(pair);
    // The history lasts 24 hours after the LAST lockout, not after the first.
    await history.set(pair, lockout, HISTORY_SECONDS);
    const seconds = lockSeconds(settings, lockout);
    await locks.set(pair, 1, seconds);
    // After the lock: one more attempt, whose failure locks again (for twice as long).
    await failures.set(pair, max - 1, failures.duration);
    return { limiter: 'login_account_ip', seconds, lockout };
  }

  /** A failure counted at this position of the IP's window used its last allowed one. */
  const ipLockout = (ip: Count): LockoutStarted[] => (ip.count === settings.ipFailuresPerHour ? [{ limiter: 'login_ip', seconds: secondsOf(ip.msLeft) }] : []);

  async function check(email: string, ip: string): Promise<{ allowed: true } | LoginRefusal> {
    const pair = pairKey(email, ip);
    const locked = await locks.get(pair);
    if (locked && locked.count > 0) return refuse('login_account_ip', locked.msLeft);
    const ipState = await perIp.get(ipKey(ip));
    if (ipState && ipState.count >= settings.ipFailuresPerHour) return refuse('login_ip', ipState.msLeft);
    return { allowed: true };
  }

  return {
    check,

    async begin(email, ip) {
      const pair = pairKey(email, ip);
      const ipk = ipKey(ip);
      const locked = await locks.get(pair);
      if (locked && locked.count > 0) return refuse('login_account_ip', locked.msLeft);

      // The pair first: an attempt the pair refuses never reserves (even briefly) part of the
      // IP's budget, so a burst on one pair neither refuses other accounts behind the same IP nor
      // makes one of its own attempts report an IP lockout that the give-backs then undo.
      const n = (await failures.add(pair)).count;
      if (n > max) {
        // Another attempt holds the pair's last allowed failure and is being verified.
        await giveBack(failures, pair);
        const pending = await locks.get(pair);
        if (!pending) {
          // No pending mark: its holder died before finishing (or is between two statements).
          // Drop the orphaned reservation so the pair is not stuck until the window ends.
          await failures.set(pair, max - 1, failures.duration);
        }
        return refuse('login_account_ip', pending?.msLeft ?? 1000);
      }
      // Holding the last allowed failure: parallel attempts wait for this one's outcome.
      if (n === max) await locks.set(pair, 1, PENDING_SECONDS);

      const ipCount = await perIp.add(ipk);
      if (ipCount.count > settings.ipFailuresPerHour) {
        await giveBack(perIp, ipk);
        if (n === max) await locks.delete(pair);
        await giveBack(failures, pair);
        return refuse('login_ip', ipCount.msLeft);
      }

      let settled = false;
      const once = () => {
        if (settled) throw new Error('login attempt already settled');
        settled = true;
      };
      return {
        allowed: true,
        async fail() {
          once();
          const started: LockoutStarted[] = [];
          // The failure was counted by the reservation; reaching the threshold locks the pair.
          if (n >= max) started.push(await lock(pair));
          started.push(...ipLockout(ipCount));
          return started;
        },
        async succeed() {
          once();
          await failures.delete(pair);
          if (n === max) await locks.delete(pair);
          await giveBack(perIp, ipk);
        },
        async release() {
          once();
          if (n === max) await locks.delete(pair);
          await giveBack(failures, pair);
          await giveBack(perIp, ipk);
        },
      };
    },

    async recordFailure(email, ip) {
      const pair = pairKey(email, ip);
      const started: LockoutStarted[] = [];
      const n = (await failures.add(pair)).count;
      if (n >= max) started.push(await lock(pair));
      started.push(...ipLockout(await perIp.add(ipKey(ip))));
      return started;
    },

    async recordSuccess(email, ip) {
      await failures.delete(pairKey(email, ip));
    },
  };
}

/** The sentence a page shows for a refusal: "Too many failed attempts. Try again in 2 minutes." */
export function tooManyAttemptsMessage(retryAfterSeconds: number): string {
  const wait = retryAfterSeconds < 60 ? `${retryAfterSeconds} second${retryAfterSeconds === 1 ? '' : 's'}` : `${Math.ceil(retryAfterSeconds / 60)} minute${Math.ceil(retryAfterSeconds / 60) === 1 ? '' : 's'}`;
  return `Too many failed attempts. Try again in ${wait}.`;
}
