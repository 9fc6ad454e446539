import { randomUUID } from 'node:crypto';

import type { ResourceRecord } from '../repositories/resources.js';
import type { Permission, RoleKind, RoleRecord, RolesRepository, Subject } from '../repositories/roles.js';
import { diff, type AuditActor, type AuditService } from './audit.js';
import type { ChangeFeed } from './change-feed.js';
import { ConflictError, NotFoundError, ValidationError } from './errors.js';
import type { PageRequest } from '../repositories/keyset.js';

const ROLE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;

/** The organization roles every installation has; they carry no permission until granted one. */
export const BUILTIN_ORG_ROLE_NAMES = ['owner', 'admin', 'member', 'viewer'] as const;

export function checkRoleName(raw: string): string {
  const name = raw?.trim() ?? '';
  if (!ROLE_NAME.test(name)) throw new ValidationError('name', 'must be 1-64 characters: letters, digits, "_", ".", ":" or "-", starting with a letter or digit');
  return name;
}

/** `URI:SCOPE`, split at the last colon (a resource identifier contains colons itself). */
export function splitPermission(text: string): Permission {
  const at = text.lastIndexOf(':');
  const resource = at > 0 ? text.slice(0, at) : '';
  const scope = at > 0 ? text.slice(at + 1) : '';
  if (!resource || !scope) throw new ValidationError('permission', `must be RESOURCE_URI:SCOPE (got "${text}")`);
  return { resource, scope };
}

/**
 * The readings of `URI:SCOPE`, most likely first: split at the last colon, then at each earlier
 * one (scopes may contain colons themselves, `admin:read`). The caller takes the first whose
 * resource it knows. Throws like splitPermission when there is no reading at all.
 */
export function permissionCandidates(text: string): Permission[] {
  const first = splitPermission(text);
  const out = [first];
  for (let at = text.lastIndexOf(':', text.length - first.scope.length - 2); at > 0; at = text.lastIndexOf(':', at - 1)) out.push({ resource: text.slice(0, at), scope: text.slice(at + 1) });
  return out;
}

export function describeRole(r: RoleRecord) {
  return {
    id: r.id,
    name: r.name,
    kind: r.kind,
    description: r.description,
    builtin: r.builtin,
    permissions: r.permissions.map((p) => ({ resource: p.resource, scope: p.scope })),
    created_at: r.createdAt,
    updated_at: r.updatedAt,
  };
}

/** A role as the admin API shows it (and its audit events record it): permissions as `RESOURCE:SCOPE`. */
export function describeApiRole(r: RoleRecord) {
  return { ...describeRole(r), permissions: r.permissions.map((p) => `${p.resource}:${p.scope}`) };
}

/** The API calls accounts users: a subject's kind as the API (and the audit trail) shows it. */
export const apiKindOf = (s: Subject) => (s.kind === 'account' ? 'user' : 'client');

/**
 * Roles: global roles (held directly by accounts and machine clients) and organization roles
 * (held through a membership). Each carries permissions on RBAC resources. Every change is
 * published on the change feed's `rbac` topic, so every process recomputes what tokens carry,
 * and recorded in the audit trail by `by` (the admin API's caller, the CLI).
 */
