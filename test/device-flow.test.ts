import { expect } from 'chai';
import { decodeJwt } from 'jose';
import * as oidc from 'openid-client';
import { Secret, TOTP } from 'otpauth';

import { Agent, parseForms, type PageResponse } from './helpers/agent.js';
import { freshDatabase, startTestServer, type TestDatabase, type TestServer } from './helpers/server.js';

const ADA = { email: 'ada@example.test', password: 'correct horse battery staple' };
const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
const USER_CODE = /^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/;

type DeviceAuthorization = { device_code: string; user_code: string; verification_uri: string; verification_uri_complete: string; expires_in: number; interval: number };

const formIndex = (res: PageResponse, action: RegExp) => parseForms(res.body, res.url).findIndex((f) => action.test(new URL(f.action).pathname));

/** The device's side over raw HTTP: the device authorization request and one poll of the token endpoint. */
async function deviceAuthorization(base: string, clientId: string, scope = 'openid profile offline_access'): Promise<DeviceAuthorization> {
  const res = await fetch(`${base}/device/auth`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ client_id: clientId, scope }) });
  expect(res.status).to.equal(200);
  return (await res.json()) as DeviceAuthorization;
}

async function poll(base: string, clientId: string, deviceCode: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${base}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: DEVICE_GRANT, device_code: deviceCode, client_id: clientId }) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/**
 * The user's side through the real pages: the verification page (a code typed in, or the
 * complete URI), the confirm page, the sign-in when not signed in yet, the consent page when shown.
 * Returns the last page (success, denied or an error).
 */
