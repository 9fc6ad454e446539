import type { Db } from '../db/knex.js';
import { toIso } from '../db/knex.js';
import { nowIso } from '../lib/time.js';
import { subjectColumn, type Subject } from './roles.js';
import { keysetPage, type PageOf, type PageRequest } from './keyset.js';

export interface OrganizationRecord {
  id: string;
  name: string;
  slug: string;
  createdBy: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface MembershipRecord {
  organizationId: string;
  member: Subject;
  roleId: string;
  role: string;
  createdAt: string;
  updatedAt: string;
}

/** A membership seen from its holder: the organization and the role held there. */
export interface HeldMembership {
  id: string;
  slug: string;
  name: string;
  role: string;
  roleId: string;
}

export type InvitationStatus = 'pending' | 'accepted' | 'declined' | 'revoked';

export interface InvitationRecord {
  id: string;
  organizationId: string;
  email: string;
  roleId: string;
  role: string;
  invitedBy: string | null;
  status: InvitationStatus;
  createdAt: string;
  expiresAt: string;
  updatedAt: string;
}

interface OrgRow {
  id: string;
  name: string;
  slug: string;
  created_by: string | null;
  created_at: string;
  updated_at: string;
}

const orgFromRow = (r: OrgRow): OrganizationRecord => ({
  id: r.id,
  name: r.name,
  slug: r.slug,
  createdBy: r.created_by,
  createdAt: toIso(r.created_at) ?? r.created_at,
  updatedAt: toIso(r.updated_at) ?? r.updated_at,
});

interface MemberRow {
  organization_id: string;
  account_id: string | null;
  client_id: string | null;
  role_id: string;
  role: string;
  created_at: string;
  updated_at: string;
}

const memberFromRow = (r: MemberRow): MembershipRecord => ({
  organizationId: r.organization_id,
  member: r.account_id ? { kind: 'account', id: r.account_id } : { kind: 'client', id: r.client_id! },
  roleId: r.role_id,
  role: r.role,
  createdAt: toIso(r.created_at) ?? r.created_at,
  updatedAt: toIso(r.updated_at) ?? r.updated_at,
});

interface InvitationRow {
  id: string;
  organization_id: string;
  email: string;
  role_id: string;
  role: string;
  invited_by: string | null;
  status: InvitationStatus;
  created_at: string;
  expires_at: string;
  updated_at: string;
}

const invitationFromRow = (r: InvitationRow): InvitationRecord => ({
  id: r.id,
  organizationId: r.organization_id,
  email: r.email,
  roleId: r.role_id,
  role: r.role,
  invitedBy: r.invited_by,
  status: r.status,
  createdAt: toIso(r.created_at) ?? r.created_at,
  expiresAt: toIso(r.expires_at) ?? r.expires_at,
  updatedAt: toIso(r.updated_at) ?? r.updated_at,
});

function queries(db: Db) {
  const members = () => db('organization_members as m').join('roles as r', 'r.id', 'm.role_id').select('m.*', 'r.name as role');
  const invitations = () => db('organization_invitations as i').join('roles as r', 'r.id', 'i.role_id').select('i.*', 'r.name as role');

  return {
    async insert(o: { id: string; name: string; slug: string; createdBy: string | null }): Promise<OrganizationRecord> {
      const now = nowIso();
      await db('organizations').insert({ id: o.id, name: o.name, slug: o.slug, created_by: o.createdBy, created_at: now, updated_at: now });
      return { ...o, createdAt: now, updatedAt: now };
    },
    async findById(id: string): Promise<OrganizationRecord | undefined> {
      const row = await db('organizations').where({ id }).first<OrgRow | undefined>();
      return row ? orgFromRow(row) : undefined;
    },
    async findBySlug(slug: string): Promise<OrganizationRecord | undefined> {
      const row = await db('organizations').where({ slug }).first<OrgRow | undefined>();
      return row ? orgFromRow(row) : undefined;
    },
    /** One page of organizations, newest first (keyset on created_at, id); `name` is a case-insensitive substring. */
    async page(request: PageRequest & { filters?: { name?: string | undefined; slug?: string | undefined } }): Promise<PageOf<OrganizationRecord>> {
      const q = db('organizations').select('*');
      const f = request.filters ?? {};
      // The escape character is named: SQLite's LIKE has none by default.
      if (f.name) void q.whereRaw("lower(name) like ? escape '\\'", [`%${f.name.toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`]);
      if (f.slug !== undefined) void q.where('slug', f.slug);
      return keysetPage(db, q, { at: 'created_at', id: 'id' }, request, orgFromRow, (o) => ({ at: o.createdAt, id: o.id }));
    },
    async list(): Promise<OrganizationRecord[]> {
      return (await db('organizations').select<OrgRow[]>('*').orderBy('slug')).map(orgFromRow);
    },
    async update(id: string, patch: { name?: string; slug?: string }): Promise<void> {
      const row: Record<string, unknown> = { updated_at: nowIso() };
      if (patch.name !== undefined) row.name = patch.name;
      if (patch.slug !== undefined) row.slug = patch.slug;
      await db('organizations').where({ id }).update(row);
    },
    async delete(id: string): Promise<boolean> {
      return (await db('organizations').where({ id }).delete()) > 0;
    },

    /**
     * One page of an organization's members, newest first. The cursor's id is the member's
     * `kind:id` (`account:…` or `client:…`), computed in SQL so the keyset can use it.
     */
    async membersPage(organizationId: string, request: PageRequest): Promise<PageOf<MembershipRecord>> {
      const key = db.raw("(case when m.account_id is not null then 'account:' || m.account_id else 'client:' || m.client_id end)");
      return keysetPage(db, members().where('m.organization_id', organizationId), { at: 'm.created_at', id: key }, request, memberFromRow, (m) => ({ at: m.createdAt, id: `${m.member.kind}:${m.member.id}` }));
    },
    /** One page of an organization's invitations (every status), newest first. */
    async invitationsPage(organizationId: string, request: PageRequest): Promise<PageOf<InvitationRecord>> {
      return keysetPage(db, invitations().where('i.organization_id', organizationId), { at: 'i.created_at', id: 'i.id' }, request, invitationFromRow, (i) => ({ at: i.createdAt, id: i.id }));
    },
    async members(organizationId: string): Promise<MembershipRecord[]> {
      return ((await members().where('m.organization_id', organizationId).orderBy('m.created_at')) as MemberRow[]).map(memberFromRow);
    },
    async membership(organizationId: string, subject: Subject): Promise<MembershipRecord | undefined> {
      const row = (await members().where('m.organization_id', organizationId).where(`m.${subjectColumn(subject)}`, subject.id).first()) as MemberRow | undefined;
      return row ? memberFromRow(row) : undefined;
    },
    /** Every organization a subject belongs to, with the role held there. */
    async membershipsOf(subject: Subject): Promise<HeldMembership[]> {
      const rows = await db('organization_members as m')
        .join('organizations as o', 'o.id', 'm.organization_id')
        .join('roles as r', 'r.id', 'm.role_id')
        .where(`m.${subjectColumn(subject)}`, subject.id)
        .select<{ id: string; slug: string; name: string; role: string; role_id: string }[]>('o.id', 'o.slug', 'o.name', 'r.name as role', 'm.role_id')
        .orderBy('o.slug');
      return rows.map((r) => ({ id: r.id, slug: r.slug, name: r.name, role: r.role, roleId: r.role_id }));
    },
    async addMember(organizationId: string, subject: Subject, roleId: string): Promise<void> {
      const now = nowIso();
      await db('organization_members').insert({ organization_id: organizationId, [subjectColumn(subject)]: subject.id, role_id: roleId, created_at: now, updated_at: now });
    },
    async setMemberRole(organizationId: string, subject: Subject, roleId: string): Promise<boolean> {
      return (await db('organization_members').where({ organization_id: organizationId, [subjectColumn(subject)]: subject.id }).update({ role_id: roleId, updated_at: nowIso() })) > 0;
    },
    async removeMember(organizationId: string, subject: Subject): Promise<boolean> {
      return (await db('organization_members').where({ organization_id: organizationId, [subjectColumn(subject)]: subject.id }).delete()) > 0;
    },
    /**
     * Locks the organization's row until the transaction ends, so that two membership changes in
     * one organization (e.g. two owners demoted at once) check the last-owner rule one after the
     * other. PostgreSQL: SELECT ... FOR UPDATE; SQLite serialises writing transactions anyway.
     */
    async lock(organizationId: string): Promise<void> {
      await db('organizations').where({ id: organizationId }).forUpdate().first('id');
    },
    async countWithRole(organizationId: string, roleId: string): Promise<number> {
      const row = await db('organization_members').where({ organization_id: organizationId, role_id: roleId }).count({ n: '*' }).first<{ n: number | string }>();
      return Number(row?.n ?? 0);
    },

    async insertInvitation(i: { id: string; organizationId: string; email: string; roleId: string; tokenHash: string; invitedBy: string | null; expiresAt: string }): Promise<void> {
      const now = nowIso();
      await db('organization_invitations').insert({ id: i.id, organization_id: i.organizationId, email: i.email, role_id: i.roleId, token_hash: i.tokenHash, invited_by: i.invitedBy, status: 'pending', created_at: now, expires_at: i.expiresAt, updated_at: now });
    },
    async invitationByHash(tokenHash: string): Promise<InvitationRecord | undefined> {
      const row = (await invitations().where('i.token_hash', tokenHash).first()) as InvitationRow | undefined;
      return row ? invitationFromRow(row) : undefined;
    },
    async invitationById(id: string): Promise<InvitationRecord | undefined> {
      const row = (await invitations().where('i.id', id).first()) as InvitationRow | undefined;
      return row ? invitationFromRow(row) : undefined;
    },
    async invitationsOf(organizationId: string): Promise<InvitationRecord[]> {
      return ((await invitations().where('i.organization_id', organizationId).orderBy('i.created_at', 'desc')) as InvitationRow[]).map(invitationFromRow);
    },
    /** The organization's pending invitation to an email (case-insensitive), expired or not. */
    async pendingInvitation(organizationId: string, email: string): Promise<InvitationRecord | undefined> {
      const row = (await invitations().where('i.organization_id', organizationId).whereRaw('lower(i.email) = ?', [email.toLowerCase()]).where('i.status', 'pending').first()) as InvitationRow | undefined;
      return row ? invitationFromRow(row) : undefined;
    },
    /** Pending, unexpired invitations addressed to an email (case-insensitive). */
    async pendingFor(email: string, now: string): Promise<InvitationRecord[]> {
      const rows = (await invitations().whereRaw('lower(i.email) = ?', [email.toLowerCase()]).where('i.status', 'pending').where('i.expires_at', '>', now).orderBy('i.created_at', 'desc')) as InvitationRow[];
      return rows.map(invitationFromRow);
    },
    /** Moves a pending invitation to a final status; false when it was no longer pending (single use). */
    async settleInvitation(id: string, status: Exclude<InvitationStatus, 'pending'>): Promise<boolean> {
      return (await db('organization_invitations').where({ id, status: 'pending' }).update({ status, updated_at: nowIso() })) > 0;
    },
  };
}

export type OrganizationQueries = ReturnType<typeof queries>;

/** Organizations, their memberships and their invitations. */
export function createOrganizationsRepository(db: Db) {
  return {
    ...queries(db),
    /** Runs `fn` in a transaction (membership changes that check the last-owner rule). */
    transaction<T>(fn: (repo: OrganizationQueries) => Promise<T>): Promise<T> {
      return db.transaction((trx) => fn(queries(trx as unknown as Db)));
    },
  };
}

export type OrganizationsRepository = ReturnType<typeof createOrganizationsRepository>;
