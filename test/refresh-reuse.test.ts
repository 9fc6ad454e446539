import { createHash, randomBytes } from 'node:crypto';

import { expect } from 'chai';

import { Agent, authorize } from './helpers/agent.js';
import { startTestServer } from './helpers/server.js';
import { storedStateId } from '../src/repositories/provider-state.js';

const REDIRECT = 'http://127.0.0.1:9/callback';
const API = 'urn:latch:test:reuse';
const USER = { email: 'ada@example.test', password: 'correct horse battery staple' };

type TokenBody = { access_token?: string; refresh_token?: string; error?: string; error_description?: string };

/** One server, one confidential client, and what a relying party does with them over HTTP. */
async function rig(env: Record<string, string>) {
  const srv = await startTestServer({ env });
  expect((await srv.cli('users', 'create', '--email', USER.email, '--password', USER.password)).code).to.equal(0);
  const created = await srv.cli('clients', 'create', '--name', 'Retrier', '--redirect-uri', REDIRECT, '--scope', 'openid offline_access');
  expect(created.code, created.stderr).to.equal(0);
  const other = await srv.cli('clients', 'create', '--name', 'Other', '--redirect-uri', REDIRECT, '--scope', 'openid offline_access');
  expect(other.code, other.stderr).to.equal(0);
  expect((await srv.cli('resources', 'create', '--identifier', API, '--scope', 'read', '--alg', 'RS256')).code).to.equal(0);
  const withApi = await srv.cli('clients', 'create', '--name', 'Api', '--redirect-uri', REDIRECT, '--first-party', '--resource', API, '--scope', 'openid offline_access read');
  expect(withApi.code, withApi.stderr).to.equal(0);
  const basic = (c: { client_id: string; client_secret: string }) => `Basic ${Buffer.from(`${encodeURIComponent(c.client_id)}:${encodeURIComponent(c.client_secret)}`).toString('base64')}`;
  const token = async (params: Record<string, string>, as: { client_id: string; client_secret: string } = created.json) => {
    const res = await fetch(`${srv.url}/token`, { method: 'POST', headers: { authorization: basic(as), 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(params) });
    return { status: res.status, body: (await res.json()) as TokenBody };
  };
  const active = async (value: string) => {
    const res = await fetch(`${srv.url}/token/introspection`, { method: 'POST', headers: { authorization: basic(created.json), 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ token: value }) });
    return ((await res.json()) as { active: boolean }).active;
  };
  /** A refresh token (and its access token) from a real sign-in and code exchange. */
  const start = async (as: { client_id: string; client_secret: string } = created.json, extra: Record<string, string> = {}) => {
    const verifier = randomBytes(32).toString('base64url');
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    const url = `${srv.url}/auth?${new URLSearchParams({ client_id: as.client_id, response_type: 'code', redirect_uri: REDIRECT, scope: 'openid offline_access', prompt: 'consent', code_challenge: challenge, code_challenge_method: 'S256', ...extra })}`;
    const { callback } = await authorize(new Agent(), url, REDIRECT, USER);
    const res = await token({ grant_type: 'authorization_code', code: callback.searchParams.get('code')!, code_verifier: verifier, redirect_uri: REDIRECT }, as);
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
    return res.body as Required<Pick<TokenBody, 'access_token' | 'refresh_token'>>;
  };
  const refresh = (value: string, as?: { client_id: string; client_secret: string }) => token({ grant_type: 'refresh_token', refresh_token: value }, as);
  return { srv, withApi: withApi.json as { client_id: string; client_secret: string }, client: created.json as { client_id: string; client_secret: string }, other: other.json as { client_id: string; client_secret: string }, token, active, start, refresh };
}

const REVOKED = { error: 'invalid_grant', error_description: 'grant request is invalid' };

/**
 * REFRESH_REUSE_WINDOW (src/oidc/refresh-reuse.ts): a client whose rotation response was lost
 * presents the rotated refresh token again and gets the same new one; anything else that
 * presents a used refresh token is reuse and revokes the grant (RFC 9700 §4.14.2).
 */
