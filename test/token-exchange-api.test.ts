import { expect } from 'chai';

import { startApiHarness, type ApiHarness } from './helpers/api.js';

const GATEWAY = 'https://gateway.example.test';
const ORDERS = 'https://orders.example.test';
const GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';

/** The token-exchange registration through the admin API (responses checked against openapi.yaml). */
describe('admin API: clients registered for token exchange', function () {
  this.timeout(60_000);
  let h: ApiHarness;

  before(async () => {
    h = await startApiHarness();
    await h.cli('resources', 'create', '--identifier', GATEWAY, '--scope', 'orders:read');
    await h.cli('resources', 'create', '--identifier', ORDERS, '--scope', 'orders:read');
    await h.srv.running.services.feed.pollNow();
  });

  after(async () => {
    await h?.close();
  });

  it('creates, shows and updates exchange_subject_audiences; the provider sees the grant', async () => {
    const c = await h.call('POST', '/api/v1/clients', { token: h.admin, body: { name: 'gateway', grant_types: ['token_exchange'], exchange_subject_audiences: [GATEWAY], resources: [ORDERS], scope: 'orders:read' } });
    expect(c.status, JSON.stringify(c.json)).to.equal(201);
    expect(c.json).to.include({ public: false });
    expect(c.json.grant_types).to.deep.equal(['token_exchange']);
    expect(c.json.exchange_subject_audiences).to.deep.equal([GATEWAY]);
    expect(c.json.client_secret).to.be.a('string');

    const patched = await h.call('PATCH', `/api/v1/clients/${c.json.id}`, { token: h.admin, body: { exchange_subject_audiences: [GATEWAY, ORDERS] } });
    expect(patched.status, JSON.stringify(patched.json)).to.equal(200);
    expect(patched.json.exchange_subject_audiences).to.deep.equal([GATEWAY, ORDERS]);
    // oidc-provider receives the grant type under its URN.
    const metadata = await h.srv.running.services.clients.findMetadata(c.json.id);
    expect(metadata?.grant_types).to.deep.equal([GRANT]);
    expect(metadata?.exchange_subject_audiences).to.deep.equal([GATEWAY, ORDERS]);

    // Dropping the grant drops its audiences.
    const dropped = await h.call('PATCH', `/api/v1/clients/${c.json.id}`, { token: h.admin, body: { grant_types: ['client_credentials'] } });
    expect(dropped.status, JSON.stringify(dropped.json)).to.equal(200);
    expect(dropped.json.exchange_subject_audiences).to.deep.equal([]);
  });

  it('refuses the grant without subject audiences, audiences without the grant, and a public client', async () => {
    const missing = await h.call('POST', '/api/v1/clients', { token: h.admin, body: { name: 'x', grant_types: ['token_exchange'], resources: [ORDERS] } });
    expect(missing.status).to.equal(422);
    expect(missing.json.errors[0].field).to.equal('exchange_subject_audiences');
    const stray = await h.call('POST', '/api/v1/clients', { token: h.admin, body: { name: 'x', grant_types: ['client_credentials'], exchange_subject_audiences: [GATEWAY] } });
    expect(stray.status).to.equal(422);
    expect(stray.json.errors[0].field).to.equal('exchange_subject_audiences');
    const notUri = await h.call('POST', '/api/v1/clients', { token: h.admin, body: { name: 'x', grant_types: ['token_exchange'], exchange_subject_audiences: ['not a uri'] } });
    expect(notUri.status).to.equal(422);
    const publicOne = await h.call('POST', '/api/v1/clients', { token: h.admin, body: { name: 'x', public: true, grant_types: ['token_exchange'], exchange_subject_audiences: [GATEWAY] } });
    expect(publicOne.status).to.equal(422);
    expect(publicOne.json.errors[0].field).to.equal('grant_types');
  });
});
