import type { Db } from '../db/knex.js';
import { toIso } from '../db/knex.js';
import { nowIso } from '../lib/time.js';
import { keysetPage, type PageOf, type PageRequest } from './keyset.js';

export type RoleKind = 'global' | 'organization';

/** Who holds a role or a membership: an account or a (machine) client. */
export type Subject = { kind: 'account'; id: string } | { kind: 'client'; id: string };

export interface Permission {
  /** Resource identifier (RFC 8707 audience). */
  resource: string;
  scope: string;
}

export interface RoleRecord {
  id: string;
  kind: RoleKind;
  name: string;
  description: string | null;
  builtin: boolean;
  permissions: Permission[];
  createdAt: string;
  updatedAt: string;
}

interface Row {
  id: string;
  kind: RoleKind;
  name: string;
  description: string | null;
  builtin: boolean | number;
  created_at: string;
  updated_at: string;
}

interface HolderRow {
  account_id: string | null;
  client_id: string | null;
  created_at: string;
}

function holderFromRow(r: HolderRow): Subject & { assignedAt: string } {
  const assignedAt = toIso(r.created_at) ?? r.created_at;
  return r.account_id ? { kind: 'account' as const, id: r.account_id, assignedAt } : { kind: 'client' as const, id: r.client_id!, assignedAt };
}

export const subjectColumn = (s: Subject) => (s.kind === 'account' ? 'account_id' : 'client_id');

