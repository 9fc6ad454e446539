import { expect } from 'chai';
import * as oidc from 'openid-client';

import { CLI_ACTOR } from '../src/services/audit.js';
import { Agent, authorize } from './helpers/agent.js';
import { startTestServer, type TestServer } from './helpers/server.js';

const REDIRECT = 'http://127.0.0.1:9/callback';
const API = 'https://orders.example.test';
const USER = { email: 'grace@example.test', password: 'correct horse battery staple' };

describe('latch clients create: what a client may be granted, and the notes it prints', () => {
  let srv: TestServer;

  before(async () => {
    srv = await startTestServer();
    expect((await srv.cli('users', 'create', '--email', USER.email, '--password', USER.password)).code).to.equal(0);
    expect((await srv.cli('resources', 'create', '--identifier', API, '--scope', 'orders:read orders:write')).code).to.equal(0);
  });

  after(async () => {
    expect(srv.errors(), JSON.stringify(srv.errors())).to.deep.equal([]);
    await srv.close();
  });

  it('--resource without --scope allows the scopes that resource has now, listed in the JSON', async () => {
    const machine = await srv.cli('clients', 'create', '--name', 'Worker', '--grant', 'client_credentials', '--resource', API);
    expect(machine.code, machine.stderr).to.equal(0);
    expect(machine.json.scope.split(' ')).to.have.members(['orders:read', 'orders:write']);
    const web = await srv.cli('clients', 'create', '--name', 'Shop', '--redirect-uri', REDIRECT, '--resource', API);
    expect(web.code, web.stderr).to.equal(0);
    expect(web.json.scope.split(' ')).to.have.members(['openid', 'profile', 'email', 'roles', 'organizations', 'offline_access', 'orders:read', 'orders:write']);
    // Naming scopes still means exactly those.
    const named = await srv.cli('clients', 'create', '--name', 'Reader', '--grant', 'client_credentials', '--resource', API, '--scope', 'orders:read');
    expect(named.json.scope).to.equal('orders:read');
  });

  it('a client registered that way gets the resource scopes and can refresh them (no invalid_scope)', async () => {
    const web = await srv.cli('clients', 'create', '--name', 'Shop 2', '--redirect-uri', REDIRECT, '--resource', API);
    const config = await oidc.discovery(new URL(srv.url), web.json.client_id, web.json.client_secret, oidc.ClientSecretBasic(web.json.client_secret), { execute: [oidc.allowInsecureRequests] });
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const url = oidc.buildAuthorizationUrl(config, { redirect_uri: REDIRECT, scope: 'openid offline_access orders:read', state, prompt: 'consent', code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256' });
    const { callback } = await authorize(new Agent(), url.toString(), REDIRECT, USER);
    const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state });
    expect(tokens.scope?.split(' ')).to.include('orders:read');
    expect(tokens.refresh_token).to.be.a('string');
    const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token!);
    expect(refreshed.scope?.split(' ')).to.include('orders:read');
  });

  it('--public without --web-origin prints a one-line note on stderr; stdout stays pure JSON', async () => {
    const pub = await srv.cli('clients', 'create', '--name', 'SPA', '--public', '--redirect-uri', 'http://localhost:5173/cb');
    expect(pub.code).to.equal(0);
    expect(JSON.parse(pub.stdout)).to.include({ public: true, token_endpoint_auth_method: 'none' });
    const lines = pub.stderr.split('\n').filter(Boolean);
    expect(lines).to.have.length(1);
    expect(lines[0]).to.match(/^latch: note: .*--web-origin/).and.match(/token endpoint/);
    const withOrigin = await srv.cli('clients', 'create', '--name', 'SPA 2', '--public', '--redirect-uri', 'http://localhost:5173/cb', '--web-origin', 'http://localhost:5173');
    expect(withOrigin.code).to.equal(0);
    expect(withOrigin.stderr).to.equal('');
    const confidential = await srv.cli('clients', 'create', '--name', 'Web', '--redirect-uri', REDIRECT);
    expect(confidential.stderr).to.equal('');
  });

  it('POST /api/v1/clients with resources and no scope gets the same default', async () => {
    const ops = await srv.cli('clients', 'create', '--name', 'ops', '--grant', 'client_credentials', '--resource', `${srv.url}/api`, '--scope', 'admin:read admin:write');
    expect(ops.code, ops.stderr).to.equal(0);
    const config = await oidc.discovery(new URL(srv.url), ops.json.client_id, ops.json.client_secret, oidc.ClientSecretBasic(ops.json.client_secret), { execute: [oidc.allowInsecureRequests] });
    const { access_token } = await oidc.clientCredentialsGrant(config, { scope: 'admin:write', resource: `${srv.url}/api` });
    const res = await fetch(`${srv.url}/api/v1/clients`, { method: 'POST', headers: { authorization: `Bearer ${access_token}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'svc', grant_types: ['client_credentials'], resources: [API] }) });
    const body = (await res.json()) as { scope: string };
    expect(res.status, JSON.stringify(body)).to.equal(201);
    expect(body.scope.split(' ')).to.have.members(['orders:read', 'orders:write']);
  });

  it('never gives a client an id that begins with "-" (an id is a CLI argument: `latch clients disable ID`)', async () => {
    // One random base64url id in 64 begins with "-"; 300 clients find such an id with 99 % odds.
    const ids: string[] = [];
    for (let i = 0; i < 300; i++) ids.push((await srv.running.services.clients.create({ name: `Id ${i}`, grants: ['client_credentials'] }, CLI_ACTOR)).client_id);
    expect(ids.filter((id) => id.startsWith('-'))).to.deep.equal([]);
    expect(new Set(ids).size).to.equal(300);
    const last = ids[ids.length - 1]!;
    const disabled = await srv.cli('clients', 'disable', last);
    expect(disabled.code, disabled.stderr).to.equal(0);
  });
});

describe('latch clients update: what PATCH /api/v1/clients/{id} does, from the command line', () => {
  let srv: TestServer;

  before(async () => {
    srv = await startTestServer({ changePollMs: 100 });
    expect((await srv.cli('resources', 'create', '--identifier', API, '--scope', 'orders:read orders:write')).code).to.equal(0);
  });

  after(async () => {
    expect(srv.errors(), JSON.stringify(srv.errors())).to.deep.equal([]);
    await srv.close();
  });

  /** A client-credentials token request without a DPoP proof, against the running server. */
  const tokenWithoutProof = async (c: { client_id: string; client_secret: string }) => {
    const res = await fetch(`${srv.url}/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${c.client_id}:${c.client_secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', resource: API, scope: 'orders:read' }),
    });
    return { status: res.status, error: ((await res.json()) as { error?: string }).error };
  };
  const eventually = async (what: string, check: () => Promise<boolean>) => {
    for (let i = 0; i < 100; i++) {
      if (await check()) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`never happened: ${what}`);
  };

  it('changes the fields given (lists replaced), leaves the others, and records client.update', async () => {
    const web = (await srv.cli('clients', 'create', '--name', 'Shop', '--redirect-uri', REDIRECT, '--resource', API, '--web-origin', 'http://127.0.0.1:9')).json;
    const updated = await srv.cli('clients', 'update', web.client_id, '--name', 'Shop 2', '--redirect-uri', 'http://127.0.0.1:9/a', '--redirect-uri', 'http://127.0.0.1:9/b', '--scope', 'openid orders:read', '--require-par', '--require-dpop');
    expect(updated.code, updated.stderr).to.equal(0);
    expect(updated.json).to.include({ client_id: web.client_id, name: 'Shop 2', scope: 'openid orders:read', require_pushed_authorization_requests: true, dpop_bound_access_tokens: true, first_party: false });
    expect(updated.json.redirect_uris).to.deep.equal(['http://127.0.0.1:9/a', 'http://127.0.0.1:9/b']);
    expect(updated.json.web_origins).to.deep.equal(['http://127.0.0.1:9']);
    expect(updated.json.resources).to.deep.equal([API]);
    expect(updated.json).to.not.have.property('client_secret');

    const events = await srv.running.services.audit.list({ type: 'client.update', subjectId: web.client_id });
    expect(events).to.have.length(1);
    expect(events[0]!.actorId).to.equal(CLI_ACTOR.actorId);
    expect((events[0]!.details as { after: Record<string, unknown> }).after).to.include({ name: 'Shop 2', dpop_bound_access_tokens: true });

    // Listed the same way by `clients list`.
    const listed = (await srv.cli('clients', 'list')).json.find((c: { client_id: string }) => c.client_id === web.client_id);
    expect(listed).to.include({ name: 'Shop 2', dpop_bound_access_tokens: true });
  });

  it('--require-dpop, --no-require-dpop and --require-dpop=false reach the running server', async () => {
    const worker = (await srv.cli('clients', 'create', '--name', 'Worker', '--grant', 'client_credentials', '--resource', API)).json;
    expect(worker.dpop_bound_access_tokens).to.equal(false);
    expect((await tokenWithoutProof(worker)).status).to.equal(200);

    expect((await srv.cli('clients', 'update', worker.client_id, '--require-dpop')).json.dpop_bound_access_tokens).to.equal(true);
    await eventually('the server requires DPoP of the worker', async () => (await tokenWithoutProof(worker)).error === 'invalid_grant');

    expect((await srv.cli('clients', 'update', worker.client_id, '--no-require-dpop')).json.dpop_bound_access_tokens).to.equal(false);
    await eventually('the server no longer requires DPoP', async () => (await tokenWithoutProof(worker)).status === 200);

    expect((await srv.cli('clients', 'update', worker.client_id, '--require-dpop=true', '--require-par=true')).json).to.include({ dpop_bound_access_tokens: true, require_pushed_authorization_requests: true });
    expect((await srv.cli('clients', 'update', worker.client_id, '--require-dpop=false', '--no-require-par')).json).to.include({ dpop_bound_access_tokens: false, require_pushed_authorization_requests: false });
  });

  it('sets and removes the back-channel logout URI (and the JWKS URI) with update', async () => {
    const web = (await srv.cli('clients', 'create', '--name', 'Logout app', '--redirect-uri', 'http://127.0.0.1:9/cb')).json;
    expect(web.backchannel_logout_uri).to.equal(null);
    const set = await srv.cli('clients', 'update', web.client_id, '--backchannel-logout-uri', 'http://127.0.0.1:9/logout');
    expect(set.code, set.stderr).to.equal(0);
    expect(set.json).to.include({ backchannel_logout_uri: 'http://127.0.0.1:9/logout', backchannel_logout_session_required: true });
    const bad = await srv.cli('clients', 'update', web.client_id, '--backchannel-logout-uri', 'http://127.0.0.1:9/logout#frag');
    expect(bad.code).to.equal(1);
    expect(bad.stderr).to.match(/backchannel/);
    const cleared = await srv.cli('clients', 'update', web.client_id, '--backchannel-logout-uri', '');
    expect(cleared.code, cleared.stderr).to.equal(0);
    expect(cleared.json.backchannel_logout_uri).to.equal(null);
    const keyed = (await srv.cli('clients', 'create', '--name', 'Keyed', '--grant', 'client_credentials', '--resource', API, '--auth-method', 'private_key_jwt', '--jwks-uri', 'https://keys.example.com/jwks')).json;
    expect(keyed.jwks_uri).to.equal('https://keys.example.com/jwks');
    const noKeys = await srv.cli('clients', 'update', keyed.client_id, '--jwks-uri', '');
    // A private_key_jwt client needs its keys: removing them is refused as the API refuses it.
    expect(noKeys.code).to.equal(1);
  });

  it('validates as the API does, and refuses what it cannot change or does not know', async () => {
    const worker = (await srv.cli('clients', 'create', '--name', 'Worker 2', '--grant', 'client_credentials', '--resource', API)).json;
    const noAudience = await srv.cli('clients', 'update', worker.client_id, '--grant', 'token_exchange');
    expect(noAudience.code).to.equal(1);
    expect(noAudience.stderr).to.match(/^latch: --exchange-subject-audience is required for the token_exchange grant/);
    const badUri = await srv.cli('clients', 'update', worker.client_id, '--redirect-uri', 'javascript:alert(1)');
    expect(badUri.code).to.equal(1);
    expect(badUri.stderr).to.match(/^latch: --redirect-uri /);

    const missing = await srv.cli('clients', 'update', 'no-such-client', '--name', 'X');
    expect(missing.code).to.equal(1);
    expect(missing.stderr).to.match(/not found/);
    const nothing = await srv.cli('clients', 'update', worker.client_id);
    expect(nothing.code).to.equal(2);
    expect(nothing.stderr).to.match(/nothing to change/);
    const authMethod = await srv.cli('clients', 'update', worker.client_id, '--auth-method', 'none');
    expect(authMethod.code).to.equal(2);
    expect(authMethod.stderr).to.match(/unknown flag --auth-method/);
    const notBoolean = await srv.cli('clients', 'update', worker.client_id, '--require-dpop=maybe');
    expect(notBoolean.code).to.equal(2);
    expect(notBoolean.stderr).to.match(/--require-dpop must be true or false/);
    const noId = await srv.cli('clients', 'update', '--name', 'X');
    expect(noId.code).to.equal(2);

    // Nothing of the refused attempts was stored.
    expect((await srv.cli('clients', 'list')).json.find((c: { client_id: string }) => c.client_id === worker.client_id)).to.include({ name: 'Worker 2', dpop_bound_access_tokens: false });
  });

  it('--help lists the update flags, toggles written --[no-]flag', async () => {
    const help = await srv.cli('--help');
    expect(help.stdout).to.match(/latch clients update CLIENT_ID .*\[--\[no-\]require-dpop\]/);
    expect(help.stdout).to.match(/latch clients create .*\[--require-dpop\]/);
  });
});
