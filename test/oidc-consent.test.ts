import { expect } from 'chai';
import { decodeJwt } from 'jose';
import * as oidc from 'openid-client';

import { Agent, type PageResponse } from './helpers/agent.js';
import { startTestServer, type TestServer } from './helpers/server.js';

const REDIRECT = 'http://127.0.0.1:9/callback';
const SPA_ORIGIN = 'http://localhost:5173';
const API = 'https://api.example.test';
const USER = { email: 'ada@example.test', password: 'correct horse battery staple' };
const ROOT = { email: 'root@example.test', password: 'superuser passphrase for root' };

/** Walks an authorization through Latch's pages, keeping the consent pages' HTML. */
async function walk(agent: Agent, url: string, login: { email: string; password: string }) {
  const pages: string[] = [];
  const consent: string[] = [];
  let res: PageResponse = await agent.follow(url, {}, REDIRECT);
  for (let step = 0; step < 5 && !res.url.startsWith(REDIRECT); step++) {
    expect(res.status, res.body.slice(0, 300)).to.equal(200);
    if (/name="password"/.test(res.body)) {
      pages.push('login');
      res = await agent.submit(res, 0, login, REDIRECT);
    } else if (/\/confirm"/.test(res.body)) {
      pages.push('consent');
      consent.push(res.body);
      res = await agent.submit(res, 0, {}, REDIRECT);
    } else {
      throw new Error(`unexpected page at ${res.url}: ${res.body.slice(0, 300)}`);
    }
  }
  return { callback: new URL(res.url), pages, consent };
}

