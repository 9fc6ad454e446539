import { expect } from 'chai';
import * as oidc from 'openid-client';

import { Agent, authorize } from './helpers/agent.js';
import { startTestServer, type TestServer } from './helpers/server.js';

const REDIRECT = 'http://127.0.0.1:9/cb';
const AFTER = 'http://127.0.0.1:9/bye';

describe('RP-initiated logout as relying parties send it', () => {
  let srv: TestServer;
  let config: oidc.Configuration;
  const user = { email: 'grace@example.test', password: 'a perfectly fine password' };

  before(async () => {
    // ID tokens expire after 1 second, so the hint below is expired when logout uses it.
    srv = await startTestServer({ env: { ID_TOKEN_TTL: '1' } });
    await srv.cli('users', 'create', '--email', user.email, '--password', user.password);
    const c = await srv.cli('clients', 'create', '--name', 'Apache', '--redirect-uri', REDIRECT, '--post-logout-redirect-uri', AFTER, '--first-party');
    config = await oidc.discovery(new URL(srv.url), c.json.client_id, c.json.client_secret, undefined, { execute: [oidc.allowInsecureRequests] });
  });
  after(async () => {
    expect(srv.errors()).to.deep.equal([]);
    await srv.close();
  });

  it('accepts an expired id_token_hint without state (mod_auth_openidc style)', async () => {
    const agent = new Agent();
    const verifier = oidc.randomPKCECodeVerifier();
    const url = oidc.buildAuthorizationUrl(config, { redirect_uri: REDIRECT, scope: 'openid', code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256' });
    const { callback } = await authorize(agent, url.toString(), REDIRECT, user);
    const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier });
    await new Promise((r) => setTimeout(r, 2100));
    const end = new URL(`${srv.url}/session/end`);
    end.searchParams.set('id_token_hint', tokens.id_token!);
    end.searchParams.set('post_logout_redirect_uri', AFTER);
    const confirm = await agent.follow(end.toString(), {}, AFTER);
    expect(confirm.status, confirm.body.slice(0, 300)).to.equal(200);
    const done = await agent.submit(confirm, 0, { logout: 'yes' }, AFTER);
    expect(done.url).to.equal(AFTER);
    // The logout is on the audit trail (written just after the response).
    let rows: { type: string; subject_id: string }[] = [];
    for (let i = 0; i < 20 && rows.length === 0; i++) {
      rows = (await srv.running.db('audit_events').where({ type: 'logout' })) as typeof rows;
      if (!rows.length) await new Promise((r) => setTimeout(r, 50));
    }
    expect(rows.map((r) => r.subject_id)).to.deep.equal([tokens.claims()!.sub]);
  });

  it('refuses an unregistered post_logout_redirect_uri with the error page', async () => {
    const end = new URL(`${srv.url}/session/end`);
    end.searchParams.set('client_id', config.clientMetadata().client_id);
    end.searchParams.set('post_logout_redirect_uri', 'https://evil.example/');
    const res = await new Agent().request(end.toString());
    expect(res.status).to.equal(400);
    expect(res.headers.get('location')).to.equal(null);
    expect(res.body).to.contain('post_logout_redirect_uri');
  });
});
