import { BoundedCache } from '../lib/lru.js';
import type { OrganizationsRepository } from '../repositories/organizations.js';
import type { Permission, RolesRepository, Subject } from '../repositories/roles.js';
import type { ChangeFeed } from './change-feed.js';

/** Scopes per resource identifier. */
export type ScopeMap = Map<string, Set<string>>;

export interface OrganizationAccess {
  id: string;
  slug: string;
  name: string;
  role: string;
  permissions: ScopeMap;
}

/** What a subject holds: what tokens say about it and what RBAC resources grant it. */
export interface SubjectAccess {
  /** Global role names, sorted. */
  roles: string[];
  /** Union of the permissions of the global roles. */
  permissions: ScopeMap;
  /** Organization id → membership. */
  organizations: Map<string, OrganizationAccess>;
}

function toScopeMap(perms: Permission[]): ScopeMap {
  const map: ScopeMap = new Map();
  for (const p of perms) {
    const set = map.get(p.resource) ?? new Set<string>();
    set.add(p.scope);
    map.set(p.resource, set);
  }
  return map;
}

const key = (s: Subject) => `${s.kind}:${s.id}`;

/**
 * Computes, and caches per subject, the roles, organization memberships and permissions that
 * tokens carry. Any role, permission or membership change (by any process) is published on the
 * change feed's `rbac` topic and empties the cache, so tokens issued a poll interval later
 * reflect it.
 */
export function createAccessService(deps: { roles: RolesRepository; orgs: OrganizationsRepository; feed?: ChangeFeed }) {
  const cache = new BoundedCache<string, Promise<SubjectAccess>>(10_000);
  let orgRolePermissions: Promise<Map<string, ScopeMap>> | undefined;
  deps.feed?.on('rbac', () => {
    cache.clear();
    orgRolePermissions = undefined;
  });

  const loadOrgRoles = async () => new Map((await deps.roles.list('organization')).map((r) => [r.id, toScopeMap(r.permissions)]));

  async function load(subject: Subject): Promise<SubjectAccess> {
    orgRolePermissions ??= loadOrgRoles().catch((err: unknown) => {
      orgRolePermissions = undefined;
      throw err;
    });
    const [roles, memberships, orgRoles] = await Promise.all([deps.roles.rolesOf(subject), deps.orgs.membershipsOf(subject), orgRolePermissions]);
    return {
      roles: roles.map((r) => r.name).sort(),
      permissions: toScopeMap(roles.flatMap((r) => r.permissions)),
      organizations: new Map(memberships.map((m) => [m.id, { id: m.id, slug: m.slug, name: m.name, role: m.role, permissions: orgRoles.get(m.roleId) ?? new Map() }])),
    };
  }

  return {
    /** The subject's access, from the cache when fresh. */
    of(subject: Subject): Promise<SubjectAccess> {
      const k = key(subject);
      let entry = cache.get(k);
      if (!entry) {
        entry = load(subject);
        entry.catch(() => cache.clear());
        cache.set(k, entry);
      }
      return entry;
    },
    /**
     * The scopes RBAC permits on `resource`: without organization, the union of the global
     * roles' permissions; for an organization token, the organization role's alone (global
     * roles add nothing to it).
     */
    permitted(access: SubjectAccess, resource: string, organizationId: string | null): Set<string> {
      const source = organizationId ? access.organizations.get(organizationId)?.permissions : access.permissions;
      return source?.get(resource) ?? new Set();
    },
  };
}

export type AccessService = ReturnType<typeof createAccessService>;