describe('refresh token rotation: a retry within REFRESH_REUSE_WINDOW', () => {
  let on: Awaited<ReturnType<typeof rig>>;
  let off: Awaited<ReturnType<typeof rig>>;

  before(async () => {
    [on, off] = await Promise.all([rig({}), rig({ REFRESH_REUSE_WINDOW: '0' })]);
    expect(on.srv.config.ttl.refreshReuseWindow).to.equal(30);
  });

  after(async () => {
    await Promise.all([on?.srv.close(), off?.srv.close()]);
  });

  it('gives the same new refresh token and a working access token to a retry, until the new token is used', async () => {
    const first = await on.start();
    const rotated = await on.refresh(first.refresh_token);
    expect(rotated.status, JSON.stringify(rotated.body)).to.equal(200);
    expect(rotated.body.refresh_token).to.not.equal(first.refresh_token);
    for (let i = 0; i < 2; i++) {
      const retry = await on.refresh(first.refresh_token);
      expect(retry.status, JSON.stringify(retry.body)).to.equal(200);
      expect(retry.body.refresh_token).to.equal(rotated.body.refresh_token);
      expect(retry.body.access_token).to.be.a('string').and.not.equal(rotated.body.access_token);
      expect(await on.active(retry.body.access_token!)).to.equal(true);
    }
    // The rotated token itself stays consumed for everything but the retry.
    expect(await on.active(first.refresh_token)).to.equal(false);
    // No trace of the successor's value on the rotated token's row.
    const row = await on.srv.running.db('provider_state').where({ model: 'RefreshToken', id: storedStateId('RefreshToken', first.refresh_token) }).first<{ payload: string }>();
    expect(row.payload).to.not.include(rotated.body.refresh_token);

    // The successor is used: the old token is now reuse, and the whole grant goes.
    const next = await on.refresh(rotated.body.refresh_token!);
    expect(next.status, JSON.stringify(next.body)).to.equal(200);
    const reuse = await on.refresh(first.refresh_token);
    expect(reuse.status).to.equal(400);
    expect(reuse.body).to.deep.equal(REVOKED);
    expect(await on.active(next.body.access_token!)).to.equal(false);
    expect((await on.refresh(next.body.refresh_token!)).body.error).to.equal('invalid_grant');
  });

  it('retries a rotation whose access token is a JWT (nothing but the refresh token stored)', async () => {
    const first = await on.start(on.withApi, { scope: 'openid offline_access read', resource: API });
    expect(first.access_token.split('.')).to.have.length(3);
    const rotated = await on.refresh(first.refresh_token, on.withApi);
    expect(rotated.status, JSON.stringify(rotated.body)).to.equal(200);
    const retry = await on.refresh(first.refresh_token, on.withApi);
    expect(retry.status, JSON.stringify(retry.body)).to.equal(200);
    expect(retry.body.refresh_token).to.equal(rotated.body.refresh_token);
    expect(retry.body.access_token!.split('.')).to.have.length(3);
    expect(on.srv.errors()).to.deep.equal([]);
  });

  it('revokes the grant when the rotated token comes back after the window', async () => {
    const first = await on.start();
    const rotated = await on.refresh(first.refresh_token);
    expect(rotated.status).to.equal(200);
    // The rotation happened 31 s ago, as far as the database knows.
    await on.srv.running.db('provider_state').where({ model: 'RefreshToken', id: storedStateId('RefreshToken', first.refresh_token) }).update({ consumed_at: on.srv.running.db.raw('consumed_at - 31') });
    const late = await on.refresh(first.refresh_token);
    expect(late.body).to.deep.equal(REVOKED);
    expect((await on.refresh(rotated.body.refresh_token!)).body.error).to.equal('invalid_grant');
    expect(await on.active(rotated.body.access_token!)).to.equal(false);
  });

  it('revokes the grant when a token two rotations back is presented', async () => {
    const first = await on.start();
    const second = await on.refresh(first.refresh_token);
    const third = await on.refresh(second.body.refresh_token!);
    expect(third.status).to.equal(200);
    expect((await on.refresh(first.refresh_token)).body).to.deep.equal(REVOKED);
    expect((await on.refresh(third.body.refresh_token!)).body.error).to.equal('invalid_grant');
  });

  it('refuses the rotated token to another client, without giving it the successor', async () => {
    const first = await on.start();
    const rotated = await on.refresh(first.refresh_token);
    const stolen = await on.refresh(first.refresh_token, on.other);
    expect(stolen.status).to.equal(400);
    expect(stolen.body.error).to.equal('invalid_grant');
    expect(stolen.body.refresh_token).to.equal(undefined);
    // The owner still rotates normally.
    expect((await on.refresh(rotated.body.refresh_token!)).status).to.equal(200);
  });

  it('answers racing redemptions of one refresh token with one new refresh token, each with its own access token', async () => {
    const first = await on.start();
    const results = await Promise.all(Array.from({ length: 8 }, () => on.refresh(first.refresh_token)));
    expect(results.map((r) => r.status), JSON.stringify(results.map((r) => r.body.error))).to.deep.equal(Array(8).fill(200));
    const successors = new Set(results.map((r) => r.body.refresh_token));
    expect(successors.size).to.equal(1);
    expect(new Set(results.map((r) => r.body.access_token)).size).to.equal(8);
    for (const r of results) expect(await on.active(r.body.access_token!)).to.equal(true);
    // Exactly one successor row: the retries stored none of their own.
    const rows = await on.srv.running.db('provider_state').where({ model: 'RefreshToken' }).whereIn('id', ([...successors] as string[]).map((t) => storedStateId('RefreshToken', t))).count({ n: '*' }).first();
    expect(Number(rows!.n)).to.equal(1);
    const next = await on.refresh([...successors][0]!);
    expect(next.status).to.equal(200);
    // Presented again, that successor is itself a retry of the rotation just made.
    expect((await on.refresh([...successors][0]!)).body.refresh_token).to.equal(next.body.refresh_token);
    expect((await on.refresh(next.body.refresh_token!)).status).to.equal(200);
  });

  it('answers racing retries after the rotation the same', async () => {
    const first = await on.start();
    const rotated = await on.refresh(first.refresh_token);
    const results = await Promise.all(Array.from({ length: 6 }, () => on.refresh(first.refresh_token)));
    for (const r of results) {
      expect(r.status, JSON.stringify(r.body)).to.equal(200);
      expect(r.body.refresh_token).to.equal(rotated.body.refresh_token);
    }
  });

  it('with REFRESH_REUSE_WINDOW=0, revokes the grant on the first retry (today\'s rule)', async () => {
    const first = await off.start();
    const rotated = await off.refresh(first.refresh_token);
    expect(rotated.status).to.equal(200);
    const retry = await off.refresh(first.refresh_token);
    expect(retry.status).to.equal(400);
    expect(retry.body).to.deep.equal(REVOKED);
    expect((await off.refresh(rotated.body.refresh_token!)).body.error).to.equal('invalid_grant');
    expect(await off.active(rotated.body.access_token!)).to.equal(false);
  });
});
