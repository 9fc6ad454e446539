import { expect } from 'chai';
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import * as oidc from 'openid-client';

import { Agent, authorize } from './helpers/agent.js';
import { startTestServer, type TestServer } from './helpers/server.js';

const REDIRECT = 'http://127.0.0.1:9/callback';
const LOGOUT_REDIRECT = 'http://127.0.0.1:9/logged-out';
const API = 'https://api.example.test';
const USER = { email: 'Ada.Lovelace@example.test', password: 'correct horse battery staple' };

describe('OpenID Connect flows with openid-client over real HTTP', () => {
  let srv: TestServer;
  let webClient: { client_id: string; client_secret: string };
  let publicClient: { client_id: string };
  let machine: { client_id: string; client_secret: string };
  let api: { client_id: string; client_secret: string };
  let userId: string;

  const discover = (id: string, secret?: string) =>
    oidc.discovery(new URL(srv.url), id, secret, secret ? oidc.ClientSecretBasic(secret) : oidc.None(), { execute: [oidc.allowInsecureRequests] });

  async function codeFlow(config: oidc.Configuration, scope: string, extra: Record<string, string> = {}, agent = new Agent()) {
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const nonce = oidc.randomNonce();
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: REDIRECT,
      scope,
      state,
      nonce,
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      ...extra,
    });
    const { callback, pages } = await authorize(agent, url.toString(), REDIRECT, USER);
    const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce });
    return { tokens, pages, callback, agent };
  }

  before(async () => {
    srv = await startTestServer();
    const user = await srv.cli('users', 'create', '--email', USER.email, '--password', USER.password, '--name', 'Ada Lovelace');
    expect(user.code, user.stderr).to.equal(0);
    userId = user.json.id;
    expect((await srv.cli('resources', 'create', '--identifier', API, '--scope', 'read write', '--alg', 'ES256')).code).to.equal(0);
    const web = await srv.cli('clients', 'create', '--name', 'Web App', '--redirect-uri', REDIRECT, '--post-logout-redirect-uri', LOGOUT_REDIRECT, '--scope', 'openid profile email offline_access');
    expect(web.code, web.stderr).to.equal(0);
    webClient = web.json;
    const pub = await srv.cli('clients', 'create', '--name', 'SPA', '--public', '--redirect-uri', REDIRECT, '--scope', 'openid email offline_access read', '--resource', API, '--grant', 'authorization_code', '--grant', 'refresh_token');
    expect(pub.code, pub.stderr).to.equal(0);
    publicClient = pub.json;
    const m = await srv.cli('clients', 'create', '--name', 'Worker', '--grant', 'client_credentials', '--resource', API, '--scope', 'read');
    expect(m.code, m.stderr).to.equal(0);
    machine = m.json;
    const a = await srv.cli('clients', 'create', '--name', 'API introspector', '--grant', 'client_credentials', '--resource', API);
    api = a.json;
  });

  after(async () => {
    expect(srv.errors(), JSON.stringify(srv.errors())).to.deep.equal([]);
    await srv.close();
  });

  it('publishes discovery with every endpoint and S256-only PKCE', async () => {
    const res = await fetch(`${srv.url}/.well-known/openid-configuration`);
    expect(res.status).to.equal(200);
    const d = (await res.json()) as Record<string, unknown>;
    expect(d.issuer).to.equal(srv.url);
    for (const k of ['authorization_endpoint', 'token_endpoint', 'userinfo_endpoint', 'jwks_uri', 'introspection_endpoint', 'revocation_endpoint', 'end_session_endpoint']) {
      expect(d[k], k).to.be.a('string').and.satisfy((v: string) => v.startsWith(srv.url));
    }
    expect(d.code_challenge_methods_supported).to.deep.equal(['S256']);
    expect(d.token_endpoint_auth_methods_supported).to.include.members(['client_secret_basic', 'client_secret_post']);
    expect(d.authorization_response_iss_parameter_supported).to.equal(true);
  });

  it('signs in through the login and consent forms: code + PKCE, ID token, userinfo', async () => {
    const config = await discover(webClient.client_id, webClient.client_secret);
    const { tokens, pages, callback } = await codeFlow(config, 'openid profile email');
    expect(pages).to.deep.equal(['login', 'consent']);
    // RFC 9207: the authorization response carries iss.
    expect(callback.searchParams.get('iss')).to.equal(srv.url);
    const claims = tokens.claims()!;
    expect(claims.sub).to.equal(userId);
    expect(claims.iss).to.equal(srv.url);
    expect(claims.aud).to.equal(webClient.client_id);
    expect(decodeProtectedHeader(tokens.id_token!).alg).to.equal('RS256');
    expect(claims.exp! - claims.iat!).to.equal(3600);
    expect(tokens.refresh_token, 'no offline_access, no refresh token').to.equal(undefined);
    const info = await oidc.fetchUserInfo(config, tokens.access_token, claims.sub);
    expect(info).to.include({ sub: userId, email: USER.email, email_verified: false, name: 'Ada Lovelace' });
  });

  it('never grants a scope the client is not registered for', async () => {
    const m = await discover(machine.client_id, machine.client_secret);
    const t = await oidc.clientCredentialsGrant(m, { scope: 'read write' });
    expect(t.scope).to.equal('read');
    expect(decodeJwt(t.access_token).scope).to.equal('read');
    const pub = await discover(publicClient.client_id);
    const verifier = oidc.randomPKCECodeVerifier();
    const url = oidc.buildAuthorizationUrl(pub, { redirect_uri: REDIRECT, scope: 'openid profile', code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256' });
    const res = await new Agent().follow(url.toString(), {}, REDIRECT);
    const cb = new URL(res.url);
    expect(cb.searchParams.get('error')).to.equal('invalid_scope');
  });

  it('issues refresh tokens only with offline_access, rotates them, and revokes the grant on reuse', async () => {
    const config = await discover(webClient.client_id, webClient.client_secret);
    const { tokens } = await codeFlow(config, 'openid email offline_access', { prompt: 'consent' });
    const first = tokens.refresh_token!;
    expect(first).to.be.a('string');
    const second = await oidc.refreshTokenGrant(config, first);
    expect(second.refresh_token).to.be.a('string').and.not.equal(first);
    expect(second.access_token).to.not.equal(tokens.access_token);
    // The second is used; reusing the first is then detected (before that, within
    // REFRESH_REUSE_WINDOW, it would be a retry: test/refresh-reuse.test.ts) ...
    const third = await oidc.refreshTokenGrant(config, second.refresh_token!);
    const reuse = await oidc.refreshTokenGrant(config, first).then(
      () => null,
      (e: unknown) => e,
    );
    expect((reuse as oidc.ResponseBodyError).error).to.equal('invalid_grant');
    // ... and revokes the whole grant: the rotated token and the access token die with it.
    const after = await oidc.refreshTokenGrant(config, third.refresh_token!).then(
      () => null,
      (e: unknown) => e,
    );
    expect((after as oidc.ResponseBodyError).error).to.equal('invalid_grant');
    const intro = await oidc.tokenIntrospection(config, third.access_token);
    expect(intro.active).to.equal(false);
  });

  it('gives a public client (PKCE) JWT access tokens for its single resource, verifiable against JWKS', async () => {
    const pub = await discover(publicClient.client_id);
    const { tokens } = await codeFlow(pub, 'openid email read');
    const jwks = createRemoteJWKSet(new URL(`${srv.url}/jwks`));
    const { payload, protectedHeader } = await jwtVerify(tokens.access_token, jwks, { issuer: srv.url, audience: API, typ: 'at+jwt' });
    expect(protectedHeader.alg).to.equal('ES256');
    expect(payload).to.include({ sub: userId, client_id: publicClient.client_id, scope: 'read' });
    expect(payload.jti).to.be.a('string');
    expect(payload.exp! - payload.iat!).to.equal(900);
    // Introspection with the resource's own client: active with the token's claims.
    const rs = await discover(api.client_id, api.client_secret);
    const intro = await oidc.tokenIntrospection(rs, tokens.access_token);
    expect(intro).to.include({ active: true, sub: userId, client_id: publicClient.client_id, scope: 'read', aud: API, iss: srv.url });
  });

  it('issues client_credentials JWTs (RFC 9068) that verify offline against the JWKS', async () => {
    const m = await discover(machine.client_id, machine.client_secret);
    const t = await oidc.clientCredentialsGrant(m, { scope: 'read' });
    expect(t.token_type.toLowerCase()).to.equal('bearer');
    const jwks = createRemoteJWKSet(new URL(`${srv.url}/jwks`));
    const { payload, protectedHeader } = await jwtVerify(t.access_token, jwks, { issuer: srv.url, audience: API, typ: 'at+jwt' });
    expect(protectedHeader.typ).to.equal('at+jwt');
    for (const claim of ['iss', 'sub', 'aud', 'exp', 'iat', 'jti', 'client_id', 'scope']) expect(payload, claim).to.have.property(claim);
    expect(payload.client_id).to.equal(machine.client_id);
  });

  it('introspects opaque and JWT tokens with the rights of the caller, and revokes both', async () => {
    const web = await discover(webClient.client_id, webClient.client_secret);
    const { tokens } = await codeFlow(web, 'openid');
    // Opaque access token for userinfo: the client it was issued to may introspect it.
    const opaque = await oidc.tokenIntrospection(web, tokens.access_token);
    expect(opaque).to.include({ active: true, sub: userId, client_id: webClient.client_id });
    // Another client without that audience sees nothing.
    const m = await discover(machine.client_id, machine.client_secret);
    expect((await oidc.tokenIntrospection(m, tokens.access_token)).active).to.equal(false);

    const cc = await oidc.clientCredentialsGrant(m, { scope: 'read' });
    const rs = await discover(api.client_id, api.client_secret);
    expect((await oidc.tokenIntrospection(rs, cc.access_token)).active).to.equal(true);
    expect((await oidc.tokenIntrospection(web, cc.access_token)).active, 'not its token, not its audience').to.equal(false);

    await oidc.tokenRevocation(m, cc.access_token);
    expect((await oidc.tokenIntrospection(rs, cc.access_token)).active).to.equal(false);
    await oidc.tokenRevocation(web, tokens.access_token);
    expect((await oidc.tokenIntrospection(web, tokens.access_token)).active).to.equal(false);
  });

  it('refuses introspection to public clients', async () => {
    const res = await fetch(`${srv.url}/token/introspection`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ client_id: publicClient.client_id, token: 'x' }) });
    expect(res.status).to.equal(401);
    expect(((await res.json()) as { error: string }).error).to.equal('invalid_client');
  });

  it('logs out with RP-initiated logout (id_token_hint, no state) and ends the session', async () => {
    const config = await discover(webClient.client_id, webClient.client_secret);
    const { tokens, agent } = await codeFlow(config, 'openid');
    const url = oidc.buildEndSessionUrl(config, { id_token_hint: tokens.id_token!, post_logout_redirect_uri: LOGOUT_REDIRECT });
    const confirm = await agent.follow(url.toString(), {}, LOGOUT_REDIRECT);
    expect(confirm.status).to.equal(200);
    expect(confirm.body).to.contain('Sign out');
    const done = await agent.submit(confirm, 0, { logout: 'yes' }, LOGOUT_REDIRECT);
    expect(done.url).to.equal(LOGOUT_REDIRECT);
    // The browser session is gone: a new authorization shows the login page again.
    const again = await codeFlow(config, 'openid', {}, agent);
    expect(again.pages[0]).to.equal('login');
  });

  it('skips consent for first-party clients, also for offline_access with prompt=consent', async () => {
    const fp = await srv.cli('clients', 'create', '--name', 'Console', '--first-party', '--redirect-uri', REDIRECT);
    expect(fp.code, fp.stderr).to.equal(0);
    const config = await discover(fp.json.client_id, fp.json.client_secret);
    const { tokens, pages } = await codeFlow(config, 'openid email offline_access', { prompt: 'consent' });
    expect(pages).to.deep.equal(['login']);
    expect(tokens.claims()!.sub).to.equal(userId);
    expect(tokens.refresh_token).to.be.a('string');
  });

  it("answers CORS only for a client's registered web origins, never with credentials", async () => {
    const origin = 'http://localhost:5173';
    const spa = await srv.cli('clients', 'create', '--name', 'Browser worker', '--grant', 'client_credentials', '--resource', API, '--scope', 'read', '--web-origin', origin);
    const basic = `Basic ${Buffer.from(`${spa.json.client_id}:${spa.json.client_secret}`).toString('base64')}`;
    const post = (from: string) =>
      fetch(`${srv.url}/token`, { method: 'POST', headers: { origin: from, authorization: basic, 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=client_credentials' });
    const ok = await post(origin);
    expect(ok.status).to.equal(200);
    expect(ok.headers.get('access-control-allow-origin')).to.equal(origin);
    expect(ok.headers.get('access-control-allow-credentials')).to.equal(null);
    const evil = await post('https://evil.example');
    expect(evil.status).to.equal(400);
    expect(evil.headers.get('access-control-allow-origin')).to.equal(null);
    // Public metadata is readable from any origin, without credentials.
    for (const path of ['/.well-known/openid-configuration', '/jwks']) {
      const res = await fetch(`${srv.url}${path}`, { headers: { origin: 'https://any.example' } });
      expect(res.headers.get('access-control-allow-origin'), path).to.be.oneOf(['*', 'https://any.example']);
      expect(res.headers.get('access-control-allow-credentials'), path).to.equal(null);
    }
  });
});
