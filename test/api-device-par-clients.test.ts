import { expect } from 'chai';

import { startApiHarness, type ApiHarness } from './helpers/api.js';

/** The admin API's client schema carries the device and PAR registrations (responses checked against openapi.yaml). */
describe('admin API: device_code and require_pushed_authorization_requests clients', function () {
  this.timeout(60_000);
  let h: ApiHarness;

  before(async () => {
    h = await startApiHarness();
  });
  after(async () => h?.close());

  it('a device_code client is public unless `public: false`; PAR is required when asked and can be changed', async () => {
    const tv = await h.call('POST', '/api/v1/clients', { token: h.admin, body: { name: 'TV', grant_types: ['device_code', 'refresh_token'] } });
    expect(tv.status).to.equal(201);
    expect(tv.json).to.include({ public: true, token_endpoint_auth_method: 'none', require_pushed_authorization_requests: false });
    expect(tv.json).to.not.have.property('client_secret');
    expect(tv.json.grant_types).to.deep.equal(['device_code', 'refresh_token']);

    const kiosk = await h.call('POST', '/api/v1/clients', { token: h.admin, body: { name: 'Kiosk', grant_types: ['device_code'], public: false } });
    expect(kiosk.status).to.equal(201);
    expect(kiosk.json).to.include({ public: false, token_endpoint_auth_method: 'client_secret_basic' });
    expect(kiosk.json.client_secret).to.be.a('string');

    const bank = await h.call('POST', '/api/v1/clients', { token: h.admin, body: { name: 'Bank', redirect_uris: ['https://bank.example.test/cb'], require_pushed_authorization_requests: true } });
    expect(bank.status).to.equal(201);
    expect(bank.json.require_pushed_authorization_requests).to.equal(true);
    const patched = await h.call('PATCH', `/api/v1/clients/${bank.json.id}`, { token: h.admin, body: { require_pushed_authorization_requests: false } });
    expect(patched.status).to.equal(200);
    expect(patched.json.require_pushed_authorization_requests).to.equal(false);
  });
});
