import { createHash, randomUUID } from 'node:crypto';

import { expect } from 'chai';
import { calculateJwkThumbprint, decodeJwt, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import * as oidc from 'openid-client';

import { Agent, authorize } from './helpers/agent.js';
import { startApiHarness, type ApiHarness } from './helpers/api.js';
import { freshDatabase, startTestServer, type TestDatabase, type TestServer } from './helpers/server.js';

const REDIRECT = 'http://127.0.0.1:9/callback';
const ADA = { email: 'ada@example.test', password: 'correct horse battery staple' };

interface ProofKey {
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  jwk: JWK;
  jkt: string;
  alg: string;
}

async function proofKey(alg = 'ES256'): Promise<ProofKey> {
  const pair = await generateKeyPair(alg === 'ES256' ? 'ES256' : 'EdDSA', { extractable: true });
  const jwk = await exportJWK(pair.publicKey);
  return { ...pair, jwk, jkt: await calculateJwkThumbprint(jwk), alg };
}

/** A DPoP proof JWT (RFC 9449 §4.2) made by hand, with whatever claims a test needs. */
async function proof(key: ProofKey, htm: string, htu: string, extra: { accessToken?: string; iat?: number; jti?: string } = {}): Promise<string> {
  const claims: Record<string, unknown> = { htm, htu };
  if (extra.accessToken) claims.ath = createHash('sha256').update(extra.accessToken).digest('base64url');
  return new SignJWT(claims)
    .setProtectedHeader({ alg: key.alg, typ: 'dpop+jwt', jwk: key.jwk })
    .setIssuedAt(extra.iat ?? Math.floor(Date.now() / 1000))
    .setJti(extra.jti ?? randomUUID())
    .sign(key.privateKey);
}

const form = (body: Record<string, string>) => new URLSearchParams(body);
const basic = (c: { client_id: string; client_secret: string }) => `Basic ${Buffer.from(`${c.client_id}:${c.client_secret}`).toString('base64')}`;

/** DPoP (RFC 9449): openid-client as the client, and proofs made by hand for what it would never send. */
describe('DPoP (RFC 9449)', function () {
  this.timeout(90_000);
  let db: TestDatabase;
  let h: ApiHarness;
  let srv: TestServer;
  let other: TestServer;
  /** The second instance's own address (its issuer is the first one's). */
  let otherBase: string;
  let API: string;
  let phone: { client_id: string };
  let gateway: { client_id: string; client_secret: string };
  let strict: { client_id: string; client_secret: string };
  let exchanger: { client_id: string; client_secret: string };
  let key: ProofKey;
  let config: oidc.Configuration;
  let handle: oidc.DPoPHandle;

  /** The code flow of the public client `phone` with openid-client, bound to `key`. */
  async function signIn(params: Record<string, string>) {
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const url = oidc.buildAuthorizationUrl(config, { redirect_uri: REDIRECT, state, code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', ...params });
    const { callback } = await authorize(new Agent(), url.toString(), REDIRECT, ADA);
    return oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state }, undefined, { DPoP: handle });
  }

  const token = async (body: Record<string, string>, headers: Record<string, string>, base = srv.url) => {
    const forwarded: Record<string, string> = base === otherBase ? { 'x-forwarded-host': new URL(srv.url).host } : {};
    const res = await fetch(`${base}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...forwarded, ...headers }, body: form(body) });
    return { status: res.status, body: (await res.json()) as Record<string, string> };
  };
  const userinfo = async (headers: Record<string, string>) => {
    const res = await fetch(`${srv.url}/me`, { headers });
    return { status: res.status, challenge: res.headers.get('www-authenticate') ?? '', body: await res.text() };
  };
  const me = async (headers: Record<string, string>) => {
    const res = await fetch(`${srv.url}/api/v1/me`, { headers });
    return { status: res.status, challenge: res.headers.get('www-authenticate') ?? '', body: (await res.json()) as Record<string, unknown> };
  };
  const introspect = async (value: string) => {
    const res = await fetch(`${srv.url}/token/introspection`, { method: 'POST', headers: { authorization: basic(gateway), 'content-type': 'application/x-www-form-urlencoded' }, body: form({ token: value }) });
    return (await res.json()) as Record<string, unknown>;
  };

  before(async () => {
    db = await freshDatabase();
    h = await startApiHarness({ database: db });
    ({ srv, API } = h);
    // A second instance on the same database behind the same name, as behind a load balancer
    // (which forwards the public host: a proof names the URL the client used, RFC 9449 §4.3).
    other = await startTestServer({ database: db, changePollMs: 100, env: { ISSUER: srv.url, TRUST_PROXY: 'true' } });
    otherBase = `http://127.0.0.1:${other.port}`;
    expect(otherBase).to.not.equal(srv.url);
    await h.cli('users', 'create', '--email', ADA.email, '--password', ADA.password, '--email-verified');
    phone = await h.cli('clients', 'create', '--name', 'Phone', '--public', '--first-party', '--redirect-uri', REDIRECT, '--grant', 'authorization_code', '--grant', 'refresh_token', '--resource', API, '--scope', 'openid offline_access account', '--web-origin', 'http://127.0.0.1:9');
    gateway = await h.cli('clients', 'create', '--name', 'Gateway', '--grant', 'client_credentials', '--resource', API, '--scope', 'account');
    strict = await h.cli('clients', 'create', '--name', 'Strict', '--grant', 'client_credentials', '--resource', API, '--scope', 'account', '--require-dpop');
    exchanger = await h.cli('clients', 'create', '--name', 'Exchanger', '--grant', 'token_exchange', '--exchange-subject-audience', API, '--resource', API, '--scope', 'account');
    key = await proofKey();
    config = await oidc.discovery(new URL(srv.url), phone.client_id, undefined, oidc.None(), { execute: [oidc.allowInsecureRequests] });
    handle = oidc.getDPoPHandle(config, key);
  });

  after(async () => {
    expect(other.errors()).to.deep.equal([]);
    await other?.close();
    await h?.close();
    await db?.drop();
  });

  it('discovery lists the proof algorithms (ES256, EdDSA, Ed25519) and the registration its flag', async () => {
    const d = (await (await fetch(`${srv.url}/.well-known/openid-configuration`)).json()) as Record<string, string[]>;
    expect(d.dpop_signing_alg_values_supported).to.include.members(['ES256', 'EdDSA', 'Ed25519']);
    expect((strict as unknown as Record<string, unknown>).dpop_bound_access_tokens).to.equal(true);
    expect((gateway as unknown as Record<string, unknown>).dpop_bound_access_tokens).to.equal(false);
  });

  it('the admin API sets dpop_bound_access_tokens at creation and with PATCH', async () => {
    const created = await h.call('POST', '/api/v1/clients', { token: h.admin, body: { name: 'Kiosk', grant_types: ['client_credentials'], resources: [API], scope: 'account', dpop_bound_access_tokens: true } });
    expect(created.status).to.equal(201);
    expect(created.json.dpop_bound_access_tokens).to.equal(true);
    const patched = await h.call('PATCH', `/api/v1/clients/${encodeURIComponent(created.json.id)}`, { token: h.admin, body: { dpop_bound_access_tokens: false } });
    expect(patched.status).to.equal(200);
    expect(patched.json).to.include({ dpop_bound_access_tokens: false, name: 'Kiosk' });
    const invalid = await h.call('PATCH', `/api/v1/clients/${encodeURIComponent(created.json.id)}`, { token: h.admin, body: { dpop_bound_access_tokens: 'yes' } });
    expect(invalid.status).to.equal(422);
  });

  describe('a resource token (RFC 9068 JWT)', () => {
    let tokens: Awaited<ReturnType<typeof signIn>>;
    before(async () => {
      tokens = await signIn({ scope: 'openid account', resource: API });
    });

    it('is token_type DPoP with cnf.jkt in the JWT and in introspection', async () => {
      expect(tokens.token_type).to.equal('dpop');
      expect((decodeJwt(tokens.access_token).cnf as { jkt: string }).jkt).to.equal(key.jkt);
      const answer = await introspect(tokens.access_token);
      expect(answer).to.include({ active: true, token_type: 'DPoP' });
      expect(answer.cnf).to.deep.equal({ jkt: key.jkt });
    });

    it('is accepted by /api/v1 with its proof (openid-client), refused as Bearer (RFC 9449 §7.1)', async () => {
      const res = await oidc.fetchProtectedResource(config, tokens.access_token, new URL(`${srv.url}/api/v1/me`), 'GET', undefined, undefined, { DPoP: handle });
      expect(res.status).to.equal(200);
      expect(((await res.json()) as { email: string }).email).to.equal(ADA.email);

      const bearer = await me({ authorization: `Bearer ${tokens.access_token}` });
      expect(bearer.status).to.equal(401);
      expect(bearer.challenge).to.match(/^DPoP /).and.include('error="invalid_token"');
      const noProof = await me({ authorization: `DPoP ${tokens.access_token}` });
      expect(noProof.status).to.equal(401);
      expect(noProof.challenge).to.match(/^DPoP /).and.include('error="invalid_token"');
    });

    it('/api/v1 refuses another key, a wrong ath, an old proof and a replayed one', async () => {
      const url = `${srv.url}/api/v1/me`;
      const stranger = await proofKey();
      const wrongKey = await me({ authorization: `DPoP ${tokens.access_token}`, dpop: await proof(stranger, 'GET', url, { accessToken: tokens.access_token }) });
      expect(wrongKey.status).to.equal(401);
      expect(wrongKey.challenge).to.include('error="invalid_token"');
      const wrongAth = await me({ authorization: `DPoP ${tokens.access_token}`, dpop: await proof(key, 'GET', url, { accessToken: 'another token' }) });
      expect(wrongAth.status).to.equal(401);
      expect(wrongAth.challenge).to.include('error="invalid_dpop_proof"');
      const old = await me({ authorization: `DPoP ${tokens.access_token}`, dpop: await proof(key, 'GET', url, { accessToken: tokens.access_token, iat: Math.floor(Date.now() / 1000) - 120 }) });
      expect(old.status).to.equal(401);
      expect(old.challenge).to.include('error="invalid_dpop_proof"');
      const wrongUrl = await me({ authorization: `DPoP ${tokens.access_token}`, dpop: await proof(key, 'GET', `${srv.url}/api/v1/users`, { accessToken: tokens.access_token }) });
      expect(wrongUrl.status).to.equal(401);

      const once = await proof(key, 'GET', url, { accessToken: tokens.access_token });
      expect((await me({ authorization: `DPoP ${tokens.access_token}`, dpop: once })).status).to.equal(200);
      const again = await me({ authorization: `DPoP ${tokens.access_token}`, dpop: once });
      expect(again.status).to.equal(401);
      expect(again.challenge).to.include('error="invalid_dpop_proof"');
    });

    it('an unbound token with a proof is refused at /api/v1', async () => {
      const plain = await h.cc(gateway, 'account', API);
      const res = await me({ authorization: `DPoP ${plain}`, dpop: await proof(key, 'GET', `${srv.url}/api/v1/me`, { accessToken: plain }) });
      expect(res.status).to.equal(401);
      expect(res.challenge).to.include('error="invalid_token"');
    });

    it('token exchange: a bound subject token is exchanged; the new token is bound to the exchanger\'s own proof', async () => {
      const exchangerKey = await proofKey('EdDSA');
      const body = { grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: tokens.access_token, subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', resource: API };
      const bound = await token(body, { authorization: basic(exchanger), dpop: await proof(exchangerKey, 'POST', `${srv.url}/token`) });
      expect(bound.status, JSON.stringify(bound.body)).to.equal(200);
      expect(bound.body.token_type).to.equal('DPoP');
      expect((decodeJwt(bound.body.access_token!).cnf as { jkt: string }).jkt).to.equal(exchangerKey.jkt);
      const unbound = await token(body, { authorization: basic(exchanger) });
      expect(unbound.status).to.equal(200);
      expect(unbound.body.token_type).to.equal('Bearer');
      expect(decodeJwt(unbound.body.access_token!).cnf).to.equal(undefined);
      const stale = await token(body, { authorization: basic(exchanger), dpop: await proof(exchangerKey, 'POST', `${srv.url}/token`, { iat: Math.floor(Date.now() / 1000) - 120 }) });
      expect(stale.status).to.equal(400);
      expect(stale.body.error).to.equal('invalid_dpop_proof');
    });
  });

  describe('a sign-in token (userinfo) and the public client\'s refresh token', () => {
    let tokens: Awaited<ReturnType<typeof signIn>>;
    before(async () => {
      tokens = await signIn({ scope: 'openid offline_access', prompt: 'consent' });
    });

    it('userinfo answers with the proof (ath checked); Bearer, no proof, another key or a wrong ath are 401 with a DPoP challenge', async () => {
      expect(tokens.token_type).to.equal('dpop');
      const claims = await oidc.fetchUserInfo(config, tokens.access_token, oidc.skipSubjectCheck, { DPoP: handle });
      expect(claims.sub).to.be.a('string');

      const url = `${srv.url}/me`;
      const bearer = await userinfo({ authorization: `Bearer ${tokens.access_token}` });
      expect(bearer.status).to.equal(401);
      expect(bearer.challenge).to.match(/^DPoP /).and.include('error="invalid_token"');
      const noProof = await userinfo({ authorization: `DPoP ${tokens.access_token}` });
      expect(noProof.status).to.equal(401);
      expect(noProof.challenge).to.match(/^DPoP /).and.include('error="invalid_token"');
      const stranger = await userinfo({ authorization: `DPoP ${tokens.access_token}`, dpop: await proof(await proofKey(), 'GET', url, { accessToken: tokens.access_token }) });
      expect(stranger.status).to.equal(401);
      expect(stranger.challenge).to.include('error="invalid_token"');
      const wrongAth = await userinfo({ authorization: `DPoP ${tokens.access_token}`, dpop: await proof(key, 'GET', url, { accessToken: 'x' }) });
      expect(wrongAth.status).to.equal(401);
      expect(wrongAth.challenge).to.include('error="invalid_dpop_proof"');
      const old = await userinfo({ authorization: `DPoP ${tokens.access_token}`, dpop: await proof(key, 'GET', url, { accessToken: tokens.access_token, iat: Math.floor(Date.now() / 1000) - 90 }) });
      expect(old.status).to.equal(401);
      expect(old.challenge).to.include('error="invalid_dpop_proof"');
      expect(old.body).to.not.include(ADA.email);
    });

    it('the refresh token is bound: refreshed with the proof, refused without it or with another key', async () => {
      expect(tokens.refresh_token).to.be.a('string');
      const noProof = await token({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token!, client_id: phone.client_id }, {});
      expect(noProof.status).to.equal(400);
      expect(noProof.body.error).to.equal('invalid_grant');
      const otherKey = await token({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token!, client_id: phone.client_id }, { dpop: await proof(await proofKey(), 'POST', `${srv.url}/token`) });
      expect(otherKey.status).to.equal(400);
      expect(otherKey.body.error).to.equal('invalid_grant');
      const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token!, undefined, { DPoP: handle });
      expect(refreshed.token_type).to.equal('dpop');
      expect((await oidc.fetchUserInfo(config, refreshed.access_token, oidc.skipSubjectCheck, { DPoP: handle })).sub).to.be.a('string');
    });
  });

  describe('the token endpoint', () => {
    const cc = { grant_type: 'client_credentials', scope: 'account' };

    it('a client registered with dpop_bound_access_tokens needs a proof (invalid_grant without one, also for token exchange)', async () => {
      const without = await token({ ...cc, resource: API }, { authorization: basic(strict) });
      expect(without.status).to.equal(400);
      // oidc-provider's answer for its own grants (its description stays generic).
      expect(without.body.error).to.equal('invalid_grant');
      const edKey = await proofKey('EdDSA');
      const withProof = await token({ ...cc, resource: API }, { authorization: basic(strict), dpop: await proof(edKey, 'POST', `${srv.url}/token`) });
      expect(withProof.status, JSON.stringify(withProof.body)).to.equal(200);
      expect(withProof.body.token_type).to.equal('DPoP');
      expect((decodeJwt(withProof.body.access_token!).cnf as { jkt: string }).jkt).to.equal(edKey.jkt);

      const strictExchanger = await h.cli('clients', 'create', '--name', 'Strict exchanger', '--grant', 'token_exchange', '--exchange-subject-audience', API, '--resource', API, '--scope', 'account', '--require-dpop');
      const exchange = { grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: await h.userToken(ADA, 'account'), subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', resource: API };
      const refused = await token(exchange, { authorization: basic(strictExchanger) });
      expect(refused.status).to.equal(400);
      expect(refused.body).to.include({ error: 'invalid_grant', error_description: 'DPoP proof JWT not provided' });
      const exchanged = await token(exchange, { authorization: basic(strictExchanger), dpop: await proof(edKey, 'POST', `${srv.url}/token`) });
      expect(exchanged.status, JSON.stringify(exchanged.body)).to.equal(200);
      expect(exchanged.body.token_type).to.equal('DPoP');
    });

    it('accepts Ed25519 as EdDSA\'s alias, refuses a proof older or newer than 60 s', async () => {
      const ed = { ...(await proofKey('EdDSA')), alg: 'Ed25519' };
      const alias = await token({ ...cc, resource: API }, { authorization: basic(strict), dpop: await proof(ed, 'POST', `${srv.url}/token`) });
      expect(alias.status, JSON.stringify(alias.body)).to.equal(200);
      const now = Math.floor(Date.now() / 1000);
      for (const iat of [now - 90, now + 90]) {
        const res = await token({ ...cc, resource: API }, { authorization: basic(strict), dpop: await proof(key, 'POST', `${srv.url}/token`, { iat }) });
        expect(res.status).to.equal(400);
        expect(res.body.error).to.equal('invalid_dpop_proof');
      }
    });

    it('a proof is used once, across instances: sequentially and concurrently exactly one request succeeds', async () => {
      // The other instance accepts a fresh proof: what it refuses below is the replay.
      expect((await token({ ...cc, resource: API }, { authorization: basic(strict), dpop: await proof(key, 'POST', `${srv.url}/token`) }, otherBase)).status).to.equal(200);
      const once = await proof(key, 'POST', `${srv.url}/token`);
      const first = await token({ ...cc, resource: API }, { authorization: basic(strict), dpop: once });
      expect(first.status).to.equal(200);
      const replayed = await token({ ...cc, resource: API }, { authorization: basic(strict), dpop: once }, otherBase);
      expect(replayed.status).to.equal(400);
      expect(replayed.body.error).to.equal('invalid_grant');
      expect((await token({ ...cc, resource: API }, { authorization: basic(strict), dpop: once })).status).to.equal(400);

      for (let round = 0; round < 5; round++) {
        const shared = await proof(key, 'POST', `${srv.url}/token`);
        const results = await Promise.all([srv.url, otherBase, srv.url, otherBase].map((base) => token({ ...cc, resource: API }, { authorization: basic(strict), dpop: shared }, base)));
        expect(results.filter((r) => r.status === 200), JSON.stringify(results)).to.have.length(1);
        expect(results.filter((r) => r.status === 400)).to.have.length(3);
      }
    });

    it('a userinfo proof replayed at the other instance is refused', async () => {
      const signedIn = await signIn({ scope: 'openid' });
      const once = await proof(key, 'GET', `${srv.url}/me`, { accessToken: signedIn.access_token });
      const headers = { authorization: `DPoP ${signedIn.access_token}`, dpop: once };
      expect((await fetch(`${srv.url}/me`, { headers })).status).to.equal(200);
      const viaOther = { 'x-forwarded-host': new URL(srv.url).host };
      const fresh = await fetch(`${otherBase}/me`, { headers: { ...viaOther, authorization: `DPoP ${signedIn.access_token}`, dpop: await proof(key, 'GET', `${srv.url}/me`, { accessToken: signedIn.access_token }) } });
      expect(fresh.status).to.equal(200);
      const replayed = await fetch(`${otherBase}/me`, { headers: { ...headers, ...viaOther } });
      expect(replayed.headers.get('www-authenticate')).to.include('error="invalid_token"');
      expect(replayed.status).to.equal(401);
      expect(replayed.headers.get('www-authenticate')).to.match(/^DPoP /);
    });
  });
});

describe('DPoP htu of Latch\'s own endpoints', () => {
  it('is the issuer followed by the request path, the issuer\'s own path kept', async () => {
    const { proofUrl } = await import('../src/middleware/api-auth.js');
    expect(proofUrl('https://id.example.com', '/api/v1/me')).to.equal('https://id.example.com/api/v1/me');
    expect(proofUrl('https://id.example.com/', '/api/v1/me')).to.equal('https://id.example.com/api/v1/me');
    expect(proofUrl('https://example.com/auth', '/api/v1/me')).to.equal('https://example.com/auth/api/v1/me');
    expect(proofUrl('https://example.com/auth/', '/api/v1/accounts/a%20b')).to.equal('https://example.com/auth/api/v1/accounts/a%20b');
  });
});
