import { randomUUID } from 'node:crypto';

import { absoluteUri, scopeToken, unique } from '../lib/validate.js';
import type { ClientFit, ResourcePatch, ResourceRecord, ResourcesRepository, SigningAlg } from '../repositories/resources.js';
import { diff, type AuditActor, type AuditService } from './audit.js';
import type { ChangeFeed } from './change-feed.js';
import { OIDC_SCOPE_SET } from './clients.js';
import { ConflictError, ValidationError } from './errors.js';
import type { PageRequest } from '../repositories/keyset.js';

export const RESOURCE_ALGS: SigningAlg[] = ['RS256', 'ES256', 'EdDSA'];

/** Longest access-token lifetime a resource may set: one year. */
export const MAX_RESOURCE_TTL = 31_536_000;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface CreateResourceInput {
  identifier: string;
  name?: string | undefined;
  scopes?: string[] | undefined;
  ttl?: number | undefined;
  alg?: string | undefined;
  rbac?: boolean | undefined;
}

/** A change of a resource server; fields not given keep their value (null name / ttl clear them). */
export interface UpdateResourceInput {
  name?: string | null | undefined;
  scopes?: string[] | undefined;
  ttl?: number | null | undefined;
  alg?: string | undefined;
  rbac?: boolean | undefined;
}

/** The public shape of a resource server (CLI and admin API). */
export function describeResource(r: ResourceRecord) {
  return { id: r.id, identifier: r.identifier, name: r.name, scopes: r.scopes, access_token_ttl: r.accessTokenTtl, alg: r.signingAlg, rbac: r.rbac, created_at: r.createdAt, updated_at: r.updatedAt };
}

const CONTROL = /\p{Cc}/u;

function checkName(name: string | null | undefined): string | null | undefined {
  if (name === undefined || name === null) return name;
  const trimmed = name.trim();
  if (trimmed.length > 255) throw new ValidationError('name', 'must be at most 255 characters');
  // Control characters have no place in a label (and PostgreSQL text cannot hold U+0000).
  if (CONTROL.test(trimmed)) throw new ValidationError('name', 'must not contain control characters');
  return trimmed || null;
}

function checkAlg(alg: string): SigningAlg {
  if (!(RESOURCE_ALGS as string[]).includes(alg)) throw new ValidationError('alg', `must be one of ${RESOURCE_ALGS.join(', ')} (got "${alg}")`);
  return alg as SigningAlg;
}

function checkTtl(ttl: number | null | undefined): number | null | undefined {
  if (ttl !== undefined && ttl !== null && (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_RESOURCE_TTL)) {
    throw new ValidationError('ttl', `must be a whole number of seconds between 1 and ${MAX_RESOURCE_TTL}`);
  }
  return ttl;
}

const checkScopes = (scopes: string[]) => unique(scopes.flatMap((s) => s.split(/\s+/)).filter(Boolean).map((s) => scopeToken('scope', s)));

/**
 * After scopes of a resource went away (or the resource itself): clients lose the resource when
 * it no longer exists, and the gone scopes no other of their resources defines (OpenID Connect
 * scopes stay). Their other registered scopes are left as they are.
 */
function fitAfter(identifier: string, gone: Set<string>): ClientFit {
  return (client, defined) => {
    if (!client.resources.includes(identifier)) return undefined;
    const resources = client.resources.filter((r) => r !== identifier || defined.has(r));
    const offered = new Set(resources.flatMap((r) => defined.get(r) ?? []));
    const scopes = client.scopes.filter((s) => !gone.has(s) || offered.has(s) || OIDC_SCOPE_SET.has(s));
    return { resources, scopes };
  };
}

/**
 * Resource servers (RFC 8707 audiences), cached in memory for the token hot path. Each change is
 * recorded in the audit trail by `by`.
 */
