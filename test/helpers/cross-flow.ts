import { createHash } from 'node:crypto';

import { expect } from 'chai';

import { Agent, authorize } from './agent.js';

type Cli = (...args: string[]) => Promise<{ code: number; json: any; stderr: string }>;

/**
 * Proves that two Latch instances (base URLs `a` and `b`) on one database behave as one service:
 * login on A, SSO on B, code from A redeemed on B, refresh on A, revoke on B, dead on A.
 */
export async function crossInstanceFlow(a: string, b: string, cli: Cli): Promise<void> {
  const REDIRECT = 'http://127.0.0.1:9/cb';
  const user = { email: `node-${Date.now()}@example.test`, password: 'the same password on every node' };
  const created = await cli('users', 'create', '--email', user.email, '--password', user.password);
  expect(created.code, created.stderr).to.equal(0);
  const web = await cli('clients', 'create', '--name', 'Web', '--redirect-uri', REDIRECT, '--first-party');
  expect(web.code, web.stderr).to.equal(0);
  const basic = `Basic ${Buffer.from(`${web.json.client_id}:${web.json.client_secret}`).toString('base64')}`;
  const post = async (base: string, path: string, body: Record<string, string>) => {
    const res = await fetch(`${base}${path}`, { method: 'POST', headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(body) });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : {}) as Record<string, any> };
  };
  const verifier = 'v'.repeat(43);
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const q = new URLSearchParams({ client_id: web.json.client_id, redirect_uri: REDIRECT, response_type: 'code', scope: 'openid offline_access', prompt: 'consent', code_challenge: challenge, code_challenge_method: 'S256' });

  // The browser signs in on A ...
  const agent = new Agent();
  const { callback } = await authorize(agent, `${a}/auth?${q}`, REDIRECT, user);
  // ... B honours A's session (no second login) ...
  const sso = await authorize(agent, `${b}/auth?${q}`, REDIRECT);
  expect(sso.pages).to.deep.equal([]);
  // ... the code from A is redeemed on B ...
  const tokens = await post(b, '/token', { grant_type: 'authorization_code', code: callback.searchParams.get('code')!, redirect_uri: REDIRECT, code_verifier: verifier });
  expect(tokens.status, JSON.stringify(tokens.body)).to.equal(200);
  // ... refreshed on A ...
  const refreshed = await post(a, '/token', { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token });
  expect(refreshed.status, JSON.stringify(refreshed.body)).to.equal(200);
  expect((await post(b, '/token/introspection', { token: refreshed.body.access_token })).body.active).to.equal(true);
  // ... revoked on B, and dead on A.
  expect((await post(b, '/token/revocation', { token: refreshed.body.refresh_token, token_type_hint: 'refresh_token' })).status).to.equal(200);
  expect((await post(a, '/token', { grant_type: 'refresh_token', refresh_token: refreshed.body.refresh_token })).body.error).to.equal('invalid_grant');
  expect((await post(a, '/token/introspection', { token: refreshed.body.access_token })).body.active).to.equal(false);
}
