/**
 * Brute-force protection through the real login form: the account+IP lockout (4 failures fine,
 * the 5th locks, the 6th is refused even with the right password, release, doubling), the per-IP
 * limit, identical behaviour for unknown addresses, and limits that hold across two server
 * instances sharing the database (RATE_LIMIT_STORE=database) or Redis (RATE_LIMIT_STORE=redis).
 * Different client IPs are simulated with TRUST_PROXY=true and X-Forwarded-For.
 */
import { createHash, randomBytes } from 'node:crypto';

import { expect } from 'chai';

import { Agent, parseForms, type PageResponse } from './helpers/agent.js';
import { freshDatabase, startTestServer, type TestDatabase, type TestServer } from './helpers/server.js';

const REDIRECT = 'http://127.0.0.1:9/callback';
const REDIS_URL = process.env.LATCH_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const PASSWORD = 'the right password, long enough';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let ipSeq = 0;
/** A client IP no other test of this run uses. */
const newIp = () => `198.51.${100 + (process.pid % 50)}.${++ipSeq}`;
const newEmail = (tag: string) => `${tag}-${randomBytes(4).toString('hex')}@example.test`;

interface Login {
  /** The interaction id. */
  uid: string;
  /** Posts the login form of this browser's interaction from `ip`. */
  post(email: string, password: string): Promise<PageResponse>;
}

/** Opens an authorization on `srv` in a fresh browser; the login form is then posted from `ip`. */
async function openLogin(srv: TestServer, clientId: string, ip: string): Promise<Login> {
  const agent = new Agent();
  const base = `http://127.0.0.1:${srv.port}`;
  const q = new URLSearchParams({ client_id: clientId, response_type: 'code', redirect_uri: REDIRECT, scope: 'openid', code_challenge: createHash('sha256').update('v'.repeat(43)).digest('base64url'), code_challenge_method: 'S256' });
  const page = await agent.follow(`${base}/auth?${q}`, {}, REDIRECT);
  expect(page.status, page.body.slice(0, 300)).to.equal(200);
  const form = parseForms(page.body, page.url)[0]!;
  expect(form.action).to.match(/\/interaction\/[^/]+\/login$/);
  return { uid: new URL(form.action).pathname.split('/')[2]!, post: (email, password) => agent.request(form.action, { method: 'POST', form: { ...form.fields, email, password }, headers: { 'x-forwarded-for': ip } }) };
}

function expectFailure(res: PageResponse) {
  expect(res.status, res.body.slice(0, 300)).to.equal(401);
  expect(res.body).to.contain('Invalid email or password.');
  expect(res.headers.get('retry-after')).to.equal(null);
}

function expectRefused(res: PageResponse, retryAfter: number) {
  expect(res.status, res.body.slice(0, 300)).to.equal(429);
  expect(res.headers.get('retry-after')).to.equal(String(retryAfter));
  expect(res.headers.get('content-type')).to.match(/^text\/html/);
  expect(res.body).to.match(/Too many failed attempts\. Try again in \d+ (second|minute)s?\./);
  // Still the login page, with its form.
  expect(res.body).to.match(/name="password"/);
  expect(res.headers.getSetCookie().join(';'), 'no session').to.not.match(/_session=/);
}

