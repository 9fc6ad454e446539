/**
 * The login guard's state machine (src/services/login-guard.ts) on each rate-limit store:
 * memory, the database this suite runs on (SQLite or PostgreSQL), and Redis. Real stores, real
 * clocks: lockouts of 1-3 seconds keep it quick.
 */
import { randomBytes } from 'node:crypto';

import { expect } from 'chai';

import { loadConfig } from '../src/config/index.js';
import { openDatabase, type Db } from '../src/db/knex.js';
import { migrateLatest } from '../src/db/migrate.js';
import { createLogger, type Logger } from '../src/lib/logger.js';
import { createLoginGuard, ipKey, lockSeconds, pairKey, tooManyAttemptsMessage, type LoginAttempt, type LoginGuard, type LoginRefusal } from '../src/services/login-guard.js';
import { createRateLimiting, type RateLimiting } from '../src/services/rate-limits.js';
import { freshDatabase, TEST_SECRET, type TestDatabase } from './helpers/server.js';

const REDIS_URL = process.env.LATCH_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const LIMITS = { loginMaxFailures: 5, loginLockoutSeconds: 1, loginLockoutMaxSeconds: 3, loginIpFailuresPerHour: 12, registrationsPerIpPerHour: 3, mailsPerAddressPerHour: 2, apiRequestsPerMinute: 600, apiAuthFailuresPerMinute: 30 };

function recordingLogger(): Logger & { lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  return Object.assign(
    createLogger('debug', (l) => lines.push(JSON.parse(l) as Record<string, unknown>)),
    { lines },
  );
}

/** A fresh address and IP per test: stores shared between runs (Redis) never mix them up. */
const fresh = () => ({ email: `user-${randomBytes(4).toString('hex')}@example.test`, ip: `10.${[1, 2, 3].map(() => randomBytes(1)[0]!).join('.')}` });

async function attempt(guard: LoginGuard, email: string, ip: string): Promise<LoginAttempt> {
  const a = await guard.begin(email, ip);
  expect(a.allowed, `attempt for ${email} from ${ip} refused: ${JSON.stringify(a)}`).to.equal(true);
  return a as LoginAttempt;
}

async function refused(guard: LoginGuard, email: string, ip: string): Promise<LoginRefusal> {
  const a = await guard.begin(email, ip);
  expect(a.allowed, `attempt for ${email} from ${ip} allowed`).to.equal(false);
  return a as LoginRefusal;
}

const failures = async (guard: LoginGuard, email: string, ip: string, n: number) => {
  const locks = [];
  for (let i = 0; i < n; i++) locks.push(await (await attempt(guard, email, ip)).fail());
  return locks;
};

