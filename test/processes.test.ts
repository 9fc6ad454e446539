import { execFileSync } from 'node:child_process';
import { request } from 'node:http';

import { expect } from 'chai';
import { decodeProtectedHeader, type JSONWebKeySet } from 'jose';

import { Agent, parseForms } from './helpers/agent.js';
import { crossInstanceFlow } from './helpers/cross-flow.js';
import { spawnLatch, type LatchProcess } from './helpers/process.js';
import { freePort, freshDatabase, runCliWith, TEST_SECRET, type TestDatabase } from './helpers/server.js';

/** One POST on a fresh connection: resolves with the status, or the network error code. */
function postOnce(url: string, headers: Record<string, string>, body: string): Promise<{ status?: number; error?: string; connected: boolean }> {
  return new Promise((resolve) => {
    let connected = false;
    const req = request(url, { method: 'POST', agent: false, headers: { ...headers, 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode, connected: true }));
      res.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message, connected: true }));
    });
    req.on('socket', (s) => s.on('connect', () => (connected = true)));
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message, connected }));
    req.end(body);
  });
}

describe('independent Latch processes', function () {
  this.timeout(90_000);
  let db: TestDatabase;
  const procs: LatchProcess[] = [];
  const cli = (...args: string[]) => runCliWith({ DATABASE_URL: db.url, LATCH_SECRET: TEST_SECRET }, args);

  before(async () => {
    db = await freshDatabase();
  });
  after(async () => {
    for (const p of procs) await p.stop('SIGKILL');
    await db.drop();
  });

  it('two processes on one database are one service (sessions, codes, refresh, revocation, key rotation)', async () => {
    const a = await spawnLatch({ DATABASE_URL: db.url });
    procs.push(a);
    // Same public issuer for both, as behind a load balancer.
    const b = await spawnLatch({ DATABASE_URL: db.url, ISSUER: a.base });
    procs.push(b);
    await crossInstanceFlow(a.base, b.base, cli);

    const jwks = async (p: LatchProcess) => ((await (await fetch(`${p.base}/jwks`)).json()) as JSONWebKeySet).keys.map((k) => k.kid).sort();
    expect(await jwks(a)).to.deep.equal(await jwks(b));
    const rotated = await cli('keys', 'rotate');
    const kids: string[] = rotated.json.rotated;
    const started = Date.now();
    while (!(await jwks(b)).includes(kids[0]!) || !(await jwks(a)).includes(kids[0]!)) {
      expect(Date.now() - started, 'rotation visible within 10 s').to.be.below(10_000);
      await new Promise((r) => setTimeout(r, 200));
    }
    // New tokens from B are signed with a new key.
    const m = await cli('clients', 'create', '--name', 'M', '--grant', 'client_credentials', '--resource', 'urn:x');
    expect(m.code).to.not.equal(0); // urn:x is not registered yet
    await cli('resources', 'create', '--identifier', 'urn:x', '--alg', 'ES256');
    const m2 = await cli('clients', 'create', '--name', 'M', '--grant', 'client_credentials', '--resource', 'urn:x');
    const res = await fetch(`${b.base}/token`, { method: 'POST', headers: { authorization: `Basic ${Buffer.from(`${m2.json.client_id}:${m2.json.client_secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=client_credentials' });
    const token = ((await res.json()) as { access_token: string }).access_token;
    expect(kids).to.include(decodeProtectedHeader(token).kid);
  });

  /**
   * A process on a new port of the database the first test set up: its issuer is another, so it
   * is recorded first (`latch issuer set`), as an operator moving the service would.
   */
  async function spawnMoved(env: Record<string, string> = {}) {
    const port = await freePort();
    const moved = await cli('issuer', 'set', `http://127.0.0.1:${port}`);
    expect(moved.code, moved.stderr).to.equal(0);
    return spawnLatch({ DATABASE_URL: db.url, PORT: String(port), ...env });
  }

  it('WEB_CONCURRENCY=2 runs two workers on one port and stops them all on SIGTERM', async () => {
    const p = await spawnMoved({ WEB_CONCURRENCY: '2' });
    procs.push(p);
    const workers = () => execFileSync('pgrep', ['-P', String(p.child.pid)], { encoding: 'utf8' }).trim().split('\n').filter(Boolean);
    let n = 0;
    for (let i = 0; i < 50 && n < 2; i++) {
      n = workers().length;
      if (n < 2) await new Promise((r) => setTimeout(r, 100));
    }
    expect(n).to.equal(2);
    const statuses = await Promise.all(Array.from({ length: 20 }, () => fetch(`${p.base}/healthz`).then((r) => r.status)));
    expect(statuses.every((s) => s === 200)).to.equal(true);
    expect(await p.stop('SIGTERM')).to.equal(0);
  });

  it('finishes in-flight requests on SIGTERM: no request fails mid-flight', async () => {
    const p = await spawnMoved();
    procs.push(p);
    const REDIRECT = 'http://127.0.0.1:9/cb';
    const c = await cli('clients', 'create', '--name', 'Drain', '--redirect-uri', REDIRECT);
    await cli('users', 'create', '--email', 'drain@example.test', '--password', 'drain drain drain');
    // A login page with its interaction cookies and CSRF token.
    const agent = new Agent();
    const q = new URLSearchParams({ client_id: c.json.client_id, redirect_uri: REDIRECT, response_type: 'code', scope: 'openid', code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuz7-cVv7-M', code_challenge_method: 'S256' });
    const page = await agent.follow(`${p.base}/auth?${q}`);
    const form = parseForms(page.body, page.url)[0]!;
    const cookie = [...agent.cookies].map(([k, v]) => `${k.split('|')[1]}=${v}`).join('; ');
    // 24 login attempts (each an argon2 verification, tens of ms) are sent in full; then SIGTERM
    // arrives while they are being processed. Every one must get its complete answer. Each names
    // another address: parallel attempts on one address would be refused by the login lockout
    // (5 consecutive failures) without any verification.
    const sent: Promise<void>[] = [];
    const answers = Array.from({ length: 24 }, (_, i) =>
      new Promise<{ status?: number; error?: string }>((resolve) => {
        const body = new URLSearchParams({ ...form.fields, email: `drain-${i}@example.test`, password: 'wrong password' }).toString();
        const req = request(form.action, { method: 'POST', agent: false, headers: { cookie, 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) } }, (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => resolve({ status: text.includes('Invalid email or password.') ? res.statusCode : -1 }));
          res.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code }));
        });
        req.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code }));
        sent.push(new Promise((r) => req.on('finish', () => r())));
        req.end(body);
      }),
    );
    await Promise.all(sent);
    await new Promise((r) => setTimeout(r, 20));
    const exit = p.stop('SIGTERM');
    // During the grace period the instance still answers, but says it is not ready.
    await new Promise((r) => setTimeout(r, 150));
    const ready = await fetch(`${p.base}/readyz`);
    expect(ready.status).to.equal(503);
    expect(ready.headers.get('connection')).to.equal('close');
    const results = await Promise.all(answers);
    expect(results, JSON.stringify(results)).to.deep.equal(results.map(() => ({ status: 401 })));
    expect(await exit).to.equal(0);
    // After the drain nothing listens: new connections are refused, never half-served.
    const after = await postOnce(`${p.base}/healthz`, {}, '');
    expect(after.error).to.equal('ECONNREFUSED');
  });
});