function expectSignedIn(res: PageResponse) {
  expect(res.status, res.body.slice(0, 300)).to.equal(303);
  expect(res.headers.get('location')).to.match(/\/auth\//);
}

async function createUser(srv: TestServer, email: string) {
  const r = await srv.cli('users', 'create', '--email', email, '--password', PASSWORD);
  expect(r.code, r.stderr).to.equal(0);
  return r.json as { id: string };
}

async function createClient(srv: TestServer) {
  const r = await srv.cli('clients', 'create', '--name', 'Web', '--redirect-uri', REDIRECT, '--first-party');
  expect(r.code, r.stderr).to.equal(0);
  return r.json.client_id as string;
}

async function metric(srv: TestServer, limiter: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${srv.port}/metrics`)).text();
  const m = new RegExp(`^latch_rate_limit_rejections_total\\{limiter="${limiter}"\\} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

describe('brute-force protection on the login form', function () {
  this.timeout(60_000);
  let srv: TestServer;
  let clientId: string;

  before(async () => {
    srv = await startTestServer({ env: { TRUST_PROXY: 'true', LOGIN_LOCKOUT_SECONDS: '1', LOGIN_LOCKOUT_MAX_SECONDS: '900', LOGIN_IP_FAILURES_PER_HOUR: '8' } });
    clientId = await createClient(srv);
  });
  after(async () => {
    expect(srv.errors(), JSON.stringify(srv.errors())).to.deep.equal([]);
    await srv.close();
  });

  it('4 failures are fine, the 5th locks, the 6th is refused even with the right password; release, then twice as long', async () => {
    const email = newEmail('lock');
    const account = await createUser(srv, email);
    const ip = newIp();
    const login = await openLogin(srv, clientId, ip);
    for (let i = 1; i <= 4; i++) expectFailure(await login.post(email, `wrong ${i}`));
    expectFailure(await login.post(email, 'wrong 5'));
    // Locked: the right password is refused (the address's case does not matter).
    expectRefused(await login.post(email, PASSWORD), 1);
    expectRefused(await login.post(email.toUpperCase(), PASSWORD), 1);
    // The lock is for this account from this IP only.
    expectSignedIn(await (await openLogin(srv, clientId, newIp())).post(email, PASSWORD));

    await sleep(1100);
    // Released; the next failure locks again for twice as long.
    expectFailure(await login.post(email, 'wrong 6'));
    const second = await login.post(email, PASSWORD);
    expectRefused(second, 2);
    expect(second.body).to.contain('Try again in 2 seconds.');
    await sleep(2100);
    expectSignedIn(await login.post(email, PASSWORD));

    const audit = (await srv.running.db('audit_events').where({ type: 'login.lockout', subject_id: account.id }).orderBy('id')) as { ip: string; details: string }[];
    expect(audit.map((a) => JSON.parse(a.details) as unknown)).to.deep.equal([
      { limiter: 'login_account_ip', seconds: 1, lockout: 1 },
      { limiter: 'login_account_ip', seconds: 2, lockout: 2 },
    ]);
    expect(audit.map((a) => a.ip)).to.deep.equal([ip, ip]);
    expect(await metric(srv, 'login_account_ip')).to.equal(3);
  });

  it('treats an unknown address exactly like a known one', async () => {
    const known = newEmail('known');
    await createUser(srv, known);
    const unknown = newEmail('nobody');
    const run = async (email: string) => {
      const login = await openLogin(srv, clientId, newIp());
      const seen: { status: number; retryAfter: string | null; body: string }[] = [];
      for (const password of ['a', 'b', 'c', 'd', 'e', PASSWORD]) {
        const res = await login.post(email, password);
        // The page without what legitimately differs: the echoed address, the CSRF token, the interaction id.
        const body = res.body
          .split(email)
          .join('EMAIL')
          .split(login.uid)
          .join('UID')
          .replace(/name="_csrf" value="[^"]*"/g, '');
        seen.push({ status: res.status, retryAfter: res.headers.get('retry-after'), body });
      }
      return seen;
    };
    const [a, b] = [await run(known), await run(unknown)];
    expect(a.map((s) => s.status)).to.deep.equal([401, 401, 401, 401, 401, 429]);
    expect(b).to.deep.equal(a);
  });

  it(`limits failed logins per IP whatever the address (LOGIN_IP_FAILURES_PER_HOUR=8), using the last X-Forwarded-For entry`, async () => {
    const email = newEmail('ip');
    await createUser(srv, email);
    const ip = newIp();
    const before = await metric(srv, 'login_ip');
    // Successes do not count.
    for (let i = 0; i < 3; i++) expectSignedIn(await (await openLogin(srv, clientId, ip)).post(email, PASSWORD));
    const login = await openLogin(srv, clientId, ip);
    for (let i = 0; i < 8; i++) expectFailure(await login.post(newEmail('spray'), 'guess'));
    const refused = await login.post(email, PASSWORD);
    expect(refused.status).to.equal(429);
    expect(Number(refused.headers.get('retry-after'))).to.be.within(3500, 3600);
    expect(refused.body).to.contain('Try again in 60 minutes.');
    // A client cannot dodge it by prepending its own X-Forwarded-For entries: the proxy's (last) counts.
    const agent = new Agent();
    const q = new URLSearchParams({ client_id: clientId, response_type: 'code', redirect_uri: REDIRECT, scope: 'openid', code_challenge: createHash('sha256').update('w'.repeat(43)).digest('base64url'), code_challenge_method: 'S256' });
    const page = await agent.follow(`http://127.0.0.1:${srv.port}/auth?${q}`, {}, REDIRECT);
    const form = parseForms(page.body, page.url)[0]!;
    const spoofed = await agent.request(form.action, { method: 'POST', form: { ...form.fields, email, password: PASSWORD }, headers: { 'x-forwarded-for': `203.0.113.77, ${ip}` } });
    expect(spoofed.status).to.equal(429);
    // Another IP signs in.
    expectSignedIn(await (await openLogin(srv, clientId, newIp())).post(email, PASSWORD));
    expect((await metric(srv, 'login_ip')) - before).to.equal(2);
    const audit = (await srv.running.db('audit_events').where({ type: 'login.lockout', ip })) as { details: string }[];
    expect(audit.map((a) => (JSON.parse(a.details) as { limiter: string }).limiter)).to.deep.equal(['login_ip']);
  });
});

/** Two instances, one shared store: 3 failures on A and 2 on B lock the pair on both. */
function acrossInstances(store: 'database' | 'redis') {
  describe(`limits across two server instances (RATE_LIMIT_STORE=${store})`, function () {
    this.timeout(60_000);
    let db: TestDatabase;
    let a: TestServer;
    let b: TestServer;
    let clientId: string;

    before(async () => {
      db = await freshDatabase();
      const env: Record<string, string> = { TRUST_PROXY: 'true', RATE_LIMIT_STORE: store, LOGIN_LOCKOUT_SECONDS: '2', LOGIN_IP_FAILURES_PER_HOUR: '6' };
      // With Redis the counters live under a namespace derived from the issuer: a's random port
      // makes it unique to this run, and b shares it (one service behind a load balancer).
      if (store === 'redis') env.REDIS_URL = REDIS_URL;
      a = await startTestServer({ database: db, env });
      b = await startTestServer({ database: db, env: { ...env, ISSUER: a.url } });
      clientId = await createClient(a);
    });
    after(async () => {
      expect([...a.errors(), ...b.errors()], JSON.stringify([...a.errors(), ...b.errors()])).to.deep.equal([]);
      expect([...a.logger.lines, ...b.logger.lines].filter((l) => l.level === 'warn'), 'the store never failed').to.deep.equal([]);
      await a.close();
      await b.close();
      await db.drop();
    });

    it('locks an account+IP pair whose failures were spread over both', async () => {
      const email = newEmail(`multi-${store}`);
      await createUser(a, email);
      const ip = newIp();
      const onA = await openLogin(a, clientId, ip);
      const onB = await openLogin(b, clientId, ip);
      for (let i = 0; i < 3; i++) expectFailure(await onA.post(email, 'wrong'));
      for (let i = 0; i < 2; i++) expectFailure(await onB.post(email, 'wrong'));
      expectRefused(await onA.post(email, PASSWORD), 2);
      expectRefused(await onB.post(email, PASSWORD), 2);
      await sleep(2100);
      expectSignedIn(await onB.post(email, PASSWORD));
      const rows = Number(((await a.running.db('rate_limits').count({ n: '*' })) as { n: number | string }[])[0]!.n);
      if (store === 'database') expect(rows, 'counters in the rate_limits table').to.be.above(0);
      else expect(rows, 'counters in Redis, none in the database').to.equal(0);
    });

    it('counts failures per IP on both', async () => {
      const ip = newIp();
      const onA = await openLogin(a, clientId, ip);
      const onB = await openLogin(b, clientId, ip);
      for (let i = 0; i < 3; i++) expectFailure(await onA.post(newEmail('spray'), 'guess'));
      for (let i = 0; i < 3; i++) expectFailure(await onB.post(newEmail('spray'), 'guess'));
      expect((await onA.post(newEmail('spray'), 'guess')).status).to.equal(429);
      expect((await onB.post(newEmail('spray'), 'guess')).status).to.equal(429);
    });

    it('limits registrations and mails for both instances', async () => {
      const key = `limits-${randomBytes(4).toString('hex')}`;
      const decisions = [];
      for (let i = 0; i < 10; i++) decisions.push((await a.running.services.limits.hit('register_ip', key)).allowed);
      decisions.push((await b.running.services.limits.hit('register_ip', key)).allowed);
      expect(decisions.filter((d) => !d), 'the 11th sign-up from one IP in an hour').to.deep.equal([false]);
      expect(decisions.at(-1)).to.equal(false);
      const address = newEmail('mail');
      const mails = [];
      for (let i = 0; i < 3; i++) mails.push((await a.running.services.limits.hit('mail_address', address)).allowed);
      for (let i = 0; i < 3; i++) mails.push((await b.running.services.limits.hit('mail_address', address)).allowed);
      expect(mails).to.deep.equal([true, true, true, true, true, false]);
    });
  });
}

acrossInstances('database');
acrossInstances('redis');

describe('a Redis outage (fail open)', function () {
  this.timeout(30_000);
  let srv: TestServer;
  let clientId: string;

  before(async () => {
    // Nothing listens on port 1: every Redis command fails.
    srv = await startTestServer({ env: { REDIS_URL: 'redis://127.0.0.1:1', LOGIN_LOCKOUT_SECONDS: '60' } });
    clientId = await createClient(srv);
  });
  after(async () => {
    expect(srv.errors(), JSON.stringify(srv.errors())).to.deep.equal([]);
    await srv.close();
  });

  it('never makes logins fail: limits hold in the process, and a warning is logged', async () => {
    expect(srv.config.rateLimitStore).to.equal('redis');
    const email = newEmail('outage');
    await createUser(srv, email);
    expectSignedIn(await (await openLogin(srv, clientId, '127.0.0.1')).post(email, PASSWORD));
    const login = await openLogin(srv, clientId, '127.0.0.1');
    for (let i = 0; i < 5; i++) expectFailure(await login.post(email, 'wrong'));
    expectRefused(await login.post(email, PASSWORD), 60);
    const warnings = srv.logger.lines.filter((l) => l.level === 'warn' && /fail open/.test(String(l.msg)));
    expect(warnings.length).to.be.within(1, 2);
  });
});
