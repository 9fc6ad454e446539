/**
 * Two-step verification (TOTP, RFC 6238, and recovery codes) and the account page, over real
 * HTTP against a real server: enrolment through the pages with a real TOTP generator (otpauth)
 * reading the base32 secret from the page, sign-in with the second step, amr/acr in ID tokens
 * checked by openid-client, and the account page's profile, password, sessions and grants.
 */
import { expect } from 'chai';
import * as oidc from 'openid-client';
import { Secret, TOTP } from 'otpauth';

import { Agent, parseForms, type PageResponse } from './helpers/agent.js';
import { startTestServer, type TestServer } from './helpers/server.js';
import { ensureAccountClient } from '../src/services/bootstrap.js';

const REDIRECT = 'http://127.0.0.1:9/callback';
const LOA1 = 'urn:latch:loa:1';
const LOA2 = 'urn:latch:loa:2';
const PERIOD_MS = 30_000;

interface User {
  email: string;
  password: string;
  id?: string;
}

const users: Record<string, User> = {
  alice: { email: 'alice@example.test', password: 'alice keeps a quiet garden' },
  bob: { email: 'bob@example.test', password: 'bob builds wooden boats' },
  carol: { email: 'carol@example.test', password: 'carol sings in the tunnel' },
  dave: { email: 'dave@example.test', password: 'dave drifts across time zones' },
  erin: { email: 'erin@example.test', password: 'erin forgets her phone often' },
  frank: { email: 'frank@example.test', password: 'frank races two browsers' },
};

/** A real authenticator app: the secret as the page shows it, codes for any moment. */
const totpCode = (secret: string, timestamp = Date.now()) => new TOTP({ secret: Secret.fromBase32(secret), algorithm: 'SHA1', digits: 6, period: 30 }).generate({ timestamp });

/** Waits until the current 30-second step has at least `margin` ms left, so "now ± n steps" stays what the test means. */
async function awayFromStepBoundary(margin = 4000): Promise<number> {
  const left = PERIOD_MS - (Date.now() % PERIOD_MS);
  if (left < margin) await new Promise((r) => setTimeout(r, left + 50));
  return Date.now();
}

const secretOf = (body: string) => /id="totp-secret">([A-Z2-7]+)</.exec(body)?.[1];
const recoveryCodesOf = (body: string) => /<pre class="codes" id="recovery-codes"[^>]*>([^<]*)<\/pre>/.exec(body)?.[1]?.split('\n').filter(Boolean);
const isCodeStep = (res: PageResponse) => /action="\/interaction\/[^"]+\/mfa"/.test(res.body) && /name="code"/.test(res.body) && !secretOf(res.body);
const formIndex = (res: PageResponse, action: RegExp) => parseForms(res.body, res.url).findIndex((f) => action.test(new URL(f.action).pathname));

interface Drive {
  callback?: URL;
  pages: string[];
  last: PageResponse;
  secret?: string;
  recoveryCodes?: string[];
}

/**
 * Walks a browser through Latch's pages until the client's redirect_uri, answering the login,
 * second-step, enrolment, recovery-codes and consent pages as told. Stops on any other answer
 * (a refused code, an error page) and on a page it was given nothing for.
 */
async function drive(agent: Agent, start: string | PageResponse, opts: { login?: User; code?: () => string; enrol?: (secret: string) => string }): Promise<Drive> {
  const pages: string[] = [];
  const out: Partial<Drive> = {};
  let res = typeof start === 'string' ? await agent.follow(start, {}, REDIRECT) : start;
  for (let i = 0; i < 10; i++) {
    if (res.url.startsWith(REDIRECT)) return { ...out, callback: new URL(res.url), pages, last: res };
    if (res.status !== 200) break;
    if (/name="password"/.test(res.body) && /\/login"/.test(res.body)) {
      if (!opts.login) break;
      pages.push('login');
      res = await agent.submit(res, formIndex(res, /\/login$/), { email: opts.login.email, password: opts.login.password }, REDIRECT);
    } else if (secretOf(res.body)) {
      if (!opts.enrol) break;
      pages.push('enrol');
      out.secret = secretOf(res.body)!;
      res = await agent.submit(res, formIndex(res, /\/mfa$/), { code: opts.enrol(out.secret) }, REDIRECT);
    } else if (isCodeStep(res)) {
      if (!opts.code) break;
      pages.push('code');
      res = await agent.submit(res, formIndex(res, /\/mfa$/), { code: opts.code() }, REDIRECT);
    } else if (recoveryCodesOf(res.body)) {
      pages.push('recovery-codes');
      out.recoveryCodes = recoveryCodesOf(res.body)!;
      res = await agent.submit(res, formIndex(res, /\/mfa\/continue$/), {}, REDIRECT);
    } else if (/\/confirm"/.test(res.body)) {
      pages.push('consent');
      res = await agent.submit(res, formIndex(res, /\/confirm$/), {}, REDIRECT);
    } else {
      break;
    }
  }
  return { ...out, pages, last: res };
}

