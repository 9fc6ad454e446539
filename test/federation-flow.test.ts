import { expect } from 'chai';
import { Secret, TOTP } from 'otpauth';
import * as oidc from 'openid-client';

import { Agent, type PageResponse } from './helpers/agent.js';
import { DEFAULT_GITHUB_USERS, startGithubStub, type GithubStub, type GithubUser } from './helpers/github-stub.js';
import { freePort, startTestServer, type TestServer } from './helpers/server.js';
import { startUpstreamOidc, type UpstreamAccount, type UpstreamOidc } from './helpers/upstream-oidc.js';

const REDIRECT = 'http://127.0.0.1:9/callback';
const PASSWORD = 'correct horse battery staple';
const totpCode = (secret: string, timestamp = Date.now()) => new TOTP({ secret: Secret.fromBase32(secret), algorithm: 'SHA1', digits: 6, period: 30 }).generate({ timestamp });

const ACCOUNTS: UpstreamAccount[] = [
  { id: 'u-new', email: 'newbie@upstream.test', email_verified: true, name: 'New Person' },
  { id: 'u-new-unverified', email: 'newbie-unverified@upstream.test', email_verified: false },
  { id: 'u-auto', email: 'Auto@Example.test', email_verified: true },
  { id: 'u-ask', email: 'ask@example.test', email_verified: true },
  { id: 'u-ask-totp', email: 'ask-totp@example.test', email_verified: true },
  { id: 'u-never', email: 'never@example.test', email_verified: true },
  { id: 'u-unverified', email: 'taken@example.test', email_verified: false },
  { id: 'u-moves', email: 'moves@upstream.test', email_verified: true },
  { id: 'u-totp', email: 'totp@upstream.test', email_verified: true },
  { id: 'u-claims', email: 'claims@upstream.test', email_verified: true },
  { id: 'u-invited', email: 'invited@upstream.test', email_verified: true },
  { id: 'u-errors', email: 'errors@upstream.test', email_verified: true },
  { id: 'u-page', email: 'page@upstream.test', email_verified: true },
  { id: 'u-enrol', email: 'enrol@upstream.test', email_verified: true },
];

const GITHUB_USERS: GithubUser[] = [...DEFAULT_GITHUB_USERS, { id: 1004, login: 'linker', name: 'Linker', emails: [{ email: 'linker@upstream.test', primary: true, verified: true, visibility: null }] }];

type Client = { client_id: string; client_secret: string };