async function userApproves(agent: Agent, base: string, code: { typed?: string; complete?: string }, opts: { deny?: boolean; login?: typeof ADA } = {}): Promise<PageResponse> {
  let page = await agent.follow(code.complete ?? `${base}/device`);
  expect(page.status, page.body.slice(0, 300)).to.equal(200);
  page = await agent.submit(page, formIndex(page, /^\/device$/), code.typed === undefined ? {} : { user_code: code.typed });
  if (!/id="device-user-code"/.test(page.body)) return page;
  // The confirm page: Approve is the first form, Deny the second.
  page = await agent.submit(page, opts.deny ? 1 : 0);
  for (let i = 0; i < 4; i++) {
    if (/name="password"/.test(page.body)) page = await agent.submit(page, formIndex(page, /\/login$/), opts.login ?? ADA);
    else if (/\/confirm"/.test(page.body)) page = await agent.submit(page, formIndex(page, /\/confirm$/));
    else break;
  }
  return page;
}

const titleOf = (page: PageResponse) => /<h1 id="page-title">([^<]*)<\/h1>/.exec(page.body)?.[1]?.trim();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('device authorization grant (RFC 8628)', function () {
  this.timeout(120_000);
  let srv: TestServer;
  let tv: { client_id: string };
  let base: string;

  const cli = async (s: TestServer, ...args: string[]) => {
    const r = await s.cli(...args);
    expect(r.code, `${args.join(' ')}: ${r.stderr}`).to.equal(0);
    return r.json;
  };

  before(async () => {
    srv = await startTestServer();
    base = srv.url;
    await cli(srv, 'users', 'create', '--email', ADA.email, '--password', ADA.password, '--email-verified');
    tv = await cli(srv, 'clients', 'create', '--name', 'Living Room TV', '--grant', 'device_code', '--grant', 'refresh_token');
  });
  after(async () => {
    expect(srv.errors()).to.deep.equal([]);
    await srv?.close();
  });

  it('registers a public device client unless --secret, and refuses a secret for --public', async () => {
    expect(tv).to.include({ token_endpoint_auth_method: 'none', public: true });
    expect(tv).to.not.have.property('client_secret');
    expect((tv as unknown as { grant_types: string[] }).grant_types).to.deep.equal(['device_code', 'refresh_token']);
    const confidential = await cli(srv, 'clients', 'create', '--name', 'Kiosk', '--grant', 'device_code', '--secret');
    expect(confidential).to.include({ token_endpoint_auth_method: 'client_secret_basic', public: false });
    expect(confidential.client_secret).to.be.a('string');
    const both = await srv.cli('clients', 'create', '--name', 'Nope', '--grant', 'device_code', '--secret', '--public');
    expect(both.code).to.equal(1);
    expect(both.stderr).to.match(/--secret/);
  });

  it('is in discovery', async () => {
    const d = (await (await fetch(`${base}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
    expect(d.device_authorization_endpoint).to.equal(`${base}/device/auth`);
    expect(d.grant_types_supported).to.include(DEVICE_GRANT);
  });

  it('answers the device authorization request with every RFC 8628 §3.2 field', async () => {
    const da = await deviceAuthorization(base, tv.client_id);
    expect(da.user_code).to.match(USER_CODE);
    expect(da.verification_uri).to.equal(`${base}/device`);
    expect(da.verification_uri_complete).to.equal(`${base}/device?user_code=${da.user_code}`);
    expect(da.expires_in).to.equal(600);
    expect(da.interval).to.equal(5);
    expect(da.device_code).to.be.a('string').with.length.above(20);
  });

  it('signs a device in with openid-client: tokens with a refresh token for offline_access, then a refresh', async () => {
    const config = await oidc.discovery(new URL(base), tv.client_id, undefined, oidc.None(), { execute: [oidc.allowInsecureRequests] });
    const da = await oidc.initiateDeviceAuthorization(config, { scope: 'openid profile offline_access' });
    const agent = new Agent();
    const polling = oidc.pollDeviceAuthorizationGrant(config, da);
    // The code typed in lower case without its dash (RFC 8628 §6.1: case- and dash-insensitive).
    const done = await userApproves(agent, base, { typed: da.user_code.replace('-', '').toLowerCase() });
    expect(titleOf(done)).to.equal('Device connected');
    expect(done.body).to.contain('Living Room TV');
    const tokens = await polling;
    expect(tokens.refresh_token).to.be.a('string');
    expect(tokens.scope?.split(' ')).to.include('offline_access');
    const claims = tokens.claims()!;
    expect(claims.aud).to.equal(tv.client_id);
    expect(claims.sub).to.be.a('string');
    const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token!);
    expect(refreshed.access_token).to.be.a('string').and.not.equal(tokens.access_token);

    // The grant is on the account page with the device's client name, and can be revoked there.
    let account = await agent.follow(`${base}/account`);
    for (let i = 0; i < 3 && /name="password"/.test(account.body); i++) account = await agent.submit(account, formIndex(account, /\/login$/), ADA);
    expect(account.url).to.equal(`${base}/account`);
    const item = /<li class="application">([\s\S]*?)<\/li>/.exec(account.body.split('id="applications"')[1] ?? '')?.[1] ?? '';
    expect(item).to.contain('Living Room TV');
    const forms = parseForms(account.body, account.url);
    const revoke = forms.findIndex((f) => f.action.endsWith('/account/applications/revoke') && f.fields.client_id === tv.client_id);
    expect(revoke).to.be.at.least(0);
    await agent.submit(account, revoke);
    let refusal: unknown;
    await oidc.refreshTokenGrant(config, refreshed.refresh_token!).catch((err: unknown) => (refusal = err));
    expect((refusal as { error?: string }).error).to.equal('invalid_grant');
  });

  it('opens the complete verification URI with the code filled in, and still asks to confirm', async () => {
    const da = await deviceAuthorization(base, tv.client_id, 'openid');
    const agent = new Agent();
    const first = await agent.follow(da.verification_uri_complete);
    expect(first.status).to.equal(200);
    expect(first.body).to.contain(`value="${da.user_code}"`);
    const confirm = await agent.submit(first, formIndex(first, /^\/device$/));
    expect(titleOf(confirm)).to.equal('Connect Living Room TV');
    expect(confirm.body).to.contain(`<code id="device-user-code">${da.user_code}</code>`);
    expect(confirm.body).to.match(/<code>openid<\/code>/);
    // Nothing approved yet: the device is still pending.
    expect((await poll(base, tv.client_id, da.device_code)).body.error).to.equal('authorization_pending');
  });

  it('polls: authorization_pending, slow_down when sooner than the interval (+5 s each time), then the tokens', async () => {
    const da = await deviceAuthorization(base, tv.client_id, 'openid');
    const first = await poll(base, tv.client_id, da.device_code);
    expect(first).to.deep.include({ status: 400 });
    expect(first.body.error).to.equal('authorization_pending');
    const tooSoon = await poll(base, tv.client_id, da.device_code);
    expect(tooSoon.body.error).to.equal('slow_down');
    // RFC 8628 §3.5: the interval is now 10 s: a poll 6 s later is still too soon.
    await sleep(6_000);
    expect((await poll(base, tv.client_id, da.device_code)).body.error).to.equal('slow_down');
    const page = await userApproves(new Agent(), base, { complete: da.verification_uri_complete });
    expect(titleOf(page)).to.equal('Device connected');
    await sleep(15_500);
    const granted = await poll(base, tv.client_id, da.device_code);
    expect(granted.status, JSON.stringify(granted.body)).to.equal(200);
    expect(granted.body.access_token).to.be.a('string');
    // No offline_access asked: no refresh token.
    expect(granted.body).to.not.have.property('refresh_token');
  });

  it('a user code and a device code work once', async () => {
    const da = await deviceAuthorization(base, tv.client_id, 'openid');
    expect(titleOf(await userApproves(new Agent(), base, { typed: da.user_code }))).to.equal('Device connected');
    const again = await userApproves(new Agent(), base, { typed: da.user_code });
    expect(titleOf(again)).to.equal('Connect a device');
    expect(again.body).to.contain('already been used');
    expect((await poll(base, tv.client_id, da.device_code)).status).to.equal(200);
    await sleep(5_500);
    // RFC 6749 §5.2: the device code was redeemed; polling it again is invalid_grant (and, as for
    // a reused authorization code, the grant it yielded is revoked).
    expect((await poll(base, tv.client_id, da.device_code)).body.error).to.equal('invalid_grant');
  });

  it('denied on the confirm page: the device gets access_denied', async () => {
    const da = await deviceAuthorization(base, tv.client_id, 'openid');
    const page = await userApproves(new Agent(), base, { typed: da.user_code }, { deny: true });
    expect(titleOf(page)).to.equal('Device not connected');
    const r = await poll(base, tv.client_id, da.device_code);
    expect(r.status).to.equal(400);
    expect(r.body.error).to.equal('access_denied');
  });

  it('an unknown or stale resume link is a 400 page that says so, never a 500, signed in or not', async () => {
    const stale = `${base}/device/${'x'.repeat(21)}`;
    const anonymous = await new Agent().request(stale);
    expect(anonymous.status, anonymous.body.slice(0, 300)).to.equal(400);
    expect(titleOf(anonymous)).to.equal('Device sign-in expired');
    expect(anonymous.headers.getSetCookie()).to.deep.equal([]);
    // With a session: the browser that has just connected a device.
    const da = await deviceAuthorization(base, tv.client_id, 'openid');
    const agent = new Agent();
    expect(titleOf(await userApproves(agent, base, { typed: da.user_code }))).to.equal('Device connected');
    const signedIn = await agent.request(stale);
    expect(signedIn.status, signedIn.body.slice(0, 300)).to.equal(400);
    expect(titleOf(signedIn)).to.equal('Device sign-in expired');
  });

  it('refuses a form without Latch\'s CSRF token (403)', async () => {
    const agent = new Agent();
    const page = await agent.follow(`${base}/device`);
    const form = parseForms(page.body, page.url)[0]!;
    const res = await agent.request(form.action, { form: { ...form.fields, _csrf: 'forged', user_code: 'BCDF-GHJK' } });
    expect(res.status).to.equal(403);
    expect(res.body).to.contain('invalid_csrf_token');
  });

  it('more than 5 wrong codes from one address in 15 minutes: a 429 page, even for a right code', async () => {
    // A server of its own (in-process counters): the other tests' wrong codes do not count here.
    const other = await startTestServer({ database: (srv as TestServer & { database: TestDatabase }).database, keepDatabase: true, env: { ISSUER: base } });
    const target = { url: `http://127.0.0.1:${other.port}` };
    try {
      const agent = new Agent();
      for (let i = 0; i < 5; i++) {
        const page = await agent.follow(`${target.url}/device`);
        const res = await agent.submit(page, 0, { user_code: `BBBB-BBB${'BCDFG'[i]}` });
        expect(res.status).to.equal(200);
        expect(res.body).to.contain('not valid');
      }
      const da = await deviceAuthorization(target.url, tv.client_id, 'openid');
      const page = await agent.follow(`${target.url}/device`);
      const refused = await agent.submit(page, 0, { user_code: da.user_code });
      expect(refused.status).to.equal(429);
      expect(refused.headers.get('retry-after')).to.match(/^\d+$/);
      expect(refused.body).to.contain('Too many');
    } finally {
      await other.close();
    }
  });
});

describe('device codes: expiry', function () {
  this.timeout(60_000);
  let srv: TestServer;
  let tv: { client_id: string };

  before(async () => {
    srv = await startTestServer({ env: { DEVICE_CODE_TTL: '5' } });
    tv = (await srv.cli('clients', 'create', '--name', 'Old TV', '--grant', 'device_code')).json;
  });
  after(async () => srv?.close());

  it('answers expired_token once DEVICE_CODE_TTL has passed, and the page says the code expired', async () => {
    const da = await deviceAuthorization(srv.url, tv.client_id, 'openid');
    expect(da.expires_in).to.equal(5);
    await sleep(6_000);
    const r = await poll(srv.url, tv.client_id, da.device_code);
    expect(r.status).to.equal(400);
    expect(r.body.error).to.equal('expired_token');
    const page = await userApproves(new Agent(), srv.url, { typed: da.user_code });
    expect(page.body).to.contain('expired');
  });
});

describe('device codes shared by two instances on one database', function () {
  this.timeout(60_000);
  let db: TestDatabase;
  let a: TestServer;
  let b: TestServer;
  let tv: { client_id: string };

  before(async () => {
    db = await freshDatabase();
    a = await startTestServer({ database: db, env: { RATE_LIMIT_STORE: 'database' } });
    b = await startTestServer({ database: db, env: { ISSUER: a.url, RATE_LIMIT_STORE: 'database' } });
    expect((await a.cli('users', 'create', '--email', ADA.email, '--password', ADA.password, '--email-verified')).code).to.equal(0);
    tv = (await a.cli('clients', 'create', '--name', 'Shared TV', '--grant', 'device_code')).json;
  });
  after(async () => {
    expect([...a.errors(), ...b.errors()]).to.deep.equal([]);
    await a.close();
    await b.close();
    await db.drop();
  });

  it('a code issued by one instance is approved and redeemed through the other; slow_down holds across them', async () => {
    const bBase = `http://127.0.0.1:${b.port}`;
    const da = await deviceAuthorization(a.url, tv.client_id, 'openid profile');
    expect((await poll(bBase, tv.client_id, da.device_code)).body.error).to.equal('authorization_pending');
    // The previous poll was on the other instance: still too soon.
    expect((await poll(a.url, tv.client_id, da.device_code)).body.error).to.equal('slow_down');
    const agent = new Agent();
    const done = await userApproves(agent, bBase, { typed: da.user_code });
    expect(titleOf(done)).to.equal('Device connected');
    await sleep(10_500);
    const granted = await poll(a.url, tv.client_id, da.device_code);
    expect(granted.status, JSON.stringify(granted.body)).to.equal(200);
    expect(decodeJwt(granted.body.id_token as string).aud).to.equal(tv.client_id);
  });
});

describe('device sign-in with two-step verification', function () {
  this.timeout(60_000);
  let srv: TestServer;
  let tv: { client_id: string };
  const GRACE = { email: 'grace@example.test', password: 'a cobol compiler in 1959' };
  const code = (secret: string, timestamp: number) => new TOTP({ secret: Secret.fromBase32(secret), algorithm: 'SHA1', digits: 6, period: 30 }).generate({ timestamp });

  before(async () => {
    srv = await startTestServer();
    expect((await srv.cli('users', 'create', '--email', GRACE.email, '--password', GRACE.password, '--email-verified')).code).to.equal(0);
    tv = (await srv.cli('clients', 'create', '--name', 'Secure TV', '--grant', 'device_code')).json;
  });
  after(async () => {
    expect(srv.errors()).to.deep.equal([]);
    await srv?.close();
  });

  it('the device journey reuses the sign-in: password, then the TOTP step', async () => {
    // Enrol on the account page with the previous 30-second step's code; sign in with the current one.
    const now = Date.now();
    const agent = new Agent();
    const account = await agent.follow(`${srv.url}/account`);
    expect((await agent.submit(account, formIndex(account, /\/login$/), GRACE)).url).to.equal(`${srv.url}/account`);
    const mfa = await agent.follow(`${srv.url}/account/mfa`);
    const secret = /id="totp-secret">([A-Z2-7]+)</.exec(mfa.body)?.[1];
    expect(secret).to.be.a('string');
    const enrolled = await agent.submit(mfa, formIndex(mfa, /\/account\/mfa\/enable$/), { code: code(secret!, now - 30_000) });
    expect(enrolled.status).to.equal(200);

    const da = await deviceAuthorization(srv.url, tv.client_id, 'openid');
    const device = new Agent();
    let page = await device.follow(`${srv.url}/device`);
    page = await device.submit(page, 0, { user_code: da.user_code });
    page = await device.submit(page, 0);
    page = await device.submit(page, formIndex(page, /\/login$/), GRACE);
    expect(page.body, 'the second step is asked').to.match(/action="\/interaction\/[^"]+\/mfa"/);
    page = await device.submit(page, formIndex(page, /\/mfa$/), { code: code(secret!, Date.now()) });
    if (/\/confirm"/.test(page.body)) page = await device.submit(page, formIndex(page, /\/confirm$/));
    expect(titleOf(page)).to.equal('Device connected');
    const granted = await poll(srv.url, tv.client_id, da.device_code);
    expect(granted.status, JSON.stringify(granted.body)).to.equal(200);
    expect(decodeJwt(granted.body.id_token as string).acr).to.equal('urn:latch:loa:2');
  });
});