describe('what an authorization issues: admin scopes, refresh tokens after consent, userinfo for sign-in', () => {
  let srv: TestServer;

  const discover = (id: string, secret?: string) =>
    oidc.discovery(new URL(srv.url), id, secret, secret ? oidc.ClientSecretBasic(secret) : oidc.None(), { execute: [oidc.allowInsecureRequests] });

  async function codeFlow(config: oidc.Configuration, scope: string, login: { email: string; password: string }, extra: Record<string, string> = {}, agent = new Agent()) {
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const url = oidc.buildAuthorizationUrl(config, { redirect_uri: REDIRECT, scope, state, code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', ...extra });
    const walked = await walk(agent, url.toString(), login);
    const tokens = await oidc.authorizationCodeGrant(config, walked.callback, { pkceCodeVerifier: verifier, expectedState: state });
    return { ...walked, tokens, agent };
  }

  const created = async (...args: string[]) => {
    const r = await srv.cli(...args);
    expect(r.code, r.stderr).to.equal(0);
    return r.json;
  };

  before(async () => {
    srv = await startTestServer();
    await created('users', 'create', '--email', USER.email, '--password', USER.password, '--name', 'Ada');
    await created('users', 'create', '--email', ROOT.email, '--password', ROOT.password, '--superuser');
    await created('resources', 'create', '--identifier', API, '--scope', 'read write');
  });

  after(async () => {
    expect(srv.errors(), JSON.stringify(srv.errors())).to.deep.equal([]);
    await srv.close();
  });

  describe('admin scopes of the API resource, only for superusers', () => {
    let console: { client_id: string; client_secret: string };
    const adminApi = () => `${srv.url}/api`;

    before(async () => {
      console = await created('clients', 'create', '--name', 'Console', '--redirect-uri', REDIRECT, '--resource', `${srv.url}/api`, '--scope', 'openid admin:read admin:write account');
    });

    it('a user who is not a superuser gets a token without them: not offered, not in the JWT, not in introspection', async () => {
      const config = await discover(console.client_id, console.client_secret);
      const { tokens, pages, consent } = await codeFlow(config, 'openid admin:read admin:write account', USER, { resource: adminApi() });
      expect(pages).to.deep.equal(['login', 'consent']);
      expect(consent[0]).to.contain('account');
      expect(consent[0]).to.not.contain('admin:read').and.not.contain('admin:write');
      const claims = decodeJwt(tokens.access_token);
      expect(claims.aud).to.equal(adminApi());
      expect(String(claims.scope).split(' ')).to.deep.equal(['account']);
      const intro = await oidc.tokenIntrospection(config, tokens.access_token);
      expect(intro.active).to.equal(true);
      expect(String(intro.scope).split(' ')).to.deep.equal(['account']);
      // The API itself refuses the token for administration.
      const res = await fetch(`${srv.url}/api/v1/users`, { headers: { authorization: `Bearer ${tokens.access_token}` } });
      expect(res.status).to.equal(403);
    });

    it('a superuser gets them, offered on the consent page and in the token', async () => {
      const config = await discover(console.client_id, console.client_secret);
      const { tokens, consent } = await codeFlow(config, 'openid admin:read admin:write account', ROOT, { resource: adminApi() });
      expect(consent[0]).to.contain('admin:read').and.contain('admin:write');
      expect(String(decodeJwt(tokens.access_token).scope).split(' ')).to.have.members(['admin:read', 'admin:write', 'account']);
      const intro = await oidc.tokenIntrospection(config, tokens.access_token);
      expect(String(intro.scope).split(' ')).to.have.members(['admin:read', 'admin:write', 'account']);
      const res = await fetch(`${srv.url}/api/v1/users`, { headers: { authorization: `Bearer ${tokens.access_token}` } });
      expect(res.status).to.equal(200);
    });

    it('a refresh of a non-superuser token does not gain them', async () => {
      const web = await created('clients', 'create', '--name', 'Console 2', '--redirect-uri', REDIRECT, '--resource', `${srv.url}/api`, '--scope', 'openid offline_access admin:read account');
      const config = await discover(web.client_id, web.client_secret);
      const { tokens } = await codeFlow(config, 'openid offline_access admin:read account', USER, { resource: adminApi() });
      expect(tokens.refresh_token).to.be.a('string');
      const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token!, { resource: adminApi() });
      expect(String(decodeJwt(refreshed.access_token).scope).split(' ')).to.deep.equal(['account']);
    });
  });

  describe('refresh tokens for clients that ask for offline_access, once the user consented', () => {
    it('a public SPA client (code + PKCE) asking openid offline_access without prompt=consent: consent lists it, then a refresh token', async () => {
      const spa = await created('clients', 'create', '--name', 'SPA', '--public', '--redirect-uri', REDIRECT, '--web-origin', SPA_ORIGIN);
      const config = await discover(spa.client_id);
      const first = await codeFlow(config, 'openid offline_access', USER);
      expect(first.pages).to.deep.equal(['login', 'consent']);
      expect(first.consent[0]).to.contain('offline_access').and.contain('refresh tokens');
      expect(first.tokens.refresh_token, 'refresh token after consent').to.be.a('string');
      // The refresh token works, from the SPA's origin (CORS) as a browser library would use it.
      const res = await fetch(`${srv.url}/token`, {
        method: 'POST',
        headers: { origin: SPA_ORIGIN, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: first.tokens.refresh_token!, client_id: spa.client_id }),
      });
      expect(res.status).to.equal(200);
      expect(res.headers.get('access-control-allow-origin')).to.equal(SPA_ORIGIN);
      expect(((await res.json()) as { refresh_token?: string }).refresh_token).to.be.a('string');

      // The recorded consent covers the next authorization of the same client: no page at all.
      const second = await codeFlow(config, 'openid offline_access', USER, {}, first.agent);
      expect(second.pages).to.deep.equal([]);
      expect(second.tokens.refresh_token).to.be.a('string');
    });

    it('prompt=none without an earlier consent: offline_access is ignored (OIDC Core §11), not an error', async () => {
      const spa = await created('clients', 'create', '--name', 'SPA silent', '--public', '--redirect-uri', REDIRECT, '--web-origin', SPA_ORIGIN);
      const config = await discover(spa.client_id);
      const signedIn = await codeFlow(config, 'openid', USER);
      expect(signedIn.pages).to.deep.equal(['login', 'consent']);
      const silent = await codeFlow(config, 'openid offline_access', USER, { prompt: 'none' }, signedIn.agent);
      expect(silent.pages).to.deep.equal([]);
      expect(silent.callback.searchParams.get('error')).to.equal(null);
      expect(silent.tokens.refresh_token).to.equal(undefined);
    });

    it('consent to other scopes does not stand for offline_access: the page asks again for it', async () => {
      const spa = await created('clients', 'create', '--name', 'SPA 2', '--public', '--redirect-uri', REDIRECT, '--web-origin', SPA_ORIGIN);
      const config = await discover(spa.client_id);
      const first = await codeFlow(config, 'openid email', USER);
      expect(first.pages).to.deep.equal(['login', 'consent']);
      expect(first.tokens.refresh_token).to.equal(undefined);
      const second = await codeFlow(config, 'openid email offline_access', USER, {}, first.agent);
      expect(second.pages).to.deep.equal(['consent']);
      expect(second.consent[0]).to.contain('offline_access');
      expect(second.tokens.refresh_token).to.be.a('string');
    });

    it('a first-party client gets one with no consent page', async () => {
      const fp = await created('clients', 'create', '--name', 'Own app', '--first-party', '--redirect-uri', REDIRECT);
      const config = await discover(fp.client_id, fp.client_secret);
      const { tokens, pages } = await codeFlow(config, 'openid email offline_access', USER);
      expect(pages).to.deep.equal(['login']);
      expect(tokens.refresh_token).to.be.a('string');
    });

    it('a client without the refresh_token grant gets none, and is not offered offline access', async () => {
      const noRefresh = await created('clients', 'create', '--name', 'No refresh', '--grant', 'authorization_code', '--redirect-uri', REDIRECT, '--scope', 'openid email offline_access');
      const config = await discover(noRefresh.client_id, noRefresh.client_secret);
      const { tokens, consent } = await codeFlow(config, 'openid email offline_access', USER);
      expect(consent[0]).to.not.contain('offline_access');
      expect(tokens.refresh_token).to.equal(undefined);
    });
  });

  describe('userinfo for sign-in with a client registered for exactly one resource', () => {
    let web: { client_id: string; client_secret: string };
    before(async () => {
      web = await created('clients', 'create', '--name', 'Shop', '--redirect-uri', REDIRECT, '--resource', API, '--scope', 'openid profile email read');
    });

    it('OIDC scopes only: the access token is for userinfo', async () => {
      const config = await discover(web.client_id, web.client_secret);
      const { tokens } = await codeFlow(config, 'openid profile email', USER);
      const sub = tokens.claims()!.sub;
      const info = await oidc.fetchUserInfo(config, tokens.access_token, sub);
      expect(info).to.include({ sub, email: USER.email, name: 'Ada' });
    });

    it('a resource scope or a resource parameter: the token is for the resource, not for userinfo', async () => {
      const config = await discover(web.client_id, web.client_secret);
      const requests: [string, Record<string, string>][] = [
        ['openid email read', {}],
        ['openid email', { resource: API }],
      ];
      for (const [scope, extra] of requests) {
        const { tokens } = await codeFlow(config, scope, USER, extra);
        const claims = decodeJwt(tokens.access_token);
        expect(claims.aud, scope).to.equal(API);
        const res = await fetch(`${srv.url}/me`, { headers: { authorization: `Bearer ${tokens.access_token}` } });
        expect(res.status, scope).to.equal(401);
      }
    });
  });
});