/** An authorization request of a relying party (openid-client) and its code exchange. */
async function relyingParty(srv: TestServer, client: Client, params: Record<string, string> = {}) {
  const config = await oidc.discovery(new URL(srv.url), client.client_id, client.client_secret, oidc.ClientSecretBasic(client.client_secret), { execute: [oidc.allowInsecureRequests] });
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const url = oidc.buildAuthorizationUrl(config, { redirect_uri: REDIRECT, scope: 'openid email', state, code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', ...params });
  return {
    url: url.toString(),
    redeem: async (callback: string) => {
      const tokens = await oidc.authorizationCodeGrant(config, new URL(callback), { pkceCodeVerifier: verifier, expectedState: state });
      return tokens.claims()!;
    },
  };
}

const hrefOf = (html: string, idp: string) => {
  const m = new RegExp(`<a[^>]*href="([^"]+)"[^>]*data-idp="${idp}"`).exec(html);
  return m?.[1]?.replace(/&amp;/g, '&');
};

/**
 * Sign-in through an upstream provider from Latch's login page, over real HTTP: the login page's
 * button, the upstream's pages (its own browser cookies), the callback, and what follows.
 */
describe('federation: sign-in through upstream providers', function () {
  this.timeout(120_000);

  let srv: TestServer;
  let invite: TestServer;
  let up: UpstreamOidc;
  let gh: GithubStub;
  let web: Client;
  let inviteWeb: Client;
  let downPort: number;

  const cli = async (server: TestServer, ...args: string[]) => {
    const r = await server.cli(...args);
    expect(r.code, `${args.join(' ')}: ${r.stderr}`).to.equal(0);
    return r.json;
  };
  const events = async (server: TestServer, type: string) => (await server.running.db('audit_events').where({ type }).orderBy('id')) as { subject_id: string | null; details: string }[];
  const detailsOf = (e: { details: string }) => (typeof e.details === 'string' ? JSON.parse(e.details) : e.details) as Record<string, unknown>;

  /** The login page of a fresh authorization request, the relying party, and the interaction uid. */
  async function loginPage(server = srv, client = web, params: Record<string, string> = {}) {
    const agent = new Agent();
    const rp = await relyingParty(server, client, params);
    const page = await agent.follow(rp.url, {}, REDIRECT);
    expect(page.status, page.body.slice(0, 300)).to.equal(200);
    const uid = new URL(page.url).pathname.split('/')[2]!;
    return { agent, rp, page, uid };
  }

  /** Clicks the button of `idp`, signs in upstream as `login`; returns Latch's callback URL. */
  async function upstreamLeg(agent: Agent, page: PageResponse, idp: string, login: string, options: { cancel?: boolean; server?: TestServer } = {}) {
    const href = hrefOf(page.body, idp);
    expect(href, `button for ${idp}`).to.be.a('string');
    const start = await agent.request(new URL(href!, (options.server ?? srv).url).toString());
    expect(start.status, start.body.slice(0, 300)).to.equal(303);
    const location = start.headers.get('location')!;
    const stand = idp === 'github' ? gh : up;
    return stand.signIn(location, login, { cancel: options.cancel });
  }

  /** The whole round: login page → upstream → Latch → the relying party's callback (or a Latch page). */
  async function federatedSignIn(idp: string, login: string, options: { server?: TestServer; client?: Client; params?: Record<string, string> } = {}) {
    const { agent, rp, page, uid } = await loginPage(options.server, options.client, options.params);
    const callback = await upstreamLeg(agent, page, idp, login, { server: options.server });
    const res = await agent.follow(callback.toString(), {}, REDIRECT);
    return { agent, rp, res, uid, callback };
  }

  before(async () => {
    srv = await startTestServer({ env: { REGISTRATION: 'open' } });
    invite = await startTestServer({ env: { REGISTRATION: 'invite' } });
    downPort = await freePort();
    const names = ['corp', 'corp-auto', 'corp-never', 'corp-domain', 'corp-off', 'github'];
    up = await startUpstreamOidc({ redirectUris: [...names.map((n) => `${srv.url}/federation/callback/${n}`), `${invite.url}/federation/callback/corp`], accounts: ACCOUNTS.map((a) => ({ ...a })) });
    gh = await startGithubStub({ redirectUris: [`${srv.url}/federation/callback/github`], users: GITHUB_USERS });

    const oidcIdp = (server: TestServer, name: string, ...extra: string[]) =>
      cli(server, 'idps', 'create', '--name', name, '--kind', 'oidc', '--issuer', up.issuer, '--client-id', up.clientId, '--client-secret', up.clientSecret, '--display-name', `Corp ${name}`, ...extra);
    await oidcIdp(srv, 'corp', '--link', 'ask');
    await oidcIdp(srv, 'corp-auto', '--link', 'auto');
    await oidcIdp(srv, 'corp-never', '--link', 'never');
    await oidcIdp(srv, 'corp-domain', '--allowed-domain', 'example.org');
    await oidcIdp(srv, 'corp-off', '--disabled');
    await cli(srv, 'idps', 'create', '--name', 'corp-down', '--kind', 'oidc', '--issuer', `http://127.0.0.1:${downPort}`, '--client-id', 'x', '--client-secret', 'never-reached-secret');
    await cli(srv, 'idps', 'create', '--name', 'github', '--kind', 'github', '--client-id', gh.clientId, '--client-secret', gh.clientSecret, '--display-name', 'GitHub', '--api-url', gh.apiUrl, '--web-url', gh.webUrl, '--link', 'auto');
    await oidcIdp(invite, 'corp');

    for (const email of ['auto@example.test', 'ask@example.test', 'ask-totp@example.test', 'never@example.test', 'taken@example.test', 'password-user@example.test']) {
      await cli(srv, 'users', 'create', '--email', email, '--password', PASSWORD);
    }
    web = await cli(srv, 'clients', 'create', '--name', 'Shop', '--first-party', '--redirect-uri', REDIRECT, '--scope', 'openid email');
    inviteWeb = await cli(invite, 'clients', 'create', '--name', 'Shop', '--first-party', '--redirect-uri', REDIRECT, '--scope', 'openid email');
    await srv.running.services.feed.pollNow();
    await invite.running.services.feed.pollNow();
  });

  after(async () => {
    // No upstream secret, code or token in any log line; no error logged.
    const logged = JSON.stringify([...srv.logger.lines, ...invite.logger.lines]);
    for (const secret of [up.clientSecret, gh.clientSecret]) expect(logged).not.to.include(secret);
    expect(srv.errors(), JSON.stringify(srv.errors())).to.deep.equal([]);
    expect(invite.errors(), JSON.stringify(invite.errors())).to.deep.equal([]);
    await up?.close();
    await gh?.close();
    await srv?.close();
    await invite?.close();
  });

  it('shows one button per enabled provider below the password form, with its display name', async () => {
    const { page, uid } = await loginPage();
    expect(hrefOf(page.body, 'corp')).to.equal(`/interaction/${uid}/federation/corp`);
    expect(hrefOf(page.body, 'github')).to.equal(`/interaction/${uid}/federation/github`);
    expect(page.body).to.include('Sign in with GitHub');
    expect(hrefOf(page.body, 'corp-off')).to.equal(undefined);
    expect(page.body.indexOf('data-idp=')).to.be.greaterThan(page.body.indexOf('name="password"'));
  });

  it('creates an account on open registration: amr ["fed"], acr loa:1 and idp in the ID token', async () => {
    const { res, rp } = await federatedSignIn('corp', 'u-new');
    expect(res.url, res.body.slice(0, 500)).to.match(/^http:\/\/127\.0\.0\.1:9\/callback\?code=/);
    const claims = await rp.redeem(res.url);
    expect(claims).to.include({ email: 'newbie@upstream.test', email_verified: true, acr: 'urn:latch:loa:1', idp: 'corp' });
    expect(claims.amr).to.deep.equal(['fed']);
    const account = (await srv.running.services.accounts.findByEmail('newbie@upstream.test'))!;
    expect(account.passwordHash).to.equal(null);
    expect(claims.sub).to.equal(account.id);
    const links = await srv.running.services.federatedIdentities.listForAccount(account.id);
    expect(links.map((l) => [l.provider, l.subject])).to.deep.equal([['corp', 'u-new']]);
    expect((await events(srv, 'federation.link')).some((e) => e.subject_id === account.id && detailsOf(e).method === 'registration')).to.equal(true);
    expect((await events(srv, 'federation.login')).some((e) => e.subject_id === account.id)).to.equal(true);
    // The account has no password: a password login is refused like an unknown address.
    const step = await srv.running.services.accounts.authenticate('newbie@upstream.test', '');
    expect(step).to.deep.equal({ ok: false, reason: 'invalid_credentials' });
  });

  it('a new account from an unverified upstream email is created unverified', async () => {
    const { res, rp } = await federatedSignIn('corp', 'u-new-unverified');
    const claims = await rp.redeem(res.url);
    expect(claims).to.include({ email: 'newbie-unverified@upstream.test', email_verified: false });
  });

  it('has no idp in the ID token of a password sign-in', async () => {
    const { agent, rp, page } = await loginPage();
    const res = await agent.submit(page, 0, { email: 'password-user@example.test', password: PASSWORD }, REDIRECT);
    const claims = await rp.redeem(res.url);
    expect(claims.amr).to.deep.equal(['pwd']);
    expect(claims).not.to.have.property('idp');
  });

  it('auto: links the account with the same email (case-insensitive) and marks it verified', async () => {
    const before = (await srv.running.services.accounts.findByEmail('auto@example.test'))!;
    expect(before.emailVerified).to.equal(false);
    const { res, rp } = await federatedSignIn('corp-auto', 'u-auto');
    const claims = await rp.redeem(res.url);
    expect(claims.sub).to.equal(before.id);
    expect(claims.email_verified).to.equal(true);
    expect(claims.idp).to.equal('corp-auto');
    const link = (await events(srv, 'federation.link')).find((e) => e.subject_id === before.id);
    expect(detailsOf(link!)).to.include({ provider: 'corp-auto', method: 'auto' });
  });

  it('auto: a second identity of the same provider with that email is refused (one link per provider), not looped on', async () => {
    const account = (await srv.running.services.accounts.findByEmail('auto@example.test'))!;
    expect((await srv.running.services.federatedIdentities.findByAccount(account.id, 'corp-auto'))?.subject, 'linked by the test before').to.equal('u-auto');
    up.accounts.push({ id: 'u-auto-second', email: 'auto@example.test', email_verified: true });
    try {
      const { res, uid } = await federatedSignIn('corp-auto', 'u-auto-second');
      expect(res.status, res.body.slice(0, 300)).to.equal(403);
      expect(res.body).to.include(`href="/interaction/${uid}"`);
      expect(await srv.running.services.federatedIdentities.findBySubject('corp-auto', 'u-auto-second')).to.equal(undefined);
      const refused = (await events(srv, 'federation.refused')).filter((e) => e.subject_id === account.id).map(detailsOf);
      expect(refused.some((d) => d.reason === 'never' && d.provider === 'corp-auto')).to.equal(true);
    } finally {
      up.accounts.splice(up.accounts.findIndex((a) => a.id === 'u-auto-second'), 1);
    }
  });

  it('ask: a wrong password shows the form again (401), the right one links with amr ["fed","pwd"]', async () => {
    const account = (await srv.running.services.accounts.findByEmail('ask@example.test'))!;
    const { agent, res, rp, uid } = await federatedSignIn('corp', 'u-ask');
    expect(res.status).to.equal(200);
    expect(res.url).to.equal(`${srv.url}/interaction/${uid}/federation/link`);
    expect(res.body).to.include('name="password"').and.include('name="_csrf"').and.not.include('name="code"');
    const wrong = await agent.submit(res, 0, { password: 'not the password' }, REDIRECT);
    expect(wrong.status).to.equal(401);
    expect(await srv.running.services.federatedIdentities.listForAccount(account.id)).to.deep.equal([]);
    // Without the CSRF token: refused.
    const forged = await agent.request(`${srv.url}/interaction/${uid}/federation/link`, { form: { password: PASSWORD } });
    expect(forged.status).to.equal(403);
    const right = await agent.submit(wrong, 0, { password: PASSWORD }, REDIRECT);
    const claims = await rp.redeem(right.url);
    expect(claims.sub).to.equal(account.id);
    expect(claims.amr).to.deep.equal(['fed', 'pwd']);
    expect(claims.acr).to.equal('urn:latch:loa:1');
    expect(claims.idp).to.equal('corp');
    const links = await srv.running.services.federatedIdentities.listForAccount(account.id);
    expect(links.map((l) => l.provider)).to.deep.equal(['corp']);
    const link = (await events(srv, 'federation.link')).find((e) => e.subject_id === account.id);
    expect(detailsOf(link!).method).to.equal('ask');
    // From now on the linked identity signs in directly.
    const again = await federatedSignIn('corp', 'u-ask');
    expect((await again.rp.redeem(again.res.url)).amr).to.deep.equal(['fed']);
  });

  it('ask with TOTP: password and code link, amr ["fed","pwd","otp","mfa"], acr loa:2', async () => {
    const services = srv.running.services;
    const account = (await services.accounts.findByEmail('ask-totp@example.test'))!;
    const enrolment = (await services.mfa.beginEnrolment(account))!;
    await services.mfa.confirmEnrolment(account.id, totpCode(enrolment.secret), { actorId: account.id });
    const { agent, res, rp } = await federatedSignIn('corp', 'u-ask-totp');
    expect(res.body).to.include('name="code"');
    const wrongCode = await agent.submit(res, 0, { password: PASSWORD, code: '000000' }, REDIRECT);
    expect(wrongCode.status).to.equal(401);
    const right = await agent.submit(wrongCode, 0, { password: PASSWORD, code: totpCode(enrolment.secret, Date.now() + 30_000) }, REDIRECT);
    const claims = await rp.redeem(right.url);
    expect(claims.amr).to.deep.equal(['fed', 'pwd', 'otp', 'mfa']);
    expect(claims.acr).to.equal('urn:latch:loa:2');
    expect(claims.idp).to.equal('corp');
  });

  it('never: refuses with a 403 page back to the login page; nothing is linked', async () => {
    const account = (await srv.running.services.accounts.findByEmail('never@example.test'))!;
    const { res, uid } = await federatedSignIn('corp-never', 'u-never');
    expect(res.status).to.equal(403);
    expect(res.body).to.include('link this provider from your account page').and.include(`href="/interaction/${uid}"`);
    expect(await srv.running.services.federatedIdentities.listForAccount(account.id)).to.deep.equal([]);
    const refused = (await events(srv, 'federation.refused')).map(detailsOf);
    expect(refused.some((d) => d.reason === 'never' && d.provider === 'corp-never')).to.equal(true);
  });

  it('an unverified upstream email never links to an existing account', async () => {
    const account = (await srv.running.services.accounts.findByEmail('taken@example.test'))!;
    const { res } = await federatedSignIn('corp-auto', 'u-unverified');
    expect(res.status).to.equal(403);
    expect(await srv.running.services.federatedIdentities.listForAccount(account.id)).to.deep.equal([]);
    expect((await events(srv, 'federation.refused')).map(detailsOf).some((d) => d.reason === 'unverified_email')).to.equal(true);
  });

  it('refuses an address outside allowed_domains before any account is made', async () => {
    const { res, uid } = await federatedSignIn('corp-domain', 'u-errors');
    expect(res.status).to.equal(403);
    expect(res.body).to.include(`href="/interaction/${uid}"`);
    expect(await srv.running.services.accounts.findByEmail('errors@upstream.test')).to.equal(undefined);
    expect((await events(srv, 'federation.refused')).map(detailsOf).some((d) => d.reason === 'domain' && d.provider === 'corp-domain')).to.equal(true);
  });

  it('refuses a disabled provider with 403 (audited)', async () => {
    const { agent, uid } = await loginPage();
    const res = await agent.request(`${srv.url}/interaction/${uid}/federation/corp-off`);
    expect(res.status).to.equal(403);
    expect(res.body).to.include(`href="/interaction/${uid}"`);
    expect((await events(srv, 'federation.refused')).map(detailsOf).some((d) => d.reason === 'disabled' && d.provider === 'corp-off')).to.equal(true);
    expect((await agent.request(`${srv.url}/interaction/${uid}/federation/nope`)).status).to.equal(404);
  });

  it('a linked identity signs in to its account whatever its email says now', async () => {
    const first = await federatedSignIn('corp', 'u-moves');
    const sub = (await first.rp.redeem(first.res.url)).sub;
    up.accounts.find((a) => a.id === 'u-moves')!.email = 'moved-elsewhere@upstream.test';
    try {
      const second = await federatedSignIn('corp', 'u-moves');
      expect((await second.rp.redeem(second.res.url)).sub).to.equal(sub);
      const [link] = await srv.running.services.federatedIdentities.listForAccount(sub);
      expect(link!.email).to.equal('moved-elsewhere@upstream.test');
      expect(link!.lastLoginAt).to.be.a('string');
    } finally {
      up.accounts.find((a) => a.id === 'u-moves')!.email = 'moves@upstream.test';
    }
  });

  it('an account with TOTP passes its second factor after the upstream: amr ["fed","otp","mfa"], acr loa:2', async () => {
    const first = await federatedSignIn('corp', 'u-totp');
    const sub = (await first.rp.redeem(first.res.url)).sub;
    const services = srv.running.services;
    const account = (await services.accounts.findById(sub))!;
    const enrolment = (await services.mfa.beginEnrolment(account))!;
    await services.mfa.confirmEnrolment(account.id, totpCode(enrolment.secret), { actorId: account.id });
    const { agent, res, rp, uid } = await federatedSignIn('corp', 'u-totp');
    expect(res.status).to.equal(200);
    expect(res.url).to.equal(`${srv.url}/interaction/${uid}/mfa`);
    const done = await agent.submit(res, 0, { code: totpCode(enrolment.secret, Date.now() + 30_000) }, REDIRECT);
    const claims = await rp.redeem(done.url);
    expect(claims.amr).to.deep.equal(['fed', 'otp', 'mfa']);
    expect(claims.acr).to.equal('urn:latch:loa:2');
    expect(claims.idp).to.equal('corp');
  });

  it('a client insisting on loa:2 makes a federated account enrol: amr ["fed","otp","mfa"]', async () => {
    const { agent, res, rp, uid } = await federatedSignIn('corp', 'u-enrol', { params: { acr_values: 'urn:latch:loa:2' } });
    expect(res.url).to.equal(`${srv.url}/interaction/${uid}/mfa`);
    const secret = /id="totp-secret">([A-Z2-7]+)</.exec(res.body)?.[1];
    expect(secret, res.body.slice(0, 500)).to.be.a('string');
    const codes = await agent.submit(res, 0, { code: totpCode(secret!) }, REDIRECT);
    expect(codes.status).to.equal(200);
    const done = await agent.submit(codes, 0, {}, REDIRECT);
    const claims = await rp.redeem(done.url);
    expect(claims.amr).to.deep.equal(['fed', 'otp', 'mfa']);
    expect(claims.acr).to.equal('urn:latch:loa:2');
    expect(claims.idp).to.equal('corp');
  });

  it('refuses "link" as a provider name: the ask page uses that path', async () => {
    const r = await srv.cli('idps', 'create', '--name', 'link', '--kind', 'github', '--client-id', 'x', '--client-secret', 'some-secret-value');
    expect(r.code).not.to.equal(0);
    expect(r.stderr).to.include('reserved');
  });

  it('GitHub: signs in with the primary verified email; refuses an account without one', async () => {
    const { res, rp } = await federatedSignIn('github', 'octocat');
    const claims = await rp.redeem(res.url);
    expect(claims).to.include({ email: 'octocat@upstream.test', idp: 'github' });
    const refused = await federatedSignIn('github', 'unverified-cat');
    expect(refused.res.status).to.be.within(400, 403);
    expect(refused.res.body).to.include(`href="/interaction/${refused.uid}"`);
    expect(await srv.running.services.accounts.findByEmail('unverified-cat@upstream.test')).to.equal(undefined);
  });

  it('upstream access_denied ends on a 4xx page with a try-again link', async () => {
    const { agent, page, uid } = await loginPage();
    const callback = await upstreamLeg(agent, page, 'corp', 'u-errors', { cancel: true });
    expect(callback.searchParams.get('error')).to.equal('access_denied');
    const res = await agent.follow(callback.toString(), {}, REDIRECT);
    expect(res.status).to.be.within(400, 403);
    expect(res.body).to.include(`href="/interaction/${uid}"`).and.not.include('at ');
    expect((await events(srv, 'federation.refused')).map(detailsOf).some((d) => d.reason === 'upstream_error' && d.upstream === 'access_denied')).to.equal(true);
  });

  it('refuses a tampered state and a replayed callback with 400', async () => {
    const { agent, page } = await loginPage();
    const callback = await upstreamLeg(agent, page, 'corp', 'u-errors');
    const tampered = new URL(callback);
    tampered.searchParams.set('state', `${callback.searchParams.get('state')}x`);
    const t = await agent.request(tampered.toString());
    expect(t.status).to.equal(400);
    expect(t.body).to.include('href="/account"');

    const second = await loginPage();
    const cb = await upstreamLeg(second.agent, second.page, 'corp', 'u-errors');
    // Kept server-side, encrypted: neither the state nor the PKCE verifier is readable at rest.
    const rows = (await srv.running.db('provider_state').where({ model: 'FederationPending' }).select('id', 'payload')) as { id: string; payload: string }[];
    expect(rows.length).to.be.greaterThan(0);
    for (const r of rows) {
      expect(r.payload).not.to.include('code_verifier').and.not.include(cb.searchParams.get('state')!);
      expect(r.id).not.to.equal(cb.searchParams.get('state'));
    }
    // Another browser (no binding cookie) cannot use it...
    const stolen = await new Agent().request(cb.toString());
    expect(stolen.status).to.equal(400);
    // ...and the record is gone: single use.
    const replay = await second.agent.request(cb.toString());
    expect(replay.status).to.equal(400);

    const third = await loginPage();
    const cb3 = await upstreamLeg(third.agent, third.page, 'corp-domain', 'u-errors');
    const firstUse = await third.agent.follow(cb3.toString(), {}, REDIRECT);
    expect(firstUse.status).to.equal(403);
    const again = await third.agent.request(cb3.toString());
    expect(again.status).to.equal(400);
  });

  it('two sign-ins started in one browser (two tabs) each keep their browser binding', async () => {
    // (This test agent keeps one cookie per name, not per path: each tab's interaction cookie
    // is restored before its step, as a browser would send the one of its path.)
    const agent = new Agent();
    const tab = async () => {
      const rp = await relyingParty(srv, web);
      const page = await agent.follow(rp.url, {}, REDIRECT);
      const interaction = [...agent.cookies].filter(([k]) => k.includes('|_interaction'));
      return { rp, page, interaction };
    };
    const t1 = await tab();
    const href1 = hrefOf(t1.page.body, 'corp')!;
    const start1 = await agent.request(new URL(href1, srv.url).toString());
    const t2 = await tab();
    const start2 = await agent.request(new URL(hrefOf(t2.page.body, 'corp')!, srv.url).toString());
    expect([...agent.cookies.keys()].filter((k) => k.includes('|latch_federation_'))).to.have.length(2);
    const cb1 = await up.signIn(start1.headers.get('location')!, 'u-new');
    const cb2 = await up.signIn(start2.headers.get('location')!, 'u-new');
    const done2 = await agent.follow(cb2.toString(), {}, REDIRECT);
    expect((await t2.rp.redeem(done2.url)).idp).to.equal('corp');
    for (const [k, v] of t1.interaction) agent.cookies.set(k, v);
    const done1 = await agent.follow(cb1.toString(), {}, REDIRECT);
    expect((await t1.rp.redeem(done1.url)).idp).to.equal('corp');
  });

  it('an unreachable provider ends on a 502 page', async () => {
    const { agent, uid } = await loginPage();
    const res = await agent.request(`${srv.url}/interaction/${uid}/federation/corp-down`);
    expect(res.status).to.equal(502);
    expect(res.body).to.include(`href="/interaction/${uid}"`);
  });

  it('a bad ID-token signature ends on an error page, not a sign-in', async () => {
    up.mode.badSignature = true;
    try {
      const { res, uid } = await federatedSignIn('corp', 'u-new');
      expect(res.status).to.be.oneOf([400, 401, 403, 502]);
      expect(res.body).to.include(`href="/interaction/${uid}"`);
    } finally {
      up.mode.badSignature = false;
    }
  });

  it('invite registration: no account without a pending invitation; created with one', async () => {
    const closed = await federatedSignIn('corp', 'u-invited', { server: invite, client: inviteWeb });
    expect(closed.res.status).to.equal(403);
    expect(closed.res.body).to.include('new accounts cannot be created');
    expect(await invite.running.services.accounts.findByEmail('invited@upstream.test')).to.equal(undefined);
    expect((await events(invite, 'federation.refused')).map(detailsOf).some((d) => d.reason === 'registration_closed')).to.equal(true);

    await cli(invite, 'users', 'invite', '--email', 'invited@upstream.test');
    const opened = await federatedSignIn('corp', 'u-invited', { server: invite, client: inviteWeb });
    const claims = await opened.rp.redeem(opened.res.url);
    expect(claims).to.include({ email: 'invited@upstream.test', email_verified: true, idp: 'corp' });
  });

  describe('the account page', () => {
    const rowOf = (html: string, idp: string) => new RegExp(`<li data-idp="${idp}">([\\s\\S]*?)</li>`).exec(html)?.[1];
    const formIndexOf = (page: PageResponse, action: RegExp) => [...page.body.matchAll(/<form[^>]*action="([^"]+)"/g)].findIndex((m) => action.test(m[1]!));

    it('signs in through a provider, lists it, refuses to unlink the last way in, links another and unlinks', async () => {
      // The account page signs in through Latch: here with the upstream (a new, passwordless account).
      const agent = new Agent();
      const login = await agent.follow(`${srv.url}/account`);
      expect(login.status).to.equal(200);
      const callback = await upstreamLeg(agent, login, 'corp', 'u-page');
      let page = await agent.follow(callback.toString());
      expect(page.url).to.equal(`${srv.url}/account`);
      const account = (await srv.running.services.accounts.findByEmail('page@upstream.test'))!;
      expect(account.passwordHash).to.equal(null);

      const row = rowOf(page.body, 'corp');
      expect(row, page.body).to.be.a('string');
      expect(row).to.include('Corp corp').and.include('page@upstream.test').and.include('/account/federation/corp/unlink');
      for (const name of ['github', 'corp-auto', 'corp-never', 'corp-domain']) expect(page.body).to.include(`href="/account/federation/${name}/link"`);
      expect(page.body).not.to.include('href="/account/federation/corp-off/link"').and.not.include('href="/account/federation/corp/link"');

      // The last way in: refused, the page says why, the row stays.
      const refused = await agent.submit(page, formIndexOf(page, /\/account\/federation\/corp\/unlink$/));
      expect(refused.status).to.equal(409);
      expect(refused.body).to.include('only way to sign in');
      expect(rowOf(refused.body, 'corp')).to.be.a('string');

      // Link GitHub from the account page.
      const start = await agent.request(`${srv.url}/account/federation/github/link`);
      expect(start.status).to.equal(303);
      const ghCallback = await gh.signIn(start.headers.get('location')!, 'linker');
      page = await agent.follow(ghCallback.toString());
      expect(page.url).to.equal(`${srv.url}/account?done=linked`);
      expect(rowOf(page.body, 'github')).to.include('GitHub').and.include('linker@upstream.test');
      const link = (await events(srv, 'federation.link')).find((e) => e.subject_id === account.id && detailsOf(e).provider === 'github');
      expect(detailsOf(link!).method).to.equal('account');

      // Now corp is not the last way in.
      const unlinked = await agent.submit(page, formIndexOf(page, /\/account\/federation\/corp\/unlink$/));
      expect(unlinked.url).to.equal(`${srv.url}/account?done=unlinked`);
      expect(rowOf(unlinked.body, 'corp')).to.equal(undefined);
      expect((await events(srv, 'federation.unlink')).some((e) => e.subject_id === account.id && detailsOf(e).provider === 'corp')).to.equal(true);

      // An identity linked to another account already: 409, nothing linked.
      const other = await agent.request(`${srv.url}/account/federation/corp-auto/link`);
      const otherCallback = await up.signIn(other.headers.get('location')!, 'u-auto');
      const conflict = await agent.follow(otherCallback.toString());
      expect(conflict.status).to.equal(409);
      expect((await srv.running.services.federatedIdentities.listForAccount(account.id)).map((l) => l.provider)).to.deep.equal(['github']);

      // Without a session, the link start goes through sign-in first.
      const anonymous = await new Agent().request(`${srv.url}/account/federation/github/link`);
      expect(anonymous.status).to.be.within(300, 399);
      expect(anonymous.headers.get('location')).not.to.include(gh.webUrl);
    });
  });
});