describe('login guard (state machine)', () => {
  it('pure parts: IP keys, lock lengths, messages', () => {
    expect(ipKey('203.0.113.9')).to.equal('203.0.113.9');
    expect(ipKey('::ffff:203.0.113.9')).to.equal('203.0.113.9');
    // One /64 is one subscriber: every address in it shares a key.
    expect(ipKey('2001:db8:1:2:aaaa::1')).to.equal('2001:db8:1:2::/64');
    expect(ipKey('2001:0DB8:0001:0002:ffff:1:2:3')).to.equal('2001:db8:1:2::/64');
    expect(ipKey('2001:db8::1')).to.equal('2001:db8:0:0::/64');
    expect(ipKey('fe80::1%eth0')).to.equal('fe80:0:0:0::/64');
    expect(ipKey('::1')).to.equal('0:0:0:0::/64');
    expect(ipKey('')).to.equal('unknown');
    expect(pairKey(' Ada@Example.TEST ', '::ffff:1.2.3.4')).to.equal(pairKey('ada@example.test', '1.2.3.4'));
    expect(pairKey('a', 'b')).to.not.equal(pairKey('a"', 'b'));
    const s = { maxFailures: 5, lockoutSeconds: 60, lockoutMaxSeconds: 900, ipFailuresPerHour: 50 };
    expect([1, 2, 3, 4, 5, 6, 100].map((n) => lockSeconds(s, n))).to.deep.equal([60, 120, 240, 480, 900, 900, 900]);
    expect(tooManyAttemptsMessage(60)).to.equal('Too many failed attempts. Try again in 1 minute.');
    expect(tooManyAttemptsMessage(61)).to.equal('Too many failed attempts. Try again in 2 minutes.');
    expect(tooManyAttemptsMessage(1)).to.equal('Too many failed attempts. Try again in 1 second.');
    expect(tooManyAttemptsMessage(30)).to.equal('Too many failed attempts. Try again in 30 seconds.');
  });

  for (const store of ['memory', 'database', 'redis'] as const) {
    describe(`on the ${store} store`, function () {
      this.timeout(60_000);
      let database: TestDatabase;
      let db: Db;
      let limiting: RateLimiting;
      let guard: LoginGuard;
      let logger: ReturnType<typeof recordingLogger>;
      const rejections: string[] = [];

      before(async () => {
        database = await freshDatabase();
        db = openDatabase(loadConfig({ DATABASE_URL: database.url, LATCH_SECRET: TEST_SECRET }).database);
        await migrateLatest(db);
        logger = recordingLogger();
        // A new issuer per run: a new Redis namespace, so parallel runs never share counters.
        limiting = createRateLimiting({ config: { limits: LIMITS, rateLimitStore: store, redisUrl: REDIS_URL, issuer: `http://guard-test-${randomBytes(6).toString('hex')}` }, db, logger });
        limiting.onRejection((l) => rejections.push(l));
        guard = createLoginGuard({ counter: limiting.counter, settings: { maxFailures: 5, lockoutSeconds: 1, lockoutMaxSeconds: 3, ipFailuresPerHour: 12 }, onRejection: limiting.rejected });
      });
      after(async () => {
        await limiting.close();
        await db.destroy();
        await database.drop();
        expect(logger.lines.filter((l) => l.level === 'warn' || l.level === 'error'), 'the store never failed').to.deep.equal([]);
      });

      it('locks the pair at the 5th consecutive failure, refuses even a right password, then doubles each further lock up to the maximum', async () => {
        const { email, ip } = fresh();
        const locks = await failures(guard, email, ip, 4);
        expect(locks.flat(), 'four failures start no lock').to.deep.equal([]);
        expect((await guard.check(email, ip)).allowed).to.equal(true);
        const fifth = await (await attempt(guard, email, ip)).fail();
        expect(fifth).to.deep.equal([{ limiter: 'login_account_ip', seconds: 1, lockout: 1 }]);
        // The 6th attempt is refused before any password is verified.
        const sixth = await refused(guard, email, ip);
        expect(sixth).to.deep.include({ limiter: 'login_account_ip', retryAfterSeconds: 1 });
        expect((await guard.check(email, ip)).allowed).to.equal(false);
        // Case and surrounding spaces do not make another pair.
        await refused(guard, ` ${email.toUpperCase()} `, ip);
        // Another IP, or another account from this IP, is not locked.
        await (await attempt(guard, email, fresh().ip)).release();
        await (await attempt(guard, fresh().email, ip)).release();

        await sleep(1100);
        // Released: one more attempt; failing it locks again, twice as long.
        expect(await (await attempt(guard, email, ip)).fail()).to.deep.equal([{ limiter: 'login_account_ip', seconds: 2, lockout: 2 }]);
        expect((await refused(guard, email, ip)).retryAfterSeconds).to.equal(2);
        await sleep(1100);
        await refused(guard, email, ip);
        await sleep(1000);
        // A success clears the consecutive count, not the history: the next lock is the 3rd,
        // capped at the maximum (3 s instead of 4).
        await (await attempt(guard, email, ip)).succeed();
        expect((await failures(guard, email, ip, 4)).flat()).to.deep.equal([]);
        expect(await (await attempt(guard, email, ip)).fail()).to.deep.equal([{ limiter: 'login_account_ip', seconds: 3, lockout: 3 }]);
        expect((await refused(guard, email, ip)).retryAfterSeconds).to.equal(3);
      });

      it('a success resets the consecutive count; a release gives the attempt back', async () => {
        const { email, ip } = fresh();
        await failures(guard, email, ip, 4);
        await (await attempt(guard, email, ip)).succeed();
        expect((await failures(guard, email, ip, 4)).flat()).to.deep.equal([]);
        // Released attempts (the check could not run) count for nothing.
        for (let i = 0; i < 10; i++) await (await attempt(guard, email, ip)).release();
        expect((await (await attempt(guard, email, ip)).fail())[0]?.limiter).to.equal('login_account_ip');
        await refused(guard, email, ip);
      });

      it('counts failures per IP whatever the address, successes not at all', async () => {
        const ip = fresh().ip;
        // Successes from the IP do not count.
        for (let i = 0; i < 15; i++) await (await attempt(guard, fresh().email, ip)).succeed();
        const started = [];
        for (let i = 0; i < 12; i++) started.push(...(await (await attempt(guard, fresh().email, ip)).fail()));
        expect(started.map((s) => s.limiter)).to.deep.equal(['login_ip']);
        const refusal = await refused(guard, fresh().email, ip);
        expect(refusal.limiter).to.equal('login_ip');
        expect(refusal.retryAfterSeconds).to.be.within(3590, 3600);
        expect((await guard.check(fresh().email, ip)).allowed).to.equal(false);
        // Other IPs go on.
        await (await attempt(guard, fresh().email, fresh().ip)).succeed();
      });

      it('gives a burst of parallel attempts no more guesses than sequential ones', async () => {
        const { email, ip } = fresh();
        const answers = await Promise.all(Array.from({ length: 25 }, () => guard.begin(email, ip)));
        const allowed = answers.filter((a): a is LoginAttempt => a.allowed);
        expect(allowed.length, 'at most 5 attempts verified').to.be.within(1, 5);
        const started = (await Promise.all(allowed.map((a) => a.fail()))).flat();
        if (allowed.length === 5) expect(started.map((s) => s.limiter)).to.deep.equal(['login_account_ip']);
        // Sequential attempts up to the 5th failure, whatever the burst let through.
        for (let i = allowed.length; i < 5; i++) await (await attempt(guard, email, ip)).fail();
        await refused(guard, email, ip);
        // An attempt holding the last allowed failure keeps parallel ones waiting, briefly.
        const other = fresh();
        await failures(guard, other.email, other.ip, 4);
        const last = await attempt(guard, other.email, other.ip);
        const waiting = await refused(guard, other.email, other.ip);
        expect(waiting.retryAfterSeconds).to.be.within(1, 10);
        await last.succeed();
        await (await attempt(guard, other.email, other.ip)).succeed();
      });

      it('a burst on one account+IP pair spends none of the IP budget on the attempts the pair refuses', async () => {
        const { email, ip } = fresh();
        // 25 parallel attempts against an IP allowed 12 failures: the pair lets at most 5 through.
        const answers = await Promise.all(Array.from({ length: 25 }, () => guard.begin(email, ip)));
        const refusedBy = answers.filter((a): a is LoginRefusal => !a.allowed).map((a) => a.limiter);
        expect(new Set(refusedBy), 'only the pair refuses').to.deep.equal(new Set(['login_account_ip']));
        const allowed = answers.filter((a): a is LoginAttempt => a.allowed);
        const started = (await Promise.all(allowed.map((a) => a.fail()))).flat();
        expect(started.map((s) => s.limiter), 'no IP lockout from 5 failures').to.not.include('login_ip');
        // The IP has spent only what failed: another account behind it has 12 - 5 failures left.
        const neighbour = fresh().email;
        for (let i = 0; i < 12 - allowed.length; i++) await (await attempt(guard, `${i}.${neighbour}`, ip)).fail();
        expect((await refused(guard, `last.${neighbour}`, ip)).limiter).to.equal('login_ip');
      });

      it('records failures reported without a reservation (wrong MFA codes)', async () => {
        const { email, ip } = fresh();
        expect((await guard.check(email, ip)).allowed).to.equal(true);
        for (let i = 0; i < 4; i++) expect(await guard.recordFailure(email, ip)).to.deep.equal([]);
        expect((await guard.recordFailure(email, ip))[0]).to.deep.include({ limiter: 'login_account_ip', lockout: 1 });
        const refusal = await guard.check(email, ip);
        expect(refusal.allowed).to.equal(false);
        await refused(guard, email, ip);
        const next = fresh();
        await guard.recordFailure(next.email, next.ip);
        await guard.recordSuccess(next.email, next.ip);
        expect((await failures(guard, next.email, next.ip, 4)).flat()).to.deep.equal([]);
      });

      it('limits registrations and mails through the Limits interface, counting rejections', async () => {
        const before = rejections.length;
        const ip = fresh().ip;
        const results = [];
        for (let i = 0; i < 4; i++) results.push(await limiting.limits.hit('register_ip', ip));
        expect(results.map((r) => r.allowed)).to.deep.equal([true, true, true, false]);
        expect((results[3] as { retryAfterSeconds: number }).retryAfterSeconds).to.be.within(3590, 3600);
        expect((await limiting.limits.check('register_ip', ip)).allowed).to.equal(false);
        const address = fresh().email;
        expect((await limiting.limits.hit('mail_address', address)).allowed).to.equal(true);
        expect((await limiting.limits.hit('mail_address', address)).allowed).to.equal(true);
        expect((await limiting.limits.hit('mail_address', address)).allowed).to.equal(false);
        await limiting.limits.reset('mail_address', address);
        expect((await limiting.limits.hit('mail_address', address)).allowed).to.equal(true);
        expect(rejections.slice(before)).to.deep.equal(['register_ip', 'register_ip', 'mail_address']);
      });

      if (store === 'database') {
        it('keeps counters in the rate_limits table under hashed keys, and purges expired ones', async () => {
          const { email, ip } = fresh();
          await (await attempt(guard, email, ip)).fail();
          const rows = (await db('rate_limits').select('key', 'points', 'expire')) as { key: string; points: number; expire: number }[];
          expect(rows.length).to.be.above(0);
          for (const r of rows) {
            expect(r.key).to.match(/^[a-z_]+:[A-Za-z0-9_-]{43}$/);
            expect(r.key).to.not.contain('@');
          }
          await db('rate_limits').insert({ key: 'login_ip:expired', points: 1, expire: Date.now() - 1000 });
          await limiting.purgeExpired();
          expect(await db('rate_limits').where({ key: 'login_ip:expired' }).first()).to.equal(undefined);
        });
      }
    });
  }

  describe('fail open', () => {
    it('keeps limiting in process, with a warning, when Redis cannot be reached', async function () {
      this.timeout(20_000);
      const database = await freshDatabase();
      const db = openDatabase(loadConfig({ DATABASE_URL: database.url, LATCH_SECRET: TEST_SECRET }).database);
      const logger = recordingLogger();
      const limiting = createRateLimiting({ config: { limits: LIMITS, rateLimitStore: 'redis', redisUrl: 'redis://127.0.0.1:1', issuer: 'http://fail-open' }, db, logger });
      try {
        const guard = createLoginGuard({ counter: limiting.counter, settings: { maxFailures: 2, lockoutSeconds: 60, lockoutMaxSeconds: 60, ipFailuresPerHour: 50 } });
        const started = Date.now();
        await (await attempt(guard, 'a@example.test', '1.2.3.4')).fail();
        expect(await (await attempt(guard, 'a@example.test', '1.2.3.4')).fail()).to.have.length(1);
        expect((await refused(guard, 'a@example.test', '1.2.3.4')).retryAfterSeconds).to.equal(60);
        expect(Date.now() - started, 'no long waits once the first connection failed').to.be.below(5000);
        const warnings = logger.lines.filter((l) => l.level === 'warn');
        expect(warnings, 'one warning, not one per operation').to.have.length(1);
        expect(warnings[0]!.msg).to.match(/fail open/);
        expect(warnings[0]).to.include({ store: 'redis' });
      } finally {
        await limiting.close();
        await db.destroy();
        await database.drop();
      }
    });
  });
});
