import { randomUUID } from 'node:crypto';

import { expect } from 'chai';
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';

import { expectCovered, startApiHarness, type ApiHarness, type Credentials } from './helpers/api.js';
import type { TestServer } from './helpers/server.js';

const tick = () => new Promise((r) => setTimeout(r, 300));

describe('admin API: resources and keys (/api/v1/resources, /api/v1/keys)', function () {
  this.timeout(60_000);
  let h: ApiHarness;
  let srv: TestServer;
  let API: string;
  let admin: string;
  let reader: string;
  const call = (...args: Parameters<ApiHarness['call']>) => h.call(...args);
  const fields = (r: { json: { errors: { field: string }[] } }) => r.json.errors.map((e) => e.field);
  const auditTypes = async (subjectId: string) => (await srv.running.services.audit.list({ subjectId })).map((e) => e.type);

  /** A client-credentials client for `resource` (through the API). */
  async function machine(resource: string, scope: string): Promise<Credentials> {
    const c = await call('POST', '/api/v1/clients', { token: admin, body: { name: `m-${randomUUID()}`, grant_types: ['client_credentials'], resources: [resource], scope } });
    expect(c.status, JSON.stringify(c.json)).to.equal(201);
    return { client_id: c.json.id, client_secret: c.json.client_secret };
  }

  async function tokenResponse(client: Credentials, scope: string, resource: string) {
    const res = await fetch(`${srv.url}/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', scope, resource }),
    });
    return { status: res.status, json: (await res.json()) as Record<string, string> };
  }

  before(async () => {
    h = await startApiHarness();
    ({ srv, API, admin, reader } = h);
  });

  after(async () => {
    await h?.close();
  });

  describe('resources', () => {
    it('creates, lists (filtered, paged), gets with ETag, updates with If-Match, deletes, audits', async () => {
      const body = { identifier: 'https://orders.example.test', name: 'Orders', scopes: ['orders:read', 'orders:write'], access_token_ttl: 600, alg: 'ES256', rbac: false };
      const created = await call('POST', '/api/v1/resources', { token: admin, body });
      expect(created.status).to.equal(201);
      const id = created.json.id as string;
      expect(created.json).to.deep.include({ ...body });
      expect(created.headers.get('location')).to.equal(`${srv.url}/api/v1/resources/${id}`);
      expect(created.headers.get('etag')).to.be.a('string');
      const defaults = (await call('POST', '/api/v1/resources', { token: admin, body: { identifier: 'urn:example:defaults' } })).json;
      expect(defaults).to.deep.include({ name: null, scopes: [], access_token_ttl: null, alg: 'RS256', rbac: false });

      const got = await call('GET', `/api/v1/resources/${id}`, { token: reader });
      expect(got.json).to.deep.equal(created.json);
      expect(got.headers.get('etag')).to.equal(created.headers.get('etag'));

      const list = await call('GET', '/api/v1/resources', { token: reader });
      expect(list.json.data[0].id).to.equal(defaults.id);
      expect(list.json.data.map((r: { identifier: string }) => r.identifier)).to.include.members([API, body.identifier]);
      const one = await call('GET', `/api/v1/resources?identifier=${encodeURIComponent(body.identifier)}`, { token: reader });
      expect(one.json).to.deep.equal({ data: [created.json], next_cursor: null });
      expect((await call('GET', '/api/v1/resources?identifier=urn:nothing', { token: reader })).json.data).to.deep.equal([]);
      const page1 = await call('GET', '/api/v1/resources?limit=1', { token: reader });
      expect(page1.json.data).to.have.length(1);
      const page2 = await call('GET', `/api/v1/resources?limit=1&cursor=${page1.json.next_cursor}`, { token: reader });
      expect(page2.json.data[0].id).to.equal(id);
      expect((await call('GET', '/api/v1/resources?limit=0', { token: reader })).status).to.equal(422);
      expect((await call('GET', '/api/v1/resources?identifier=a&identifier=b', { token: reader })).status).to.equal(422);

      // The CLI describes resources the same way.
      const viaCli = (await h.cli('resources', 'list')).find((r: { id: string }) => r.id === id);
      expect(viaCli).to.deep.equal(created.json);

      const etag = got.headers.get('etag')!;
      const patched = await call('PATCH', `/api/v1/resources/${id}`, { token: admin, body: { name: 'Orders API', access_token_ttl: null, alg: 'EdDSA', rbac: true }, headers: { 'if-match': etag } });
      expect(patched.status).to.equal(200);
      expect(patched.json).to.deep.include({ identifier: body.identifier, name: 'Orders API', access_token_ttl: null, alg: 'EdDSA', rbac: true, scopes: body.scopes });
      expect(patched.headers.get('etag')).to.not.equal(etag);
      expect((await call('PATCH', `/api/v1/resources/${id}`, { token: admin, body: { name: 'Again' }, headers: { 'if-match': etag } })).status).to.equal(412);
      const unnamed = await call('PATCH', `/api/v1/resources/${id}`, { token: admin, body: { name: null }, headers: { 'if-match': patched.headers.get('etag')! } });
      expect(unnamed.json.name).to.equal(null);
      expect((await call('GET', `/api/v1/resources/${id}`, { token: admin })).json.name).to.equal(null);
      // Nothing to change: the representation (and its ETag) stays, no audit row.
      expect((await call('PATCH', `/api/v1/resources/${id}`, { token: admin, body: {} })).headers.get('etag')).to.equal(unnamed.headers.get('etag'));

      expect((await call('DELETE', `/api/v1/resources/${id}`, { token: admin })).status).to.equal(204);
      expect((await call('GET', `/api/v1/resources/${id}`, { token: admin })).status).to.equal(404);
      expect((await call('DELETE', `/api/v1/resources/${id}`, { token: admin })).status).to.equal(404);
      expect((await call('PATCH', `/api/v1/resources/${id}`, { token: admin, body: { name: 'x' } })).status).to.equal(404);

      const events = await srv.running.services.audit.list({ subjectId: id });
      expect(events.map((e) => e.type)).to.have.members(['resource.create', 'resource.update', 'resource.update', 'resource.delete']);
      const first = events.find((e) => e.type === 'resource.update' && (e.details?.after as Record<string, unknown>).alg)!;
      expect(first.details).to.deep.include({ before: { name: 'Orders', access_token_ttl: 600, alg: 'ES256', rbac: false }, after: { name: 'Orders API', access_token_ttl: null, alg: 'EdDSA', rbac: true }, via: 'api' });
      expect(first.actorId).to.be.a('string');
      expect(events.find((e) => e.type === 'resource.delete')!.details).to.deep.include({ before: { ...patched.json, name: null, updated_at: (events.find((e) => e.type === 'resource.delete')!.details!.before as { updated_at: string }).updated_at } });
    });

    it('409 for a duplicate identifier; 400, 422 for malformed and invalid input', async () => {
      const r = (await call('POST', '/api/v1/resources', { token: admin, body: { identifier: 'https://dup.example.test', scopes: ['a'] } })).json;
      const dup = await call('POST', '/api/v1/resources', { token: admin, body: { identifier: 'https://dup.example.test' } });
      expect(dup.status).to.equal(409);
      expect(dup.json.type).to.equal('https://latch.dev/problems/conflict');
      expect((await call('POST', '/api/v1/resources', { token: admin, body: { identifier: API } })).status).to.equal(409);

      expect((await call('POST', '/api/v1/resources', { token: admin, raw: '{"identifier":' })).status).to.equal(400);
      expect((await call('POST', '/api/v1/resources', { token: admin, body: [] })).status).to.equal(422);
      const wrong = await call('POST', '/api/v1/resources', { token: admin, body: { identifier: 5, name: 7, scopes: 'a b', access_token_ttl: '60', alg: 256, rbac: 'yes', extra: true } });
      expect(wrong.status).to.equal(422);
      expect(fields(wrong)).to.have.members(['identifier', 'name', 'scopes', 'access_token_ttl', 'alg', 'rbac', 'extra']);
      const cases: [Record<string, unknown>, string][] = [
        [{}, 'identifier'],
        [{ identifier: `https://x.example.test/${'a'.repeat(3000)}` }, 'identifier'],
        [{ identifier: 'not a uri' }, 'identifier'],
        [{ identifier: 'https://x.example.test/#frag' }, 'identifier'],
        [{ identifier: 'https://x.example.test/\u0000' }, 'identifier'],
        [{ identifier: 'https://x.example.test', name: 'n'.repeat(256) }, 'name'],
        [{ identifier: 'https://x.example.test', name: 'a\u0000b' }, 'name'],
        [{ identifier: 'https://x.example.test', scopes: ['bad"scope'] }, 'scopes'],
        [{ identifier: 'https://x.example.test', scopes: ['s'.repeat(300)] }, 'scopes'],
        [{ identifier: 'https://x.example.test', scopes: Array.from({ length: 101 }, (_, i) => `s${i}`) }, 'scopes'],
        [{ identifier: 'https://x.example.test', alg: 'HS256' }, 'alg'],
        [{ identifier: 'https://x.example.test', access_token_ttl: 0 }, 'access_token_ttl'],
        [{ identifier: 'https://x.example.test', access_token_ttl: 31_536_001 }, 'access_token_ttl'],
        [{ identifier: 'https://x.example.test', access_token_ttl: 1.5 }, 'access_token_ttl'],
        [{ identifier: 'https://x.example.test', access_token_ttl: 2 ** 40 }, 'access_token_ttl'],
      ];
      for (const [body, field] of cases) {
        const res = await call('POST', '/api/v1/resources', { token: admin, body });
        expect(res.status, JSON.stringify(body).slice(0, 100)).to.equal(422);
        expect(fields(res), JSON.stringify(body).slice(0, 100)).to.deep.equal([field]);
      }
      expect((await call('GET', `/api/v1/resources?identifier=${encodeURIComponent('https://x.example.test')}`, { token: admin })).json.data).to.deep.equal([]);

      const patches: [Record<string, unknown>, string][] = [
        [{ identifier: 'https://other.example.test' }, 'identifier'],
        [{ alg: 'none' }, 'alg'],
        [{ access_token_ttl: 0 }, 'access_token_ttl'],
        [{ scopes: [1] }, 'scopes'],
        [{ rbac: null }, 'rbac'],
        [{ unknown: 1 }, 'unknown'],
      ];
      for (const [body, field] of patches) {
        const res = await call('PATCH', `/api/v1/resources/${r.id}`, { token: admin, body });
        expect(res.status, JSON.stringify(body)).to.equal(422);
        expect(fields(res)).to.deep.equal([field]);
      }
      expect((await call('PATCH', `/api/v1/resources/${r.id}`, { token: admin, raw: 'scopes=a', headers: { 'content-type': 'application/x-www-form-urlencoded' } })).status).to.equal(415);
      expect((await call('GET', `/api/v1/resources/${r.id}`, { token: admin })).json).to.deep.include({ identifier: 'https://dup.example.test', scopes: ['a'] });
    });

    it('404 for unknown and malformed ids', async () => {
      for (const id of [randomUUID(), 'not-a-uuid', 'x'.repeat(300), '%00', `${randomUUID()}x`]) {
        const path = `/api/v1/resources/${encodeURIComponent(id)}`;
        expect((await call('GET', path, { token: admin })).status, id).to.equal(404);
        expect((await call('PATCH', path, { token: admin, body: { name: 'x' } })).status, id).to.equal(404);
        expect((await call('DELETE', path, { token: admin })).status, id).to.equal(404);
      }
    });

    it('protects the admin API resource: no delete, its scopes and rbac stay; its token lifetime may change', async () => {
      const api = (await call('GET', `/api/v1/resources?identifier=${encodeURIComponent(API)}`, { token: admin })).json.data[0];
      expect(api.scopes).to.deep.equal(['admin:read', 'admin:write', 'account']);
      const del = await call('DELETE', `/api/v1/resources/${api.id}`, { token: admin });
      expect(del.status).to.equal(409);
      expect(del.json.detail).to.match(/built in/);
      const drop = await call('PATCH', `/api/v1/resources/${api.id}`, { token: admin, body: { scopes: ['admin:read', 'account'] } });
      expect(drop.status).to.equal(422);
      expect(drop.json.errors).to.deep.equal([{ field: 'scopes', message: 'must keep admin:write: the admin API relies on them' }]);
      expect((await call('PATCH', `/api/v1/resources/${api.id}`, { token: admin, body: { scopes: [] } })).status).to.equal(422);
      expect((await call('PATCH', `/api/v1/resources/${api.id}`, { token: admin, body: { rbac: true } })).status).to.equal(422);
      // Other scopes may come and go.
      expect((await call('PATCH', `/api/v1/resources/${api.id}`, { token: admin, body: { scopes: [...api.scopes, 'reports'] } })).json.scopes).to.deep.equal([...api.scopes, 'reports']);
      expect((await call('PATCH', `/api/v1/resources/${api.id}`, { token: admin, body: { scopes: api.scopes } })).json.scopes).to.deep.equal(api.scopes);

      const m = await machine(API, 'admin:read');
      expect((await call('PATCH', `/api/v1/resources/${api.id}`, { token: admin, body: { access_token_ttl: 1 } })).json.access_token_ttl).to.equal(1);
      const short = await h.cc(m, 'admin:read', API);
      const claims = decodeJwt(short);
      expect(claims.exp! - claims.iat!).to.equal(1);
      expect((await call('PATCH', `/api/v1/resources/${api.id}`, { token: admin, body: { access_token_ttl: null } })).json.access_token_ttl).to.equal(null);
      await new Promise((r) => setTimeout(r, 2100));
      expect((await call('GET', '/api/v1/resources', { token: short })).status).to.equal(401);
      const long = decodeJwt(await h.cc(m, 'admin:read', API));
      expect(long.exp! - long.iat!).to.be.greaterThan(1);
      expect(await auditTypes(api.id)).to.include('resource.update');
    });

    it('a scope removed from a resource is no longer granted; clients and role permissions lose it', async () => {
      const rs = (await call('POST', '/api/v1/resources', { token: admin, body: { identifier: 'https://billing.example.test', scopes: ['bill:read', 'bill:write'] } })).json;
      const other = (await call('POST', '/api/v1/resources', { token: admin, body: { identifier: 'https://ledger.example.test', scopes: ['bill:write', 'ledger:read'] } })).json;
      const m = await machine(rs.identifier, 'bill:read bill:write');
      const both = (await call('POST', '/api/v1/clients', { token: admin, body: { name: 'both', grant_types: ['client_credentials'], resources: [rs.identifier, other.identifier], scope: 'bill:read bill:write ledger:read' } })).json;
      await h.cli('roles', 'create', '--name', 'biller', '--permission', `${rs.identifier}:bill:read`, '--permission', `${rs.identifier}:bill:write`);
      expect(decodeJwt(await h.cc(m, 'bill:read bill:write', rs.identifier)).scope).to.equal('bill:read bill:write');

      const patched = await call('PATCH', `/api/v1/resources/${rs.id}`, { token: admin, body: { scopes: ['bill:read'] } });
      expect(patched.json.scopes).to.deep.equal(['bill:read']);
      // This instance dropped its cache at once; others follow through the change feed.
      expect(decodeJwt(await h.cc(m, 'bill:read bill:write', rs.identifier)).scope).to.equal('bill:read');
      await tick();
      expect(decodeJwt(await h.cc(m, 'bill:read bill:write', rs.identifier)).scope).to.equal('bill:read');
      expect((await call('GET', `/api/v1/clients/${m.client_id}`, { token: admin })).json.scope).to.equal('bill:read');
      // Still defined by the other resource of this client: kept.
      expect((await call('GET', `/api/v1/clients/${both.id}`, { token: admin })).json.scope).to.equal('bill:read bill:write ledger:read');
      const role = (await h.cli('roles', 'list')).find((r: { name: string }) => r.name === 'biller');
      expect(JSON.stringify(role.permissions)).to.include('bill:read');
      expect(JSON.stringify(role.permissions)).to.not.include('bill:write');
      // The clients stay valid registrations.
      expect((await call('PATCH', `/api/v1/clients/${m.client_id}`, { token: admin, body: { name: 'renamed' } })).status).to.equal(200);
      const events = await srv.running.services.audit.list({ subjectId: rs.id, type: 'resource.update' });
      expect(events[0]!.details).to.deep.include({ before: { scopes: ['bill:read', 'bill:write'] }, after: { scopes: ['bill:read'] } });
    });

    it('deleting a resource removes it from clients and roles (no dangling data, no 500)', async () => {
      const rs = (await call('POST', '/api/v1/resources', { token: admin, body: { identifier: 'https://gone.example.test', scopes: ['gone:read', 'shared'] } })).json;
      const keep = (await call('POST', '/api/v1/resources', { token: admin, body: { identifier: 'https://kept.example.test', scopes: ['shared', 'kept:read'] } })).json;
      const only = await machine(rs.identifier, 'gone:read');
      const two = (await call('POST', '/api/v1/clients', { token: admin, body: { name: 'two', grant_types: ['client_credentials'], resources: [rs.identifier, keep.identifier], scope: 'gone:read shared kept:read' } })).json;
      await h.cli('roles', 'create', '--name', 'goner', '--permission', `${rs.identifier}:gone:read`, '--permission', `${keep.identifier}:kept:read`);
      const before = await h.cc(only, 'gone:read', rs.identifier);

      expect((await call('DELETE', `/api/v1/resources/${rs.id}`, { token: admin })).status).to.equal(204);
      expect((await call('GET', `/api/v1/clients/${only.client_id}`, { token: admin })).json).to.deep.include({ resources: [], scope: '' });
      expect((await call('GET', `/api/v1/clients/${two.id}`, { token: admin })).json).to.deep.include({ resources: [keep.identifier], scope: 'shared kept:read' });
      const role = (await h.cli('roles', 'list')).find((r: { name: string }) => r.name === 'goner');
      expect(JSON.stringify(role.permissions)).to.not.include(rs.identifier);
      expect(JSON.stringify(role.permissions)).to.include('kept:read');
      // A token request for it is refused as an OAuth error, never a server error.
      for (const client of [only, { client_id: two.id, client_secret: two.client_secret }]) {
        const res = await tokenResponse(client, 'gone:read', rs.identifier);
        expect(res.status).to.equal(400);
        expect(res.json.error).to.equal('invalid_target');
      }
      expect(decodeJwt(await h.cc({ client_id: two.id, client_secret: two.client_secret }, 'shared kept:read', keep.identifier)).scope).to.equal('shared kept:read');
      // Clients remain editable; the identifier can be registered again.
      expect((await call('PATCH', `/api/v1/clients/${two.id}`, { token: admin, body: { name: 'two again' } })).status).to.equal(200);
      expect((await call('POST', '/api/v1/resources', { token: admin, body: { identifier: rs.identifier } })).status).to.equal(201);
      // Tokens issued before stay valid until they expire (self-contained JWTs, RFC 9068).
      expect(decodeJwt(before).aud).to.equal(rs.identifier);
      expect(await auditTypes(rs.id)).to.include.members(['resource.create', 'resource.delete']);
    });
  });

  describe('keys', () => {
    const jwksOf = async () => (await (await fetch(`${srv.url}/jwks`)).json()) as { keys: { kid: string; d?: string }[] };
    const verify = (token: string) => jwtVerify(token, createRemoteJWKSet(new URL(`${srv.url}/jwks`)), { issuer: srv.url });

    it('lists the keys newest first and gets one with its public JWK', async () => {
      const list = await call('GET', '/api/v1/keys', { token: reader });
      expect(list.json.data.map((k: { alg: string }) => k.alg).sort()).to.deep.equal(['ES256', 'EdDSA', 'RS256']);
      for (const k of list.json.data) expect(k).to.deep.include({ status: 'active', current: true, retired_at: null });
      const page = await call('GET', '/api/v1/keys?limit=2', { token: reader });
      expect(page.json.data).to.have.length(2);
      expect((await call('GET', `/api/v1/keys?limit=2&cursor=${page.json.next_cursor}`, { token: reader })).json).to.deep.equal({ data: [list.json.data[2]], next_cursor: null });

      const one = await call('GET', `/api/v1/keys/${list.json.data[0].id}`, { token: reader });
      expect(one.headers.get('etag')).to.be.a('string');
      expect(one.json).to.deep.include(list.json.data[0]);
      expect(one.json.public_jwk).to.deep.include({ kid: one.json.id, alg: one.json.alg, use: 'sig' });
      expect(one.json.public_jwk).to.not.have.any.keys('d', 'p', 'q', 'dp', 'dq', 'qi');
      expect((await jwksOf()).keys.find((k) => k.kid === one.json.id)).to.deep.equal(one.json.public_jwk);
      for (const id of ['nope', 'x'.repeat(300), 'a%2Fb', randomUUID()]) {
        expect((await call('GET', `/api/v1/keys/${id}`, { token: admin })).status, id).to.equal(404);
        expect((await call('POST', `/api/v1/keys/${id}/retire`, { token: admin })).status, id).to.equal(404);
      }
    });

    it('rotates (old tokens still verify), retires a non-current key (gone from /jwks), refuses the current one', async () => {
      const es = (await call('POST', '/api/v1/resources', { token: admin, body: { identifier: 'https://es.example.test', scopes: ['es'], alg: 'ES256' } })).json;
      const m = await machine(es.identifier, 'es');
      const apiClient = await machine(API, 'admin:read');
      const oldEs = await h.cc(m, 'es', es.identifier);
      const oldApi = await h.cc(apiClient, 'admin:read', API);
      const before = (await call('GET', '/api/v1/keys', { token: admin })).json.data as { id: string; alg: string }[];
      const oldEsKid = decodeProtectedHeader(oldEs).kid!;
      expect(before.find((k) => k.alg === 'ES256')!.id).to.equal(oldEsKid);

      expect((await call('POST', '/api/v1/keys/rotate', { token: admin, body: { alg: 'RS256' } })).status).to.equal(422);
      const rotated = await call('POST', '/api/v1/keys/rotate', { token: admin });
      expect(rotated.status).to.equal(200);
      expect(rotated.json.rotated).to.have.length(3);
      expect(rotated.json.data).to.have.length(6);
      for (const k of rotated.json.data) expect(k.current, k.id).to.equal(rotated.json.rotated.includes(k.id));
      expect(rotated.json.data.slice(0, 3).map((k: { id: string }) => k.id).sort()).to.deep.equal([...rotated.json.rotated].sort());
      expect((await call('GET', '/api/v1/keys', { token: admin })).json.data).to.deep.equal(rotated.json.data);

      await tick();
      const kids = (await jwksOf()).keys.map((k) => k.kid);
      expect(kids).to.include.members([...rotated.json.rotated, ...before.map((k) => k.id)]);
      expect((await jwksOf()).keys.some((k) => k.d !== undefined)).to.equal(false);
      // Signed before the rotation: still verify, and the API still accepts the older token.
      await verify(oldEs);
      await verify(oldApi);
      expect((await call('GET', '/api/v1/keys', { token: oldApi })).status).to.equal(200);
      const newEs = await h.cc(m, 'es', es.identifier);
      const newEsKid = decodeProtectedHeader(newEs).kid!;
      expect(rotated.json.rotated).to.include(newEsKid);
      await verify(newEs);

      const current = await call('POST', `/api/v1/keys/${newEsKid}/retire`, { token: admin });
      expect(current.status).to.equal(409);
      expect(current.json.detail).to.match(/current ES256 key/);
      const retired = await call('POST', `/api/v1/keys/${oldEsKid}/retire`, { token: admin });
      expect(retired.status).to.equal(200);
      expect(retired.headers.get('etag')).to.be.a('string');
      expect(retired.json).to.deep.include({ id: oldEsKid, alg: 'ES256', status: 'retired', current: false });
      expect(retired.json.retired_at).to.be.a('string');
      expect((await call('GET', `/api/v1/keys/${oldEsKid}`, { token: admin })).json).to.deep.equal(retired.json);
      expect((await call('POST', `/api/v1/keys/${oldEsKid}/retire`, { token: admin })).status, 'already retired').to.equal(404);

      await tick();
      const after = (await jwksOf()).keys.map((k) => k.kid);
      expect(after).to.not.include(oldEsKid);
      expect(after).to.include(newEsKid);
      let failed = false;
      await verify(oldEs).catch(() => (failed = true));
      expect(failed, 'a token signed by a retired key no longer verifies').to.equal(true);
      await verify(newEs);
      await verify(oldApi);

      for (const kid of rotated.json.rotated as string[]) expect(await auditTypes(kid)).to.deep.equal(['key.rotate']);
      const events = await srv.running.services.audit.list({ subjectId: oldEsKid });
      expect(events.map((e) => e.type)).to.deep.equal(['key.retire']);
      expect(events[0]!.details).to.deep.include({ alg: 'ES256', via: 'api' });
    });
    it('rotates one algorithm by kid: a new current key of that algorithm only, the old one stays published', async () => {
      const before = (await call('GET', '/api/v1/keys', { token: admin })).json.data as { id: string; alg: string; current: boolean }[];
      const es = before.find((k) => k.alg === 'ES256' && k.current)!;
      expect((await call('POST', `/api/v1/keys/${es.id}/rotate`, { token: reader })).status, 'admin:write').to.equal(403);
      const rotated = await call('POST', `/api/v1/keys/${es.id}/rotate`, { token: admin });
      expect(rotated.status).to.equal(200);
      expect(rotated.headers.get('etag')).to.be.a('string');
      expect(rotated.json).to.deep.include({ alg: 'ES256', status: 'active', current: true, retired_at: null });
      expect(rotated.json.id).to.not.equal(es.id);
      expect(rotated.json.public_jwk).to.deep.include({ kid: rotated.json.id, alg: 'ES256', use: 'sig' });
      expect(rotated.json.public_jwk).to.not.have.any.keys('d');
      expect((await call('GET', `/api/v1/keys/${rotated.json.id}`, { token: admin })).json).to.deep.equal(rotated.json);

      const after = (await call('GET', '/api/v1/keys', { token: admin })).json.data as { id: string; alg: string; current: boolean; status: string }[];
      expect(after).to.have.length(before.length + 1);
      expect(after.find((k) => k.id === es.id)).to.deep.include({ status: 'active', current: false });
      // The other algorithms keep their current key.
      const currentOf = (keys: typeof before) => Object.fromEntries(keys.filter((k) => k.current).map((k) => [k.alg, k.id]));
      expect(currentOf(after)).to.deep.equal({ ...currentOf(before), ES256: rotated.json.id });

      await tick();
      expect((await jwksOf()).keys.map((k) => k.kid)).to.include.members([es.id, rotated.json.id]);
      const resource = (await call('POST', '/api/v1/resources', { token: admin, body: { identifier: 'https://es-one.example.test', scopes: ['one'], alg: 'ES256' } })).json;
      const token = await h.cc(await machine(resource.identifier, 'one'), 'one', resource.identifier);
      expect(decodeProtectedHeader(token).kid, 'new tokens are signed with the new key').to.equal(rotated.json.id);
      await verify(token);
      expect(await auditTypes(rotated.json.id)).to.deep.equal(['key.rotate']);

      for (const id of ['nope', 'x'.repeat(300), 'a%2Fb', randomUUID()]) expect((await call('POST', `/api/v1/keys/${id}/rotate`, { token: admin })).status, id).to.equal(404);
    });
  });

  describe('contract', () => {
    it('every operation of resources and keys answered a 2xx that validated against openapi.yaml', () => {
      expectCovered('/api/v1/resources', '/api/v1/keys');
    });
  });
});
