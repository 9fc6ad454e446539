import { expect } from 'chai';
import { SignJWT, generateKeyPair } from 'jose';

import { apiOperations, apiRoutes } from '../src/routes/api/index.js';
import { checkResponse, doc, expectCovered, METHODS, SPEC_TEXT, specOperations, startApiHarness, type ApiHarness } from './helpers/api.js';
import type { TestServer } from './helpers/server.js';

describe('admin API (/api/v1)', function () {
  this.timeout(60_000);
  let h: ApiHarness;
  let srv: TestServer;
  let API: string;
  let admin: string;
  let reader: string;
  let otherAudience: string;
  let superToken: string;
  let plainUserToken: string;
  let accountOnly: string;
  let neverSuperToken: string;
  let plainUser: { id: string };
  const cli = (...args: string[]) => h.cli(...args);
  const call = (...args: Parameters<ApiHarness['call']>) => h.call(...args);
  const cc = (...args: Parameters<ApiHarness['cc']>) => h.cc(...args);

  before(async () => {
    h = await startApiHarness();
    ({ srv, API, admin, reader, superToken } = h);
    await cli('resources', 'create', '--identifier', 'https://other.example.test', '--scope', 'things:read');
    // The server learns of the CLI's new resource through the change feed (polled every 100 ms).
    await new Promise((r) => setTimeout(r, 500));
    const other = await cli('clients', 'create', '--name', 'other', '--grant', 'client_credentials', '--resource', 'https://other.example.test', '--scope', 'things:read');
    otherAudience = await cc(other, 'things:read', 'https://other.example.test');
    const plain = { email: 'plain@example.test', password: 'a plain user passphrase' };
    // Admin scopes are issued to superusers only: this user holds a token with them from while
    // it was one, and is demoted since, so the API's own per-request superuser check is what refuses it.
    plainUser = await cli('users', 'create', '--email', plain.email, '--password', plain.password, '--superuser');
    plainUserToken = await h.userToken(plain, 'admin:read admin:write');
    expect((await cli('users', 'update', '--email', plain.email, '--superuser', 'false')).superuser).to.equal(false);
    accountOnly = await h.userToken(plain, 'account');
    neverSuperToken = await h.userToken(plain, 'admin:read admin:write');
    // The server learns of the demotion through the change feed.
    await new Promise((r) => setTimeout(r, 500));
  });

  after(async () => {
    await h?.close();
  });

  it('registers the API resource at start with its three scopes', async () => {
    const list = await cli('resources', 'list');
    expect(list.find((r: { identifier: string }) => r.identifier === API).scopes).to.deep.equal(['admin:read', 'admin:write', 'account']);
  });

  it('serves openapi.yaml byte for byte, and the docs page with local assets only', async () => {
    const res = await fetch(`${srv.url}/api/openapi.yaml`);
    expect(res.headers.get('content-type')).to.match(/^application\/yaml/);
    const text = await res.text();
    expect(text).to.equal(SPEC_TEXT);
    await checkResponse('GET', '/api/openapi.yaml', res, '');
    const page = await fetch(`${srv.url}/api/docs`);
    const html = await page.text();
    await checkResponse('GET', '/api/docs', page, '');
    expect(page.headers.get('content-security-policy')).to.include("script-src 'self'");
    // Every asset is from this server.
    for (const m of html.matchAll(/(?:src|href)="([^"]+)"/g)) {
      expect(m[1]).to.match(/^\/api\/docs\//);
      const asset = await fetch(`${srv.url}${m[1]}`);
      expect(asset.status).to.equal(200);
      await asset.arrayBuffer();
      await checkResponse('GET', m[1]!, asset, '');
    }
    const init = await (await fetch(`${srv.url}/api/docs/init.js`)).text();
    expect(init).to.include('validatorUrl: null');
    expect((await fetch(`${srv.url}/api/docs/swagger-ui.css`)).headers.get('content-security-policy')).to.not.include('script-src');
    expect((await fetch(`${srv.url}/healthz`)).headers.get('content-security-policy')).to.not.include('script-src');
  });

  it('has exactly the operations of openapi.yaml', () => {
    const fake = { config: srv.config, db: srv.running.db, logger: srv.logger, services: srv.running.services, oidc: srv.running.oidc, outage: () => undefined };
    const code = apiOperations(apiRoutes(fake));
    expect(code).to.deep.equal(specOperations());
  });

  describe('authentication and permissions', () => {
    const endpoints: [string, string, 'read' | 'write'][] = [];
    before(() => {
      for (const [p, ops] of Object.entries(doc.paths)) {
        if (!p.startsWith('/api/v1/')) continue;
        for (const m of Object.keys(ops).filter((k) => METHODS.includes(k))) endpoints.push([m.toUpperCase(), p.replace(/\{[^}]+\}/g, 'x'), m === 'get' ? 'read' : 'write']);
      }
    });

    it('401 without a token (no error attribute), with a bad, expired or foreign token (invalid_token)', async () => {
      const { privateKey } = await generateKeyPair('RS256');
      const forged = await new SignJWT({ scope: 'admin:read admin:write', client_id: 'x' }).setProtectedHeader({ alg: 'RS256', typ: 'at+jwt' }).setIssuer(srv.url).setAudience(API).setSubject('x').setJti('j').setExpirationTime('5m').sign(privateKey);
      for (const [method, path] of endpoints) {
        const none = await call(method, path);
        expect(none.status, `${method} ${path}`).to.equal(401);
        expect(none.headers.get('www-authenticate')).to.equal('Bearer realm="latch"');
        for (const token of ['garbage', forged, otherAudience]) {
          const bad = await call(method, path, { token });
          expect(bad.status, `${method} ${path}`).to.equal(401);
          expect(bad.headers.get('www-authenticate')).to.include('error="invalid_token"');
        }
      }
    });

    it('401 for an expired token on every endpoint (a real token of a 1-second TTL), and for a tampered expiry', async () => {
      const resource = (await call('GET', `/api/v1/resources?identifier=${encodeURIComponent(API)}`, { token: admin })).json.data[0];
      expect((await call('PATCH', `/api/v1/resources/${resource.id}`, { token: admin, body: { access_token_ttl: 1 } })).status).to.equal(200);
      let expiring: string;
      try {
        expiring = await cc(h.machine, 'admin:read admin:write', API);
      } finally {
        await call('PATCH', `/api/v1/resources/${resource.id}`, { token: admin, body: { access_token_ttl: resource.access_token_ttl } });
      }
      const payload = JSON.parse(Buffer.from(expiring.split('.')[1]!, 'base64url').toString());
      expect(payload.exp - payload.iat).to.equal(1);
      await new Promise((r) => setTimeout(r, 2100));
      for (const [method, path] of endpoints) {
        const r = await call(method, path, { token: expiring });
        expect(r.status, `${method} ${path}`).to.equal(401);
        expect(r.headers.get('www-authenticate')).to.include('error="invalid_token"');
      }
      // The signature covers the expiry: a token whose exp was pushed back is refused too.
      const [head, body, sig] = admin.split('.');
      const claims = JSON.parse(Buffer.from(body!, 'base64url').toString());
      claims.exp = Math.floor(Date.now() / 1000) - 10;
      const tampered = `${head}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${sig}`;
      expect((await call('GET', '/api/v1/users', { token: tampered })).status).to.equal(401);
    });

    it('403 insufficient_scope for a token lacking the scope; admin scopes only for superusers', async () => {
      for (const [method, path, need] of endpoints) {
        if (path.startsWith('/api/v1/me')) {
          // The caller's own account: a user token with the scope `account`, never an admin or machine token.
          for (const token of [admin, superToken, plainUserToken]) {
            const r = await call(method, path, { token });
            expect(r.status, `${method} ${path}`).to.equal(403);
            expect(r.headers.get('www-authenticate')).to.equal('Bearer realm="latch", error="insufficient_scope", scope="account"');
          }
          continue;
        }
        if (need === 'write') {
          const r = await call(method, path, { token: reader });
          expect(r.status, `${method} ${path}`).to.equal(403);
          expect(r.headers.get('www-authenticate')).to.equal('Bearer realm="latch", error="insufficient_scope", scope="admin:write"');
        }
        // A plain user's `account` token: only organization endpoints of its own organizations (not here).
        const acc = await call(method, path, { token: accountOnly });
        expect(acc.status, `${method} ${path}`).to.equal(403);
        const plain = await call(method, path, { token: plainUserToken });
        expect(plain.status, `${method} ${path}`).to.equal(403);
        expect(plain.json.type).to.equal('https://latch.dev/problems/forbidden');
        // Asked by a user who is not a superuser, the token carries no admin scope at all.
        const never = await call(method, path, { token: neverSuperToken });
        expect(never.status, `${method} ${path}`).to.equal(403);
        expect(never.headers.get('www-authenticate'), `${method} ${path}`).to.match(/error="insufficient_scope"/);
      }
      expect((await call('GET', '/api/v1/users', { token: superToken })).status).to.equal(200);
    });

    it('a superuser token stops working for admin once the flag is removed', async () => {
      const me = (await call('GET', '/api/v1/users?email=root@', { token: admin })).json.data[0];
      // Another active superuser, so that root is not the last one (which cannot be demoted).
      const second = await cli('users', 'create', '--email', 'second-root@example.test', '--password', 'a second superuser passphrase', '--superuser');
      await call('PATCH', `/api/v1/users/${me.id}`, { token: admin, body: { superuser: false } });
      expect((await call('GET', '/api/v1/users', { token: superToken })).status).to.equal(403);
      await call('PATCH', `/api/v1/users/${me.id}`, { token: admin, body: { superuser: true } });
      expect((await call('GET', '/api/v1/users', { token: superToken })).status).to.equal(200);
      expect((await call('DELETE', `/api/v1/users/${second.id}`, { token: admin })).status).to.equal(204);
    });

    it('unknown paths and methods answer problems', async () => {
      const r = await fetch(`${srv.url}/api/v1/nothing`, { headers: { authorization: `Bearer ${admin}` } });
      expect(r.status).to.equal(404);
      expect(r.headers.get('content-type')).to.match(/problem\+json/);
      const m = await fetch(`${srv.url}/api/v1/users`, { method: 'PUT', headers: { authorization: `Bearer ${admin}` } });
      expect(m.status).to.equal(405);
      expect(m.headers.get('allow')).to.include('GET');
    });
  });

  describe('users', () => {
    it('creates, lists, pages, gets with ETag, updates with If-Match, audits', async () => {
      const created = await call('POST', '/api/v1/users', { token: admin, body: { email: 'new@example.test', password: 'long enough password', name: 'New' } });
      expect(created.status).to.equal(201);
      expect(created.headers.get('location')).to.equal(`${srv.url}/api/v1/users/${created.json.id}`);
      const dup = await call('POST', '/api/v1/users', { token: admin, body: { email: 'NEW@example.test', password: 'long enough password' } });
      expect(dup.status).to.equal(409);
      const got = await call('GET', `/api/v1/users/${created.json.id}`, { token: reader });
      const etag = got.headers.get('etag')!;
      const patched = await call('PATCH', `/api/v1/users/${created.json.id}`, { token: admin, body: { name: 'Renamed' }, headers: { 'if-match': etag } });
      expect(patched.json.name).to.equal('Renamed');
      const stale = await call('PATCH', `/api/v1/users/${created.json.id}`, { token: admin, body: { name: 'Again' }, headers: { 'if-match': etag } });
      expect(stale.status).to.equal(412);
      const page1 = await call('GET', '/api/v1/users?limit=2', { token: admin });
      expect(page1.json.data).to.have.length(2);
      expect(page1.json.data[0].email).to.equal('new@example.test');
      const page2 = await call('GET', `/api/v1/users?limit=2&cursor=${page1.json.next_cursor}`, { token: admin });
      expect(page2.json.data[0].id).to.not.equal(page1.json.data[1].id);
      expect(page2.json.next_cursor).to.equal(null);
      expect((await call('GET', '/api/v1/users?active=false', { token: admin })).json.data).to.have.length(0);
      const events = await srv.running.services.audit.list({ subjectId: created.json.id });
      expect(events.map((e) => e.type)).to.include.members(['account.create', 'account.admin_update']);
      const upd = events.find((e) => e.type === 'account.admin_update')!;
      expect(upd.details).to.deep.include({ before: { name: 'New', updated_at: got.json.updated_at }, after: { name: 'Renamed', updated_at: patched.json.updated_at } });
      expect(upd.actorId).to.be.a('string');
    });

    it('roles, reset-mfa, password reset, sessions and grants', async () => {
      await cli('roles', 'create', '--name', 'auditor');
      const u = (await call('POST', '/api/v1/users', { token: admin, body: { email: 'roles@example.test', send_invitation: true, roles: ['auditor'] } })).json;
      expect(u.roles).to.deep.equal(['auditor']);
      expect((await call('PATCH', `/api/v1/users/${u.id}`, { token: admin, body: { roles: [] } })).json.roles).to.deep.equal([]);
      expect((await call('PATCH', `/api/v1/users/${u.id}`, { token: admin, body: { roles: ['nope'] } })).status).to.equal(422);
      expect((await call('POST', `/api/v1/users/${u.id}/reset-mfa`, { token: admin })).status).to.equal(204);
      expect((await call('POST', `/api/v1/users/${u.id}/send-password-reset`, { token: admin })).status).to.equal(204);
      const sessions = await call('GET', `/api/v1/users/${plainUser.id}/sessions`, { token: admin });
      expect(sessions.json.data.length).to.be.greaterThan(0);
      const grants = await call('GET', `/api/v1/users/${plainUser.id}/grants`, { token: admin });
      expect(grants.json.data.length).to.be.greaterThan(0);
      expect((await call('DELETE', `/api/v1/users/${plainUser.id}/grants/${grants.json.data[0].id}`, { token: admin })).status).to.equal(204);
      expect((await call('DELETE', `/api/v1/users/${plainUser.id}/grants/nope`, { token: admin })).status).to.equal(404);
      expect((await call('DELETE', `/api/v1/users/${plainUser.id}/sessions/${sessions.json.data[0].id}`, { token: admin })).status).to.equal(204);
      expect((await call('DELETE', `/api/v1/users/${plainUser.id}/sessions/nope`, { token: admin })).status).to.equal(404);
      expect((await call('GET', '/api/v1/users/nope', { token: admin })).status).to.equal(404);
    });

    it('linked identities: lists them and unlinks one (404 when not linked)', async () => {
      await cli('idps', 'create', '--name', 'upstream', '--kind', 'github', '--client-id', 'a', '--client-secret', 'b');
      await srv.running.services.federatedIdentities.link({ accountId: plainUser.id, provider: 'upstream', subject: '1234', email: 'plain@example.test' }, { actorId: 'test' });
      const listed = await call('GET', `/api/v1/users/${plainUser.id}/identities`, { token: reader });
      expect(listed.json.data.map((l: { provider: string }) => l.provider)).to.deep.equal(['upstream']);
      expect((await call('DELETE', `/api/v1/users/${plainUser.id}/identities/upstream`, { token: admin })).status).to.equal(204);
      expect((await call('DELETE', `/api/v1/users/${plainUser.id}/identities/upstream`, { token: admin })).status).to.equal(404);
      expect((await call('GET', `/api/v1/users/${plainUser.id}/identities`, { token: reader })).json.data).to.deep.equal([]);
    });

    it('revoke-sessions ends every session and grant of the user (its tokens stop working); 404 for an unknown user', async () => {
      const login = { email: 'revoked@example.test', password: 'a passphrase to revoke' };
      const user = await cli('users', 'create', '--email', login.email, '--password', login.password);
      const first = await h.userToken(login, 'account');
      const second = await h.userToken(login, 'account');
      const other = await h.userToken({ email: 'plain@example.test', password: 'a plain user passphrase' }, 'account');
      expect((await call('GET', `/api/v1/users/${user.id}/sessions`, { token: admin })).json.data).to.have.length(2);
      expect((await call('GET', `/api/v1/users/${user.id}/grants`, { token: admin })).json.data.length).to.be.greaterThan(0);
      expect((await call('GET', '/api/v1/me', { token: first })).status).to.equal(200);

      expect((await call('POST', `/api/v1/users/${user.id}/revoke-sessions`, { token: reader })).status, 'admin:write').to.equal(403);
      const revoked = await call('POST', `/api/v1/users/${user.id}/revoke-sessions`, { token: admin });
      expect(revoked.status).to.equal(204);
      expect((await call('GET', `/api/v1/users/${user.id}/sessions`, { token: admin })).json.data).to.deep.equal([]);
      expect((await call('GET', `/api/v1/users/${user.id}/grants`, { token: admin })).json.data).to.deep.equal([]);
      // Access tokens die with their grant; another user's token is untouched.
      for (const token of [first, second]) expect((await call('GET', '/api/v1/me', { token })).status).to.equal(401);
      expect((await call('GET', '/api/v1/me', { token: other })).status).to.equal(200);
      expect((await call('GET', `/api/v1/users/${user.id}`, { token: admin })).json.active, 'the account itself stays').to.equal(true);
      const events = await srv.running.services.audit.list({ subjectId: user.id });
      expect(events.map((e) => e.type)).to.include('account.sessions_revoke');

      for (const id of ['nope', '00000000-0000-0000-0000-000000000000', 'x'.repeat(300)]) expect((await call('POST', `/api/v1/users/${id}/revoke-sessions`, { token: admin })).status, id).to.equal(404);
    });

    it('deletes GDPR-style: 404 afterwards, audit rows pseudonymised, email free again', async () => {
      const u = (await call('POST', '/api/v1/users', { token: admin, body: { email: 'gone@example.test', password: 'long enough password' } })).json;
      expect((await call('DELETE', `/api/v1/users/${u.id}`, { token: admin })).status).to.equal(204);
      expect((await call('GET', `/api/v1/users/${u.id}`, { token: admin })).status).to.equal(404);
      expect(await srv.running.services.audit.list({ subjectId: u.id })).to.deep.equal([]);
      const all = JSON.stringify(await srv.running.services.audit.list({ limit: 1000 }));
      expect(all).to.not.include('gone@example.test');
      expect(all).to.not.include(u.id);
      expect(all).to.include('erased:');
      expect((await call('POST', '/api/v1/users', { token: admin, body: { email: 'gone@example.test', password: 'long enough password' } })).status).to.equal(201);
    });

    it('validation: malformed JSON 400, wrong types and oversized fields 422, big bodies 413, not JSON 415', async () => {
      expect((await call('POST', '/api/v1/users', { token: admin, raw: '{"email":' })).json.type).to.equal('https://latch.dev/problems/malformed-request');
      const wrong = await call('POST', '/api/v1/users', { token: admin, body: { email: 5, password: true, superuser: 'yes', extra: 1 } });
      expect(wrong.status).to.equal(422);
      expect(wrong.json.errors.map((e: { field: string }) => e.field)).to.have.members(['email', 'password', 'superuser', 'extra']);
      expect((await call('POST', '/api/v1/users', { token: admin, body: { email: `${'a'.repeat(400)}@x.test`, password: 'long enough password' } })).status).to.equal(422);
      expect((await call('POST', '/api/v1/users', { token: admin, body: [] })).status).to.equal(422);
      // The password policy applies to passwords an admin sets too.
      const weak = await call('POST', '/api/v1/users', { token: admin, body: { email: 'weak@example.test', password: 'password1' } });
      expect(weak.status).to.equal(422);
      expect(weak.json.errors.map((e: { field: string }) => e.field)).to.deep.equal(['password']);
      expect((await call('PATCH', `/api/v1/users/${plainUser.id}`, { token: admin, body: { name: 'x'.repeat(300) } })).status).to.equal(422);
      expect((await call('POST', '/api/v1/users', { token: admin, raw: JSON.stringify({ email: 'x'.repeat(100_000) }) })).status).to.equal(413);
      expect((await call('POST', '/api/v1/users', { token: admin, raw: 'email=a', headers: { 'content-type': 'application/x-www-form-urlencoded' } })).status).to.equal(415);
      expect((await call('GET', '/api/v1/users?limit=1000', { token: admin })).status).to.equal(422);
      expect((await call('GET', '/api/v1/users?cursor=zzz', { token: admin })).status).to.equal(422);
    });
  });

  describe('clients', () => {
    const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;
    const tokenStatus = async (id: string, secret: string) =>
      (await fetch(`${srv.url}/token`, { method: 'POST', headers: { authorization: basic(id, secret), 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'admin:read', resource: API }) })).status;

    it('creates (secret once), lists, gets, updates, rotates with overlap, disables, deletes', async () => {
      const c = await call('POST', '/api/v1/clients', { token: admin, body: { name: 'svc', grant_types: ['client_credentials'], resources: [API], scope: 'admin:read' } });
      expect(c.status).to.equal(201);
      expect(c.json.client_secret).to.be.a('string');
      expect(c.headers.get('location')).to.equal(`${srv.url}/api/v1/clients/${c.json.id}`);
      const got = await call('GET', `/api/v1/clients/${c.json.id}`, { token: admin });
      expect(got.json).to.not.have.property('client_secret');
      const list = await call('GET', '/api/v1/clients', { token: admin });
      expect(list.json.data[0].id).to.equal(c.json.id);
      const patched = await call('PATCH', `/api/v1/clients/${c.json.id}`, { token: admin, body: { name: 'svc2' }, headers: { 'if-match': got.headers.get('etag')! } });
      expect(patched.json.name).to.equal('svc2');
      expect((await call('PATCH', `/api/v1/clients/${c.json.id}`, { token: admin, body: { name: 'svc3' }, headers: { 'if-match': got.headers.get('etag')! } })).status).to.equal(412);
      expect((await call('PATCH', `/api/v1/clients/${c.json.id}`, { token: admin, body: { redirect_uris: ['javascript:alert(1)'] } })).json.errors[0].field).to.equal('redirect_uris');

      expect(await tokenStatus(c.json.id, c.json.client_secret)).to.equal(200);
      const rotated = await call('POST', `/api/v1/clients/${c.json.id}/rotate-secret`, { token: admin, body: { overlap_seconds: 3600 } });
      expect(rotated.json.previous_secret_expires_at).to.be.a('string');
      expect(await tokenStatus(c.json.id, rotated.json.client_secret)).to.equal(200);
      expect(await tokenStatus(c.json.id, c.json.client_secret), 'old secret during overlap').to.equal(200);
      const again = await call('POST', `/api/v1/clients/${c.json.id}/rotate-secret`, { token: admin });
      expect(await tokenStatus(c.json.id, rotated.json.client_secret), 'no overlap').to.equal(401);
      expect(await tokenStatus(c.json.id, again.json.client_secret)).to.equal(200);
      expect((await call('POST', `/api/v1/clients/${c.json.id}/rotate-secret`, { token: admin, body: { overlap_seconds: 8 * 86400 } })).status).to.equal(422);

      const its = await cc({ client_id: c.json.id, client_secret: again.json.client_secret }, 'admin:read', API);
      expect((await call('GET', '/api/v1/clients', { token: its })).status).to.equal(200);
      // RFC 7662: the API's resource server (here the ops client, allowed that audience) introspects the token.
      const introspect = async (token: string) =>
        (await (await fetch(`${srv.url}/token/introspection`, { method: 'POST', headers: { authorization: basic(h.machine.client_id, h.machine.client_secret), 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ token }) })).json()) as { active: boolean; client_id?: string };
      expect(await introspect(its)).to.include({ active: true, client_id: c.json.id });
      expect((await call('POST', `/api/v1/clients/${c.json.id}/disable`, { token: admin })).json.enabled).to.equal(false);
      expect((await introspect(its)).active, 'introspection of a disabled client\'s token').to.equal(false);
      expect(await tokenStatus(c.json.id, again.json.client_secret)).to.equal(401);
      expect((await call('GET', '/api/v1/clients', { token: its })).status, 'tokens of a disabled client').to.equal(401);
      expect((await call('POST', `/api/v1/clients/${c.json.id}/enable`, { token: admin })).json.enabled).to.equal(true);
      expect((await call('DELETE', `/api/v1/clients/${c.json.id}`, { token: admin })).status).to.equal(204);
      expect((await call('GET', `/api/v1/clients/${c.json.id}`, { token: admin })).status).to.equal(404);
      expect((await call('DELETE', '/api/v1/clients/latch-account', { token: admin })).status).to.equal(409);
      const types = (await srv.running.services.audit.list({ subjectId: c.json.id })).map((e) => e.type);
      expect(types).to.include.members(['client.create', 'client.update', 'client.rotate_secret', 'client.disable', 'client.enable', 'client.delete']);
    });
  });

  describe('contract', () => {
    it('every operation of users, clients and docs answered a 2xx that validated against openapi.yaml', () => {
      expectCovered('/api/openapi.yaml', '/api/docs', '/api/v1/users', '/api/v1/clients');
    });
  });
});
