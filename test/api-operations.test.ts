import { expect } from 'chai';

import { startApiHarness, type ApiHarness } from './helpers/api.js';
import { freePort, freshDatabase, runCliWith, startTestServer, TEST_SECRET } from './helpers/server.js';

describe('admin API: first start and rate limits', function () {
  this.timeout(60_000);

  it('the API resource exists before the server ever started: the CLI can register an admin client at once', async () => {
    const database = await freshDatabase();
    const port = await freePort();
    const issuer = `http://127.0.0.1:${port}`;
    const env = { PORT: String(port), ISSUER: issuer, DATABASE_URL: database.url, LATCH_SECRET: TEST_SECRET };
    try {
      const made = await runCliWith(env, ['clients', 'create', '--name', 'ops', '--grant', 'client_credentials', '--resource', `${issuer}/api`, '--scope', 'admin:read admin:write']);
      expect(made.code, made.stderr).to.equal(0);
      const srv = await startTestServer({ database, env: { PORT: String(port), ISSUER: issuer } });
      try {
        const token = await fetch(`${issuer}/token`, {
          method: 'POST',
          headers: { authorization: `Basic ${Buffer.from(`${made.json.client_id}:${made.json.client_secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'admin:read', resource: `${issuer}/api` }),
        });
        const { access_token } = (await token.json()) as { access_token: string };
        const users = await fetch(`${issuer}/api/v1/users`, { headers: { authorization: `Bearer ${access_token}` } });
        expect(users.status).to.equal(200);
        expect(srv.errors()).to.deep.equal([]);
      } finally {
        await srv.close();
      }
    } finally {
      await database.drop();
    }
  });

  describe('429', () => {
    let h: ApiHarness;
    before(async () => {
      h = await startApiHarness({ env: { API_REQUESTS_PER_MINUTE: '5', API_AUTH_FAILURES_PER_MINUTE: '3' } });
    });
    after(async () => {
      await h?.close();
    });

    it('limits the requests of one caller (API_REQUESTS_PER_MINUTE), not of the others', async () => {
      for (let i = 0; i < 5; i++) expect((await h.call('GET', '/api/v1/users', { token: h.reader })).status).to.equal(200);
      const refused = await h.call('GET', '/api/v1/users', { token: h.reader });
      expect(refused.status).to.equal(429);
      expect(refused.json.type).to.equal('https://latch.dev/problems/too-many-requests');
      expect(Number(refused.headers.get('retry-after'))).to.be.within(1, 60);
      // Another caller (the superuser) has its own count.
      expect((await h.call('GET', '/api/v1/users', { token: h.superToken })).status).to.equal(200);
    });

    it('refuses an address after API_AUTH_FAILURES_PER_MINUTE rejected tokens, before checking the next one', async () => {
      for (let i = 0; i < 3; i++) expect((await h.call('GET', '/api/v1/clients', { token: `bad-${i}` })).status).to.equal(401);
      const refused = await h.call('GET', '/api/v1/clients', { token: h.superToken });
      expect(refused.status).to.equal(429);
      expect(refused.headers.get('retry-after')).to.match(/^\d+$/);
    });
  });
});
