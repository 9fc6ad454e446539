import { createVerifier } from '@latch/verify';
import { expect } from 'chai';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import * as oidc from 'openid-client';

import { CLI_ACTOR } from '../src/services/audit.js';
import { Agent, authorize, codeFlowTokens } from './helpers/agent.js';
import { freshDatabase, startTestServer, type TestDatabase, type TestServer } from './helpers/server.js';

const REDIRECT = 'http://127.0.0.1:9/callback';
// A gateway in front of the orders service, which calls the ledger: all three name the same
// scopes, so a user's `orders:read` follows the call down the chain (RFC 8693 §1.1 delegation).
const GATEWAY = 'https://gateway.example.test';
const ORDERS = 'https://orders.example.test';
const LEDGER = 'https://ledger.example.test';
const SHORT = 'https://short-lived.example.test';
const GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const AT = 'urn:ietf:params:oauth:token-type:access_token';
const ADA = { email: 'ada@example.test', password: 'correct horse battery staple' };

type Client = { client_id: string; client_secret: string };
type TokenAnswer = { status: number; body: Record<string, any> };

/** RFC 8693 token exchange over raw HTTP against a real Latch (openid-client has no exchange helper). */
describe('token exchange (RFC 8693)', function () {
  this.timeout(60_000);

  let srv: TestServer;
  let web: Client;
  let gw: Client;
  let ordersSvc: Client;
  let machine: Client;
  let adaId: string;
  let acmeId: string;
  let userToken: string;

  const cli = async (...args: string[]) => {
    const r = await srv.cli(...args);
    expect(r.code, `${args.join(' ')}: ${r.stderr}`).to.equal(0);
    return r.json;
  };

  async function signIn(params: Record<string, string>) {
    return codeFlowTokens(srv.url, web, REDIRECT, ADA, params);
  }

  async function post(path: string, client: Client, form: Record<string, string>): Promise<TokenAnswer> {
    const res = await fetch(new URL(path, srv.url), {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(form),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : {} };
  }

  const exchange = (client: Client, subjectToken: string, extra: Record<string, string> = {}) =>
    post('/token', client, { grant_type: GRANT, subject_token: subjectToken, subject_token_type: AT, ...extra });

  async function refused(answer: Promise<TokenAnswer>, error: string) {
    const { status, body } = await answer;
    expect(body.error, JSON.stringify(body)).to.equal(error);
    expect(status).to.equal(error === 'invalid_client' ? 401 : 400);
    expect(body).to.not.have.property('access_token');
    return body;
  }

  const introspect = async (client: Client, token: string) => (await post('/token/introspection', client, { token })).body;

  before(async () => {
    srv = await startTestServer({ changePollMs: 100 });
    adaId = (await cli('users', 'create', '--email', ADA.email, '--password', ADA.password, '--email-verified')).id;
    await cli('resources', 'create', '--identifier', GATEWAY, '--scope', 'orders:read', '--scope', 'orders:write');
    await cli('resources', 'create', '--identifier', ORDERS, '--scope', 'orders:read', '--scope', 'orders:write', '--alg', 'ES256', '--ttl', '120');
    await cli('resources', 'create', '--identifier', LEDGER, '--scope', 'orders:read', '--scope', 'orders:write', '--alg', 'EdDSA', '--ttl', '3600', '--rbac');
    await cli('resources', 'create', '--identifier', SHORT, '--scope', 'orders:read', '--ttl', '2');
    // On the ledger (an RBAC resource) Ada's roles permit reading only.
    await cli('roles', 'create', '--name', 'ledger-reader', '--permission', `${LEDGER}:orders:read`);
    await cli('roles', 'assign', '--role', 'ledger-reader', '--user', ADA.email);
    await cli('roles', 'grant', '--role', 'owner', '--org', '--permission', `${GATEWAY}:orders:read`);
    acmeId = (await cli('orgs', 'create', '--name', 'Acme', '--slug', 'acme', '--owner', ADA.email)).id;
    web = await cli('clients', 'create', '--name', 'Shop', '--first-party', '--redirect-uri', REDIRECT, '--resource', GATEWAY, '--resource', SHORT, '--scope', 'openid email roles organizations orders:read');
    gw = await cli('clients', 'create', '--name', 'Gateway', '--grant', 'token_exchange', '--exchange-subject-audience', GATEWAY, '--exchange-subject-audience', SHORT, '--resource', ORDERS, '--scope', 'orders:read', '--scope', 'orders:write');
    ordersSvc = await cli('clients', 'create', '--name', 'Orders service', '--grant', 'token_exchange', '--exchange-subject-audience', ORDERS, '--resource', LEDGER, '--scope', 'orders:read', '--scope', 'orders:write');
    machine = await cli('clients', 'create', '--name', 'Batch job', '--grant', 'client_credentials', '--resource', ORDERS);
    await srv.running.services.feed.pollNow();
    userToken = (await signIn({ scope: 'openid email roles orders:read', resource: GATEWAY })).access_token;
  });

  after(async () => {
    expect(srv.errors(), JSON.stringify(srv.errors())).to.deep.equal([]);
    await srv.close();
  });

  it('lists the grant type in discovery and registers clients for it with their subject audiences', async () => {
    const discovery = (await (await fetch(`${srv.url}/.well-known/openid-configuration`)).json()) as { grant_types_supported: string[] };
    expect(discovery.grant_types_supported).to.include(GRANT);
    expect(gw).to.include({ public: false });
    expect((gw as any).grant_types).to.deep.equal(['token_exchange']);
    expect((gw as any).exchange_subject_audiences).to.deep.equal([GATEWAY, SHORT]);
    expect((web as any).exchange_subject_audiences).to.deep.equal([]);

    const missing = await srv.cli('clients', 'create', '--name', 'X', '--grant', 'token_exchange', '--resource', ORDERS);
    expect(missing.code).to.not.equal(0);
    expect(missing.stderr).to.contain('exchange-subject-audience');
    const stray = await srv.cli('clients', 'create', '--name', 'X', '--grant', 'client_credentials', '--exchange-subject-audience', GATEWAY);
    expect(stray.code).to.not.equal(0);
    const publicOne = await srv.cli('clients', 'create', '--name', 'X', '--public', '--grant', 'token_exchange', '--exchange-subject-audience', GATEWAY);
    expect(publicOne.code).to.not.equal(0);
    expect(publicOne.stderr).to.contain('confidential');
  });

  it('exchanges a user token for one at the target resource, acting for the user', async () => {
    const { status, body } = await exchange(gw, userToken, { resource: ORDERS });
    expect(status, JSON.stringify(body)).to.equal(200);
    expect(body).to.include({ issued_token_type: AT, token_type: 'Bearer', scope: 'orders:read', expires_in: 120 });
    expect(body).to.not.have.property('refresh_token');

    const header = decodeProtectedHeader(body.access_token);
    expect(header).to.include({ typ: 'at+jwt', alg: 'ES256' });
    const subject = decodeJwt(userToken);
    const claims = decodeJwt(body.access_token);
    expect(claims).to.include({ iss: srv.url, sub: adaId, aud: ORDERS, client_id: gw.client_id, scope: 'orders:read', email: ADA.email, email_verified: true });
    expect(claims.act).to.deep.equal({ sub: gw.client_id });
    expect(claims.roles).to.deep.equal(subject.roles);
    expect(claims.jti).to.be.a('string').and.not.equal(subject.jti);

    // Signed by Latch's published keys; the resource server's verifier sees the actor.
    const jwks = createLocalJWKSet((await (await fetch(`${srv.url}/jwks`)).json()) as never);
    await jwtVerify(body.access_token, jwks, { issuer: srv.url, audience: ORDERS, typ: 'at+jwt' });
    const verified = await createVerifier({ issuer: srv.url, audience: ORDERS }).verify(body.access_token, { scopes: ['orders:read'] });
    expect(verified).to.include({ sub: adaId, client_id: gw.client_id });
    expect(verified.act).to.deep.equal({ sub: gw.client_id });

    // Introspection (RFC 7662) by the exchanging client: active, with the actor.
    const seen = await introspect(gw, body.access_token);
    expect(seen).to.include({ active: true, sub: adaId, client_id: gw.client_id, aud: ORDERS });
    expect(seen.act).to.deep.equal({ sub: gw.client_id });

    // `audience` names the target as well as `resource` does.
    const byAudience = await exchange(gw, userToken, { audience: ORDERS, scope: 'orders:read' });
    expect(byAudience.status, JSON.stringify(byAudience.body)).to.equal(200);
    expect(decodeJwt(byAudience.body.access_token).aud).to.equal(ORDERS);
  });

  it('nests the previous actor: user → gateway → orders service → ledger (RFC 8693 §4.1)', async () => {
    const first = await exchange(gw, userToken, { resource: ORDERS });
    expect(first.status).to.equal(200);
    const second = await exchange(ordersSvc, first.body.access_token, { resource: LEDGER });
    expect(second.status, JSON.stringify(second.body)).to.equal(200);
    const claims = decodeJwt(second.body.access_token);
    expect(claims).to.include({ sub: adaId, aud: LEDGER, client_id: ordersSvc.client_id, scope: 'orders:read' });
    expect(claims.act).to.deep.equal({ sub: ordersSvc.client_id, act: { sub: gw.client_id } });
    expect(decodeProtectedHeader(second.body.access_token).alg).to.equal('EdDSA');
    // The ledger's own lifetime is an hour; the token lives no longer than the one it came from.
    expect(second.body.expires_in).to.be.at.most(120);
    expect(claims.exp).to.be.at.most(decodeJwt(first.body.access_token).exp!);
    const verified = await createVerifier({ issuer: srv.url, audience: LEDGER }).verify(second.body.access_token);
    expect(verified.act).to.deep.equal({ sub: ordersSvc.client_id, act: { sub: gw.client_id } });
    expect(await introspect(ordersSvc, second.body.access_token)).to.include({ active: true });
  });

  it('refuses a client that is not registered for the grant: unauthorized_client', async () => {
    await refused(exchange(machine, userToken, { resource: ORDERS }), 'unauthorized_client');
    await refused(exchange(web, userToken, { resource: ORDERS }), 'unauthorized_client');
    await refused(exchange({ ...gw, client_secret: 'wrong' }, userToken, { resource: ORDERS }), 'invalid_client');
  });

  it('refuses a subject token whose audience the client may not exchange: invalid_grant', async () => {
    const forOrders = (await exchange(gw, userToken, { resource: ORDERS })).body.access_token as string;
    // The gateway may exchange gateway tokens only, not orders tokens.
    const body = await refused(exchange(gw, forOrders, { resource: ORDERS }), 'invalid_grant');
    expect(body.error_description).to.contain('exchange');
    // And the orders service may not exchange the user's gateway token.
    await refused(exchange(ordersSvc, userToken, { resource: LEDGER }), 'invalid_grant');
  });

  it('refuses a target the client may not obtain: invalid_target', async () => {
    await refused(exchange(gw, userToken, { resource: LEDGER }), 'invalid_target');
    await refused(exchange(gw, userToken, { resource: 'https://unknown.example.test' }), 'invalid_target');
    await refused(exchange(gw, userToken, { resource: ORDERS, audience: LEDGER }), 'invalid_target');
  });

  it('refuses a wider scope: invalid_scope (subject token, client registration and roles all bound it)', async () => {
    // The user's token holds orders:read only, though the gateway may ask for orders:write.
    await refused(exchange(gw, userToken, { resource: ORDERS, scope: 'orders:write' }), 'invalid_scope');
    await refused(exchange(gw, userToken, { resource: ORDERS, scope: 'orders:read orders:delete' }), 'invalid_scope');
    // On the ledger Ada's roles permit orders:read only, whatever the token chain holds.
    const wide = (await signIn({ scope: 'openid orders:read', resource: GATEWAY })).access_token;
    const forOrders = (await exchange(gw, wide, { resource: ORDERS })).body.access_token as string;
    await refused(exchange(ordersSvc, forOrders, { resource: LEDGER, scope: 'orders:write' }), 'invalid_scope');
  });

  it('refuses malformed requests: invalid_request', async () => {
    await refused(post('/token', gw, { grant_type: GRANT, subject_token_type: AT, resource: ORDERS }), 'invalid_request');
    await refused(post('/token', gw, { grant_type: GRANT, subject_token: userToken, resource: ORDERS }), 'invalid_request');
    await refused(exchange(gw, userToken, { resource: ORDERS, subject_token_type: 'urn:ietf:params:oauth:token-type:id_token' }), 'invalid_request');
    await refused(exchange(gw, userToken, { resource: ORDERS, actor_token: userToken, actor_token_type: AT }), 'invalid_request');
    await refused(exchange(gw, userToken, { resource: ORDERS, requested_token_type: 'urn:ietf:params:oauth:token-type:refresh_token' }), 'invalid_request');
  });

  it('refuses an ID token, a userinfo-only token, a machine token and garbage as the subject: invalid_grant', async () => {
    const tokens = await signIn({ scope: 'openid email', resource: GATEWAY });
    await refused(exchange(gw, tokens.id_token!, { resource: ORDERS }), 'invalid_grant');
    const signInOnly = await signIn({ scope: 'openid email' });
    expect(signInOnly.access_token.split('.')).to.have.length(1);
    const body = await refused(exchange(gw, signInOnly.access_token, { resource: ORDERS }), 'invalid_grant');
    expect(body.error_description).to.contain('userinfo');
    await refused(exchange(gw, 'not-a-token', { resource: ORDERS }), 'invalid_grant');
    // A machine's own token (client credentials) has no user to act for.
    const svc: Client = await cli('clients', 'create', '--name', 'Gateway job', '--grant', 'client_credentials', '--resource', GATEWAY, '--scope', 'orders:read');
    await srv.running.services.feed.pollNow();
    const own = await post('/token', svc, { grant_type: 'client_credentials', resource: GATEWAY, scope: 'orders:read' });
    expect(own.status, JSON.stringify(own.body)).to.equal(200);
    const machineBody = await refused(exchange(gw, own.body.access_token, { resource: ORDERS }), 'invalid_grant');
    expect(machineBody.error_description).to.contain('user');
  });

  it('refuses an expired subject token and a revoked one; revoking the grant ends the exchanged tokens', async () => {
    const short = (await signIn({ scope: 'openid orders:read', resource: SHORT })).access_token;
    await new Promise((r) => setTimeout(r, 3100));
    await refused(exchange(gw, short, { resource: ORDERS }), 'invalid_grant');

    // RFC 7009 revocation of the subject token by its client.
    const revoked = (await signIn({ scope: 'openid orders:read', resource: GATEWAY })).access_token;
    expect((await exchange(gw, revoked, { resource: ORDERS })).status).to.equal(200);
    expect((await post('/token/revocation', web, { token: revoked })).status).to.equal(200);
    await refused(exchange(gw, revoked, { resource: ORDERS }), 'invalid_grant');

    // The user revokes the application's access (its grant): tokens exchanged from it end too.
    const live = (await signIn({ scope: 'openid orders:read', resource: GATEWAY })).access_token;
    const exchanged = (await exchange(gw, live, { resource: ORDERS })).body.access_token as string;
    expect(await introspect(gw, exchanged)).to.include({ active: true });
    const grantId = decodeJwt(live).grant_id as string;
    expect(decodeJwt(exchanged).grant_id).to.equal(grantId);
    expect(await srv.running.services.sessions.revokeGrant(adaId, grantId, CLI_ACTOR)).to.equal(true);
    expect(await introspect(gw, exchanged)).to.deep.equal({ active: false });
    await refused(exchange(gw, live, { resource: ORDERS }), 'invalid_grant');
  });

  it('exchanges a personal access token as the subject', async () => {
    const { token } = await srv.running.services.personalTokens.create({ id: adaId }, { name: 'script', scopes: [`${GATEWAY}:orders:read`] });
    const { status, body } = await exchange(gw, token, { resource: ORDERS });
    expect(status, JSON.stringify(body)).to.equal(200);
    const claims = decodeJwt(body.access_token);
    expect(claims).to.include({ sub: adaId, aud: ORDERS, client_id: gw.client_id, scope: 'orders:read' });
    expect(claims.act).to.deep.equal({ sub: gw.client_id });
    expect(await introspect(gw, body.access_token)).to.include({ active: true });
    await refused(exchange(gw, `lat_${'A'.repeat(43)}`, { resource: ORDERS }), 'invalid_grant');
  });

  it('carries the organization of the subject token over', async () => {
    const orgToken = (await signIn({ scope: 'openid organizations orders:read', resource: GATEWAY, organization: acmeId })).access_token;
    const subject = decodeJwt(orgToken);
    expect(subject.org_id).to.equal(acmeId);
    const { status, body } = await exchange(gw, orgToken, { resource: ORDERS });
    expect(status, JSON.stringify(body)).to.equal(200);
    const claims = decodeJwt(body.access_token);
    expect(claims).to.include({ org_id: acmeId, org_role: subject.org_role });
    expect(claims.organizations).to.deep.equal(subject.organizations);
  });
});

/** Two processes of one service on one database: what one issued, the other exchanges; a revocation at one is seen by the other. */
describe('token exchange on two instances of one database', function () {
  this.timeout(60_000);
  let db: TestDatabase;
  let a: TestServer;
  let b: TestServer;

  before(async () => {
    db = await freshDatabase();
    a = await startTestServer({ database: db, changePollMs: 200 });
    b = await startTestServer({ database: db, changePollMs: 200, env: { ISSUER: a.url } });
  });

  after(async () => {
    expect([...a.errors(), ...b.errors()]).to.deep.equal([]);
    await a.close();
    await b.close();
    await db.drop();
  });

  it('exchanges at B a token issued by A, and refuses it at B once revoked at A', async () => {
    const cli = async (...args: string[]) => {
      const r = await a.cli(...args);
      expect(r.code, r.stderr).to.equal(0);
      return r.json;
    };
    await cli('users', 'create', '--email', ADA.email, '--password', ADA.password);
    await cli('resources', 'create', '--identifier', GATEWAY, '--scope', 'orders:read');
    await cli('resources', 'create', '--identifier', ORDERS, '--scope', 'orders:read');
    const web: Client = await cli('clients', 'create', '--name', 'Shop', '--first-party', '--redirect-uri', REDIRECT, '--resource', GATEWAY, '--scope', 'openid orders:read');
    const gw: Client = await cli('clients', 'create', '--name', 'Gateway', '--grant', 'token_exchange', '--exchange-subject-audience', GATEWAY, '--resource', ORDERS, '--scope', 'orders:read');
    await a.running.services.feed.pollNow();
    await b.running.services.feed.pollNow();

    const config = await oidc.discovery(new URL(a.url), web.client_id, web.client_secret, oidc.ClientSecretBasic(web.client_secret), { execute: [oidc.allowInsecureRequests] });
    const verifier = oidc.randomPKCECodeVerifier();
    const url = oidc.buildAuthorizationUrl(config, { redirect_uri: REDIRECT, scope: 'openid orders:read', resource: GATEWAY, code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256' });
    const { callback } = await authorize(new Agent(), url.toString(), REDIRECT, ADA);
    const subject = (await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier })).access_token;

    const at = (srv: TestServer, path: string, client: Client, form: Record<string, string>) =>
      fetch(`http://127.0.0.1:${srv.port}${path}`, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(form),
      }).then(async (res) => ({ status: res.status, body: (await res.json().catch(() => ({}))) as Record<string, any> }));
    const form = { grant_type: GRANT, subject_token: subject, subject_token_type: AT, resource: ORDERS };

    const exchanged = await at(b, '/token', gw, form);
    expect(exchanged.status, JSON.stringify(exchanged.body)).to.equal(200);
    expect(decodeJwt(exchanged.body.access_token).act).to.deep.equal({ sub: gw.client_id });
    expect((await at(a, '/token/introspection', gw, { token: exchanged.body.access_token })).body).to.include({ active: true });

    expect((await at(a, '/token/revocation', web, { token: subject })).status).to.equal(200);
    const refused = await at(b, '/token', gw, form);
    expect(refused.status).to.equal(400);
    expect(refused.body.error).to.equal('invalid_grant');
  });
});
