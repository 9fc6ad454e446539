import { createHash, randomBytes } from 'node:crypto';

import { expect } from 'chai';

import { Agent, authorize } from './helpers/agent.js';
import { onPostgres, startTestServer, type TestServer } from './helpers/server.js';

const REDIRECT = 'http://127.0.0.1:9/callback';
const USER = { email: 'grace@example.test', password: 'correct horse battery staple' };

/**
 * An oidc-provider request writes everything it stores as one atomic write once its response is
 * ready (src/oidc/adapter.ts): at the token endpoint the redemption (code or refresh token) and
 * the tokens it issues, at the authorization endpoint the session, grant and code. These tests
 * race redemptions over HTTP and make that write fail, and check what a client and the database
 * see.
 */
describe('provider writes: one atomic write per request', () => {
  let srv: TestServer;
  let client: { client_id: string; client_secret: string };

  const basic = () => `Basic ${Buffer.from(`${encodeURIComponent(client.client_id)}:${encodeURIComponent(client.client_secret)}`).toString('base64')}`;
  const token = async (params: Record<string, string>) => {
    const res = await fetch(`${srv.url}/token`, { method: 'POST', headers: { authorization: basic(), 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(params) });
    return { status: res.status, body: (await res.json()) as Record<string, string>, cacheControl: res.headers.get('cache-control') };
  };
  const introspect = async (value: string) => {
    const res = await fetch(`${srv.url}/token/introspection`, { method: 'POST', headers: { authorization: basic(), 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ token: value }) });
    return (await res.json()) as { active: boolean };
  };
  /** A fresh authorization code (and its PKCE verifier) from a real sign-in. */
  const code = async () => {
    const verifier = randomBytes(32).toString('base64url');
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    const url = `${srv.url}/auth?${new URLSearchParams({ client_id: client.client_id, response_type: 'code', redirect_uri: REDIRECT, scope: 'openid offline_access', prompt: 'consent', code_challenge: challenge, code_challenge_method: 'S256' })}`;
    const { callback } = await authorize(new Agent(), url, REDIRECT, USER);
    return { code: callback.searchParams.get('code')!, verifier };
  };
  const exchange = (c: { code: string; verifier: string }) => token({ grant_type: 'authorization_code', code: c.code, code_verifier: c.verifier, redirect_uri: REDIRECT });
  const issuedCount = async (grantType: string) => {
    const text = await (await fetch(`${srv.url}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith('latch_tokens_issued_total{') && l.includes(`grant_type="${grantType}"`) && l.includes(`client_id="${client.client_id}"`));
    return line ? Number(line.split(' ').pop()) : 0;
  };
  const stateRows = async (model: string) => Number((await srv.running.db('provider_state').where({ model }).count({ n: '*' }).first())!.n);

  before(async () => {
    // Every reuse is reuse here (REFRESH_REUSE_WINDOW=0): a retry within the window is
    // test/refresh-reuse.test.ts.
    srv = await startTestServer({ env: { REFRESH_REUSE_WINDOW: '0' } });
    expect((await srv.cli('users', 'create', '--email', USER.email, '--password', USER.password)).code).to.equal(0);
    const created = await srv.cli('clients', 'create', '--name', 'Racer', '--redirect-uri', REDIRECT, '--scope', 'openid offline_access');
    expect(created.code, created.stderr).to.equal(0);
    client = created.json;
  });

  after(async () => {
    await srv.close();
  });

  it('redeems a code once, with its tokens stored, and a refresh token the same', async () => {
    const rows = { at: await stateRows('AccessToken'), rt: await stateRows('RefreshToken') };
    const first = await exchange(await code());
    expect(first.status, JSON.stringify(first.body)).to.equal(200);
    expect(await stateRows('AccessToken')).to.equal(rows.at + 1);
    expect(await stateRows('RefreshToken')).to.equal(rows.rt + 1);
    expect((await introspect(first.body.access_token!)).active).to.equal(true);
    const refreshed = await token({ grant_type: 'refresh_token', refresh_token: first.body.refresh_token! });
    expect(refreshed.status, JSON.stringify(refreshed.body)).to.equal(200);
    expect((await introspect(refreshed.body.access_token!)).active).to.equal(true);
    expect((await introspect(refreshed.body.refresh_token!)).active).to.equal(true);
    // The redeemed refresh token is consumed: introspection calls it inactive.
    expect((await introspect(first.body.refresh_token!)).active).to.equal(false);
  });

  for (const kind of ['authorization code', 'refresh token'] as const) {
    it(`lets exactly one of 8 racing redemptions of one ${kind} succeed, and revokes the grant (RFC 9700 §4.14.2)`, async () => {
      const issuedBefore = await issuedCount(kind === 'authorization code' ? 'authorization_code' : 'refresh_token');
      let redeem: () => ReturnType<typeof token>;
      if (kind === 'authorization code') {
        const c = await code();
        redeem = () => exchange(c);
      } else {
        const start = await exchange(await code());
        expect(start.status).to.equal(200);
        redeem = () => token({ grant_type: 'refresh_token', refresh_token: start.body.refresh_token! });
      }
      const results = await Promise.all(Array.from({ length: 8 }, () => redeem()));
      const won = results.filter((r) => r.status === 200);
      expect(won, JSON.stringify(results.map((r) => [r.status, r.body.error]))).to.have.length(1);
      for (const lost of results.filter((r) => r.status !== 200)) {
        expect(lost.status).to.equal(400);
        expect(lost.body).to.deep.equal({ error: 'invalid_grant', error_description: 'grant request is invalid' });
        expect(lost.cacheControl).to.equal('no-store');
      }
      // The losers presented a used artifact: the grant is gone, with what the winner got.
      expect((await introspect(won[0]!.body.access_token!)).active).to.equal(false);
      const after = await token({ grant_type: 'refresh_token', refresh_token: won[0]!.body.refresh_token! });
      expect(after.body.error).to.equal('invalid_grant');
      // Only the winner counts as an issuance.
      expect(await issuedCount(kind === 'authorization code' ? 'authorization_code' : 'refresh_token')).to.equal(issuedBefore + 1);
    });
  }

  /** Makes every insert of `model` rows fail while `run` runs, as a full disk or a lost connection would. */
  async function refusingInserts<T>(model: string, run: () => Promise<T>): Promise<T> {
    const db = srv.running.db;
    if (onPostgres) {
      await db.raw(`create function latch_test_refuse() returns trigger language plpgsql as $$ begin raise exception 'refused by test'; end $$`);
      await db.raw(`create trigger latch_test_refuse before insert on provider_state for each row when (new.model = '${model}') execute function latch_test_refuse()`);
    } else {
      await db.raw(`create trigger latch_test_refuse before insert on provider_state when new.model = '${model}' begin select raise(abort, 'refused by test'); end`);
    }
    try {
      return await run();
    } finally {
      await db.raw('drop trigger latch_test_refuse' + (onPostgres ? ' on provider_state' : ''));
      if (onPostgres) await db.raw('drop function latch_test_refuse');
    }
  }

  it('answers the error page, without redirect or cookie, when the sign-in cannot be stored, and stores none of it', async () => {
    const verifier = randomBytes(32).toString('base64url');
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    const url = `${srv.url}/auth?${new URLSearchParams({ client_id: client.client_id, response_type: 'code', redirect_uri: REDIRECT, scope: 'openid', prompt: 'consent', code_challenge: challenge, code_challenge_method: 'S256' })}`;
    const agent = new Agent();
    const login = await agent.follow(url, {}, REDIRECT);
    const consent = await agent.submit(login, 0, USER, REDIRECT);
    expect(consent.body).to.match(/\/confirm"/);
    const rows = { sessions: await stateRows('Session'), codes: await stateRows('AuthorizationCode'), interactions: await stateRows('Interaction') };
    const errorsBefore = srv.errors().length;
    // Consent is given; the resumed authorization request then fails to store its code.
    const failed = await refusingInserts('AuthorizationCode', async () => {
      const form = consent.body.match(/<form[^>]*action="([^"]*confirm)"/)![1]!;
      const fields = Object.fromEntries([...consent.body.matchAll(/<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
      const posted = await agent.request(new URL(form, consent.url).toString(), { method: 'POST', form: fields });
      expect(posted.status).to.equal(303);
      const resume = new URL(posted.headers.get('location')!, posted.url).toString();
      return agent.request(resume);
    });
    expect(failed.status).to.equal(500);
    expect(failed.headers.get('location')).to.equal(null);
    expect(failed.headers.getSetCookie()).to.deep.equal([]);
    expect(failed.headers.get('content-type')).to.match(/^text\/html/);
    expect(failed.body).to.include('Something went wrong');
    expect(failed.body).to.not.include('refused by test');
    expect(srv.errors().slice(errorsBefore).map((e) => String(e.err))).to.satisfy((errs: string[]) => errs.length === 1 && errs[0]!.includes('refused by test'));
    // Neither the session nor the code was stored, and the interaction was not used up.
    expect(await stateRows('Session')).to.equal(rows.sessions);
    expect(await stateRows('AuthorizationCode')).to.equal(rows.codes);
    expect(await stateRows('Interaction')).to.equal(rows.interactions);
  });

  it('answers server_error and keeps the refresh token usable when the final write fails, with nothing half-written', async () => {
    const start = await exchange(await code());
    expect(start.status).to.equal(200);
    const rows = { at: await stateRows('AccessToken'), rt: await stateRows('RefreshToken') };
    const errorsBefore = srv.errors().length;
    const failed = await refusingInserts('RefreshToken', () => token({ grant_type: 'refresh_token', refresh_token: start.body.refresh_token! }));
    expect(failed.status).to.equal(500);
    expect(failed.body).to.deep.equal({ error: 'server_error', error_description: 'oops! something went wrong' });
    expect(JSON.stringify(failed.body)).to.not.include('refused by test');
    const logged = srv.errors().slice(errorsBefore);
    expect(logged).to.have.length(1);
    expect(String(logged[0]!.err)).to.include('refused by test');
    // Nothing of the failed refresh was written: not its access token, not the consume.
    expect(await stateRows('AccessToken')).to.equal(rows.at);
    expect(await stateRows('RefreshToken')).to.equal(rows.rt);
    expect((await introspect(start.body.refresh_token!)).active).to.equal(true);
    // So the client's retry works, and the grant is intact.
    const retry = await token({ grant_type: 'refresh_token', refresh_token: start.body.refresh_token! });
    expect(retry.status, JSON.stringify(retry.body)).to.equal(200);
    expect((await introspect(retry.body.access_token!)).active).to.equal(true);
  });
});
