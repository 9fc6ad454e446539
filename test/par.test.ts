import { expect } from 'chai';
import * as oidc from 'openid-client';

import { Agent, authorize } from './helpers/agent.js';
import { startTestServer, type TestServer } from './helpers/server.js';

const REDIRECT = 'http://127.0.0.1:9/callback';
const ADA = { email: 'ada@example.test', password: 'correct horse battery staple' };

/** Pushed authorization requests (RFC 9126) at ${ISSUER}/request, with openid-client. */
describe('pushed authorization requests (RFC 9126)', function () {
  this.timeout(60_000);
  let srv: TestServer;
  let web: { client_id: string; client_secret: string; require_pushed_authorization_requests: boolean };
  let spa: { client_id: string };

  const cli = async (...args: string[]) => {
    const r = await srv.cli(...args);
    expect(r.code, `${args.join(' ')}: ${r.stderr}`).to.equal(0);
    return r.json;
  };

  before(async () => {
    srv = await startTestServer();
    await cli('users', 'create', '--email', ADA.email, '--password', ADA.password, '--email-verified');
    web = await cli('clients', 'create', '--name', 'Bank', '--redirect-uri', REDIRECT, '--require-par', '--first-party');
    spa = await cli('clients', 'create', '--name', 'Single Page', '--redirect-uri', REDIRECT, '--public', '--first-party');
  });
  after(async () => {
    expect(srv.errors()).to.deep.equal([]);
    await srv?.close();
  });

  it('is in discovery and in the client\'s registration', async () => {
    const d = (await (await fetch(`${srv.url}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
    expect(d.pushed_authorization_request_endpoint).to.equal(`${srv.url}/request`);
    expect(web.require_pushed_authorization_requests).to.equal(true);
    expect((spa as { require_pushed_authorization_requests?: boolean }).require_pushed_authorization_requests).to.equal(false);
  });

  it('a confidential client pushes with its authentication and signs in with the request_uri', async () => {
    const config = await oidc.discovery(new URL(srv.url), web.client_id, web.client_secret, oidc.ClientSecretBasic(web.client_secret), { execute: [oidc.allowInsecureRequests] });
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const url = await oidc.buildAuthorizationUrlWithPAR(config, { redirect_uri: REDIRECT, scope: 'openid email', state, code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256' });
    expect(url.searchParams.get('request_uri')).to.match(/^urn:ietf:params:oauth:request_uri:/);
    expect(url.searchParams.has('scope')).to.equal(false);
    const { callback } = await authorize(new Agent(), url.toString(), REDIRECT, ADA);
    const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state });
    expect(tokens.claims()!.email).to.equal(ADA.email);
  });

  it('refuses a plain authorization request from a --require-par client (invalid_request)', async () => {
    const config = await oidc.discovery(new URL(srv.url), web.client_id, web.client_secret, oidc.ClientSecretBasic(web.client_secret), { execute: [oidc.allowInsecureRequests] });
    const url = oidc.buildAuthorizationUrl(config, { redirect_uri: REDIRECT, scope: 'openid', state: 's', code_challenge: await oidc.calculatePKCECodeChallenge(oidc.randomPKCECodeVerifier()), code_challenge_method: 'S256' });
    const res = await new Agent().request(url.toString());
    expect(res.status).to.equal(303);
    const back = new URL(res.headers.get('location')!);
    expect(back.origin + back.pathname).to.equal(REDIRECT);
    expect(back.searchParams.get('error')).to.equal('invalid_request');
  });

  it('refuses a push with a wrong secret (invalid_client)', async () => {
    const res = await fetch(`${srv.url}/request`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${web.client_id}:wrong`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ response_type: 'code', redirect_uri: REDIRECT, scope: 'openid', code_challenge: 'x'.repeat(43), code_challenge_method: 'S256' }),
    });
    expect(res.status).to.equal(401);
    expect(((await res.json()) as { error: string }).error).to.equal('invalid_client');
  });

  it('a public client pushes with PKCE; without PKCE it is refused', async () => {
    const config = await oidc.discovery(new URL(srv.url), spa.client_id, undefined, oidc.None(), { execute: [oidc.allowInsecureRequests] });
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const url = await oidc.buildAuthorizationUrlWithPAR(config, { redirect_uri: REDIRECT, scope: 'openid', state, code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256' });
    const { callback } = await authorize(new Agent(), url.toString(), REDIRECT, ADA);
    const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state });
    expect(tokens.access_token).to.be.a('string');

    const res = await fetch(`${srv.url}/request`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ client_id: spa.client_id, response_type: 'code', redirect_uri: REDIRECT, scope: 'openid' }) });
    expect(res.status).to.equal(400);
    expect(((await res.json()) as { error: string }).error).to.equal('invalid_request');
  });
});
