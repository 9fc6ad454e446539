import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { expect } from 'chai';
import type { Knex } from 'knex';

import { migrations } from '../migrations/index.js';
import { loadConfig, type Config } from '../src/config/index.js';
import { openDatabase, type Db } from '../src/db/knex.js';
import { migrateLatest } from '../src/db/migrate.js';
import { createLogger } from '../src/lib/logger.js';
import type { OrganizationRecord } from '../src/repositories/organizations.js';
import type { Subject } from '../src/repositories/roles.js';
import type { AuditActor } from '../src/services/audit.js';
import { ConflictError, NotFoundError, ValidationError } from '../src/services/errors.js';
import { createServices, type Services } from '../src/services/index.js';
import { splitPermission } from '../src/services/roles.js';
import { freshDatabase, TEST_SECRET, type TestDatabase } from './helpers/server.js';

const PASSWORD = 'a long enough password';
const API = 'https://api.example.test';
/** A resource identifier with colons of its own (port, path): permissions split at the last colon. */
const PORTED = 'https://api.example.com:8443/v1:orders';

/** Awaits `p`, expecting it to fail with `type`; returns the error. */
async function rejection<E extends Error>(p: Promise<unknown>, type: new (...args: any[]) => E): Promise<E> {
  let caught: unknown;
  try {
    await p;
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected ${type.name}`).to.be.instanceOf(type);
  return caught as E;
}

const count = async (db: Db, table: string, where: Record<string, unknown>) => Number(((await db(table).where(where).count({ n: '*' }).first()) as { n: number | string }).n);

const scopes = (set: Set<string> | undefined) => [...(set ?? [])].sort();

/** The actor of changes a test makes through the services directly. */
const BY: AuditActor = { actorId: 'test' };

describe('roles, organizations and access (services on a real database)', () => {
  let database: TestDatabase;
  let dataDir: string;
  let config: Config;
  let db: Db;
  let services: Services;
  let n = 0;

  const account = async (label: string) => {
    const a = await services.accounts.create({ email: `${label}-${++n}@example.test`, password: PASSWORD });
    return { id: a.id, email: a.email, subject: { kind: 'account', id: a.id } as Subject };
  };
  const client = async (label: string) => {
    const c = await services.clients.create({ name: `${label} ${++n}`, grants: ['client_credentials'] }, BY);
    return { id: c.client_id, subject: { kind: 'client', id: c.client_id } as Subject };
  };
  const org = (slug: string, owner?: Subject) => services.organizations.create({ name: `Org ${slug}`, slug, owner, createdBy: 'test' });

  before(async () => {
    database = await freshDatabase();
    dataDir = mkdtempSync(join(tmpdir(), 'latch-rbac-'));
    config = loadConfig({ DATABASE_URL: database.url, LATCH_SECRET: TEST_SECRET, DATA_DIR: dataDir, ISSUER: 'http://localhost:4321' });
    db = openDatabase(config.database);
    await migrateLatest(db);
    services = createServices({ db, config, logger: createLogger('error') });
    await services.resources.create({ identifier: API, scopes: ['read', 'write', 'invoices', 'admin'], rbac: true }, BY);
    await services.resources.create({ identifier: 'urn:other:api', scopes: ['x', 'y'], rbac: true }, BY);
  });
  after(async () => {
    await db.destroy();
    await database.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  describe('roles', () => {
    it('has the four built-in organization roles after migration, with no permission', async () => {
      const orgRoles = await services.roles.list('organization');
      expect(orgRoles.map((r) => r.name).sort()).to.deep.equal(['admin', 'member', 'owner', 'viewer']);
      for (const r of orgRoles) {
        expect(r.builtin, r.name).to.equal(true);
        expect(r.kind).to.equal('organization');
        expect(r.permissions, r.name).to.deep.equal([]);
      }
      expect(await services.roles.list('global')).to.deep.equal([]);
      await rejection(services.roles.delete(orgRoles[0]!, BY), ConflictError);
      await rejection(services.roles.update(orgRoles.find((r) => r.name === 'owner')!, { name: 'boss' }, BY), ConflictError);
    });

    it('keeps names unique per kind: the same name may be a global and an organization role', async () => {
      const g = await services.roles.create({ name: 'auditor', kind: 'global', description: '  Reads the logs  ' }, BY);
      const o = await services.roles.create({ name: 'auditor', kind: 'organization' }, BY);
      expect(g.id).to.not.equal(o.id);
      expect(g).to.include({ kind: 'global', name: 'auditor', description: 'Reads the logs', builtin: false });
      expect(o).to.include({ kind: 'organization', name: 'auditor', description: null });
      await rejection(services.roles.create({ name: 'auditor', kind: 'global' }, BY), ConflictError);
      await rejection(services.roles.create({ name: 'auditor', kind: 'organization' }, BY), ConflictError);
      await rejection(services.roles.create({ name: 'owner', kind: 'organization' }, BY), ConflictError);
      // 'owner' is taken only among organization roles.
      const globalOwner = await services.roles.create({ name: 'owner', kind: 'global' }, BY);
      expect(globalOwner.kind).to.equal('global');
      await rejection(services.roles.create({ name: 'bad name', kind: 'global' }, BY), ValidationError);
      await rejection(services.roles.create({ name: '', kind: 'global' }, BY), ValidationError);
      await services.roles.delete(globalOwner, BY);
      expect(await services.roles.find('global', 'owner')).to.equal(undefined);
    });

    it('splits URI:SCOPE at the last colon', () => {
      expect(splitPermission(`${PORTED}:read`)).to.deep.equal({ resource: PORTED, scope: 'read' });
      expect(splitPermission(PORTED)).to.deep.equal({ resource: 'https://api.example.com:8443/v1', scope: 'orders' });
      expect(splitPermission('urn:other:api:x')).to.deep.equal({ resource: 'urn:other:api', scope: 'x' });
      for (const bad of ['read', ':read', `${API}:`, '']) expect(() => splitPermission(bad), bad).to.throw(ValidationError);
    });

    it('resolves a permission on a resource whose identifier has colons (port, path)', async () => {
      await services.resources.create({ identifier: PORTED, scopes: ['read', 'write'], rbac: true }, BY);
      const r = await services.roles.create({ name: 'order-reader', kind: 'global', permissions: [`${PORTED}:read`] }, BY);
      expect(r.permissions).to.deep.equal([{ resource: PORTED, scope: 'read' }]);
      // Also registered: the identifier up to the previous colon, with a scope that would match
      // a cut there ("orders:read"). The last colon still decides.
      await services.resources.create({ identifier: 'https://api.example.com:8443/v1', scopes: ['orders:read'], rbac: true }, BY);
      const again = await services.roles.create({ name: 'order-reader-2', kind: 'global', permissions: [`${PORTED}:read`] }, BY);
      expect(again.permissions).to.deep.equal([{ resource: PORTED, scope: 'read' }]);
      // The same text cut at the first colon would name resource "https" and could not resolve.
      const granted = await services.roles.grant(r, [`${PORTED}:write`, { resource: API, scope: 'read' }], BY);
      // Sorted by resource identifier, then scope ("...example.com..." before "...example.test").
      expect(granted.permissions).to.deep.equal([
        { resource: PORTED, scope: 'read' },
        { resource: PORTED, scope: 'write' },
        { resource: API, scope: 'read' },
      ]);
      const revoked = await services.roles.revoke(granted, [`${PORTED}:read`], BY);
      expect(revoked.permissions).to.deep.equal([
        { resource: PORTED, scope: 'write' },
        { resource: API, scope: 'read' },
      ]);
    });

    it('refuses an unknown resource, an unregistered scope, a malformed permission and an empty grant', async () => {
      const e1 = await rejection(services.roles.create({ name: 'ghost', kind: 'global', permissions: ['https://unknown.example.test:read'] }, BY), ValidationError);
      expect(e1.field).to.equal('permission');
      const e2 = await rejection(services.roles.create({ name: 'ghost', kind: 'global', permissions: [`${API}:delete`] }, BY), ValidationError);
      expect(e2.detail).to.contain('delete');
      await rejection(services.roles.create({ name: 'ghost', kind: 'global', permissions: ['no-colon'] }, BY), ValidationError);
      // Nothing was created by the refused calls.
      expect(await services.roles.find('global', 'ghost')).to.equal(undefined);
      const role = await services.roles.create({ name: 'ghost', kind: 'global' }, BY);
      await rejection(services.roles.grant(role, [], BY), ValidationError);
      await rejection(services.roles.grant(role, [`${API}:nope`], BY), ValidationError);
      expect((await services.roles.get('global', 'ghost')).permissions).to.deep.equal([]);
      await rejection(services.roles.get('global', 'nobody'), NotFoundError);
    });

    it('assigns global roles to accounts and clients, never an organization role', async () => {
      const a = await account('holder');
      const c = await client('Holder');
      const role = await services.roles.create({ name: 'holder-role', kind: 'global' }, BY);
      expect(await services.roles.assign(role, a.subject, BY)).to.equal(true);
      expect(await services.roles.assign(role, a.subject, BY)).to.equal(false);
      expect(await services.roles.assign(role, c.subject, BY)).to.equal(true);
      expect((await services.roles.holders(role)).map((s) => `${s.kind}:${s.id}`).sort()).to.deep.equal([`account:${a.id}`, `client:${c.id}`].sort());
      const member = (await services.roles.find('organization', 'member'))!;
      const e = await rejection(services.roles.assign(member, a.subject, BY), ValidationError);
      expect(e.field).to.equal('role');
      await rejection(services.roles.assign((await services.roles.find('organization', 'auditor'))!, c.subject, BY), ValidationError);
      expect(await count(db, 'role_assignments', { role_id: member.id })).to.equal(0);
      expect(await services.roles.unassign(role, a.subject, BY)).to.equal(true);
      expect(await services.roles.unassign(role, a.subject, BY)).to.equal(false);
      expect((await services.roles.holders(role)).map((s) => s.id)).to.deep.equal([c.id]);
    });
  });

  describe('organizations and memberships', () => {
    it('creates an organization with a UUID id and its owner; slugs are unique and checked', async () => {
      const a = await account('founder');
      const o = await org('acme', a.subject);
      expect(o.id).to.match(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      const members = await services.organizations.members(o.id);
      expect(members.map((m) => [m.member.id, m.role])).to.deep.equal([[a.id, 'owner']]);
      await rejection(org('acme'), ConflictError);
      for (const slug of ['Acme', '-acme', 'acme-', 'a b', 'x'.repeat(65), '123e4567-e89b-12d3-a456-426614174000']) await rejection(org(slug), ValidationError);
      expect((await services.organizations.resolve('acme')).id).to.equal(o.id);
      expect((await services.organizations.resolve(o.id.toUpperCase())).slug).to.equal('acme');
      await rejection(services.organizations.resolve('no-such-org'), NotFoundError);
      await rejection(services.organizations.resolve('Not A Slug'), NotFoundError);
    });

    it('holds organization roles only: a global role as a membership role is refused', async () => {
      const o = await org('roles-only');
      const a = await account('x');
      const e = await rejection(services.organizations.addMember(o, a.subject, 'holder-role', 'test'), ValidationError);
      expect(e.field).to.equal('role');
      await rejection(services.organizations.addMember(o, a.subject, 'no-such-role', 'test'), NotFoundError);
      expect(await services.organizations.members(o.id)).to.deep.equal([]);
      // "auditor" exists as both kinds: the organization one is taken.
      const m = await services.organizations.addMember(o, a.subject, 'auditor', 'test');
      expect(m.roleId).to.equal((await services.roles.find('organization', 'auditor'))!.id);
      await rejection(services.organizations.addMember(o, a.subject, 'member', 'test'), ConflictError);
      await rejection(services.organizations.updateMember(o, a.subject, 'holder-role', 'test'), ValidationError);
      expect((await services.organizations.membership(o.id, a.subject))!.role).to.equal('auditor');
      // An organization role still held through a membership cannot be deleted.
      await rejection(services.roles.delete((await services.roles.find('organization', 'auditor'))!, BY), ConflictError);
      expect(await services.roles.find('organization', 'auditor')).to.not.equal(undefined);
    });

    it('keeps the last owner: no demotion, no removal, until a second owner exists', async () => {
      const first = await account('owner1');
      const second = await account('owner2');
      const o = await org('last-owner', first.subject);
      await rejection(services.organizations.removeMember(o, first.subject, 'test'), ConflictError);
      await rejection(services.organizations.updateMember(o, first.subject, 'admin', 'test'), ConflictError);
      // Keeping the same role is not a demotion.
      expect((await services.organizations.updateMember(o, first.subject, 'owner', 'test')).role).to.equal('owner');
      expect((await services.organizations.membership(o.id, first.subject))!.role).to.equal('owner');

      await services.organizations.addMember(o, second.subject, 'member', 'test');
      await services.organizations.updateMember(o, second.subject, 'owner', 'test');
      expect((await services.organizations.updateMember(o, first.subject, 'admin', 'test')).role).to.equal('admin');
      // Now `second` is the only owner.
      await rejection(services.organizations.removeMember(o, second.subject, 'test'), ConflictError);
      await rejection(services.organizations.updateMember(o, second.subject, 'viewer', 'test'), ConflictError);
      await services.organizations.updateMember(o, first.subject, 'owner', 'test');
      await services.organizations.removeMember(o, second.subject, 'test');
      expect((await services.organizations.members(o.id)).map((m) => [m.member.id, m.role])).to.deep.equal([[first.id, 'owner']]);
      await rejection(services.organizations.removeMember(o, second.subject, 'test'), NotFoundError);
      await rejection(services.organizations.updateMember(o, second.subject, 'member', 'test'), NotFoundError);
    });

    it('keeps an owner when two owners are demoted or removed at the same moment', async () => {
      // Each pair of concurrent changes may not both pass the last-owner check.
      for (let i = 0; i < 8; i++) {
        const a = await account(`race-a${i}`);
        const b = await account(`race-b${i}`);
        const o = await org(`race-${i}`, a.subject);
        await services.organizations.addMember(o, b.subject, 'owner', 'test');
        const results = await Promise.allSettled([services.organizations.removeMember(o, a.subject, 'test'), services.organizations.updateMember(o, b.subject, 'member', 'test')]);
        const owners = (await services.organizations.members(o.id)).filter((m) => m.role === 'owner');
        expect(owners, `round ${i}`).to.have.length(1);
        const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
        expect(failed, `round ${i}`).to.have.length(1);
        expect(failed[0]!.reason).to.be.instanceOf(ConflictError);
      }
    });

    it('lets an organization created without owner lose every member', async () => {
      const o = await org('ownerless');
      const a = await account('m1');
      const b = await account('m2');
      await services.organizations.addMember(o, a.subject, 'admin', 'test');
      await services.organizations.addMember(o, b.subject, 'member', 'test');
      await services.organizations.removeMember(o, a.subject, 'test');
      await services.organizations.removeMember(o, b.subject, 'test');
      expect(await services.organizations.members(o.id)).to.deep.equal([]);
    });

    it('admits a machine client as a member', async () => {
      const o = await org('machines');
      const c = await client('Robot');
      const m = await services.organizations.addMember(o, c.subject, 'viewer', 'test');
      expect(m.member).to.deep.equal({ kind: 'client', id: c.id });
      expect(m.role).to.equal('viewer');
      expect((await services.organizations.membershipsOf(c.subject)).map((h) => [h.slug, h.role])).to.deep.equal([['machines', 'viewer']]);
      expect(await services.organizations.actor(o.id, { subject: c.subject, superuser: false })).to.deep.equal({ superuser: false, role: 'viewer' });
      expect((await services.organizations.updateMember(o, c.subject, 'member', 'test')).role).to.equal('member');
      await services.organizations.removeMember(o, c.subject, 'test');
      expect(await services.organizations.membershipsOf(c.subject)).to.deep.equal([]);
    });
  });

  describe('access (what tokens carry)', () => {
    it('gives sorted global roles, the union of their permissions, and organization roles with their own permissions', async () => {
      const a = await account('user');
      const zeta = await services.roles.create({ name: 'zeta', kind: 'global', permissions: [`${API}:write`, 'urn:other:api:x'] }, BY);
      const alpha = await services.roles.create({ name: 'alpha', kind: 'global', permissions: [`${API}:read`, `${API}:write`] }, BY);
      await services.roles.assign(zeta, a.subject, BY);
      await services.roles.assign(alpha, a.subject, BY);
      await services.roles.create({ name: 'billing', kind: 'organization', permissions: [`${API}:invoices`] }, BY);
      const billingOrg = await org('billing-org');
      const viewerOrg = await org('viewer-org');
      const strangerOrg = await org('stranger-org');
      await services.organizations.addMember(billingOrg, a.subject, 'billing', 'test');
      await services.organizations.addMember(viewerOrg, a.subject, 'viewer', 'test');

      const access = await services.access.of(a.subject);
      expect(access.roles).to.deep.equal(['alpha', 'zeta']);
      expect([...access.permissions.keys()].sort()).to.deep.equal([API, 'urn:other:api']);
      expect(scopes(access.permissions.get(API))).to.deep.equal(['read', 'write']);
      expect(scopes(access.permissions.get('urn:other:api'))).to.deep.equal(['x']);
      expect([...access.organizations.keys()].sort()).to.deep.equal([billingOrg.id, viewerOrg.id].sort());
      const billing = access.organizations.get(billingOrg.id)!;
      expect(billing).to.include({ id: billingOrg.id, slug: 'billing-org', name: 'Org billing-org', role: 'billing' });
      expect(scopes(billing.permissions.get(API))).to.deep.equal(['invoices']);
      expect(access.organizations.get(viewerOrg.id)!.role).to.equal('viewer');

      // Without organization: the global roles. For an organization: its role alone.
      expect(scopes(services.access.permitted(access, API, null))).to.deep.equal(['read', 'write']);
      expect(scopes(services.access.permitted(access, API, billingOrg.id))).to.deep.equal(['invoices']);
      expect(scopes(services.access.permitted(access, API, viewerOrg.id))).to.deep.equal([]);
      expect(scopes(services.access.permitted(access, 'urn:other:api', billingOrg.id))).to.deep.equal([]);
      expect(scopes(services.access.permitted(access, API, strangerOrg.id))).to.deep.equal([]);
      expect(scopes(services.access.permitted(access, 'urn:unknown', null))).to.deep.equal([]);
    });

    it('gives a client its global roles and memberships', async () => {
      const c = await client('Worker');
      const role = await services.roles.create({ name: 'worker', kind: 'global', permissions: ['urn:other:api:y'] }, BY);
      await services.roles.assign(role, c.subject, BY);
      const o = await org('worker-org');
      await services.organizations.addMember(o, c.subject, 'member', 'test');
      const access = await services.access.of(c.subject);
      expect(access.roles).to.deep.equal(['worker']);
      expect(scopes(services.access.permitted(access, 'urn:other:api', null))).to.deep.equal(['y']);
      expect(access.organizations.get(o.id)!.role).to.equal('member');
      expect(scopes(services.access.permitted(access, 'urn:other:api', o.id))).to.deep.equal([]);
    });

    it('sees a change made in this process at once', async () => {
      const a = await account('same-process');
      const role = await services.roles.create({ name: 'same-process', kind: 'global' }, BY);
      await services.roles.assign(role, a.subject, BY);
      expect(scopes((await services.access.of(a.subject)).permissions.get(API))).to.deep.equal([]);
      await services.roles.grant(role, [`${API}:admin`], BY);
      expect(scopes((await services.access.of(a.subject)).permissions.get(API))).to.deep.equal(['admin']);
      const o = await org('same-process');
      await services.organizations.addMember(o, a.subject, 'member', 'test');
      expect((await services.access.of(a.subject)).organizations.get(o.id)?.role).to.equal('member');
      // An organization role's permissions are cached apart: a grant to it is seen too.
      await services.roles.grant((await services.roles.get('organization', 'member'))!, [`${API}:read`], BY);
      expect(scopes((await services.access.of(a.subject)).organizations.get(o.id)?.permissions.get(API))).to.deep.equal(['read']);
      await services.roles.revoke((await services.roles.get('organization', 'member'))!, [`${API}:read`], BY);
      expect(scopes((await services.access.of(a.subject)).organizations.get(o.id)?.permissions.get(API))).to.deep.equal([]);
    });

    it('sees a change made by another process once the change feed has run', async () => {
      // A second set of services on the same database: another process, with its own caches.
      const other = createServices({ db, config, logger: createLogger('error') });
      await other.feed.pollNow(); // everything recorded so far is now applied there
      const a = await account('remote');
      const role = await services.roles.create({ name: 'remote', kind: 'global' }, BY);
      await services.roles.assign(role, a.subject, BY);
      await other.feed.pollNow();
      const before = await other.access.of(a.subject);
      expect(before.roles).to.deep.equal(['remote']);
      expect(scopes(before.permissions.get(API))).to.deep.equal([]);

      await services.roles.grant(role, [`${API}:read`], BY);
      const o = await org('remote-org');
      await services.organizations.addMember(o, a.subject, 'admin', 'test');
      // Until its feed runs, the other process answers from its cache.
      expect(scopes((await other.access.of(a.subject)).permissions.get(API))).to.deep.equal([]);
      await other.feed.pollNow();
      const after = await other.access.of(a.subject);
      expect(scopes(after.permissions.get(API))).to.deep.equal(['read']);
      expect(after.organizations.get(o.id)?.role).to.equal('admin');

      await services.roles.unassign(role, a.subject, BY);
      await other.feed.pollNow();
      expect((await other.access.of(a.subject)).roles).to.deep.equal([]);
    });
  });

  describe('invitations', () => {
    let o: OrganizationRecord;
    const tokenOf = (url: string) => new URL(url).searchParams.get('token')!;

    before(async () => {
      o = await org('inviting');
    });

    it('mails an absolute link under the issuer; the link can be peeked at repeatedly and accepted once', async () => {
      const invitee = await account('invitee');
      const { invitation, url } = await services.organizations.invite(o, { email: invitee.email.toUpperCase(), role: 'admin', invitedBy: 'test' });
      expect(url.startsWith(`${config.issuer}/invitation?token=`), url).to.equal(true);
      expect(invitation).to.include({ organizationId: o.id, role: 'admin', status: 'pending', invitedBy: 'test' });
      expect(Date.parse(invitation.expiresAt) - Date.now()).to.be.greaterThan(6 * 24 * 3600 * 1000);
      const outbox = readdirSync(join(dataDir, 'outbox')).map((f) => readFileSync(join(dataDir, 'outbox', f), 'utf8'));
      expect(outbox.some((m) => m.includes(tokenOf(url)))).to.equal(true);
      // Only a hash of the token is stored.
      const row = (await db('organization_invitations').where({ id: invitation.id }).first()) as Record<string, unknown>;
      expect(JSON.stringify(row)).to.not.contain(tokenOf(url));

      for (let i = 0; i < 3; i++) expect((await services.organizations.peekInvitation(tokenOf(url)))?.id).to.equal(invitation.id);
      expect(await services.organizations.peekInvitation(`${tokenOf(url)}x`)).to.equal(undefined);
      expect(await services.organizations.peekInvitation('short')).to.equal(undefined);
      expect((await services.organizations.pendingInvitationsFor(invitee.email)).map((i) => i.id)).to.include(invitation.id);

      const inv = (await services.organizations.peekInvitation(tokenOf(url)))!;
      const m = await services.organizations.acceptInvitation(inv, { id: invitee.id, email: invitee.email });
      expect(m.role).to.equal('admin');
      expect(m.member).to.deep.equal({ kind: 'account', id: invitee.id });
      await rejection(services.organizations.acceptInvitation(inv, { id: invitee.id, email: invitee.email }), ConflictError);
      expect(await services.organizations.peekInvitation(tokenOf(url))).to.equal(undefined);
      expect((await services.organizations.invitationById(invitation.id))!.status).to.equal('accepted');
      expect((await services.organizations.pendingInvitationsFor(invitee.email)).map((i) => i.id)).to.not.include(invitation.id);
    });

    it('refuses an account whose email is not the invited one', async () => {
      const invitee = await account('right');
      const intruder = await account('wrong');
      const { url } = await services.organizations.invite(o, { email: invitee.email, invitedBy: 'test' });
      const inv = (await services.organizations.peekInvitation(tokenOf(url)))!;
      expect(inv.role).to.equal('member');
      await rejection(services.organizations.acceptInvitation(inv, { id: intruder.id, email: intruder.email }), ValidationError);
      await rejection(services.organizations.declineInvitation(inv, { id: intruder.id, email: intruder.email }), ValidationError);
      expect(await services.organizations.membership(o.id, intruder.subject)).to.equal(undefined);
      // Still usable by the one invited.
      expect((await services.organizations.peekInvitation(tokenOf(url)))?.status).to.equal('pending');
      expect((await services.organizations.acceptInvitation(inv, { id: invitee.id, email: invitee.email })).role).to.equal('member');
    });

    it('neither shows nor accepts an expired invitation', async () => {
      const invitee = await account('late');
      const { invitation, url } = await services.organizations.invite(o, { email: invitee.email, invitedBy: 'test' });
      const inv = (await services.organizations.peekInvitation(tokenOf(url)))!;
      await db('organization_invitations')
        .where({ id: invitation.id })
        .update({ expires_at: new Date(Date.now() - 60_000).toISOString() });
      expect(await services.organizations.peekInvitation(tokenOf(url))).to.equal(undefined);
      const expired = (await services.organizations.invitationById(invitation.id))!;
      await rejection(services.organizations.acceptInvitation(expired, { id: invitee.id, email: invitee.email }), ConflictError);
      expect(await services.organizations.membership(o.id, invitee.subject)).to.equal(undefined);
      expect(inv.status).to.equal('pending');
      expect((await services.organizations.pendingInvitationsFor(invitee.email)).map((i) => i.id)).to.not.include(invitation.id);
    });

    it('can be declined by the invitee or revoked, and is then unusable', async () => {
      const decliner = await account('decliner');
      const d = await services.organizations.invite(o, { email: decliner.email, role: 'viewer', invitedBy: 'test' });
      const dInv = (await services.organizations.peekInvitation(tokenOf(d.url)))!;
      await services.organizations.declineInvitation(dInv, { id: decliner.id, email: decliner.email });
      expect(await services.organizations.peekInvitation(tokenOf(d.url))).to.equal(undefined);
      await rejection(services.organizations.acceptInvitation(dInv, { id: decliner.id, email: decliner.email }), ConflictError);
      await rejection(services.organizations.declineInvitation(dInv, { id: decliner.id, email: decliner.email }), ConflictError);
      expect((await services.organizations.invitationById(dInv.id))!.status).to.equal('declined');

      const revoked = await account('revoked');
      const r = await services.organizations.invite(o, { email: revoked.email, invitedBy: 'test' });
      await services.organizations.revokeInvitation(r.invitation, 'test');
      expect(await services.organizations.peekInvitation(tokenOf(r.url))).to.equal(undefined);
      await rejection(services.organizations.acceptInvitation(r.invitation, { id: revoked.id, email: revoked.email }), ConflictError);
      await rejection(services.organizations.revokeInvitation(r.invitation, 'test'), ConflictError);
      expect((await services.organizations.invitationById(r.invitation.id))!.status).to.equal('revoked');
      expect(await services.organizations.membership(o.id, revoked.subject)).to.equal(undefined);
    });

    it('refuses a bad email and a role that is not an organization role', async () => {
      await rejection(services.organizations.invite(o, { email: 'not-an-email', invitedBy: 'test' }), ValidationError);
      await rejection(services.organizations.invite(o, { email: 'x@example.test', role: 'holder-role', invitedBy: 'test' }), ValidationError);
      await rejection(services.organizations.invite(o, { email: 'x@example.test', role: 'nope', invitedBy: 'test' }), NotFoundError);
    });
  });

  describe('deletions (foreign keys)', () => {
    it('deleting an organization removes its memberships and invitations', async () => {
      const a = await account('gone');
      const c = await client('Gone');
      const o = await org('doomed', a.subject);
      await services.organizations.addMember(o, c.subject, 'member', 'test');
      await services.organizations.invite(o, { email: 'someone@example.test', invitedBy: 'test' });
      expect(await count(db, 'organization_members', { organization_id: o.id })).to.equal(2);
      expect(await count(db, 'organization_invitations', { organization_id: o.id })).to.equal(1);
      expect((await services.access.of(a.subject)).organizations.has(o.id)).to.equal(true);
      await services.organizations.delete(o, 'test');
      expect(await count(db, 'organizations', { id: o.id })).to.equal(0);
      expect(await count(db, 'organization_members', { organization_id: o.id })).to.equal(0);
      expect(await count(db, 'organization_invitations', { organization_id: o.id })).to.equal(0);
      expect((await services.access.of(a.subject)).organizations.has(o.id)).to.equal(false);
      expect(await services.accounts.findById(a.id)).to.not.equal(undefined);
    });

    it('deleting a client removes its role assignments and memberships', async () => {
      const c = await client('Ephemeral');
      const keep = await client('Keeper');
      const role = await services.roles.create({ name: 'ephemeral', kind: 'global' }, BY);
      await services.roles.assign(role, c.subject, BY);
      await services.roles.assign(role, keep.subject, BY);
      const o = await org('ephemeral-org');
      await services.organizations.addMember(o, c.subject, 'member', 'test');
      await services.organizations.addMember(o, keep.subject, 'member', 'test');
      expect((await services.access.of(c.subject)).roles).to.deep.equal(['ephemeral']);
      expect(await services.clients.delete(c.id, BY)).to.equal(true);
      expect(await count(db, 'role_assignments', { client_id: c.id })).to.equal(0);
      expect(await count(db, 'organization_members', { client_id: c.id })).to.equal(0);
      expect((await services.roles.holders(role)).map((s) => s.id)).to.deep.equal([keep.id]);
      expect((await services.organizations.members(o.id)).map((m) => m.member.id)).to.deep.equal([keep.id]);
      const access = await services.access.of(c.subject);
      expect(access.roles).to.deep.equal([]);
      expect(access.organizations.size).to.equal(0);
    });
  });
});

/** The migrations, for rolling back one at a time (src/db/migrate.ts rolls back only all of them). */
const migrator: Knex.MigratorConfig = {
  tableName: 'knex_migrations',
  migrationSource: {
    getMigrations: () => Promise.resolve(Object.keys(migrations)),
    getMigrationName: (name: string) => name,
    getMigration: (name: string) => Promise.resolve(migrations[name]!),
  },
};

describe('migration 20261123030000_rbac', () => {
  const RBAC = '20261123030000_rbac';
  const TABLES = ['roles', 'role_permissions', 'role_assignments', 'organizations', 'organization_members', 'organization_invitations', 'personal_access_tokens'];

  it('goes up, down and up again, keeping the data of earlier migrations', async () => {
    const database = await freshDatabase();
    const dataDir = mkdtempSync(join(tmpdir(), 'latch-rbac-mig-'));
    const config = loadConfig({ DATABASE_URL: database.url, LATCH_SECRET: TEST_SECRET, DATA_DIR: dataDir });
    const db = openDatabase(config.database);
    try {
      expect(await migrateLatest(db)).to.include(RBAC);
      for (const t of TABLES) expect(await db.schema.hasTable(t), t).to.equal(true);
      expect(await db.schema.hasColumn('resource_servers', 'rbac')).to.equal(true);
      const services = createServices({ db, config, logger: createLogger('error') });
      await services.resources.create({ identifier: 'urn:kept:api', scopes: ['a', 'b'], rbac: true }, BY);
      const c = await services.clients.create({ name: 'Kept', grants: ['client_credentials'], resources: ['urn:kept:api'] }, BY);
      const a = await services.accounts.create({ email: 'kept@example.test', password: PASSWORD });
      const role = await services.roles.create({ name: 'r', kind: 'global', permissions: ['urn:kept:api:a'] }, BY);
      await services.roles.assign(role, { kind: 'client', id: c.client_id }, BY);
      await services.organizations.create({ name: 'Org', slug: 'org', owner: { kind: 'account', id: a.id }, createdBy: 'test' });

      // Roll back down to (and including) the rbac migration, whatever came after it.
      for (let i = 0; i < 20; i++) {
        const [completed] = (await db.migrate.list(migrator)) as [{ name: string }[], unknown[]];
        if (!completed.some((m) => m.name === RBAC)) break;
        await db.migrate.down(migrator);
      }
      for (const t of TABLES) expect(await db.schema.hasTable(t), t).to.equal(false);
      expect(await db.schema.hasColumn('resource_servers', 'rbac')).to.equal(false);
      expect(await db.schema.hasTable('resource_servers')).to.equal(true);
      // Earlier data survived (SQLite rebuilds resource_servers to drop the column).
      expect(await count(db, 'resource_servers', { identifier: 'urn:kept:api' })).to.equal(1);
      expect(await count(db, 'clients', { id: c.client_id })).to.equal(1);
      expect(await count(db, 'accounts', { id: a.id })).to.equal(1);

      expect(await migrateLatest(db)).to.include(RBAC);
      for (const t of TABLES) expect(await db.schema.hasTable(t), t).to.equal(true);
      const kept = (await db('resource_servers').where({ identifier: 'urn:kept:api' }).first()) as { rbac: boolean | number };
      expect(Boolean(kept.rbac)).to.equal(false);
      const again = createServices({ db, config, logger: createLogger('error') });
      expect((await again.roles.list('organization')).map((r) => r.name).sort()).to.deep.equal(['admin', 'member', 'owner', 'viewer']);
      expect(await again.roles.list('global')).to.deep.equal([]);
      expect((await again.clients.findById(c.client_id))?.resources).to.deep.equal(['urn:kept:api']);
      // And it works: a role on the kept resource, an organization with its owner.
      await again.roles.create({ name: 'r', kind: 'global', permissions: ['urn:kept:api:b'] }, BY);
      const o = await again.organizations.create({ name: 'Org', slug: 'org', owner: { kind: 'account', id: a.id }, createdBy: 'test' });
      expect((await again.organizations.members(o.id)).map((m) => m.role)).to.deep.equal(['owner']);
    } finally {
      await db.destroy();
      await database.drop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
