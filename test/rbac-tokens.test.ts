import { expect } from 'chai';
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import * as oidc from 'openid-client';

import { Agent, authorize } from './helpers/agent.js';
import { startTestServer, type TestServer } from './helpers/server.js';

const REDIRECT = 'http://127.0.0.1:9/callback';
const API = 'https://orders.example.test';
const PLAIN_API = 'https://plain.example.test';
const ADA = { email: 'ada@example.test', password: 'correct horse battery staple' };
const BOB = { email: 'bob@example.test', password: 'another long passphrase here' };
const ROOT = { email: 'root@example.test', password: 'superuser passphrase for root' };
const CARA = { email: 'cara@example.test', password: 'cara has a long passphrase', name: 'Cara Lovelace' };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Roles, organizations and RBAC as relying parties and resource servers see them: in tokens. */
describe('roles and organizations in tokens', () => {
  let srv: TestServer;
  let web: { client_id: string; client_secret: string };
  let webPlain: { client_id: string; client_secret: string };
  let thirdParty: { client_id: string; client_secret: string };
  let machine: { client_id: string; client_secret: string };
  let rs: { client_id: string; client_secret: string };
  let acme: { id: string; slug: string };
  let globex: { id: string; slug: string };
  let ids: Record<string, string>;

  const cli = async (...args: string[]) => {
    const r = await srv.cli(...args);
    expect(r.code, `${args.join(' ')}: ${r.stderr}`).to.equal(0);
    return r.json;
  };

  const discover = (c: { client_id: string; client_secret: string }) =>
    oidc.discovery(new URL(srv.url), c.client_id, c.client_secret, oidc.ClientSecretBasic(c.client_secret), { execute: [oidc.allowInsecureRequests] });

  async function authorizationUrl(client: { client_id: string; client_secret: string }, params: Record<string, string>) {
    const config = await discover(client);
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const url = oidc.buildAuthorizationUrl(config, { redirect_uri: REDIRECT, state, code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', ...params });
    return { config, url, verifier, state };
  }

  async function signIn(user: { email: string; password: string }, params: Record<string, string>, client = web, agent = new Agent()) {
    const { config, url, verifier, state } = await authorizationUrl(client, params);
    const { callback, pages } = await authorize(agent, url.toString(), REDIRECT, user);
    const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state });
    return { config, tokens, pages, agent };
  }

  async function tokenRequest(client: { client_id: string; client_secret: string }, params: Record<string, string>) {
    const res = await fetch(`${srv.url}/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(params),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }

  async function introspect(token: string) {
    const res = await fetch(`${srv.url}/token/introspection`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${rs.client_id}:${rs.client_secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token }),
    });
    expect(res.status).to.equal(200);
    return (await res.json()) as Record<string, unknown>;
  }

  const verifyAt = async (token: string) => (await jwtVerify(token, createRemoteJWKSet(new URL(`${srv.url}/jwks`)), { issuer: srv.url, audience: API, typ: 'at+jwt' })).payload;

  before(async () => {
    srv = await startTestServer({ changePollMs: 100 });
    ids = {};
    for (const u of [ADA, BOB]) ids[u.email] = (await cli('users', 'create', '--email', u.email, '--password', u.password)).id;
    ids[ROOT.email] = (await cli('users', 'create', '--email', ROOT.email, '--password', ROOT.password, '--superuser')).id;
    ids[CARA.email] = (await cli('users', 'create', '--email', CARA.email, '--password', CARA.password, '--name', CARA.name, '--email-verified')).id;
    await cli('resources', 'create', '--identifier', API, '--scope', 'orders:read', '--scope', 'orders:write', '--scope', 'orders:delete', '--rbac', '--alg', 'ES256');
    await cli('resources', 'create', '--identifier', PLAIN_API, '--scope', 'plain:read');
    web = await cli('clients', 'create', '--name', 'Shop', '--first-party', '--redirect-uri', REDIRECT, '--resource', API, '--scope', 'openid email profile roles organizations offline_access orders:read orders:write orders:delete');
    webPlain = await cli('clients', 'create', '--name', 'Dashboard', '--first-party', '--redirect-uri', REDIRECT, '--scope', 'openid email profile roles organizations');
    thirdParty = await cli('clients', 'create', '--name', 'Partner', '--redirect-uri', REDIRECT, '--resource', API, '--scope', 'openid roles orders:read orders:write orders:delete');
    machine = await cli('clients', 'create', '--name', 'Site agent', '--grant', 'client_credentials', '--resource', API, '--scope', 'roles orders:read orders:write');
    rs = await cli('clients', 'create', '--name', 'Orders API', '--grant', 'client_credentials', '--resource', API, '--resource', PLAIN_API);
    await cli('roles', 'create', '--name', 'clerk', '--description', 'Reads and writes orders', '--permission', `${API}:orders:read`, '--permission', `${API}:orders:write`);
    await cli('roles', 'create', '--name', 'support');
    await cli('roles', 'assign', '--role', 'clerk', '--user', ADA.email);
    await cli('roles', 'assign', '--role', 'support', '--user', ADA.email);
    await cli('roles', 'grant', '--role', 'viewer', '--org', '--permission', `${API}:orders:read`);
    await cli('roles', 'grant', '--role', 'owner', '--org', '--permission', `${API}:orders:read`, '--permission', `${API}:orders:write`, '--permission', `${API}:orders:delete`);
    acme = await cli('orgs', 'create', '--name', 'Acme', '--slug', 'acme', '--owner', BOB.email);
    globex = await cli('orgs', 'create', '--name', 'Globex', '--slug', 'globex');
    await cli('orgs', 'members', 'add', '--org', 'acme', '--user', ADA.email, '--role', 'viewer');
    await cli('orgs', 'members', 'add', '--org', acme.id, '--client', machine.client_id, '--role', 'viewer');
  });

  after(async () => {
    expect(srv.errors(), JSON.stringify(srv.errors())).to.deep.equal([]);
    await srv.close();
  });

  it('puts roles and organizations in the ID token, userinfo and the JWT access token, by scope', async () => {
    const { tokens } = await signIn(ADA, { scope: 'openid roles organizations orders:read', resource: API });
    const id = tokens.claims()!;
    expect(id.roles).to.deep.equal(['clerk', 'support']);
    expect(id).not.to.have.property('is_superuser');
    expect(id.organizations).to.deep.equal([{ id: acme.id, slug: 'acme', role: 'viewer' }]);
    expect(id).not.to.have.property('org_id');
    const at = await verifyAt(tokens.access_token);
    expect(at.roles).to.deep.equal(['clerk', 'support']);
    expect(at.organizations).to.deep.equal([{ id: acme.id, slug: 'acme', role: 'viewer' }]);
    expect(at.scope).to.equal('orders:read');
    // Userinfo needs an access token for it (no resource): a second flow with the OIDC scopes only.
    const plain = await signIn(ADA, { scope: 'openid roles organizations' }, webPlain);
    const info = await oidc.fetchUserInfo(plain.config, plain.tokens.access_token, id.sub);
    expect(info.roles).to.deep.equal(['clerk', 'support']);
    expect(info.organizations).to.deep.equal([{ id: acme.id, slug: 'acme', role: 'viewer' }]);
    // Introspection of the opaque userinfo token carries them too.
    const intro = await fetch(`${srv.url}/token/introspection`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${webPlain.client_id}:${webPlain.client_secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: plain.tokens.access_token }),
    });
    const body = (await intro.json()) as Record<string, unknown>;
    expect(body.active).to.equal(true);
    expect(body.roles).to.deep.equal(['clerk', 'support']);
  });

  it('puts email, email_verified and name in access tokens and introspection by scope (RFC 9068 §2.2.3.1)', async () => {
    const { tokens } = await signIn(CARA, { scope: 'openid email profile orders:read', resource: API });
    const at = await verifyAt(tokens.access_token);
    expect(at.sub).to.equal(ids[CARA.email]);
    expect(at.email).to.equal(CARA.email);
    expect(at.email_verified).to.equal(true);
    expect(at.name).to.equal(CARA.name);
    // The JWT's introspection answers the same identity.
    const viaIntrospection = await introspect(tokens.access_token);
    expect(viaIntrospection).to.include({ active: true, email: CARA.email, email_verified: true, name: CARA.name });

    const emailOnly = await verifyAt((await signIn(ADA, { scope: 'openid email orders:read', resource: API })).tokens.access_token);
    expect(emailOnly).to.include({ email: ADA.email, email_verified: false });
    expect(emailOnly).not.to.have.property('name');

    const neither = await verifyAt((await signIn(CARA, { scope: 'openid orders:read', resource: API })).tokens.access_token);
    for (const claim of ['email', 'email_verified', 'name']) expect(neither, claim).not.to.have.property(claim);

    // An opaque (userinfo) access token: introspection carries the identity of its scopes.
    const plain = await signIn(CARA, { scope: 'openid email profile' }, webPlain);
    const intro = await fetch(`${srv.url}/token/introspection`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${webPlain.client_id}:${webPlain.client_secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: plain.tokens.access_token }),
    });
    expect(await intro.json()).to.include({ active: true, sub: ids[CARA.email], email: CARA.email, email_verified: true, name: CARA.name });
    const bare = await signIn(CARA, { scope: 'openid' }, webPlain);
    const bareIntro = (await (await fetch(`${srv.url}/token/introspection`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${webPlain.client_id}:${webPlain.client_secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: bare.tokens.access_token }),
    })).json()) as Record<string, unknown>;
    expect(bareIntro.active).to.equal(true);
    for (const claim of ['email', 'email_verified', 'name']) expect(bareIntro, claim).not.to.have.property(claim);
  });

  it('releases nothing without the scopes, [] for no roles, and is_superuser only for superusers', async () => {
    const none = await signIn(ADA, { scope: 'openid email' });
    expect(none.tokens.claims()).not.to.have.any.keys('roles', 'organizations', 'is_superuser');
    const bob = await signIn(BOB, { scope: 'openid roles' });
    expect(bob.tokens.claims()!.roles).to.deep.equal([]);
    expect(bob.tokens.claims()).not.to.have.property('is_superuser');
    const root = await signIn(ROOT, { scope: 'openid roles organizations' });
    expect(root.tokens.claims()!.is_superuser).to.equal(true);
    expect(root.tokens.claims()!.organizations).to.deep.equal([]);
  });

  it('grants RBAC scopes by global roles: requested ∩ client ∩ permitted', async () => {
    const { tokens } = await signIn(ADA, { scope: 'openid orders:read orders:write orders:delete', resource: API });
    expect((await verifyAt(tokens.access_token)).scope).to.equal('orders:read orders:write');
    // Superusers get no bypass; with no role, nothing is left: the token comes without those scopes.
    const root = await signIn(ROOT, { scope: 'openid orders:read orders:write', resource: API });
    const at = await verifyAt(root.tokens.access_token);
    expect(at).not.to.have.property('scope');
  });

  it('issues organization tokens: org_id and org_role, scopes of the organization role alone', async () => {
    const { tokens } = await signIn(ADA, { scope: 'openid offline_access orders:read orders:write', prompt: 'consent', resource: API, organization: acme.id });
    const at = await verifyAt(tokens.access_token);
    expect(at.org_id).to.equal(acme.id);
    expect(at.org_role).to.equal('viewer');
    // The global role `clerk` would give orders:write; in the organization, only the viewer role counts.
    expect(at.scope).to.equal('orders:read');
    expect(tokens.claims()!.org_id).to.equal(acme.id);
    expect(tokens.claims()!.org_role).to.equal('viewer');
    const intro = await introspect(tokens.access_token);
    expect(intro).to.include({ active: true, org_id: acme.id, org_role: 'viewer' });

    // The refresh stays in the organization.
    const refreshed = await tokenRequest(web, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token!, resource: API });
    expect(refreshed.status, JSON.stringify(refreshed.body)).to.equal(200);
    const again = await verifyAt(refreshed.body.access_token as string);
    expect(again).to.include({ org_id: acme.id, org_role: 'viewer', scope: 'orders:read' });
  });

  it('keeps the organization in the grant: a grant without one issues tokens without org_id', async () => {
    const { tokens } = await signIn(ADA, { scope: 'openid offline_access orders:read', prompt: 'consent', resource: API, organization: acme.id });
    const { state } = srv.running.services;
    const id = (await state.find('RefreshToken', tokens.refresh_token!))!.grantId as string;
    const payload = (await state.find('Grant', id))!;
    expect(payload.organizationId, 'the grant carries its organization').to.equal(acme.id);
    const refreshed = await tokenRequest(web, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token!, resource: API });
    expect(refreshed.status, JSON.stringify(refreshed.body)).to.equal(200);
    expect(await verifyAt(refreshed.body.access_token as string)).to.include({ org_id: acme.id, org_role: 'viewer' });
    // Without it in the payload, the grant has no organization.
    const { organizationId: _, ...plainPayload } = (await state.find('Grant', id))!;
    await state.upsert('Grant', id, plainPayload, 3600);
    const plain = await tokenRequest(web, { grant_type: 'refresh_token', refresh_token: refreshed.body.refresh_token as string, resource: API });
    expect(plain.status, JSON.stringify(plain.body)).to.equal(200);
    expect(await verifyAt(plain.body.access_token as string)).not.to.have.property('org_id');
  });

  it('refuses organizations the subject does not belong to, and malformed or unknown ids', async () => {
    // Authorization endpoint: access_denied at the redirect_uri (RFC 6749 §4.1.2.1).
    const { url } = await authorizationUrl(web, { scope: 'openid', organization: globex.id });
    const { callback } = await authorize(new Agent(), url.toString(), REDIRECT, ADA);
    expect(callback.searchParams.get('error')).to.equal('access_denied');
    expect(callback.searchParams.get('code')).to.equal(null);
    for (const bad of ['not-a-uuid', '00000000-0000-4000-8000-000000000000']) {
      const r = await authorizationUrl(web, { scope: 'openid', organization: bad });
      const res = await new Agent().follow(r.url.toString(), {}, REDIRECT);
      expect(new URL(res.url).searchParams.get('error'), bad).to.equal('invalid_request');
    }
    // Token endpoint: invalid_grant for a non-member, invalid_request for a bad id.
    expect(await tokenRequest(machine, { grant_type: 'client_credentials', resource: API, scope: 'orders:read', organization: globex.id })).to.deep.include({ status: 400 });
    expect((await tokenRequest(machine, { grant_type: 'client_credentials', resource: API, scope: 'orders:read', organization: globex.id })).body.error).to.equal('invalid_grant');
    expect((await tokenRequest(machine, { grant_type: 'client_credentials', resource: API, organization: 'acme' })).body.error).to.equal('invalid_request');
    expect((await tokenRequest(machine, { grant_type: 'client_credentials', resource: API, organization: '00000000-0000-4000-8000-000000000000' })).body.error).to.equal('invalid_request');
  });

  it('gives machine clients org_id/org_role and their organization role scopes', async () => {
    const org = await tokenRequest(machine, { grant_type: 'client_credentials', resource: API, scope: 'orders:read orders:write', organization: acme.id });
    expect(org.status, JSON.stringify(org.body)).to.equal(200);
    const at = await verifyAt(org.body.access_token as string);
    expect(at).to.include({ org_id: acme.id, org_role: 'viewer', scope: 'orders:read', sub: machine.client_id });
    // Without organization and without a global role: nothing on the RBAC resource.
    const bare = await tokenRequest(machine, { grant_type: 'client_credentials', resource: API, scope: 'orders:read orders:write roles' });
    expect(bare.status).to.equal(200);
    const payload = await verifyAt(bare.body.access_token as string);
    expect(payload).not.to.have.property('scope');
    expect(payload).not.to.have.property('org_id');
    expect(payload.roles).to.deep.equal([]);
    // A global role assigned to the client applies from the next token on.
    await cli('roles', 'assign', '--role', 'clerk', '--client', machine.client_id);
    await sleep(600);
    const withRole = await tokenRequest(machine, { grant_type: 'client_credentials', resource: API, scope: 'orders:read orders:write roles' });
    const p2 = await verifyAt(withRole.body.access_token as string);
    expect(p2.scope).to.equal('orders:read orders:write');
    expect(p2.roles).to.deep.equal(['clerk']);
    await cli('roles', 'unassign', '--role', 'clerk', '--client', machine.client_id);
  });

  it('applies role and membership changes to refreshed tokens, and refuses a refresh once the subject left', async () => {
    const { tokens } = await signIn(ADA, { scope: 'openid offline_access orders:read orders:write', prompt: 'consent', resource: API, organization: acme.id });
    expect((await verifyAt(tokens.access_token)).scope).to.equal('orders:read');
    // Promoted to owner in Acme: the next refresh carries the owner's scopes.
    await cli('orgs', 'members', 'update', '--org', 'acme', '--user', ADA.email, '--role', 'owner');
    await sleep(600);
    const r1 = await tokenRequest(web, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token!, resource: API });
    expect(r1.status, JSON.stringify(r1.body)).to.equal(200);
    expect(await verifyAt(r1.body.access_token as string)).to.include({ org_role: 'owner', scope: 'orders:read orders:write' });
    // Switching organization on refresh: only to one the subject belongs to.
    const denied = await tokenRequest(web, { grant_type: 'refresh_token', refresh_token: r1.body.refresh_token as string, resource: API, organization: globex.id });
    expect(denied).to.deep.include({ status: 400 });
    expect(denied.body.error).to.equal('invalid_grant');
    // The refused request did not use the refresh token up.
    await cli('orgs', 'members', 'update', '--org', 'acme', '--user', ADA.email, '--role', 'viewer');
    await cli('orgs', 'members', 'remove', '--org', 'acme', '--user', ADA.email);
    await sleep(600);
    const gone = await tokenRequest(web, { grant_type: 'refresh_token', refresh_token: r1.body.refresh_token as string, resource: API });
    expect(gone.status).to.equal(400);
    expect(gone.body.error).to.equal('invalid_grant');
    await cli('orgs', 'members', 'add', '--org', 'acme', '--user', ADA.email, '--role', 'viewer');
    await sleep(600);
    const back = await tokenRequest(web, { grant_type: 'refresh_token', refresh_token: r1.body.refresh_token as string, resource: API });
    expect(back.status, JSON.stringify(back.body)).to.equal(200);
    expect(await verifyAt(back.body.access_token as string)).to.include({ org_role: 'viewer', scope: 'orders:read' });
  });

  it('switches a refresh to another organization of the subject, and later refreshes stay there', async () => {
    await cli('orgs', 'members', 'add', '--org', 'globex', '--user', ADA.email, '--role', 'member');
    await sleep(600);
    const { tokens } = await signIn(ADA, { scope: 'openid offline_access orders:read', prompt: 'consent', resource: API, organization: acme.id });
    const switched = await tokenRequest(web, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token!, resource: API, organization: globex.id });
    expect(switched.status, JSON.stringify(switched.body)).to.equal(200);
    const at = await verifyAt(switched.body.access_token as string);
    expect(at).to.include({ org_id: globex.id, org_role: 'member' });
    // `member` carries no permission on the API.
    expect(at).not.to.have.property('scope');
    expect(decodeJwt(switched.body.id_token as string).org_id).to.equal(globex.id);
    const next = await tokenRequest(web, { grant_type: 'refresh_token', refresh_token: switched.body.refresh_token as string, resource: API });
    expect(await verifyAt(next.body.access_token as string)).to.include({ org_id: globex.id });
    // Another sign-in without organization starts a grant of its own: no org claims.
    const plain = await signIn(ADA, { scope: 'openid orders:read', resource: API });
    expect(await verifyAt(plain.tokens.access_token)).not.to.have.property('org_id');
    await cli('orgs', 'members', 'remove', '--org', 'globex', '--user', ADA.email);
  });

  it('lists on the consent page only the scopes that would be granted', async () => {
    const { url } = await authorizationUrl(thirdParty, { scope: 'openid orders:read orders:write orders:delete', resource: API });
    const agent = new Agent();
    let res = await agent.follow(url.toString(), {}, REDIRECT);
    res = await agent.submit(res, 0, ADA, REDIRECT);
    expect(res.body).to.contain('orders:read').and.contain('orders:write');
    expect(res.body).not.to.contain('orders:delete');
    const { callback } = await authorize(agent, url.toString(), REDIRECT, ADA);
    expect(callback.searchParams.get('code')).to.be.a('string');
  });
});
