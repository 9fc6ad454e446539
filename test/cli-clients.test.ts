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