/** Roles, their permissions and their direct (global) assignments. */
export function createRolesRepository(db: Db) {
  async function withPermissions(rows: Row[]): Promise<RoleRecord[]> {
    if (rows.length === 0) return [];
    const perms = await db('role_permissions as p')
      .join('resource_servers as r', 'r.id', 'p.resource_id')
      .whereIn(
        'p.role_id',
        rows.map((r) => r.id),
      )
      .select<{ role_id: string; identifier: string; scope: string }[]>('p.role_id', 'r.identifier', 'p.scope')
      .orderBy([{ column: 'r.identifier' }, { column: 'p.scope' }]);
    const byRole = new Map<string, Permission[]>();
    for (const p of perms) {
      const list = byRole.get(p.role_id) ?? [];
      list.push({ resource: p.identifier, scope: p.scope });
      byRole.set(p.role_id, list);
    }
    return rows.map((r) => ({
      id: r.id,
      kind: r.kind,
      name: r.name,
      description: r.description,
      builtin: Boolean(r.builtin),
      permissions: byRole.get(r.id) ?? [],
      createdAt: toIso(r.created_at) ?? r.created_at,
      updatedAt: toIso(r.updated_at) ?? r.updated_at,
    }));
  }

  return {
    async insert(r: { id: string; kind: RoleKind; name: string; description: string | null }): Promise<void> {
      const now = nowIso();
      await db('roles').insert({ id: r.id, kind: r.kind, name: r.name, description: r.description, builtin: false, created_at: now, updated_at: now });
    },
    async find(kind: RoleKind, name: string): Promise<RoleRecord | undefined> {
      const row = await db('roles').where({ kind, name }).first<Row | undefined>();
      return row ? (await withPermissions([row]))[0] : undefined;
    },
    async findById(id: string): Promise<RoleRecord | undefined> {
      const row = await db('roles').where({ id }).first<Row | undefined>();
      return row ? (await withPermissions([row]))[0] : undefined;
    },
    /** One page of roles, newest first (keyset on created_at, id), with their permissions. */
    async page(request: PageRequest & { filters?: { kind?: RoleKind | undefined; name?: string | undefined } }): Promise<PageOf<RoleRecord>> {
      const q = db('roles').select('*');
      if (request.filters?.kind !== undefined) void q.where('kind', request.filters.kind);
      if (request.filters?.name !== undefined) void q.where('name', request.filters.name);
      const page = await keysetPage(db, q, { at: 'created_at', id: 'id' }, request, (r: Row) => r, (r) => ({ at: toIso(r.created_at) ?? r.created_at, id: r.id }));
      return { items: await withPermissions(page.items), next: page.next };
    },
    /**
     * One page of a global role's holders, newest assignment first. The cursor's id is the API's
     * `kind:id` of the holder (`user:…` or `client:…`), computed in SQL so the keyset can use it.
     */
    async holdersPage(roleId: string, request: PageRequest): Promise<PageOf<Subject & { assignedAt: string }>> {
      const key = db.raw("(case when account_id is not null then 'user:' || account_id else 'client:' || client_id end)");
      const q = db('role_assignments').where({ role_id: roleId }).select('account_id', 'client_id', 'created_at');
      return keysetPage(db, q, { at: 'created_at', id: key }, request, holderFromRow, (h) => ({ at: h.assignedAt, id: `${h.kind === 'account' ? 'user' : 'client'}:${h.id}` }));
    },
    async list(kind?: RoleKind): Promise<RoleRecord[]> {
      const q = db('roles').select<Row[]>('*').orderBy([{ column: 'kind' }, { column: 'name' }]);
      if (kind) void q.where({ kind });
      return withPermissions(await q);
    },
    async update(id: string, patch: { name?: string; description?: string | null }): Promise<void> {
      const row: Record<string, unknown> = { updated_at: nowIso() };
      if (patch.name !== undefined) row.name = patch.name;
      if (patch.description !== undefined) row.description = patch.description;
      await db('roles').where({ id }).update(row);
    },
    async delete(id: string): Promise<boolean> {
      return (await db('roles').where({ id, builtin: false }).delete()) > 0;
    },
    /** Adds permissions (resource ids + scopes); existing ones are kept. */
    async grant(roleId: string, perms: { resourceId: string; scope: string }[]): Promise<void> {
      await db.transaction(async (trx) => {
        for (const p of perms) {
          const exists = await trx('role_permissions').where({ role_id: roleId, resource_id: p.resourceId, scope: p.scope }).first();
          if (!exists) await trx('role_permissions').insert({ role_id: roleId, resource_id: p.resourceId, scope: p.scope });
        }
        await trx('roles').where({ id: roleId }).update({ updated_at: nowIso() });
      });
    },
    /** Makes the role's permissions exactly `perms`. */
    async setPermissions(roleId: string, perms: { resourceId: string; scope: string }[]): Promise<void> {
      const unique = new Map(perms.map((p) => [`${p.resourceId} ${p.scope}`, p]));
      await db.transaction(async (trx) => {
        await trx('role_permissions').where({ role_id: roleId }).delete();
        for (const p of unique.values()) await trx('role_permissions').insert({ role_id: roleId, resource_id: p.resourceId, scope: p.scope });
        await trx('roles').where({ id: roleId }).update({ updated_at: nowIso() });
      });
    },
    async revoke(roleId: string, perms: { resourceId: string; scope: string }[]): Promise<void> {
      await db.transaction(async (trx) => {
        for (const p of perms) await trx('role_permissions').where({ role_id: roleId, resource_id: p.resourceId, scope: p.scope }).delete();
        await trx('roles').where({ id: roleId }).update({ updated_at: nowIso() });
      });
    },
    /** Assigns a global role; false when it was already held. */
    async assign(roleId: string, subject: Subject): Promise<boolean> {
      const col = subjectColumn(subject);
      const exists = await db('role_assignments').where({ role_id: roleId, [col]: subject.id }).first();
      if (exists) return false;
      await db('role_assignments').insert({ role_id: roleId, [col]: subject.id, created_at: nowIso() });
      return true;
    },
    async unassign(roleId: string, subject: Subject): Promise<boolean> {
      return (await db('role_assignments').where({ role_id: roleId, [subjectColumn(subject)]: subject.id }).delete()) > 0;
    },
    /** The global roles a subject holds, with their permissions. */
    async rolesOf(subject: Subject): Promise<RoleRecord[]> {
      const rows = await db('roles as r')
        .join('role_assignments as a', 'a.role_id', 'r.id')
        .where(`a.${subjectColumn(subject)}`, subject.id)
        .select<Row[]>('r.*')
        .orderBy('r.name');
      return withPermissions(rows);
    },
    /** Subjects holding a global role, with when it was assigned. */
    async holders(roleId: string): Promise<(Subject & { assignedAt: string })[]> {
      const rows = await db('role_assignments').where({ role_id: roleId }).select<HolderRow[]>('account_id', 'client_id', 'created_at');
      return rows.map(holderFromRow);
    },
  };
}

export type RolesRepository = ReturnType<typeof createRolesRepository>;