export function createRoleService(deps: { roles: RolesRepository; resources: { findByIdentifier(identifier: string): Promise<ResourceRecord | undefined> }; audit: AuditService; feed?: ChangeFeed }) {
  const { roles, audit } = deps;
  const changed = () => deps.feed?.publish('rbac');
  /** `role.update` with the fields that changed between `before` and the role as it is now. */
  const updated = async (before: RoleRecord, by: AuditActor): Promise<RoleRecord> => {
    const after = (await roles.findById(before.id))!;
    await audit.recordChanges('role.update', before.id, by, diff(describeApiRole(before), describeApiRole(after), ['updated_at']));
    return after;
  };
  /** A role changes hands: the holder is the audit subject, so it shows in their trail (and is pseudonymised with them). */
  const handed = (how: 'assign' | 'unassign', role: RoleRecord, subject: Subject, by: AuditActor) => audit.recordBy(`role.${how}`, subject.id, by, { role: role.id, role_name: role.name, holder_kind: apiKindOf(subject) });

  /**
   * The resource and scope a permission names. Text splits at the last colon; scopes may contain
   * colons themselves (`admin:read`), so when that names no registered resource, an earlier colon
   * that does is taken.
   */
  async function resolveOne(t: string | Permission): Promise<{ resourceId: string; scope: string; resource: string }> {
    const candidates = typeof t === 'string' ? permissionCandidates(t) : [t];
    for (const p of candidates) {
      const rs = await deps.resources.findByIdentifier(p.resource);
      if (!rs) continue;
      if (!rs.scopes.includes(p.scope)) throw new ValidationError('permission', `scope "${p.scope}" is not registered on ${p.resource}`);
      return { resourceId: rs.id, scope: p.scope, resource: rs.identifier };
    }
    throw new ValidationError('permission', `resource ${candidates[0]!.resource} is not registered`);
  }

  async function resolvePermissions(texts: (string | Permission)[]): Promise<{ resourceId: string; scope: string; resource: string }[]> {
    const out: { resourceId: string; scope: string; resource: string }[] = [];
    for (const t of texts) out.push(await resolveOne(t));
    return out;
  }

  async function get(kind: RoleKind, name: string): Promise<RoleRecord> {
    const role = await roles.find(kind, name);
    if (!role) throw new NotFoundError(`${kind === 'organization' ? 'organization role' : 'role'} ${name}`);
    return role;
  }

  return {
    get,
    find: (kind: RoleKind, name: string) => roles.find(kind, name),
    findById: (id: string) => roles.findById(id),
    list: (kind?: RoleKind) => roles.list(kind),
    page: (request: PageRequest & { filters?: { kind?: RoleKind | undefined; name?: string | undefined } }) => roles.page(request),

    async create(input: { name: string; kind: RoleKind; description?: string | null | undefined; permissions?: (string | Permission)[] | undefined }, by: AuditActor): Promise<RoleRecord> {
      const name = checkRoleName(input.name);
      const description = input.description?.trim() || null;
      if (description && description.length > 255) throw new ValidationError('description', 'must be at most 255 characters');
      const perms = await resolvePermissions(input.permissions ?? []);
      if (await roles.find(input.kind, name)) throw new ConflictError(`${input.kind === 'organization' ? 'organization role' : 'role'} ${name} already exists`);
      const id = randomUUID();
      // Checked above; a concurrent create of the same name loses on the unique index.
      await roles.insert({ id, kind: input.kind, name, description }).catch(async (err: unknown) => {
        if (await roles.find(input.kind, name)) throw new ConflictError(`${input.kind === 'organization' ? 'organization role' : 'role'} ${name} already exists`);
        throw err;
      });
      if (perms.length) await roles.grant(id, perms);
      await changed();
      const role = (await roles.findById(id))!;
      await audit.recordBy('role.create', id, by, { after: describeApiRole(role) });
      return role;
    },

    /** Renames, describes and, with `permissions`, replaces the whole permission set; everything is checked before anything changes. */
    async update(role: RoleRecord, patch: { name?: string | undefined; description?: string | null | undefined; permissions?: (string | Permission)[] | undefined }, by: AuditActor): Promise<RoleRecord> {
      const perms = patch.permissions === undefined ? undefined : await resolvePermissions(patch.permissions);
      const next: { name?: string; description?: string | null } = {};
      if (patch.name !== undefined) {
        const name = checkRoleName(patch.name);
        if (role.builtin && name !== role.name) throw new ConflictError(`the built-in role ${role.name} cannot be renamed`);
        const clash = await roles.find(role.kind, name);
        if (clash && clash.id !== role.id) throw new ConflictError(`role ${name} already exists`);
        next.name = name;
      }
      if (patch.description !== undefined) {
        const d = patch.description?.trim() || null;
        if (d && d.length > 255) throw new ValidationError('description', 'must be at most 255 characters');
        next.description = d;
      }
      await roles.update(role.id, next).catch(async (err: unknown) => {
        const clash = next.name ? await roles.find(role.kind, next.name) : undefined;
        if (clash && clash.id !== role.id) throw new ConflictError(`role ${next.name} already exists`);
        throw err;
      });
      if (perms) await roles.setPermissions(role.id, perms);
      await changed();
      return updated(role, by);
    },

    async delete(role: RoleRecord, by: AuditActor): Promise<void> {
      if (role.builtin) throw new ConflictError(`the built-in role ${role.name} cannot be deleted`);
      try {
        await roles.delete(role.id);
      } catch (err) {
        // organization_members.role_id has no cascade: a role still held through a membership stays
        // (a foreign-key violation: PostgreSQL 23503, SQLite SQLITE_CONSTRAINT_FOREIGNKEY).
        const code = (err as { code?: string }).code;
        if (code === '23503' || code === 'SQLITE_CONSTRAINT_FOREIGNKEY') throw new ConflictError(`role ${role.name} is still held by organization members`);
        throw err;
      }
      await changed();
      await audit.recordBy('role.delete', role.id, by, { before: describeApiRole(role) });
    },

    /** Adds permissions to the role: recorded as the `role.update` it is. */
    async grant(role: RoleRecord, permissions: (string | Permission)[], by: AuditActor): Promise<RoleRecord> {
      if (permissions.length === 0) throw new ValidationError('permission', 'at least one is required');
      await roles.grant(role.id, await resolvePermissions(permissions));
      await changed();
      return updated(role, by);
    },

    /** Takes permissions from the role: recorded as the `role.update` it is. */
    async revoke(role: RoleRecord, permissions: (string | Permission)[], by: AuditActor): Promise<RoleRecord> {
      if (permissions.length === 0) throw new ValidationError('permission', 'at least one is required');
      await roles.revoke(role.id, await resolvePermissions(permissions));
      await changed();
      return updated(role, by);
    },

    /** Assigns a global role to an account or a client (organization roles are held through memberships only). */
    async assign(role: RoleRecord, subject: Subject, by: AuditActor): Promise<boolean> {
      if (role.kind !== 'global') throw new ValidationError('role', `${role.name} is an organization role: it is held through a membership, not assigned globally`);
      // A concurrent assignment of the same role loses on the unique index: held either way.
      const added = await roles.assign(role.id, subject).catch(async (err: unknown) => {
        if ((await roles.holders(role.id)).some((h) => h.kind === subject.kind && h.id === subject.id)) return false;
        throw err;
      });
      await changed();
      // Only a change is an event: assigning a role already held changes nothing.
      if (added) await handed('assign', role, subject, by);
      return added;
    },

    async unassign(role: RoleRecord, subject: Subject, by: AuditActor): Promise<boolean> {
      if (role.kind !== 'global') throw new ValidationError('role', `${role.name} is an organization role: it is held through a membership, not assigned globally`);
      const removed = await roles.unassign(role.id, subject);
      await changed();
      if (removed) await handed('unassign', role, subject, by);
      return removed;
    },

    rolesOf: (subject: Subject) => roles.rolesOf(subject),
    holders: (role: RoleRecord) => roles.holders(role.id),
    holdersPage: (role: RoleRecord, request: PageRequest) => roles.holdersPage(role.id, request),
  };
}

export type RoleService = ReturnType<typeof createRoleService>;
