import { createServer, type Server } from 'node:http';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { expect } from 'chai';
import * as jose from 'jose';
import * as oidc from 'openid-client';

import { loadConfig } from '../src/config/index.js';
import { openDatabase } from '../src/db/knex.js';
import { createBackchannelLogoutsRepository } from '../src/repositories/backchannel-logouts.js';
import { BACKCHANNEL_LOGOUT_SCHEDULE_MS } from '../src/services/backchannel-logout.js';
import { checkBackchannelLogoutUri } from '../src/services/client-backchannel.js';
import { Agent, authorize, parseForms, type PageResponse } from './helpers/agent.js';
import { startApiHarness, type ApiHarness } from './helpers/api.js';
import { startMailbox, type Mailbox } from './helpers/mailbox.js';
import { spawnLatch, type LatchProcess } from './helpers/process.js';
import { freePort, freshDatabase, runCliWith, TEST_SECRET } from './helpers/server.js';

const EVENT = 'http://schemas.openid.net/event/backchannel-logout';
const REDIRECT = 'http://127.0.0.1:9/cb';
const PASSWORD = 'a perfectly fine password';

/** A relying party's back-channel logout endpoint: records every POST; answers the queued statuses of its path, then 200. */
interface Listener {
  url: string;
  port: number;
  received: { path: string; token: string; contentType: string }[];
  answers: Map<string, number[]>;
  listen(): Promise<void>;
  close(): Promise<void>;
  /** Resolves once `path` has received `n` POSTs. */
  waitFor(path: string, n: number, timeoutMs?: number): Promise<string[]>;
}