/** A browser that says it is Firefox on Linux, to tell its session apart on the account page. */
class FirefoxAgent extends Agent {
  override request(url: string, init: Parameters<Agent['request']>[1] = {}) {
    return super.request(url, { ...init, headers: { 'user-agent': 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0', ...init.headers } });
  }
}

describe('Two-step verification and the account page', function () {
  this.timeout(60_000);

  let srv: TestServer;
  let web: { client_id: string; client_secret: string };
  let config: oidc.Configuration;

  async function authorizationUrl(extra: Record<string, string> = {}, scope = 'openid profile email') {
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const nonce = oidc.randomNonce();
    const url = oidc.buildAuthorizationUrl(config, { redirect_uri: REDIRECT, scope, state, nonce, code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', ...extra });
    return { url: url.toString(), verifier, state, nonce };
  }

  /** Signs in to the web app; returns its tokens and the pages seen. */
  async function signIn(agent: Agent, opts: Parameters<typeof drive>[2], extra: Record<string, string> = {}, scope?: string) {
    const req = await authorizationUrl(extra, scope);
    const d = await drive(agent, req.url, opts);
    expect(d.callback, `ended at ${d.last.url} (${d.last.status}) after ${d.pages.join(',')}: ${d.last.body.slice(0, 400)}`).to.not.equal(undefined);
    expect(d.callback!.searchParams.get('error'), d.callback!.toString()).to.equal(null);
    const tokens = await oidc.authorizationCodeGrant(config, d.callback!, { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce });
    return { ...d, tokens, claims: tokens.claims()! };
  }

  /** Opens the account page: signs in through Latch (password, and a code when asked) and lands on /account. */
  async function openAccount(agent: Agent, user: User, code?: () => string): Promise<PageResponse> {
    let res = await agent.follow(`${srv.url}/account`);
    for (let i = 0; i < 4 && !/id="account-email"/.test(res.body); i++) {
      if (/name="password"/.test(res.body)) res = await agent.submit(res, formIndex(res, /\/login$/), { email: user.email, password: user.password });
      else if (isCodeStep(res) && code) res = await agent.submit(res, formIndex(res, /\/mfa$/), { code: code() });
      else break;
    }
    expect(res.status, res.body.slice(0, 500)).to.equal(200);
    expect(res.url).to.equal(`${srv.url}/account`);
    expect(res.body).to.contain(user.email);
    return res;
  }

  /** Enrols through GET /account/mfa: the secret read from the page, a code for `timestamp`. */
  async function enrol(agent: Agent, user: User, timestamp?: number): Promise<{ secret: string; codes: string[] }> {
    await openAccount(agent, user);
    const page = await agent.follow(`${srv.url}/account/mfa`);
    expect(page.status).to.equal(200);
    const secret = secretOf(page.body);
    expect(secret, 'base32 secret on the page').to.match(/^[A-Z2-7]{32}$/);
    expect(page.body).to.match(/<img class="qr" src="data:image\/png;base64,[A-Za-z0-9+/=]{200,}"/);
    const done = await agent.submit(page, formIndex(page, /\/account\/mfa\/enable$/), { code: totpCode(secret!, timestamp) });
    expect(done.status, done.body.slice(0, 400)).to.equal(200);
    const codes = recoveryCodesOf(done.body);
    expect(codes, 'recovery codes, one per line').to.have.length(10);
    return { secret: secret!, codes: codes! };
  }

  const refresh = (rt: string) =>
    oidc.refreshTokenGrant(config, rt).then(
      () => 'ok',
      (e: unknown) => (e as oidc.ResponseBodyError).error ?? String(e),
    );

  /** Whether the browser's Latch session still signs in silently (prompt=none). */
  async function silentSignIn(agent: Agent): Promise<string> {
    const req = await authorizationUrl({ prompt: 'none' });
    const res = await agent.follow(req.url, {}, REDIRECT);
    const cb = new URL(res.url);
    return cb.searchParams.get('error') ?? (cb.searchParams.get('code') ? 'code' : `unexpected ${res.status}`);
  }

  before(async () => {
    srv = await startTestServer();
    for (const [name, u] of Object.entries(users)) {
      const r = await srv.cli('users', 'create', '--email', u.email, '--password', u.password, '--name', name[0]!.toUpperCase() + name.slice(1));
      expect(r.code, r.stderr).to.equal(0);
      u.id = r.json.id;
    }
    const c = await srv.cli('clients', 'create', '--name', 'Web App', '--redirect-uri', REDIRECT, '--scope', 'openid profile email offline_access');
    expect(c.code, c.stderr).to.equal(0);
    web = c.json;
    config = await oidc.discovery(new URL(srv.url), web.client_id, web.client_secret, oidc.ClientSecretBasic(web.client_secret), { execute: [oidc.allowInsecureRequests] });
  });

  after(async () => {
    expect(srv.errors(), JSON.stringify(srv.errors())).to.deep.equal([]);
    await srv.close();
  });

  it('publishes acr_values_supported and the amr/acr claims in discovery', async () => {
    const d = (await (await fetch(`${srv.url}/.well-known/openid-configuration`)).json()) as Record<string, string[]>;
    expect(d.acr_values_supported).to.deep.equal([LOA1, LOA2]);
    expect(d.claims_supported).to.include.members(['acr', 'amr']);
  });

  it('registers the account page as a first-party public client, following ISSUER', async () => {
    const list = await srv.cli('clients', 'list');
    const client = (list.json as any[]).find((c) => c.client_id === 'latch-account' || c.id === 'latch-account');
    expect(client, JSON.stringify(list.json)).to.not.equal(undefined);
    const record = (await srv.running.services.clients.findById('latch-account'))!;
    expect(record).to.include({ isPublic: true, firstParty: true, tokenEndpointAuthMethod: 'none' });
    expect(record.redirectUris).to.deep.equal([`${srv.url}/account/callback`]);
    expect(record.postLogoutRedirectUris).to.deep.equal([`${srv.url}/account`]);
    expect(record.grantTypes).to.deep.equal(['authorization_code']);
    expect(record.scopes).to.deep.equal(['openid', 'profile', 'email']);
    // A start with another ISSUER re-points it; this one puts it back.
    await ensureAccountClient(srv.running.services.clients, 'https://auth.example.test');
    expect((await srv.running.services.clients.findById('latch-account'))!.redirectUris).to.deep.equal(['https://auth.example.test/account/callback']);
    await ensureAccountClient(srv.running.services.clients, srv.url);
    expect((await srv.running.services.clients.findById('latch-account'))!.redirectUris).to.deep.equal([`${srv.url}/account/callback`]);
  });

  it('signs in with a password only: amr ["pwd"], acr urn:latch:loa:1', async () => {
    const { claims, pages } = await signIn(new Agent(), { login: users.carol! });
    expect(pages).to.deep.equal(['login', 'consent']);
    expect(claims.amr).to.deep.equal(['pwd']);
    expect(claims.acr).to.equal(LOA1);
  });

  describe('enrolment and sign-in with TOTP (alice)', () => {
    let secret: string;
    let codes: string[];
    let usedCode: string;

    it('enrols from the account page: base32 secret beside a server-rendered QR code, confirmed with a code', async () => {
      const agent = new Agent();
      await openAccount(agent, users.alice!);
      const page = await agent.follow(`${srv.url}/account/mfa`);
      expect(page.body).to.not.match(/<script/i);
      for (const f of parseForms(page.body, page.url)) expect(f.fields._csrf, f.action).to.be.a('string').and.not.equal('');
      secret = secretOf(page.body)!;
      // A reload shows the same pending secret.
      expect(secretOf((await agent.follow(`${srv.url}/account/mfa`)).body)).to.equal(secret);
      // A wrong code does not turn it on.
      const wrong = await agent.submit(page, formIndex(page, /\/enable$/), { code: totpCode(secret, Date.now() - 5 * PERIOD_MS) });
      expect(wrong.status).to.equal(400);
      expect(wrong.body).to.contain('not valid');
      expect((await srv.running.services.mfa.status(users.alice!.id!)).enabled).to.equal(false);
      // A missing CSRF token is refused.
      const { _csrf: _unused, ...fields } = parseForms(page.body, page.url)[formIndex(page, /\/enable$/)]!.fields;
      const forged = await agent.request(`${srv.url}/account/mfa/enable`, { form: { ...fields, code: totpCode(secret) } });
      expect(forged.status).to.equal(403);

      await awayFromStepBoundary();
      const done = await agent.submit(page, formIndex(page, /\/enable$/), { code: totpCode(secret) });
      expect(done.status).to.equal(200);
      codes = recoveryCodesOf(done.body)!;
      expect(codes).to.have.length(10);
      expect(new Set(codes).size).to.equal(10);
      for (const c of codes) expect(c).to.match(/^[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}$/);
      usedCode = totpCode(secret);

      // At rest: the secret encrypted, the codes as HMACs.
      const row = await srv.running.db('account_mfa').where({ account_id: users.alice!.id }).first();
      expect(row.totp_secret).to.not.contain(secret);
      expect(row.enabled_at).to.be.a('string');
      const hashes = (await srv.running.db('recovery_codes').where({ account_id: users.alice!.id }).select('code_hash')).map((r: { code_hash: string }) => r.code_hash);
      expect(hashes).to.have.length(10);
      for (const c of codes) expect(hashes.join(' ')).to.not.contain(c.replace(/-/g, ''));

      const account = await agent.follow(`${srv.url}/account`);
      expect(account.body).to.match(/id="mfa-status">On</);
      const types = (await srv.running.services.audit.list({ subjectId: users.alice!.id })).map((e) => e.type);
      expect(types).to.include.members(['mfa.enable', 'mfa.recovery_codes']);
    });

    it('asks for a code after the right password and puts amr/acr of two factors in the ID token', async () => {
      await awayFromStepBoundary();
      const agent = new Agent();
      const req = await authorizationUrl();
      const first = await drive(agent, req.url, { login: users.alice! });
      expect(first.pages).to.deep.equal(['login']);
      expect(isCodeStep(first.last), first.last.body.slice(0, 400)).to.equal(true);
      expect(new URL(first.last.url).pathname).to.match(/^\/interaction\/[^/]+\/mfa$/);
      // The code that confirmed the enrolment is not accepted a second time (its step is used).
      const reused = await agent.submit(first.last, formIndex(first.last, /\/mfa$/), { code: usedCode }, REDIRECT);
      expect(reused.status).to.equal(401);
      expect(reused.body).to.contain('not valid');
      // The next step's code (+1 step of clock skew) is.
      usedCode = totpCode(secret, Date.now() + PERIOD_MS);
      const accepted = await agent.submit(reused, formIndex(reused, /\/mfa$/), { code: usedCode }, REDIRECT);
      const d = await drive(agent, accepted, {});
      expect(d.callback, d.last.body.slice(0, 400)).to.not.equal(undefined);
      const tokens = await oidc.authorizationCodeGrant(config, d.callback!, { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce });
      const claims = tokens.claims()!;
      expect(claims.sub).to.equal(users.alice!.id);
      expect(claims.amr).to.deep.equal(['pwd', 'otp', 'mfa']);
      expect(claims.acr).to.equal(LOA2);

      const success = (await srv.running.services.audit.list({ subjectId: users.alice!.id, type: 'login.success' }))[0]!;
      expect(success.details).to.deep.include({ amr: ['pwd', 'otp', 'mfa'], acr: LOA2, method: 'totp' });
    });

    it('refuses a code that was already accepted', async () => {
      const agent = new Agent();
      const d = await drive(agent, (await authorizationUrl()).url, { login: users.alice!, code: () => usedCode });
      expect(d.callback).to.equal(undefined);
      expect(d.last.status).to.equal(401);
      expect(d.last.body).to.contain('That code is not valid');
      expect(isCodeStep(d.last), 'the code form again').to.equal(true);
    });

    it('accepts a recovery code once (any case, with or without dashes)', async () => {
      const code = codes[0]!;
      const { claims, pages } = await signIn(new Agent(), { login: users.alice!, code: () => ` ${code.replace(/-/g, '').toUpperCase()} ` });
      expect(pages).to.deep.equal(['login', 'code', 'consent']);
      expect(claims.amr).to.deep.equal(['pwd', 'otp', 'mfa']);
      expect(claims.acr).to.equal(LOA2);
      const again = await drive(new Agent(), (await authorizationUrl()).url, { login: users.alice!, code: () => code });
      expect(again.last.status).to.equal(401);
      expect((await srv.running.services.mfa.status(users.alice!.id!)).recoveryCodesLeft).to.equal(9);
    });

    it('regenerates recovery codes (old ones stop working) and turns MFA off with the password', async () => {
      const agent = new Agent();
      await openAccount(agent, users.alice!, () => codes[1]!);
      let page = await agent.follow(`${srv.url}/account/mfa`);
      expect(page.body).to.match(/id="mfa-status">On</);
      // Without re-authentication nothing happens.
      const bare = await agent.submit(page, formIndex(page, /\/recovery-codes$/), {});
      expect(bare.status).to.equal(400);
      const wrong = await agent.submit(page, formIndex(page, /\/recovery-codes$/), { password: 'not my password at all' });
      expect(wrong.status).to.equal(401);
      const fresh = await agent.submit(page, formIndex(page, /\/recovery-codes$/), { password: users.alice!.password });
      expect(fresh.status).to.equal(200);
      const newCodes = recoveryCodesOf(fresh.body)!;
      expect(newCodes).to.have.length(10);
      expect(await srv.running.services.mfa.verify(users.alice!.id!, codes[2]!)).to.equal(undefined);
      expect(await srv.running.services.mfa.verify(users.alice!.id!, newCodes[0]!)).to.equal('recovery_code');

      page = await agent.follow(`${srv.url}/account/mfa`);
      const after = await agent.submit(page, formIndex(page, /\/disable$/), { password: users.alice!.password });
      expect(after.status).to.equal(200);
      expect(after.url).to.equal(`${srv.url}/account/mfa?done=mfa-off`);
      expect(after.body).to.contain('Two-step verification is off.');
      expect(secretOf(after.body), 'offers a new enrolment').to.match(/^[A-Z2-7]+$/);
      expect(await srv.running.db('recovery_codes').where({ account_id: users.alice!.id }).count({ n: '*' }).first()).to.satisfy((r: { n: number | string }) => Number(r.n) === 0);
      const types = (await srv.running.services.audit.list({ subjectId: users.alice!.id })).map((e) => e.type);
      expect(types).to.include('mfa.disable');
      // Password alone again.
      const { claims, pages } = await signIn(new Agent(), { login: users.alice! });
      expect(pages).to.deep.equal(['login', 'consent']);
      expect(claims.acr).to.equal(LOA1);
    });
  });

  it('accepts codes one step early or late, refuses two steps off (dave)', async () => {
    await awayFromStepBoundary(10_000);
    const { secret } = await enrol(new Agent(), users.dave!);
    // As if enrolled long ago: no time step used yet, so the step before this one is fair game.
    await srv.running.db('account_mfa').where({ account_id: users.dave!.id }).update({ last_step: null });
    const attempt = async (offsetSteps: number) => drive(new Agent(), (await authorizationUrl()).url, { login: users.dave!, code: () => totpCode(secret, Date.now() + offsetSteps * PERIOD_MS) });
    for (const off of [-2, 2]) {
      const d = await attempt(off);
      expect(d.last.status, `offset ${off}`).to.equal(401);
      expect(d.pages).to.deep.equal(['login', 'code']);
    }
    for (const off of [-1, 1]) {
      const d = await attempt(off);
      expect(d.pages, `offset ${off}: ${d.last.status}`).to.deep.equal(['login', 'code', 'consent']);
      expect(d.callback?.searchParams.get('code')).to.be.a('string');
    }
  });

  it('lets exactly one of two concurrent uses of a code through (frank)', async () => {
    const base = await awayFromStepBoundary(10_000);
    const { secret } = await enrol(new Agent(), users.frank!, base - PERIOD_MS);
    const a = new Agent();
    const b = new Agent();
    const [pa, pb] = await Promise.all([drive(a, (await authorizationUrl()).url, { login: users.frank! }), drive(b, (await authorizationUrl()).url, { login: users.frank! })]);
    expect(isCodeStep(pa.last) && isCodeStep(pb.last)).to.equal(true);
    const code = totpCode(secret);
    const [ra, rb] = await Promise.all([a.submit(pa.last, formIndex(pa.last, /\/mfa$/), { code }, REDIRECT), b.submit(pb.last, formIndex(pb.last, /\/mfa$/), { code }, REDIRECT)]);
    expect([ra.status, rb.status].filter((s) => s === 401)).to.have.length(1);
  });

  it('counts wrong codes as failed logins: the 5th locks the account+IP pair even for the right password (erin)', async () => {
    const { secret } = await enrol(new Agent(), users.erin!);
    const agent = new Agent();
    const first = await drive(agent, (await authorizationUrl()).url, { login: users.erin! });
    let res = first.last;
    for (let i = 1; i <= 5; i++) {
      res = await agent.submit(res, formIndex(res, /\/mfa$/), { code: totpCode(secret, Date.now() - 10 * PERIOD_MS) }, REDIRECT);
      expect(res.status, `wrong code #${i}`).to.equal(401);
    }
    expect(res.body).to.contain('Too many wrong codes');
    const locked = await drive(new Agent(), (await authorizationUrl()).url, { login: users.erin!, code: () => totpCode(secret) });
    expect(locked.last.status).to.equal(429);
    expect(locked.last.headers.get('retry-after')).to.match(/^\d+$/);
    expect(locked.last.body).to.contain('Too many failed attempts');
    const types = (await srv.running.services.audit.list({ subjectId: users.erin!.id })).map((e) => e.type);
    expect(types).to.include('login.lockout');
    expect(types.filter((t) => t === 'login.failure')).to.have.length.at.least(5);
  });

  it('keeps the second step server-side: posting a code without the right password gets the login page', async () => {
    const agent = new Agent();
    const login = await agent.follow((await authorizationUrl()).url, {}, REDIRECT);
    expect(login.body).to.match(/name="password"/);
    const uid = /\/interaction\/([^/"]+)\/login"/.exec(login.body)![1];
    const csrf = parseForms(login.body, login.url)[0]!.fields._csrf!;
    // Even naming an enrolled account in made-up fields does not help.
    const res = await agent.request(`${srv.url}/interaction/${uid}/mfa`, { form: { _csrf: csrf, code: '123456', accountId: users.bob!.id!, email: users.bob!.email } });
    expect(res.status).to.equal(303);
    expect(res.headers.get('location')).to.equal(`/interaction/${uid}`);
    const cont = await agent.request(`${srv.url}/interaction/${uid}/mfa/continue`, { form: { _csrf: csrf } });
    expect(cont.status).to.equal(303);
    expect(cont.headers.get('location')).to.equal(`/interaction/${uid}`);
    // A wrong password does not open the step either.
    const wrong = await agent.submit(login, 0, { email: users.alice!.email, password: 'wrong password entirely' });
    expect(wrong.status).to.equal(401);
    expect((await agent.request(`${srv.url}/interaction/${uid}/mfa`)).status).to.equal(303);
  });

  describe('acr_values=urn:latch:loa:2 (bob)', () => {
    it('steps up a password-only session, enrols the user during sign-in, then continues', async () => {
      const agent = new Agent();
      const plain = await signIn(agent, { login: users.bob! });
      expect(plain.claims.acr).to.equal(LOA1);
      // Same browser, same session: the client now insists on two factors. Not silently loa:1.
      const base = await awayFromStepBoundary();
      const { claims, pages, recoveryCodes, secret } = await signIn(agent, { login: users.bob!, enrol: (s) => totpCode(s, base) }, { acr_values: LOA2 });
      expect(pages).to.deep.equal(['login', 'enrol', 'recovery-codes']);
      expect(secret).to.match(/^[A-Z2-7]{32}$/);
      expect(recoveryCodes).to.have.length(10);
      expect(claims.acr).to.equal(LOA2);
      expect(claims.amr).to.deep.equal(['pwd', 'otp', 'mfa']);
      // From now on bob gets the code step even without acr_values.
      const next = await signIn(new Agent(), { login: users.bob!, code: () => totpCode(secret!, Date.now() + PERIOD_MS) });
      expect(next.pages).to.deep.equal(['login', 'code', 'consent']);
      // The stepped-up session satisfies loa:2 silently; a password-only one cannot step up silently.
      const again = await agent.follow((await authorizationUrl({ prompt: 'none', acr_values: LOA2 })).url, {}, REDIRECT);
      expect(new URL(again.url).searchParams.get('code')).to.be.a('string');
      const carolAgent = new Agent();
      await signIn(carolAgent, { login: users.carol! });
      const silent = await carolAgent.follow((await authorizationUrl({ prompt: 'none', acr_values: LOA2 })).url, {}, REDIRECT);
      expect(new URL(silent.url).searchParams.get('error')).to.equal('login_required');
    });
  });

  describe('account page (carol)', () => {
    const agent = new Agent();

    it('signs in through Latch (code + PKCE) and shows the account', async () => {
      const first = await agent.request(`${srv.url}/account`);
      expect(first.status).to.equal(302);
      const to = new URL(first.headers.get('location')!);
      expect(`${to.origin}${to.pathname}`).to.equal(`${srv.url}/auth`);
      expect(to.searchParams.get('client_id')).to.equal('latch-account');
      expect(to.searchParams.get('code_challenge_method')).to.equal('S256');
      expect(to.searchParams.get('redirect_uri')).to.equal(`${srv.url}/account/callback`);
      const cookie = first.headers.getSetCookie().find((c) => c.startsWith('latch.account_login='))!;
      expect(cookie).to.match(/httponly/i).and.match(/samesite=lax/i).and.match(/path=\/account/i);
      const page = await openAccount(agent, users.carol!);
      expect(page.body).to.contain('id="email-status">Not verified');
      expect(page.body).to.not.match(/<script/i);
      for (const f of parseForms(page.body, page.url)) expect(f.fields._csrf, f.action).to.be.a('string').and.not.equal('');
      const session = [...agent.cookies].find(([k]) => k.endsWith('|latch.account'));
      expect(session, 'account session cookie').to.not.equal(undefined);
    });

    it('refuses a forged callback and a tampered session cookie', async () => {
      const forged = await new Agent().request(`${srv.url}/account/callback?code=abc&state=xyz`);
      expect(forged.status).to.equal(400);
      expect(forged.body).to.contain('Sign-in expired');
      const other = new Agent();
      for (const [k, v] of agent.cookies) other.cookies.set(k, k.endsWith('|latch.account') ? v.replace(/^./, (c) => (c === 'e' ? 'f' : 'e')) : v);
      const res = await other.request(`${srv.url}/account`);
      expect(res.status).to.equal(302);
      expect(res.headers.get('location')).to.contain('/auth?');
    });

    it('updates the display name', async () => {
      const page = await agent.follow(`${srv.url}/account`);
      const res = await agent.submit(page, formIndex(page, /\/account\/profile$/), { name: 'Carol Shaw' });
      expect(res.status).to.equal(200);
      expect(res.url).to.contain('done=profile');
      expect(res.body).to.contain('Your profile was saved.');
      expect(res.body).to.contain('value="Carol Shaw"');
      expect((await srv.running.services.accounts.findById(users.carol!.id!))!.displayName).to.equal('Carol Shaw');
      const { tokens, claims } = await signIn(new Agent(), { login: users.carol! });
      expect((await oidc.fetchUserInfo(config, tokens.access_token, claims.sub)).name).to.equal('Carol Shaw');
      const long = await agent.submit(page, formIndex(page, /\/account\/profile$/), { name: 'x'.repeat(300) });
      expect(long.status).to.equal(400);
    });

    it('lists sessions with their device and signs one out', async () => {
      const other = new FirefoxAgent();
      await signIn(other, { login: users.carol! });
      expect(await silentSignIn(other)).to.equal('code');
      let page = await agent.follow(`${srv.url}/account`);
      const sessions = parseForms(page.body, page.url).filter((f) => f.action.endsWith('/account/sessions/end'));
      expect(sessions.length).to.be.at.least(3);
      expect(page.body).to.contain('this browser');
      expect(page.body).to.contain('Web App');
      const firefox = /<li class="session">\s*<div>\s*<strong>Firefox on Linux<\/strong>[\s\S]*?name="session" value="([^"]+)"/.exec(page.body);
      expect(firefox, 'the Firefox session is listed with its device').to.not.equal(null);
      const index = parseForms(page.body, page.url).findIndex((f) => f.fields.session === firefox![1]);
      const res = await agent.submit(page, index, {});
      expect(res.body).to.contain('That session was signed out.');
      page = await agent.follow(`${srv.url}/account`);
      expect(page.body).to.not.contain('Firefox on Linux');
      expect(parseForms(page.body, page.url).filter((f) => f.action.endsWith('/account/sessions/end'))).to.have.length(sessions.length - 1);
      // That browser is signed out of Latch; this one is not.
      expect(await silentSignIn(other)).to.equal('login_required');
      expect((await agent.request(`${srv.url}/account`)).status).to.equal(200);
      const types = (await srv.running.services.audit.list({ subjectId: users.carol!.id })).map((e) => e.type);
      expect(types).to.include('session.end');
    });

    it('revokes a linked application: its refresh token then fails with invalid_grant', async () => {
      const { tokens } = await signIn(new Agent(), { login: users.carol! }, { prompt: 'consent' }, 'openid email offline_access');
      const rt = tokens.refresh_token!;
      expect(rt).to.be.a('string');
      let page = await agent.follow(`${srv.url}/account`);
      expect(page.body).to.match(/<strong>Web App<\/strong>/);
      expect(page.body).to.contain('<code title="stay connected (refresh tokens)">offline_access</code>');
      const res = await agent.submit(page, formIndex(page, /\/applications\/revoke$/), {});
      expect(res.body).to.contain('Access was revoked');
      expect(await refresh(rt)).to.equal('invalid_grant');
      page = await agent.follow(`${srv.url}/account`);
      expect(page.body).to.contain('id="no-applications"');
    });

    it('changes the password: asks the current one, applies the policy, ends the other sessions and refresh tokens', async () => {
      const other = new Agent();
      const { tokens } = await signIn(other, { login: users.carol! }, { prompt: 'consent' }, 'openid email offline_access');
      const rt = tokens.refresh_token!;
      const page = await agent.follow(`${srv.url}/account`);
      const form = formIndex(page, /\/account\/password$/);
      const wrong = await agent.submit(page, form, { current_password: 'not the password', new_password: 'a brand new lantern for carol' });
      expect(wrong.status).to.equal(401);
      expect(wrong.body).to.contain('That is not your current password.');
      const weak = await agent.submit(page, form, { current_password: users.carol!.password, new_password: 'password1' });
      expect(weak.status).to.equal(400);
      expect(weak.body).to.contain('class="field-error" id="new-password-error"');
      const ok = await agent.submit(page, form, { current_password: users.carol!.password, new_password: 'a brand new lantern for carol' });
      expect(ok.status).to.equal(200);
      expect(ok.body).to.contain('Your password was changed.');
      // The other browser is signed out, its refresh token revoked; this one stays.
      expect(await refresh(rt)).to.equal('invalid_grant');
      expect(await silentSignIn(other)).to.equal('login_required');
      const still = await agent.request(`${srv.url}/account`);
      expect(still.status).to.equal(200);
      const sessions = parseForms(still.body, still.url).filter((f) => f.action.endsWith('/account/sessions/end'));
      expect(sessions).to.have.length(1);
      // The old password no longer works; the new one does.
      const old = await drive(new Agent(), (await authorizationUrl()).url, { login: users.carol! });
      expect(old.last.status).to.equal(401);
      users.carol!.password = 'a brand new lantern for carol';
      await signIn(new Agent(), { login: users.carol! });
      const types = (await srv.running.services.audit.list({ subjectId: users.carol!.id })).map((e) => e.type);
      expect(types).to.include('password.change');
    });

    it('answers odd form input with a page, never a server error', async () => {
      const page = await agent.follow(`${srv.url}/account`);
      const csrf = parseForms(page.body, page.url)[0]!.fields._csrf!;
      const odd = ['\u0000', 'x'.repeat(70_000 / 2), '%00', '<script>alert(1)</script>', '../../etc/passwd'];
      for (const value of odd) {
        for (const [path, field] of [['/account/profile', 'name'], ['/account/sessions/end', 'session'], ['/account/applications/revoke', 'client_id'], ['/account/mfa/enable', 'code'], ['/account/mfa/disable', 'code'], ['/account/password', 'current_password']] as const) {
          const res = await agent.request(`${srv.url}${path}`, { form: { _csrf: csrf, [field]: value, new_password: 'a perfectly fine new passphrase' } });
          expect(res.status, `${path} ${field}=${JSON.stringify(value.slice(0, 20))}`).to.be.oneOf([200, 303, 400, 401, 413, 429]);
        }
      }
      const code = await agent.request(`${srv.url}/account/callback?code=%00&state=%00`);
      expect(code.status).to.equal(400);
      // (after() asserts that nothing was logged as a server error.)
      expect(srv.errors()).to.deep.equal([]);
    });

    it('signs out of the account page and of Latch (RP-initiated logout)', async () => {
      const page = await agent.follow(`${srv.url}/account`);
      const res = await agent.submit(page, formIndex(page, /\/account\/signout$/), {});
      expect(res.status).to.equal(200);
      expect(res.url).to.contain('/session/end');
      // The logout confirmation of Latch itself: confirm it.
      const confirmed = await agent.submit(res, 0, { logout: 'yes' });
      expect(confirmed.status, confirmed.body.slice(0, 300)).to.equal(200);
      // Back on /account, which asks to sign in again.
      expect(confirmed.body).to.match(/name="password"/);
      expect(await silentSignIn(agent)).to.equal('login_required');
    });
  });
});