export function createResourceService(deps: { resources: ResourcesRepository; audit: AuditService; feed?: ChangeFeed }) {
  const { resources, audit } = deps;
  let cache: Promise<Map<string, ResourceRecord>> | undefined;
  deps.feed?.on('resources', () => {
    cache = undefined;
  });

  const load = async () => new Map((await resources.list()).map((r) => [r.identifier, r]));

  /** By internal id (a UUID; anything else is simply not found). */
  const findById = async (id: string): Promise<ResourceRecord | undefined> => (UUID.test(id) ? resources.findById(id) : undefined);

  /** Drops this process's cache at once, and every other process's through the change feed. */
  async function changed(...more: ('rbac' | 'clients')[]): Promise<void> {
    cache = undefined;
    await deps.feed?.publish('resources');
    for (const topic of more) await deps.feed?.publish(topic);
  }

  return {
    async create(input: CreateResourceInput, by: AuditActor): Promise<ResourceRecord> {
      const identifier = absoluteUri('identifier', input.identifier?.trim() ?? '');
      if (identifier.length > 2048) throw new ValidationError('identifier', 'must be at most 2048 characters');
      if (CONTROL.test(identifier)) throw new ValidationError('identifier', 'must not contain control characters');
      const alg = checkAlg(input.alg ?? 'RS256');
      const ttl = checkTtl(input.ttl);
      const scopes = checkScopes(input.scopes ?? []);
      const name = checkName(input.name);
      const conflict = () => new ConflictError(`resource ${identifier} already exists`);
      if (await resources.findByIdentifier(identifier)) throw conflict();
      // The unique index decides when two requests create the same identifier at once.
      const created = await resources.insert({ id: randomUUID(), identifier, name: name ?? null, scopes, accessTokenTtl: ttl ?? null, signingAlg: alg, rbac: input.rbac ?? false });
      if (!created) throw conflict();
      await changed();
      await audit.recordBy('resource.create', created.id, by, { after: describeResource(created) });
      return created;
    },

    /**
     * Changes a resource server. Scopes removed from it are no longer granted in tokens issued
     * afterwards; role permissions on them are deleted and clients lose them unless another of
     * their resources defines them. Undefined when it does not exist.
     */
    async update(id: string, input: UpdateResourceInput, by: AuditActor): Promise<ResourceRecord | undefined> {
      const existing = await findById(id);
      if (!existing) return undefined;
      const patch: ResourcePatch = {};
      if (input.name !== undefined) patch.name = checkName(input.name) ?? null;
      if (input.scopes !== undefined) patch.scopes = checkScopes(input.scopes);
      if (input.ttl !== undefined) patch.accessTokenTtl = checkTtl(input.ttl) ?? null;
      if (input.alg !== undefined) patch.signingAlg = checkAlg(input.alg);
      if (input.rbac !== undefined) patch.rbac = input.rbac;
      if (!Object.keys(patch).length) return existing;
      const removed = patch.scopes ? existing.scopes.filter((s) => !patch.scopes!.includes(s)) : [];
      const result = await resources.update(id, patch, removed, fitAfter(existing.identifier, new Set(removed)));
      if (!result) return undefined;
      // What tokens carry changed: role permissions and client registrations lost the scopes.
      await changed(...(removed.length ? (['rbac', 'clients'] as const) : []));
      await audit.recordChanges('resource.update', id, by, diff(describeResource(existing), describeResource(result.record), ['updated_at']), { identifier: existing.identifier });
      return result.record;
    },

    /**
     * Deletes a resource server. Its role permissions go with it; clients registered for it lose
     * it and the scopes only it defined (tokens already issued for it stay valid until they expire).
     */
    async delete(id: string, by: AuditActor): Promise<boolean> {
      const existing = await findById(id);
      if (!existing) return false;
      if (!(await resources.delete(id, fitAfter(existing.identifier, new Set(existing.scopes))))) return false;
      await changed('rbac', 'clients');
      await audit.recordBy('resource.delete', id, by, { before: describeResource(existing) });
      return true;
    },

    list: () => resources.list(),
    page: (request: PageRequest & { filters?: { identifier?: string | undefined } }) => resources.page(request),
    findByIdentifier: (identifier: string) => resources.findByIdentifier(identifier),
    findById,
    /** Cached lookup by identifier. */
    async get(identifier: string): Promise<ResourceRecord | undefined> {
      cache ??= load().catch((err: unknown) => {
        cache = undefined;
        throw err;
      });
      return (await cache).get(identifier);
    },
  };
}

export type ResourceService = ReturnType<typeof createResourceService>;