async function createListener(port?: number): Promise<Listener> {
  const p = port ?? (await freePort());
  let server: Server | undefined;
  const l: Listener = {
    url: `http://127.0.0.1:${p}`,
    port: p,
    received: [],
    answers: new Map(),
    async listen() {
      server = createServer((req, res) => {
        let body = '';
        req.on('data', (d: Buffer) => (body += d.toString()));
        req.on('end', () => {
          const path = new URL(req.url ?? '/', l.url).pathname;
          l.received.push({ path, token: new URLSearchParams(body).get('logout_token') ?? '', contentType: req.headers['content-type'] ?? '' });
          const status = l.answers.get(path)?.shift() ?? 200;
          res.writeHead(status, { 'cache-control': 'no-store' }).end();
        });
      });
      server.listen(p, '127.0.0.1');
      await new Promise((r) => server!.once('listening', r));
    },
    close: () => new Promise<void>((r) => (server ? server.close(() => r()) : r())),
    async waitFor(path, n, timeoutMs = 20_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const tokens = l.received.filter((x) => x.path === path).map((x) => x.token);
        if (tokens.length >= n) return tokens;
        if (Date.now() > until) throw new Error(`${path}: ${tokens.length} of ${n} back-channel logouts arrived`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
  return l;
}

/** Verifies a logout token as a relying party must (OIDC Back-Channel Logout 1.0 §2.6) against the issuer's JWKS. */
async function verifyLogoutToken(issuer: string, clientId: string, token: string): Promise<jose.JWTPayload> {
  const jwks = jose.createRemoteJWKSet(new URL(`${issuer}/jwks`));
  const { payload, protectedHeader } = await jose.jwtVerify(token, jwks, { issuer, audience: clientId, typ: 'logout+jwt', requiredClaims: ['iat', 'exp', 'jti'] });
  expect(protectedHeader.typ).to.equal('logout+jwt');
  expect(payload.events).to.deep.equal({ [EVENT]: {} });
  expect(payload).not.to.have.property('nonce');
  expect(payload.exp! - payload.iat!).to.be.within(1, 300);
  return payload;
}

/** Signs in through the real pages with the browser `agent`; the ID token's claims. */
async function signIn(issuer: string, client: { client_id: string; client_secret: string }, agent: Agent, user: { email: string; password: string }) {
  const config = await oidc.discovery(new URL(issuer), client.client_id, client.client_secret, oidc.ClientSecretBasic(client.client_secret), { execute: [oidc.allowInsecureRequests] });
  const verifier = oidc.randomPKCECodeVerifier();
  const url = oidc.buildAuthorizationUrl(config, { redirect_uri: REDIRECT, scope: 'openid', code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256' });
  const { callback } = await authorize(agent, url.toString(), REDIRECT, user);
  const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier });
  return { idToken: tokens.id_token!, claims: tokens.claims()! };
}

/** Submits the form of `page` whose action ends with `action`. */
function submitTo(agent: Agent, page: PageResponse, action: string, values: Record<string, string> = {}, stopAt?: string) {
  const forms = parseForms(page.body, page.url);
  const i = forms.findIndex((f) => new URL(f.action).pathname === action);
  if (i < 0) throw new Error(`no form to ${action} on ${page.url} (${page.status}): ${page.body.slice(0, 300)}`);
  return agent.submit(page, i, values, stopAt);
}

describe('back-channel logout (OIDC Back-Channel Logout 1.0) through the durable queue', function () {
  this.timeout(90_000);
  let h: ApiHarness;
  let mailbox: Mailbox;
  let rp: Listener;
  let a: { client_id: string; client_secret: string };
  let b: { client_id: string; client_secret: string };
  let plain: { client_id: string; client_secret: string };
  let users = 0;

  const newUser = async () => {
    const email = `bcl${++users}@example.test`;
    const created = await h.cli('users', 'create', '--email', email, '--password', PASSWORD);
    return { id: created.id as string, email, password: PASSWORD };
  };
  const client = (name: string, path?: string) => h.cli('clients', 'create', '--name', name, '--redirect-uri', REDIRECT, '--first-party', ...(path ? ['--backchannel-logout-uri', `${rp.url}${path}`] : []));
  const queued = () => h.srv.running.services.backchannelLogout.list();
  const metric = async (result: string) => {
    const text = await (await fetch(`${h.srv.url}/metrics`)).text();
    const m = new RegExp(`^latch_backchannel_logout_total\\{result="${result}"\\} (\\d+)`, 'm').exec(text);
    return Number(m?.[1] ?? NaN);
  };

  before(async () => {
    mailbox = await startMailbox();
    rp = await createListener();
    await rp.listen();
    h = await startApiHarness({ env: { SMTP_URL: mailbox.url, SMTP_FROM: 'Latch <auth@example.test>' } });
    a = await client('Alpha', '/a');
    b = await client('Beta', '/b');
    plain = await client('Plain');
  });
  after(async () => {
    expect(h.srv.errors()).to.deep.equal([]);
    await h.close();
    await rp.close();
    await mailbox.close();
  });

  it('is in discovery and in the client registration; the logout URI must be https (loopback http outside production)', async () => {
    const discovery = (await (await fetch(`${h.srv.url}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
    expect(discovery).to.include({ backchannel_logout_supported: true, backchannel_logout_session_supported: true });
    expect(a).to.include({ backchannel_logout_uri: `${rp.url}/a`, backchannel_logout_session_required: true });
    expect(plain).to.include({ backchannel_logout_uri: null, backchannel_logout_session_required: true });

    for (const bad of ['http://rp.example.test/logout', 'https://rp.example.test/logout#frag', 'not a url']) {
      const r = await h.srv.cli('clients', 'create', '--name', 'Bad', '--redirect-uri', REDIRECT, '--backchannel-logout-uri', bad);
      expect(r.code, bad).to.not.equal(0);
      expect(r.stderr).to.contain('backchannel-logout-uri');
    }
    const api = await h.call('POST', '/api/v1/clients', { token: h.admin, body: { name: 'Api', redirect_uris: [REDIRECT], backchannel_logout_uri: 'https://rp.example.test/bcl', backchannel_logout_session_required: false } });
    expect(api.status).to.equal(201);
    expect(api.json).to.include({ backchannel_logout_uri: 'https://rp.example.test/bcl', backchannel_logout_session_required: false });
    const refused = await h.call('PATCH', `/api/v1/clients/${api.json.id}`, { token: h.admin, body: { backchannel_logout_uri: 'http://rp.example.test/bcl' } });
    expect(refused.status).to.equal(422);
    expect(JSON.stringify(refused.json)).to.contain('backchannel_logout_uri');
    const removed = await h.call('PATCH', `/api/v1/clients/${api.json.id}`, { token: h.admin, body: { backchannel_logout_uri: null } });
    expect(removed.json.backchannel_logout_uri).to.equal(null);

    // NODE_ENV=production: https only, loopback included.
    expect(() => checkBackchannelLogoutUri(`${rp.url}/a`, true)).to.throw(/https/);
    expect(checkBackchannelLogoutUri('https://rp.example.test/bcl?tenant=1', true)).to.equal('https://rp.example.test/bcl?tenant=1');
  });

  it('RP-initiated logout: every application of the session receives a logout token naming its sid', async () => {
    const user = await newUser();
    const agent = new Agent();
    const fromA = await signIn(h.srv.url, a, agent, user);
    const fromB = await signIn(h.srv.url, b, agent, user);
    const fromPlain = await signIn(h.srv.url, plain, agent, user);
    // Every ID token names its session, back-channel logout registered or not.
    expect(fromPlain.claims.sid).to.be.a('string');
    expect(fromA.claims.sid).to.be.a('string');
    expect(fromB.claims.sid).to.be.a('string');
    const before = { a: rp.received.filter((x) => x.path === '/a').length, b: rp.received.filter((x) => x.path === '/b').length };

    const end = new URL(`${h.srv.url}/session/end`);
    end.searchParams.set('id_token_hint', fromA.idToken);
    const confirm = await agent.follow(end.toString());
    expect(confirm.status).to.equal(200);
    const done = await agent.submit(confirm, 0, { logout: 'yes' });
    expect(done.status).to.equal(200);

    const [tokenA] = (await rp.waitFor('/a', before.a + 1)).slice(before.a);
    const [tokenB] = (await rp.waitFor('/b', before.b + 1)).slice(before.b);
    expect(rp.received.find((x) => x.token === tokenA)!.contentType).to.equal('application/x-www-form-urlencoded');
    const la = await verifyLogoutToken(h.srv.url, a.client_id, tokenA!);
    const lb = await verifyLogoutToken(h.srv.url, b.client_id, tokenB!);
    expect(la).to.include({ sub: user.id, sid: fromA.claims.sid });
    expect(lb).to.include({ sub: user.id, sid: fromB.claims.sid });
    expect(la.jti).to.not.equal(lb.jti);
    // The audience is the client: B's token is not A's.
    let wrong: unknown;
    await verifyLogoutToken(h.srv.url, a.client_id, tokenB!).catch((e: unknown) => (wrong = e));
    expect(wrong).to.be.instanceOf(jose.errors.JWTClaimValidationFailed);
  });

  it('"Sign out" on the account page, and ending another session there', async () => {
    const user = await newUser();
    // Session 1: signed in to A, then the account page in the same browser signs out.
    const browser = new Agent();
    const first = await signIn(h.srv.url, a, browser, user);
    const account = await browser.follow(`${h.srv.url}/account`);
    expect(account.status, account.body.slice(0, 300)).to.equal(200);
    const n = rp.received.filter((x) => x.path === '/a').length;
    const confirm = await submitTo(browser, account, '/account/signout');
    expect(confirm.status, confirm.body.slice(0, 300)).to.equal(200);
    await browser.submit(confirm, 0, { logout: 'yes' }, `${h.srv.url}/account`);
    const [signedOut] = (await rp.waitFor('/a', n + 1)).slice(n);
    expect(await verifyLogoutToken(h.srv.url, a.client_id, signedOut!)).to.include({ sub: user.id, sid: first.claims.sid });

    // Session 2 (a laptop) signed in to B; session 3 (a phone) ends it from the account page.
    const laptop = new Agent();
    const second = await signIn(h.srv.url, b, laptop, user);
    const phone = new Agent();
    const page = await phone.follow(`${h.srv.url}/account`);
    const login = await phone.submit(page, 0, { email: user.email, password: user.password });
    expect(login.status, login.body.slice(0, 300)).to.equal(200);
    const forms = parseForms(login.body, login.url).filter((f) => new URL(f.action).pathname === '/account/sessions/end');
    expect(forms.length).to.be.greaterThan(0);
    const m = rp.received.filter((x) => x.path === '/b').length;
    const sessions = await h.srv.running.services.sessions.sessionsOf(user.id);
    const laptopSession = sessions.find((s) => Object.keys((s.authorizations as object) ?? {}).includes(b.client_id))!;
    const ended = await submitTo(phone, login, '/account/sessions/end', { session: String(laptopSession.uid) });
    expect(ended.status).to.equal(200);
    const [endedToken] = (await rp.waitFor('/b', m + 1)).slice(m);
    expect(await verifyLogoutToken(h.srv.url, b.client_id, endedToken!)).to.include({ sub: user.id, sid: second.claims.sid });
  });

  it('an administrator ending the sessions, deactivation and a password reset each tell every application', async () => {
    const user = await newUser();
    const expectLogout = async (trigger: () => Promise<void>) => {
      const agent = new Agent();
      const signedIn = await signIn(h.srv.url, a, agent, user);
      const n = rp.received.filter((x) => x.path === '/a').length;
      await trigger();
      const [token] = (await rp.waitFor('/a', n + 1)).slice(n);
      expect(await verifyLogoutToken(h.srv.url, a.client_id, token!)).to.include({ sub: user.id, sid: signedIn.claims.sid });
      return agent;
    };

    await expectLogout(async () => {
      const res = await h.call('POST', `/api/v1/users/${user.id}/revoke-sessions`, { token: h.admin });
      expect(res.status).to.equal(204);
    });

    await expectLogout(async () => {
      await h.cli('users', 'update', '--email', user.email, '--active', 'false');
    });
    await h.cli('users', 'update', '--email', user.email, '--active', 'true');

    await expectLogout(async () => {
      const agent = new Agent();
      const form = await agent.request(`${h.srv.url}/forgot-password`);
      const before = mailbox.to(user.email).length;
      expect((await agent.submit(form, 0, { email: user.email })).status).to.equal(200);
      const mail = await mailbox.waitFor(user.email, before + 1);
      const link = mail.links.find((l) => l.startsWith(`${h.srv.url}/reset-password`))!;
      const page = await agent.request(link);
      const changed = await agent.submit(page, 0, { password: 'a brand new passphrase 1900' });
      expect(changed.status, changed.body.slice(0, 300)).to.equal(200);
      user.password = 'a brand new passphrase 1900';
    });
  });

  it('retries a 500 on the schedule (the next attempt about 10 s later) with a fresh token, and counts it', async () => {
    const retrying = await client('Retrying', '/retry');
    rp.answers.set('/retry', [500]);
    const retries = await metric('retry');
    const delivered = await metric('delivered');
    const user = await newUser();
    await signIn(h.srv.url, retrying, new Agent(), user);
    await h.call('POST', `/api/v1/users/${user.id}/revoke-sessions`, { token: h.admin });
    const [first] = await rp.waitFor('/retry', 1);
    // The application has the request; the sender records its answer once it reads the response.
    const row0 = async () => (await queued()).find((q) => q.clientId === retrying.client_id);
    for (let i = 0; i < 100 && !(await row0())?.lastError; i++) await new Promise((r) => setTimeout(r, 50));
    const row = await row0();
    expect(row).to.include({ attempts: 1, lastError: 'HTTP 500' });
    expect(await metric('retry')).to.equal(retries + 1);
    const [, second] = await rp.waitFor('/retry', 2, BACKCHANNEL_LOGOUT_SCHEDULE_MS[1]! + 15_000);
    const t1 = await verifyLogoutToken(h.srv.url, retrying.client_id, first!);
    const t2 = await verifyLogoutToken(h.srv.url, retrying.client_id, second!);
    expect(t2.jti).to.not.equal(t1.jti);
    expect(t2.iat! - t1.iat!).to.be.at.least(BACKCHANNEL_LOGOUT_SCHEDULE_MS[1]! / 1000 - 1);
    for (let i = 0; i < 100 && (await queued()).some((q) => q.clientId === retrying.client_id); i++) await new Promise((r) => setTimeout(r, 50));
    expect((await queued()).filter((q) => q.clientId === retrying.client_id)).to.deep.equal([]);
    expect(await metric('delivered')).to.equal(delivered + 1);
  });

  it('a 400 ends the delivery: no retry, logged without the token, counted as failed', async () => {
    const refusing = await client('Refusing', '/refuse');
    rp.answers.set('/refuse', [400, 400, 400]);
    const failed = await metric('failed');
    const user = await newUser();
    await signIn(h.srv.url, refusing, new Agent(), user);
    await h.call('POST', `/api/v1/users/${user.id}/revoke-sessions`, { token: h.admin });
    const [token] = await rp.waitFor('/refuse', 1);
    for (let i = 0; i < 100 && (await queued()).some((q) => q.clientId === refusing.client_id); i++) await new Promise((r) => setTimeout(r, 50));
    expect((await queued()).filter((q) => q.clientId === refusing.client_id)).to.deep.equal([]);
    expect(await metric('failed')).to.equal(failed + 1);
    const warning = h.srv.logger.lines.find((l) => l.msg === 'back-channel logout refused by the client' && l.client_id === refusing.client_id);
    expect(warning).to.include({ error: 'HTTP 400' });
    expect(JSON.stringify(h.srv.logger.lines)).to.not.contain(token);
    expect(rp.answers.get('/refuse')).to.have.length(2);
  });

  it('of several claims of one due row (instances sharing the database) exactly one wins it', async () => {
    const racing = await client('Racing', '/race');
    const user = await newUser();
    // Straight into the table: this server's worker is not woken and finds it at its next poll at the earliest.
    const repo = createBackchannelLogoutsRepository(h.srv.running.db);
    expect(await repo.enqueue([{ clientId: racing.client_id, sub: user.id, sid: 'sid-race' }])).to.equal(1);
    const claims = await Promise.all(Array.from({ length: 6 }, () => repo.claimDue(16, 60_000)));
    const won = claims.flat().filter((r) => r.clientId === racing.client_id);
    if (won.length === 0) {
      // The server's worker claimed it first: it delivers it, once.
      expect(await rp.waitFor('/race', 1)).to.have.length(1);
    } else {
      expect(won).to.have.length(1);
      expect(won[0]).to.include({ attempts: 1, sub: user.id, sid: 'sid-race' });
      // Leased: not due for anyone else.
      expect((await repo.claimDue(16, 60_000)).filter((r) => r.clientId === racing.client_id)).to.deep.equal([]);
      await repo.remove(won[0]!.id);
    }
  });
});

describe('back-channel logout survives a restart of Latch while the relying party was down', function () {
  this.timeout(120_000);
  let latch: LatchProcess | undefined;
  let rp: Listener | undefined;
  const database = freshDatabase();

  after(async () => {
    await latch?.stop();
    await rp?.close();
    await (await database).drop();
  });

  it('the queued row is delivered by the next process once the listener is up', async () => {
    const db = await database;
    const port = await freePort();
    const env = { DATABASE_URL: db.url, PORT: String(port), DATA_DIR: mkdtempSync(join(tmpdir(), 'latch-bcl-restart-')) };
    latch = await spawnLatch(env);
    const issuer = latch.base;
    rp = await createListener();
    const cliEnv = { ...env, ISSUER: issuer, LATCH_SECRET: TEST_SECRET };
    const user = await runCliWith(cliEnv, ['users', 'create', '--email', 'restart@example.test', '--password', PASSWORD]);
    expect(user.code, user.stderr).to.equal(0);
    const c = await runCliWith(cliEnv, ['clients', 'create', '--name', 'Restart', '--redirect-uri', REDIRECT, '--first-party', '--backchannel-logout-uri', `${rp.url}/logout`]);
    expect(c.code, c.stderr).to.equal(0);
    // The running process sees the new client through the change feed.
    const agent = new Agent();
    let signedIn: Awaited<ReturnType<typeof signIn>> | undefined;
    for (let i = 0; i < 50 && !signedIn; i++) {
      signedIn = await signIn(issuer, c.json, agent, { email: 'restart@example.test', password: PASSWORD }).catch(() => undefined);
      if (!signedIn) await new Promise((r) => setTimeout(r, 100));
    }
    expect(signedIn, 'signed in').to.not.equal(undefined);

    // The listener is down: the first attempt fails (connection refused) and the row waits.
    const end = new URL(`${issuer}/session/end`);
    end.searchParams.set('id_token_hint', signedIn!.idToken);
    const confirm = await agent.follow(end.toString());
    await agent.submit(confirm, 0, { logout: 'yes' });
    const knex = openDatabase(loadConfig({ ...cliEnv }).database);
    try {
      let rows: { attempts: number; last_error: string | null }[] = [];
      for (let i = 0; i < 200; i++) {
        rows = (await knex('backchannel_logouts').select('attempts', 'last_error')) as typeof rows;
        if (rows.length && Number(rows[0]!.attempts) >= 1 && rows[0]!.last_error) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(rows).to.have.length(1);
      expect(Number(rows[0]!.attempts)).to.equal(1);
      expect(rows[0]!.last_error).to.match(/ECONNREFUSED/);

      expect(await latch.stop()).to.equal(0);
      latch = undefined;
      await rp.listen();
      latch = await spawnLatch(env);
      const [token] = await rp.waitFor('/logout', 1, BACKCHANNEL_LOGOUT_SCHEDULE_MS[1]! + 30_000);
      expect(await verifyLogoutToken(issuer, c.json.client_id, token!)).to.include({ sub: user.json.id, sid: signedIn!.claims.sid });
      for (let i = 0; i < 100 && (await knex('backchannel_logouts').count({ n: '*' }).first())!.n != 0; i++) await new Promise((r) => setTimeout(r, 50));
      expect(Number((await knex('backchannel_logouts').count({ n: '*' }).first())!.n)).to.equal(0);
    } finally {
      await knex.destroy();
    }
  });
});
