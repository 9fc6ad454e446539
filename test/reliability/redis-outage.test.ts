import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { connect } from 'node:net';

import { expect } from 'chai';

import { Agent, parseForms, type PageResponse } from '../helpers/agent.js';
import { freePort, freshDatabase, startTestServer, type TestDatabase, type TestServer } from '../helpers/server.js';

/**
 * A Redis outage under RATE_LIMIT_STORE=redis (docs/operations.md, "Running in production"):
 * two Latch instances share a throwaway redis-server of the test's own (never the machine's
 * shared one). Redis is killed: logins go on (fail open, limits per process), every answer comes
 * within a few seconds, the errors are counted in /metrics and a warning is logged. Redis is
 * started again on the same port: both instances share their counters again by themselves.
 */

const REDIRECT = 'http://127.0.0.1:9/callback';
const PASSWORD = 'correct horse battery staple 42';
/** An answer later than this is a hang (the Redis client's timeouts are 1-2 s). */
const ANSWER_WITHIN_MS = 5000;
const IP_FAILURES = 6;

const redisServerBin = () => {
  try {
    return execFileSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
};

/** A redis-server without persistence on `port`, resolved once it accepts connections. */
async function startRedis(bin: string, port: number): Promise<ChildProcess> {
  const child = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  for (let i = 0; ; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.end();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (up) return child;
    if (child.exitCode !== null || i > 100) throw new Error(`redis-server did not start on ${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function stopRedis(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
}

/** Where one instance listens (`url` is the issuer, which both instances share). */
const baseOf = (srv: TestServer) => `http://127.0.0.1:${srv.port}`;

let ipSeq = 0;
const newIp = () => `198.51.100.${++ipSeq}`;
const newEmail = (tag: string) => `${tag}-${randomBytes(4).toString('hex')}@example.test`;

/** A login form of a fresh authorization on `srv`, posted from `ip` (X-Forwarded-For, TRUST_PROXY). */
async function openLogin(srv: TestServer, clientId: string, ip: string): Promise<(email: string, password: string) => Promise<PageResponse & { ms: number }>> {
  const agent = new Agent();
  const q = new URLSearchParams({ client_id: clientId, response_type: 'code', redirect_uri: REDIRECT, scope: 'openid', code_challenge: createHash('sha256').update('v'.repeat(43)).digest('base64url'), code_challenge_method: 'S256' });
  const page = await agent.follow(`${baseOf(srv)}/auth?${q}`, {}, REDIRECT);
  expect(page.status, page.body.slice(0, 300)).to.equal(200);
  const form = parseForms(page.body, page.url)[0]!;
  return async (email, password) => {
    const started = Date.now();
    const res = await agent.request(form.action, { method: 'POST', form: { ...form.fields, email, password }, headers: { 'x-forwarded-for': ip } });
    const ms = Date.now() - started;
    expect(res.status, `answered with ${res.status}: ${res.body.slice(0, 300)}`).to.be.below(500);
    expect(ms, 'answered without hanging').to.be.below(ANSWER_WITHIN_MS);
    return { ...res, ms };
  };
}

async function metric(srv: TestServer, name: string): Promise<number> {
  const text = await (await fetch(`${baseOf(srv)}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  expect(line, `${name} in /metrics`).to.be.a('string');
  return Number(line!.split(' ')[1]);
}

describe('Redis outage (throwaway redis-server, RATE_LIMIT_STORE=redis)', function () {
  this.timeout(90_000);
  let redis: ChildProcess | undefined;
  let redisPort: number;
  let bin: string;
  let db: TestDatabase;
  let a: TestServer;
  let b: TestServer;
  let clientId: string;
  let email: string;

  before(async function () {
    const found = redisServerBin();
    if (!found) {
      if (process.env.CI === 'true') throw new Error('redis-server not found: CI must run the Redis outage test (install redis-server)');
      console.log('      (skipped: redis-server is not installed)');
      this.skip();
    }
    bin = found!;
    redisPort = await freePort();
    redis = await startRedis(bin, redisPort);
    db = await freshDatabase();
    const env = { TRUST_PROXY: 'true', RATE_LIMIT_STORE: 'redis', REDIS_URL: `redis://127.0.0.1:${redisPort}`, LOGIN_LOCKOUT_SECONDS: '60', LOGIN_IP_FAILURES_PER_HOUR: String(IP_FAILURES) };
    a = await startTestServer({ database: db, env });
    // One service behind a load balancer: the same issuer, so the same Redis namespace.
    b = await startTestServer({ database: db, env: { ...env, ISSUER: a.url } });
    const client = await a.cli('clients', 'create', '--name', 'Web', '--redirect-uri', REDIRECT, '--first-party');
    expect(client.code, client.stderr).to.equal(0);
    clientId = client.json.client_id as string;
    email = newEmail('outage');
    const user = await a.cli('users', 'create', '--email', email, '--password', PASSWORD);
    expect(user.code, user.stderr).to.equal(0);
  });

  after(async () => {
    const errors = [...(a?.errors() ?? []), ...(b?.errors() ?? [])];
    await a?.close();
    await b?.close();
    await stopRedis(redis);
    await db?.drop();
    expect(errors, JSON.stringify(errors)).to.deep.equal([]);
  });

  /** Failures from one IP spread over both instances, until the shared limit refuses one. */
  async function spreadFailures(ip: string): Promise<number[]> {
    const onA = await openLogin(a, clientId, ip);
    const onB = await openLogin(b, clientId, ip);
    const statuses = [];
    for (let i = 0; i < IP_FAILURES / 2; i++) statuses.push((await onA(newEmail('spray'), 'guess')).status);
    for (let i = 0; i < IP_FAILURES / 2; i++) statuses.push((await onB(newEmail('spray'), 'guess')).status);
    statuses.push((await onA(newEmail('spray'), 'guess')).status);
    return statuses;
  }

  it('limits logins across both instances while Redis is up', async () => {
    expect((await (await openLogin(a, clientId, newIp()))(email, PASSWORD)).status).to.equal(303);
    expect(await spreadFailures(newIp())).to.deep.equal([401, 401, 401, 401, 401, 401, 429]);
    expect(await metric(a, 'latch_rate_limit_store_errors_total')).to.equal(0);
    expect(await metric(a, 'latch_rate_limit_store_degraded')).to.equal(0);
  });

  it('fails open while Redis is down: logins work, answers come at once, errors are counted and logged', async () => {
    await stopRedis(redis);
    redis = undefined;
    // Signing in still works on both instances.
    expect((await (await openLogin(a, clientId, newIp()))(email, PASSWORD)).status).to.equal(303);
    expect((await (await openLogin(b, clientId, newIp()))(email, PASSWORD)).status).to.equal(303);
    // Limits are per process now: failures spread over both are not refused together…
    expect(await spreadFailures(newIp())).to.deep.equal([401, 401, 401, 401, 401, 401, 401]);
    // …but one instance still refuses what it counted itself.
    const ip = newIp();
    const onA = await openLogin(a, clientId, ip);
    const alone = [];
    for (let i = 0; i <= IP_FAILURES; i++) alone.push((await onA(newEmail('spray'), 'guess')).status);
    expect(alone).to.deep.equal([401, 401, 401, 401, 401, 401, 429]);

    for (const srv of [a, b]) {
      expect(await metric(srv, 'latch_rate_limit_store_errors_total')).to.be.above(0);
      expect(await metric(srv, 'latch_rate_limit_store_degraded')).to.equal(1);
      expect(srv.logger.lines.some((l) => l.level === 'warn' && /fail open/.test(String(l.msg)))).to.equal(true);
    }
  });

  it('shares the limits again once Redis is back on the same port, without a restart', async () => {
    redis = await startRedis(bin, redisPort);
    // The clients reconnect by themselves (ioredis backs off up to 2 s): wait until an
    // operation on each instance reaches Redis again.
    for (const srv of [a, b]) {
      for (let i = 0; ; i++) {
        await srv.running.services.limits.check('login_ip', 'reconnect-probe');
        if (!srv.running.services.rateLimits.degraded()) break;
        expect(i, 'the store recovers within 15 s').to.be.below(150);
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(await metric(srv, 'latch_rate_limit_store_degraded')).to.equal(0);
      expect(srv.logger.lines.some((l) => l.level === 'info' && /store is back/.test(String(l.msg)))).to.equal(true);
    }
    const errors = await metric(a, 'latch_rate_limit_store_errors_total');
    expect(await spreadFailures(newIp())).to.deep.equal([401, 401, 401, 401, 401, 401, 429]);
    expect(await metric(a, 'latch_rate_limit_store_errors_total'), 'no operation failed over').to.equal(errors);
  });
});
