import { expect } from 'chai';
import { decodeJwt } from 'jose';

import { doc, expectCovered, METHODS, startApiHarness, type ApiHarness, type ApiResponse } from './helpers/api.js';
import { startMailbox, type Mailbox } from './helpers/mailbox.js';

const ORDERS = 'https://orders.example.test';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const LONG_ID = 'x'.repeat(300);
const UNKNOWN_UUID = '00000000-0000-4000-8000-000000000000';

/** A user with a token scoped `account` (a plain, non-superuser user). */
interface Person {
  id: string;
  email: string;
  token: string;
}

describe('admin API: roles and organizations (/api/v1/roles, /api/v1/organizations)', function () {
  this.timeout(60_000);
  let h: ApiHarness;
  let mailbox: Mailbox;
  let admin: string;
  let reader: string;
  let superToken: string;
  let machine: { client_id: string; client_secret: string };
  const call = (...args: Parameters<ApiHarness['call']>) => h.call(...args);
  const people: Record<string, Person> = {};

  const audit = (filter: { subjectId?: string; type?: string }) => h.srv.running.services.audit.list({ ...filter, limit: 100 });
  const expectForbidden = (r: ApiResponse, what: string, scope = /admin:(read|write)/) => {
    expect(r.status, `${what}: ${JSON.stringify(r.json)}`).to.equal(403);
    expect(r.headers.get('www-authenticate'), what).to.match(new RegExp(`^Bearer realm="latch", error="insufficient_scope", scope="${scope.source}"$`));
  };

  before(async () => {
    mailbox = await startMailbox();
    h = await startApiHarness({ env: { SMTP_URL: mailbox.url } });
    ({ admin, reader, superToken } = h);
    await h.cli('resources', 'create', '--identifier', ORDERS, '--scope', 'orders:read', '--scope', 'orders:write', '--rbac');
    machine = await h.cli('clients', 'create', '--name', 'orders agent', '--grant', 'client_credentials', '--resource', ORDERS, '--scope', 'orders:read orders:write');
    for (const name of ['ann', 'adam', 'mia', 'vic', 'otto', 'una', 'tom']) {
      const email = `${name}@example.test`;
      const password = `${name} has a long passphrase`;
      const { id } = await h.cli('users', 'create', '--email', email, '--password', password);
      people[name] = { id, email, token: await h.userToken({ email, password }, 'account') };
    }
    // The server learns of the CLI's resource through the change feed (polled every 100 ms).
    await sleep(500);
  });

  after(async () => {
    await h?.close();
    await mailbox?.close();
  });

  describe('roles', () => {
    it('creates, lists with filters, gets with ETag, updates with If-Match (412 when stale), deletes; audits each change', async () => {
      const created = await call('POST', '/api/v1/roles', { token: admin, body: { name: 'clerk', description: 'Back office', permissions: [`${ORDERS}:orders:read`] } });
      expect(created.status).to.equal(201);
      expect(created.headers.get('location')).to.equal(`${h.srv.url}/api/v1/roles/${created.json.id}`);
      expect(created.json).to.deep.include({ name: 'clerk', kind: 'global', description: 'Back office', builtin: false, permissions: [`${ORDERS}:orders:read`] });
      const id = created.json.id as string;

      const got = await call('GET', `/api/v1/roles/${id}`, { token: reader });
      const etag = got.headers.get('etag')!;
      const patched = await call('PATCH', `/api/v1/roles/${id}`, { token: admin, body: { permissions: [`${ORDERS}:orders:read`, `${ORDERS}:orders:write`], description: null }, headers: { 'if-match': etag } });
      expect(patched.status).to.equal(200);
      expect(patched.json.permissions).to.deep.equal([`${ORDERS}:orders:read`, `${ORDERS}:orders:write`]);
      expect(patched.json.description).to.equal(null);
      expect((await call('PATCH', `/api/v1/roles/${id}`, { token: admin, body: { name: 'clerk2' }, headers: { 'if-match': etag } })).status).to.equal(412);
      // permissions replaces the whole set.
      expect((await call('PATCH', `/api/v1/roles/${id}`, { token: admin, body: { permissions: [`${ORDERS}:orders:write`] } })).json.permissions).to.deep.equal([`${ORDERS}:orders:write`]);
      expect((await call('PATCH', `/api/v1/roles/${id}`, { token: admin, body: { permissions: [] } })).json.permissions).to.deep.equal([]);

      const org = await call('POST', '/api/v1/roles', { token: admin, body: { name: 'auditor', kind: 'organization' } });
      expect(org.json.kind).to.equal('organization');
      const globals = (await call('GET', '/api/v1/roles?kind=global', { token: admin })).json.data;
      expect(globals.map((r: { name: string }) => r.name)).to.deep.equal(['clerk']);
      const orgRoles = (await call('GET', '/api/v1/roles?kind=organization', { token: admin })).json.data.map((r: { name: string }) => r.name);
      expect(orgRoles).to.have.members(['owner', 'admin', 'member', 'viewer', 'auditor']);
      expect(orgRoles[0]).to.equal('auditor');
      expect((await call('GET', '/api/v1/roles?name=owner', { token: admin })).json.data).to.have.length(1);
      const page1 = await call('GET', '/api/v1/roles?limit=2', { token: admin });
      expect(page1.json.data).to.have.length(2);
      const page2 = await call('GET', `/api/v1/roles?limit=200&cursor=${page1.json.next_cursor}`, { token: admin });
      expect(page2.json.data).to.have.length(4);
      expect(page2.json.next_cursor).to.equal(null);

      expect((await call('POST', '/api/v1/roles', { token: admin, body: { name: 'clerk' } })).status, 'duplicate').to.equal(409);
      expect((await call('POST', '/api/v1/roles', { token: admin, body: { name: 'clerk', kind: 'organization' } })).status, 'same name, other kind').to.equal(201);
      expect((await call('PATCH', `/api/v1/roles/${org.json.id}`, { token: admin, body: { name: 'owner' } })).status, 'rename onto an existing name').to.equal(409);

      expect((await call('DELETE', `/api/v1/roles/${org.json.id}`, { token: admin })).status).to.equal(204);
      expect((await call('GET', `/api/v1/roles/${org.json.id}`, { token: admin })).status).to.equal(404);

      const types = (await audit({ subjectId: id })).map((e) => e.type);
      expect(types).to.include.members(['role.create', 'role.update']);
      const upd = (await audit({ subjectId: id, type: 'role.update' })).at(-1)!;
      expect(upd.details).to.deep.include({ via: 'api', before: { description: 'Back office', permissions: [`${ORDERS}:orders:read`] } });
      expect(upd.actorId).to.equal(decodeJwt(admin).sub);
      expect(upd.clientId).to.equal(decodeJwt(admin).client_id);
      expect((await audit({ subjectId: org.json.id })).map((e) => e.type)).to.include('role.delete');
    });

    it('built-in organization roles: never renamed nor deleted (409); description and permissions may change', async () => {
      const owner = (await call('GET', '/api/v1/roles?name=owner&kind=organization', { token: admin })).json.data[0];
      expect(owner.builtin).to.equal(true);
      const rename = await call('PATCH', `/api/v1/roles/${owner.id}`, { token: admin, body: { name: 'boss' } });
      expect(rename.status).to.equal(409);
      expect((await call('PATCH', `/api/v1/roles/${owner.id}`, { token: admin, body: { name: 'owner' } })).status, 'its own name').to.equal(200);
      expect((await call('DELETE', `/api/v1/roles/${owner.id}`, { token: admin })).status).to.equal(409);
      const granted = await call('PATCH', `/api/v1/roles/${owner.id}`, { token: admin, body: { permissions: [`${ORDERS}:orders:write`] } });
      expect(granted.json.permissions).to.deep.equal([`${ORDERS}:orders:write`]);
      expect((await call('PATCH', `/api/v1/roles/${owner.id}`, { token: admin, body: { permissions: [] } })).json.permissions).to.deep.equal([]);
      // Nothing changed when the PATCH failed.
      expect((await call('GET', `/api/v1/roles/${owner.id}`, { token: admin })).json.name).to.equal('owner');
    });

    it('validation (422), unknown and malformed ids (404)', async () => {
      const wrong = await call('POST', '/api/v1/roles', { token: admin, body: { name: 5, kind: 'tenant', description: ['x'], permissions: 'a:b', extra: true } });
      expect(wrong.status).to.equal(422);
      expect(wrong.json.errors.map((e: { field: string }) => e.field)).to.have.members(['name', 'kind', 'description', 'permissions', 'extra']);
      expect((await call('POST', '/api/v1/roles', { token: admin, body: {} })).json.errors[0].field).to.equal('name');
      expect((await call('POST', '/api/v1/roles', { token: admin, body: { name: 'x'.repeat(65) } })).status).to.equal(422);
      expect((await call('POST', '/api/v1/roles', { token: admin, body: { name: 'has space' } })).json.errors[0].field).to.equal('name');
      expect((await call('POST', '/api/v1/roles', { token: admin, body: { name: 'ok', description: 'd'.repeat(256) } })).status).to.equal(422);
      for (const p of ['no-colon', 'https://unknown.example.test:read', `${ORDERS}:orders:delete`, `${'u'.repeat(3000)}:s`]) {
        const r = await call('POST', '/api/v1/roles', { token: admin, body: { name: 'badperm', permissions: [p] } });
        expect(r.status, p).to.equal(422);
        expect(r.json.errors[0].field).to.equal('permissions');
      }
      expect((await call('GET', '/api/v1/roles?kind=tenant', { token: admin })).status).to.equal(422);
      expect((await call('GET', '/api/v1/roles?limit=0', { token: admin })).status).to.equal(422);
      expect((await call('POST', '/api/v1/roles', { token: admin, raw: '{"name":' })).status).to.equal(400);
      const some = (await call('GET', '/api/v1/roles?name=member', { token: admin })).json.data[0].id;
      expect((await call('PATCH', `/api/v1/roles/${some}`, { token: admin, body: { builtin: false } })).status).to.equal(422);
      expect((await call('PATCH', `/api/v1/roles/${some}`, { token: admin, body: { permissions: [1] } })).status).to.equal(422);
      for (const id of [UNKNOWN_UUID, 'not-a-uuid', LONG_ID]) {
        for (const [method, path] of [['GET', ''], ['PATCH', ''], ['DELETE', ''], ['POST', '/assign'], ['POST', '/unassign'], ['GET', '/holders']] as const) {
          const r = await call(method, `/api/v1/roles/${id}${path}`, { token: admin, ...(method === 'GET' || method === 'DELETE' ? {} : { body: { user_id: people.ann!.id } }) });
          expect(r.status, `${method} ${id.slice(0, 20)}${path}`).to.equal(404);
        }
      }
    });

    it('assigns and unassigns global roles to users and clients (204), lists holders; organization roles are refused (422)', async () => {
      const role = (await call('POST', '/api/v1/roles', { token: admin, body: { name: 'support' } })).json;
      expect((await call('POST', `/api/v1/roles/${role.id}/assign`, { token: admin, body: { user_id: people.tom!.id } })).status).to.equal(204);
      expect((await call('POST', `/api/v1/roles/${role.id}/assign`, { token: admin, body: { user_id: people.tom!.id } })).status, 'idempotent').to.equal(204);
      expect((await call('POST', `/api/v1/roles/${role.id}/assign`, { token: admin, body: { client_id: machine.client_id } })).status).to.equal(204);
      const holders = await call('GET', `/api/v1/roles/${role.id}/holders`, { token: reader });
      expect(holders.json.data.map((x: { kind: string; id: string }) => `${x.kind}:${x.id}`)).to.have.members([`user:${people.tom!.id}`, `client:${machine.client_id}`]);
      const first = await call('GET', `/api/v1/roles/${role.id}/holders?limit=1`, { token: admin });
      expect(first.json.data).to.have.length(1);
      const rest = await call('GET', `/api/v1/roles/${role.id}/holders?cursor=${first.json.next_cursor}`, { token: admin });
      expect(rest.json.data).to.have.length(1);
      expect(rest.json.data[0].id).to.not.equal(first.json.data[0].id);
      expect((await call('GET', `/api/v1/users/${people.tom!.id}`, { token: admin })).json.roles).to.deep.equal(['support']);

      for (const body of [{}, { user_id: people.tom!.id, client_id: machine.client_id }, { user_id: 5 }, { user_id: 'nobody' }, { client_id: 'nobody' }, { user_id: LONG_ID }, { user_id: people.tom!.id, role: 'x' }]) {
        const r = await call('POST', `/api/v1/roles/${role.id}/assign`, { token: admin, body });
        expect(r.status, JSON.stringify(body)).to.equal(422);
      }
      const viewer = (await call('GET', '/api/v1/roles?name=viewer', { token: admin })).json.data[0];
      const refused = await call('POST', `/api/v1/roles/${viewer.id}/assign`, { token: admin, body: { user_id: people.tom!.id } });
      expect(refused.status).to.equal(422);
      expect(refused.json.errors[0]).to.deep.equal({ field: 'role', message: 'viewer is an organization role: it is held through a membership, not assigned globally' });
      expect((await call('POST', `/api/v1/roles/${viewer.id}/unassign`, { token: admin, body: { user_id: people.tom!.id } })).status).to.equal(422);
      expect((await call('GET', `/api/v1/roles/${viewer.id}/holders`, { token: admin })).json.data).to.deep.equal([]);

      expect((await call('POST', `/api/v1/roles/${role.id}/unassign`, { token: admin, body: { user_id: people.tom!.id } })).status).to.equal(204);
      expect((await call('POST', `/api/v1/roles/${role.id}/unassign`, { token: admin, body: { user_id: people.tom!.id } })).status, 'idempotent').to.equal(204);
      const assigned = (await audit({ subjectId: people.tom!.id })).filter((e) => e.type.startsWith('role.'));
      expect(assigned.map((e) => e.type).sort()).to.deep.equal(['role.assign', 'role.unassign'], 'once each: the repeated calls changed nothing');
      expect(assigned[0]!.details).to.deep.include({ role: role.id, role_name: 'support', holder_kind: 'user', via: 'api' });
      expect((await call('DELETE', `/api/v1/roles/${role.id}`, { token: admin })).status, 'a held global role may be deleted').to.equal(204);
    });

    it('a role assigned through the API reaches the next token (rbac change feed)', async () => {
      const scopeOf = async () => decodeJwt(await h.cc(machine, 'orders:read orders:write', ORDERS)).scope;
      expect(await scopeOf(), 'no role: nothing on the RBAC resource').to.equal(undefined);
      const role = (await call('POST', '/api/v1/roles', { token: admin, body: { name: 'orders-reader', permissions: [`${ORDERS}:orders:read`] } })).json;
      expect((await call('POST', `/api/v1/roles/${role.id}/assign`, { token: admin, body: { client_id: machine.client_id } })).status).to.equal(204);
      await sleep(300);
      expect(await scopeOf()).to.equal('orders:read');
      await call('PATCH', `/api/v1/roles/${role.id}`, { token: admin, body: { permissions: [`${ORDERS}:orders:read`, `${ORDERS}:orders:write`] } });
      await sleep(300);
      expect(await scopeOf()).to.equal('orders:read orders:write');
      expect((await call('POST', `/api/v1/roles/${role.id}/unassign`, { token: admin, body: { client_id: machine.client_id } })).status).to.equal(204);
      await sleep(300);
      expect(await scopeOf()).to.equal(undefined);
    });
  });

  describe('organizations (admin tokens)', () => {
    it('creates (with an owner), lists with filters, gets by id or slug with ETag, updates with If-Match, deletes; the service audits with the API actor', async () => {
      const created = await call('POST', '/api/v1/organizations', { token: admin, body: { name: 'Initech', slug: 'initech', owner_id: people.tom!.id } });
      expect(created.status).to.equal(201);
      const id = created.json.id as string;
      expect(created.headers.get('location')).to.equal(`${h.srv.url}/api/v1/organizations/${id}`);
      expect(created.json).to.deep.include({ name: 'Initech', slug: 'initech', created_by: decodeJwt(admin).sub });
      const members = (await call('GET', `/api/v1/organizations/${id}/members`, { token: reader })).json.data;
      expect(members).to.have.length(1);
      expect(members[0]).to.deep.include({ id: people.tom!.id, kind: 'user', role: 'owner', organization_id: id });
      expect((await call('GET', `/api/v1/users?org=initech`, { token: admin })).json.data.map((u: { id: string }) => u.id)).to.deep.equal([people.tom!.id]);

      const got = await call('GET', `/api/v1/organizations/${id}`, { token: reader });
      expect((await call('GET', '/api/v1/organizations/initech', { token: admin })).json).to.deep.equal(got.json);
      const etag = got.headers.get('etag')!;
      const patched = await call('PATCH', `/api/v1/organizations/${id}`, { token: admin, body: { name: 'Initech Corp' }, headers: { 'if-match': etag } });
      expect(patched.status).to.equal(200);
      expect(patched.json.name).to.equal('Initech Corp');
      expect((await call('PATCH', `/api/v1/organizations/${id}`, { token: admin, body: { name: 'Again' }, headers: { 'if-match': etag } })).status).to.equal(412);
      expect((await call('PATCH', `/api/v1/organizations/${id}`, { token: admin, body: { slug: 'initech-corp' }, headers: { 'if-match': patched.headers.get('etag')! } })).json.slug).to.equal('initech-corp');

      await call('POST', '/api/v1/organizations', { token: admin, body: { name: 'Hooli', slug: 'hooli' } });
      expect((await call('POST', '/api/v1/organizations', { token: admin, body: { name: 'Other', slug: 'hooli' } })).status, 'duplicate slug').to.equal(409);
      expect((await call('PATCH', `/api/v1/organizations/${id}`, { token: admin, body: { slug: 'hooli' } })).status, 'slug taken').to.equal(409);
      expect((await call('GET', '/api/v1/organizations?slug=hooli', { token: admin })).json.data.map((o: { slug: string }) => o.slug)).to.deep.equal(['hooli']);
      expect((await call('GET', '/api/v1/organizations?name=INITECH', { token: admin })).json.data.map((o: { id: string }) => o.id)).to.deep.equal([id]);
      const page = await call('GET', '/api/v1/organizations?limit=1', { token: admin });
      expect(page.json.data[0].slug, 'newest first').to.equal('hooli');
      expect((await call('GET', `/api/v1/organizations?cursor=${page.json.next_cursor}`, { token: admin })).json.data[0].id).to.equal(id);

      const created1 = (await audit({ subjectId: id, type: 'organization.create' }))[0]!;
      expect(created1).to.deep.include({ actorId: decodeJwt(admin).sub, clientId: decodeJwt(admin).client_id });
      expect(created1.details).to.deep.include({ via: 'api' });
      expect(created1.ip).to.be.a('string');
      const updates = await audit({ subjectId: id, type: 'organization.update' });
      expect(updates).to.have.length(2);
      expect(updates.every((e) => (e.details as { via?: string }).via === 'api')).to.equal(true);

      expect((await call('DELETE', `/api/v1/organizations/${id}`, { token: admin })).status).to.equal(204);
      expect((await call('GET', `/api/v1/organizations/${id}`, { token: admin })).status).to.equal(404);
      expect((await audit({ subjectId: id, type: 'organization.delete' }))[0]!.details).to.deep.include({ via: 'api' });
    });

    it('validation (422) and unknown or malformed ids (404)', async () => {
      const wrong = await call('POST', '/api/v1/organizations', { token: admin, body: { name: 1, slug: 'Bad Slug', owner_id: 'nobody', extra: 1 } });
      expect(wrong.status).to.equal(422);
      expect(wrong.json.errors.map((e: { field: string }) => e.field)).to.have.members(['name', 'owner_id', 'extra']);
      expect((await call('POST', '/api/v1/organizations', { token: admin, body: { name: 'Bad', slug: 'Bad Slug' } })).json.errors[0].field).to.equal('slug');
      expect((await call('POST', '/api/v1/organizations', { token: admin, body: { name: 'Bad', slug: UNKNOWN_UUID } })).json.errors[0].field).to.equal('slug');
      expect((await call('POST', '/api/v1/organizations', { token: admin, body: { name: 'n'.repeat(256), slug: 'ok' } })).status).to.equal(422);
      expect((await call('POST', '/api/v1/organizations', { token: admin, body: { name: 'Ok', slug: 's'.repeat(65) } })).status).to.equal(422);
      expect((await call('POST', '/api/v1/organizations', { token: admin, body: { name: 'Ok', slug: 'ok', owner_id: LONG_ID } })).status).to.equal(422);
      expect((await call('POST', '/api/v1/organizations', { token: admin, body: { name: '   ', slug: 'ok' } })).status).to.equal(422);
      expect((await call('GET', '/api/v1/organizations?slug=a&slug=b', { token: admin })).status).to.equal(422);
      // Concurrent creates of one slug, one role name, one membership: one wins, the others are 409s (never 500).
      const statuses = async (n: number, make: () => Promise<ApiResponse>) => (await Promise.all(Array.from({ length: n }, make))).map((r) => r.status).sort();
      expect(await statuses(4, () => call('POST', '/api/v1/organizations', { token: admin, body: { name: 'Race', slug: 'race' } }))).to.deep.equal([201, 409, 409, 409]);
      expect(await statuses(4, () => call('POST', '/api/v1/roles', { token: admin, body: { name: 'racer' } }))).to.deep.equal([201, 409, 409, 409]);
      const race = (await call('GET', '/api/v1/organizations/race', { token: admin })).json;
      expect(await statuses(4, () => call('POST', `/api/v1/organizations/${race.id}/members`, { token: admin, body: { user_id: people.una!.id } }))).to.deep.equal([201, 409, 409, 409]);
      const racer = (await call('GET', '/api/v1/roles?name=racer', { token: admin })).json.data[0];
      expect(await statuses(4, () => call('POST', `/api/v1/roles/${racer.id}/assign`, { token: admin, body: { user_id: people.una!.id } }))).to.deep.equal([204, 204, 204, 204]);
      expect((await call('GET', `/api/v1/roles/${racer.id}/holders`, { token: admin })).json.data).to.have.length(1);
      await call('DELETE', `/api/v1/roles/${racer.id}`, { token: admin });
      const org = (await call('POST', '/api/v1/organizations', { token: admin, body: { name: 'Valid', slug: 'valid' } })).json;
      expect((await call('PATCH', `/api/v1/organizations/${org.id}`, { token: admin, body: { name: null } })).status).to.equal(422);
      expect((await call('PATCH', `/api/v1/organizations/${org.id}`, { token: admin, body: { created_by: 'me' } })).status).to.equal(422);
      expect((await call('PATCH', `/api/v1/organizations/${org.id}`, { token: admin, raw: 'not json' })).status).to.equal(400);
      expect((await call('POST', `/api/v1/organizations/${org.id}/members`, { token: admin, raw: JSON.stringify({ user_id: 'x'.repeat(70_000) }) })).status).to.equal(413);
      expect((await call('POST', `/api/v1/organizations/${org.id}/invitations`, { token: admin, raw: 'email=a', headers: { 'content-type': 'application/x-www-form-urlencoded' } })).status).to.equal(415);

      const tom = people.tom!.id;
      const ops = [['GET', ''], ['PATCH', ''], ['DELETE', ''], ['GET', '/members'], ['POST', '/members'], ['GET', `/members/${tom}`], ['PATCH', `/members/${tom}`], ['DELETE', `/members/${tom}`], ['GET', '/invitations'], ['POST', '/invitations'], ['GET', `/invitations/${UNKNOWN_UUID}`], ['DELETE', `/invitations/${UNKNOWN_UUID}`]] as const;
      for (const id of [UNKNOWN_UUID, 'not-a-uuid', LONG_ID, 'NOT_A_SLUG']) {
        for (const [method, sub] of ops) {
          const body = method === 'POST' ? (sub === '/members' ? { user_id: tom } : { email: 'a@example.test' }) : method === 'PATCH' ? (sub ? { role: 'member' } : { name: 'x' }) : undefined;
          const r = await call(method, `/api/v1/organizations/${id}${sub}`, { token: admin, body });
          expect(r.status, `${method} ${id.slice(0, 20)}${sub}`).to.equal(404);
        }
      }
      for (const sub of [`/members/${UNKNOWN_UUID}`, '/members/nobody', `/members/${LONG_ID}`, `/invitations/${UNKNOWN_UUID}`, '/invitations/not-a-uuid', `/invitations/${LONG_ID}`]) {
        for (const method of ['GET', 'DELETE']) expect((await call(method, `/api/v1/organizations/${org.id}${sub}`, { token: admin })).status, `${method} ${sub.slice(0, 40)}`).to.equal(404);
      }
      expect((await call('PATCH', `/api/v1/organizations/${org.id}/members/nobody`, { token: admin, body: { role: 'member' } })).status).to.equal(404);
    });

    it('members: users and clients with organization roles, 409 duplicates, 422 for bad roles, the last-owner rule (409)', async () => {
      const org = (await call('POST', '/api/v1/organizations', { token: admin, body: { name: 'Umbrella', slug: 'umbrella' } })).json;
      const base = `/api/v1/organizations/${org.id}/members`;
      const added = await call('POST', base, { token: admin, body: { user_id: people.tom!.id, role: 'owner' } });
      expect(added.status).to.equal(201);
      expect(added.headers.get('location')).to.equal(`${h.srv.url}${base}/${people.tom!.id}`);
      expect(added.json).to.deep.include({ id: people.tom!.id, kind: 'user', role: 'owner' });
      const client = await call('POST', base, { token: admin, body: { client_id: machine.client_id } });
      expect(client.json).to.deep.include({ id: machine.client_id, kind: 'client', role: 'member' });
      expect((await call('POST', base, { token: admin, body: { user_id: people.tom!.id } })).status, 'already a member').to.equal(409);
      for (const body of [{ user_id: people.una!.id, role: 'support-global' }, { user_id: people.una!.id, role: 'nope' }, { user_id: people.una!.id, role: 7 }, { role: 'member' }, { user_id: 'nobody' }, { client_id: 'nobody' }, { user_id: people.una!.id, client_id: machine.client_id }]) {
        if (body.role === 'support-global') await call('POST', '/api/v1/roles', { token: admin, body: { name: 'support-global' } });
        const r = await call('POST', base, { token: admin, body });
        expect(r.status, JSON.stringify(body)).to.equal(422);
      }

      const got = await call('GET', `${base}/${machine.client_id}`, { token: reader });
      const etag = got.headers.get('etag')!;
      const patched = await call('PATCH', `${base}/${machine.client_id}`, { token: admin, body: { role: 'viewer' }, headers: { 'if-match': etag } });
      expect(patched.json.role).to.equal('viewer');
      expect((await call('PATCH', `${base}/${machine.client_id}`, { token: admin, body: { role: 'admin' }, headers: { 'if-match': etag } })).status).to.equal(412);
      expect((await call('PATCH', `${base}/${machine.client_id}`, { token: admin, body: {} })).status).to.equal(422);
      expect((await call('PATCH', `${base}/${machine.client_id}`, { token: admin, body: { role: 'nope' } })).status).to.equal(422);

      expect((await call('PATCH', `${base}/${people.tom!.id}`, { token: admin, body: { role: 'admin' } })).status, 'demote the last owner').to.equal(409);
      expect((await call('DELETE', `${base}/${people.tom!.id}`, { token: admin })).status, 'remove the last owner').to.equal(409);

      const page = await call('GET', `${base}?limit=1`, { token: admin });
      expect(page.json.data[0].id, 'newest first').to.equal(machine.client_id);
      expect((await call('GET', `${base}?cursor=${page.json.next_cursor}`, { token: admin })).json.data[0].id).to.equal(people.tom!.id);
      // A custom organization role held through a membership is not deleted (409).
      const custom = (await call('POST', '/api/v1/roles', { token: admin, body: { name: 'contractor', kind: 'organization' } })).json;
      expect((await call('PATCH', `${base}/${machine.client_id}`, { token: admin, body: { role: 'contractor' } })).json.role).to.equal('contractor');
      expect((await call('DELETE', `/api/v1/roles/${custom.id}`, { token: admin })).status).to.equal(409);
      expect((await call('DELETE', `${base}/${machine.client_id}`, { token: admin })).status).to.equal(204);
      expect((await call('GET', `${base}/${machine.client_id}`, { token: admin })).status).to.equal(404);
      expect((await call('DELETE', `/api/v1/roles/${custom.id}`, { token: admin })).status).to.equal(204);

      const rows = await audit({ subjectId: machine.client_id });
      const types = rows.filter((e) => e.type.startsWith('organization.member.')).map((e) => e.type);
      expect([...new Set(types)].sort()).to.deep.equal(['organization.member.add', 'organization.member.remove', 'organization.member.update']);
      for (const e of rows.filter((x) => x.type.startsWith('organization.member.'))) expect(e).to.deep.include({ actorId: decodeJwt(admin).sub, clientId: decodeJwt(admin).client_id });
    });

    it('invitations: mailed, answered without the link, listed, revoked (409 once no longer pending)', async () => {
      const org = (await call('POST', '/api/v1/organizations', { token: admin, body: { name: 'Stark', slug: 'stark' } })).json;
      const base = `/api/v1/organizations/${org.id}/invitations`;
      const inv = await call('POST', base, { token: admin, body: { email: 'Newbie@Example.test', role: 'admin' } });
      expect(inv.status).to.equal(201);
      expect(inv.headers.get('location')).to.equal(`${h.srv.url}${base}/${inv.json.id}`);
      expect(inv.json).to.deep.include({ organization_id: org.id, role: 'admin', status: 'pending', invited_by: decodeJwt(admin).sub });
      expect(JSON.stringify(inv.json)).to.not.match(/token|invitation\?/);
      const mail = await mailbox.waitFor('newbie@example.test');
      expect(mail.text).to.include('Stark');
      expect(mail.links.some((l) => l.includes('/invitation?token='))).to.equal(true);

      expect((await call('POST', base, { token: admin, body: { email: 'not an email' } })).json.errors[0].field).to.equal('email');
      expect((await call('POST', base, { token: admin, body: { email: 'a@example.test', role: 'nope' } })).json.errors[0].field).to.equal('role');
      expect((await call('POST', base, { token: admin, body: { email: `${'a'.repeat(400)}@example.test` } })).status).to.equal(422);
      expect((await call('POST', base, { token: admin, body: {} })).status).to.equal(422);
      const second = (await call('POST', base, { token: admin, body: { email: 'second@example.test' } })).json;
      expect(second.role).to.equal('member');

      const list = await call('GET', base, { token: reader });
      expect(list.json.data.map((i: { id: string }) => i.id)).to.deep.equal([second.id, inv.json.id]);
      expect((await call('GET', `${base}/${inv.json.id}`, { token: reader })).json).to.deep.equal(inv.json);
      expect((await call('DELETE', `${base}/${inv.json.id}`, { token: admin })).status).to.equal(204);
      expect((await call('GET', `${base}/${inv.json.id}`, { token: admin })).json.status).to.equal('revoked');
      expect((await call('DELETE', `${base}/${inv.json.id}`, { token: admin })).status).to.equal(409);
      // Another organization's invitation is not found here.
      const other = (await call('POST', '/api/v1/organizations', { token: admin, body: { name: 'Wayne', slug: 'wayne' } })).json;
      expect((await call('GET', `/api/v1/organizations/${other.id}/invitations/${second.id}`, { token: admin })).status).to.equal(404);
      expect((await call('DELETE', `/api/v1/organizations/${other.id}/invitations/${second.id}`, { token: admin })).status).to.equal(404);

      const types = (await audit({ subjectId: org.id })).map((e) => e.type);
      expect(types.filter((t) => t === 'organization.invitation.create')).to.have.length(2);
      expect(types.filter((t) => t === 'organization.invitation.revoke')).to.have.length(1);
    });

    it('a superuser\'s token works on every organization operation', async () => {
      const t = superToken;
      const org = await call('POST', '/api/v1/organizations', { token: t, body: { name: 'Cyberdyne', slug: 'cyberdyne' } });
      expect(org.status).to.equal(201);
      const base = `/api/v1/organizations/${org.json.id}`;
      expect((await call('GET', '/api/v1/organizations', { token: t })).status).to.equal(200);
      expect((await call('GET', base, { token: t })).status).to.equal(200);
      expect((await call('PATCH', base, { token: t, body: { name: 'Cyberdyne Systems' } })).status).to.equal(200);
      expect((await call('POST', `${base}/members`, { token: t, body: { user_id: people.una!.id, role: 'owner' } })).status).to.equal(201);
      expect((await call('POST', `${base}/members`, { token: t, body: { user_id: people.tom!.id, role: 'owner' } })).status).to.equal(201);
      expect((await call('GET', `${base}/members`, { token: t })).json.data).to.have.length(2);
      expect((await call('GET', `${base}/members/${people.una!.id}`, { token: t })).status).to.equal(200);
      expect((await call('PATCH', `${base}/members/${people.una!.id}`, { token: t, body: { role: 'viewer' } })).status).to.equal(200);
      const inv = await call('POST', `${base}/invitations`, { token: t, body: { email: 'boss@example.test', role: 'owner' } });
      expect(inv.status).to.equal(201);
      expect((await call('GET', `${base}/invitations`, { token: t })).status).to.equal(200);
      expect((await call('GET', `${base}/invitations/${inv.json.id}`, { token: t })).status).to.equal(200);
      expect((await call('DELETE', `${base}/invitations/${inv.json.id}`, { token: t })).status).to.equal(204);
      expect((await call('DELETE', `${base}/members/${people.una!.id}`, { token: t })).status).to.equal(204);
      expect((await call('DELETE', base, { token: t })).status).to.equal(204);
      const created = (await audit({ subjectId: org.json.id, type: 'organization.create' }))[0]!;
      expect(created.actorId).to.equal(h.root.id);
    });
  });

  describe('organizations (owners and admins with an account token)', () => {
    let acme: { id: string; slug: string };
    let globex: { id: string };
    const asAcme = (sub = '') => `/api/v1/organizations/${acme.id}${sub}`;

    before(async () => {
      acme = (await call('POST', '/api/v1/organizations', { token: admin, body: { name: 'Acme', slug: 'acme', owner_id: people.ann!.id } })).json;
      globex = (await call('POST', '/api/v1/organizations', { token: admin, body: { name: 'Globex', slug: 'globex', owner_id: people.otto!.id } })).json;
      for (const [who, role] of [['adam', 'admin'], ['mia', 'member'], ['vic', 'viewer']] as const) {
        expect((await call('POST', asAcme('/members'), { token: admin, body: { user_id: people[who]!.id, role } })).status).to.equal(201);
      }
      expect((await call('PATCH', `/api/v1/organizations/${globex.id}/members/${people.otto!.id}`, { token: admin, body: { role: 'owner' } })).status).to.equal(200);
      expect((await call('POST', `/api/v1/organizations/${globex.id}/members`, { token: admin, body: { user_id: people.una!.id, role: 'admin' } })).status).to.equal(201);
    });

    /** Every organization operation of openapi.yaml, on `org` (and on an existing member and invitation of it). */
    async function everyOperation(org: string, memberId: string, invitationId: string) {
      const ops: [string, string, unknown][] = [];
      for (const [template, item] of Object.entries(doc.paths)) {
        if (!template.startsWith('/api/v1/organizations')) continue;
        const path = template.replace('{id}', org).replace('{member_id}', memberId).replace('{invitation_id}', invitationId);
        for (const m of Object.keys(item).filter((k) => METHODS.includes(k))) {
          const body = m === 'get' || m === 'delete' ? undefined : template.endsWith('/invitations') ? { email: 'x@example.test' } : template.endsWith('/members') ? { user_id: people.tom!.id } : template.endsWith('/organizations') ? { name: 'X', slug: 'x-org' } : m === 'patch' && template.includes('{member_id}') ? { role: 'member' } : { name: 'Renamed' };
          ops.push([m.toUpperCase(), path, body]);
        }
      }
      return ops;
    }

    it('the admin of another organization (and a member, a viewer, a non-member) gets 403 on every organization operation, whether the organization exists or not', async () => {
      const inv = (await call('POST', asAcme('/invitations'), { token: admin, body: { email: 'pending@example.test' } })).json;
      const ops = await everyOperation(acme.id, people.mia!.id, inv.id);
      expect(ops.length).to.be.at.least(14);
      for (const who of ['una', 'otto', 'mia', 'vic', 'tom']) {
        for (const [method, path, body] of ops) {
          const r = await call(method, path, { token: people[who]!.token, body });
          expectForbidden(r, `${who}: ${method} ${path}`, method === 'GET' ? /admin:read/ : /admin:write/);
        }
      }
      // By slug, and for organizations that do not exist: the same 403 (no telling whether it exists).
      for (const id of ['acme', UNKNOWN_UUID, 'no-such-org', 'not_a_slug', LONG_ID]) {
        const r = await call('GET', `/api/v1/organizations/${id}/members`, { token: people.otto!.token });
        expectForbidden(r, id.slice(0, 20), /admin:read/);
        expect(r.json.type).to.equal('https://latch.dev/problems/forbidden');
        expect(r.json.detail).to.not.include(id.slice(0, 20));
      }
      // Still nothing changed in Acme.
      expect((await call('GET', asAcme(), { token: admin })).json.name).to.equal('Acme');
      expect((await call('GET', asAcme('/members'), { token: admin })).json.data).to.have.length(4);
      // The owner of Globex works on Globex.
      expect((await call('GET', `/api/v1/organizations/${globex.id}/members`, { token: people.otto!.token })).status).to.equal(200);
    });

    it('an organization admin manages members and invitations, but not owners (403), and cannot delete the organization', async () => {
      const t = people.adam!.token;
      expect((await call('GET', asAcme(), { token: t })).json.slug).to.equal('acme');
      expect((await call('GET', '/api/v1/organizations/acme', { token: t })).status, 'by slug').to.equal(200);
      expect((await call('GET', asAcme('/members'), { token: t })).json.data).to.have.length(4);
      const added = await call('POST', asAcme('/members'), { token: t, body: { user_id: people.tom!.id } });
      expect(added.status).to.equal(201);
      expect((await call('GET', asAcme(`/members/${people.tom!.id}`), { token: t })).json.role).to.equal('member');
      expect((await call('PATCH', asAcme(`/members/${people.tom!.id}`), { token: t, body: { role: 'admin' } })).json.role).to.equal('admin');
      expect((await call('PATCH', asAcme(`/members/${people.tom!.id}`), { token: t, body: { role: 'viewer' } })).json.role).to.equal('viewer');
      const inv = await call('POST', asAcme('/invitations'), { token: t, body: { email: 'friend@example.test', role: 'admin' } });
      expect(inv.status).to.equal(201);
      expect(inv.json.invited_by).to.equal(people.adam!.id);
      await mailbox.waitFor('friend@example.test');
      expect((await call('GET', asAcme('/invitations'), { token: t })).json.data.length).to.be.greaterThan(0);
      expect((await call('GET', asAcme(`/invitations/${inv.json.id}`), { token: t })).status).to.equal(200);
      expect((await call('DELETE', asAcme(`/invitations/${inv.json.id}`), { token: t })).status).to.equal(204);
      const renamed = await call('PATCH', asAcme(), { token: t, body: { name: 'Acme Inc' } });
      expect(renamed.json.name).to.equal('Acme Inc');

      // Owners are owner business.
      expectForbidden(await call('PATCH', asAcme(`/members/${people.tom!.id}`), { token: t, body: { role: 'owner' } }), 'promote to owner', /admin:write/);
      expectForbidden(await call('PATCH', asAcme(`/members/${people.ann!.id}`), { token: t, body: { role: 'member' } }), 'demote an owner', /admin:write/);
      expectForbidden(await call('DELETE', asAcme(`/members/${people.ann!.id}`), { token: t }), 'remove an owner', /admin:write/);
      expectForbidden(await call('POST', asAcme('/members'), { token: t, body: { user_id: people.una!.id, role: 'owner' } }), 'add an owner', /admin:write/);
      expectForbidden(await call('POST', asAcme('/invitations'), { token: t, body: { email: 'boss@example.test', role: 'owner' } }), 'invite an owner', /admin:write/);
      const del = await call('DELETE', asAcme(), { token: t });
      expectForbidden(del, 'delete the organization', /admin:write/);
      expect(del.json.type).to.equal('https://latch.dev/problems/forbidden');
      // The collection is the operator's.
      expectForbidden(await call('GET', '/api/v1/organizations', { token: t }), 'list', /admin:read/);
      expectForbidden(await call('POST', '/api/v1/organizations', { token: t, body: { name: 'Mine', slug: 'mine' } }), 'create', /admin:write/);
      expect((await call('GET', asAcme(`/members/${people.ann!.id}`), { token: admin })).json.role).to.equal('owner');

      // The API actor reaches the service's audit rows.
      const row = (await audit({ subjectId: people.tom!.id, type: 'organization.member.update' })).find((e) => JSON.stringify(e.details).includes('"after":{"role":"viewer"}'))!;
      expect(row).to.deep.include({ actorId: people.adam!.id });
      expect(row.clientId).to.be.a('string');
      expect(row.details).to.deep.include({ via: 'api', organization: acme.id, before: { role: 'admin' }, after: { role: 'viewer' } });
      expect((await call('DELETE', asAcme(`/members/${people.tom!.id}`), { token: t })).status).to.equal(204);
    });

    it('an organization owner manages owners and deletes the organization; the last owner stays (409)', async () => {
      const t = people.ann!.token;
      expect((await call('PATCH', asAcme(`/members/${people.adam!.id}`), { token: t, body: { role: 'owner' } })).json.role).to.equal('owner');
      expect((await call('PATCH', asAcme(`/members/${people.adam!.id}`), { token: t, body: { role: 'admin' } })).json.role).to.equal('admin');
      expect((await call('PATCH', asAcme(`/members/${people.ann!.id}`), { token: t, body: { role: 'admin' } })).status, 'the last owner').to.equal(409);
      expect((await call('DELETE', asAcme(`/members/${people.ann!.id}`), { token: t })).status, 'the last owner leaving').to.equal(409);
      expect((await call('POST', asAcme('/invitations'), { token: t, body: { email: 'co-owner@example.test', role: 'owner' } })).status).to.equal(201);
      expect((await call('POST', asAcme('/members'), { token: t, body: { user_id: people.tom!.id, role: 'owner' } })).status).to.equal(201);
      expect((await call('DELETE', asAcme(`/members/${people.tom!.id}`), { token: t })).status).to.equal(204);
      // An admin may leave (remove themself).
      expect((await call('DELETE', asAcme(`/members/${people.adam!.id}`), { token: people.adam!.token })).status).to.equal(204);
      expectForbidden(await call('GET', asAcme(), { token: people.adam!.token }), 'after leaving', /admin:read/);

      const doomed = (await call('POST', '/api/v1/organizations', { token: admin, body: { name: 'Doomed', slug: 'doomed', owner_id: people.ann!.id } })).json;
      expect((await call('DELETE', `/api/v1/organizations/${doomed.id}`, { token: t })).status).to.equal(204);
      expect((await call('GET', `/api/v1/organizations/${doomed.id}`, { token: admin })).status).to.equal(404);
      expectForbidden(await call('GET', `/api/v1/organizations/${doomed.id}`, { token: t }), 'gone', /admin:read/);
      expect((await audit({ subjectId: doomed.id, type: 'organization.delete' }))[0]).to.deep.include({ actorId: people.ann!.id });
    });

    it('a non-superuser\'s admin-scoped token and a reader\'s token: 403 as for every admin endpoint', async () => {
      // Admin scopes are issued to superusers only: a token with them from while ann was one,
      // used after her demotion, is refused by the API's own per-request superuser check.
      expect((await h.cli('users', 'update', '--email', people.ann!.email, '--superuser', 'true')).superuser).to.equal(true);
      // The server learns of the CLI's change through the change feed.
      await sleep(500);
      const plain = await h.userToken({ email: people.ann!.email, password: 'ann has a long passphrase' }, 'admin:read admin:write');
      expect((await h.cli('users', 'update', '--email', people.ann!.email, '--superuser', 'false')).superuser).to.equal(false);
      await sleep(500);
      const r = await call('GET', asAcme(), { token: plain });
      expectForbidden(r, 'admin scopes without superuser', /admin:read/);
      expect(r.json.type).to.equal('https://latch.dev/problems/forbidden');
      // Asked now, while she is not a superuser, the token carries no admin scope.
      const never = await h.userToken({ email: people.ann!.email, password: 'ann has a long passphrase' }, 'admin:read admin:write');
      const n = await call('GET', asAcme(), { token: never });
      expectForbidden(n, 'admin scopes never issued', /admin:read/);
      expect(n.json.type).to.equal('https://latch.dev/problems/insufficient-scope');
      const w = await call('PATCH', asAcme(), { token: reader, body: { name: 'x' } });
      expect(w.headers.get('www-authenticate')).to.equal('Bearer realm="latch", error="insufficient_scope", scope="admin:write"');
      expect(w.json.type).to.equal('https://latch.dev/problems/insufficient-scope');
      // With both the account scope and admin scopes, an owner acts as owner.
      const both = await h.userToken({ email: people.ann!.email, password: 'ann has a long passphrase' }, 'account admin:read admin:write');
      expect((await call('GET', asAcme(), { token: both })).status).to.equal(200);
      expectForbidden(await call('GET', '/api/v1/organizations', { token: both }), 'collection', /admin:read/);
      // A superuser's `account` token acts with their organization role (none here), not as the operator.
      const rootAccount = await h.userToken({ email: h.root.email, password: h.root.password }, 'account');
      expectForbidden(await call('GET', asAcme(), { token: rootAccount }), 'superuser without admin scopes', /admin:read/);
      const rootBoth = await h.userToken({ email: h.root.email, password: h.root.password }, 'account admin:read');
      expect((await call('GET', asAcme(), { token: rootBoth })).status).to.equal(200);
      expectForbidden(await call('PATCH', asAcme(), { token: rootBoth, body: { name: 'x' } }), 'superuser with admin:read only', /admin:write/);
    });
  });

  describe('contract', () => {
    it('every operation of roles and organizations answered a 2xx that validated against openapi.yaml', () => {
      expectCovered('/api/v1/roles', '/api/v1/organizations');
    });
  });
});
