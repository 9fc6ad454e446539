import type { Knex } from 'knex';

import type { Db } from '../db/knex.js';
import { toIso } from '../db/knex.js';
import { nowIso } from '../lib/time.js';
import { keysetPage, type PageOf, type PageRequest } from './keyset.js';

export type SigningAlg = 'RS256' | 'ES256' | 'EdDSA';

export interface ResourceRecord {
  id: string;
  identifier: string;
  name: string | null;
  scopes: string[];
  accessTokenTtl: number | null;
  signingAlg: SigningAlg;
  /** Scopes are granted only when the subject's roles permit them. */
  rbac: boolean;
  createdAt: string;
  updatedAt: string;
}

interface Row {
  id: string;
  identifier: string;
  name: string | null;
  scopes: string;
  access_token_ttl: number | null;
  signing_alg: SigningAlg;
  rbac: boolean | number;
  created_at: string;
  updated_at: string;
}

/** What a client is registered for: its resources (identifiers) and scopes. */
export interface ClientRegistration {
  resources: string[];
  scopes: string[];
}

/**
 * Rewrites a client's registration after a resource changed, given every resource's scopes as
 * they are now; undefined keeps it unchanged.
 */
export type ClientFit = (client: ClientRegistration, defined: Map<string, string[]>) => ClientRegistration | undefined;

export type ResourcePatch = Partial<Pick<ResourceRecord, 'name' | 'scopes' | 'accessTokenTtl' | 'signingAlg' | 'rbac'>>;

function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  return e.code === '23505' || /^SQLITE_CONSTRAINT_(PRIMARYKEY|UNIQUE)$/.test(e.code ?? '') || /UNIQUE constraint failed/.test(e.message ?? '');
}

/** Applies `fit` to every client registration (resources JSON array, space-separated scopes). */
async function fitClients(trx: Knex.Transaction, fit: ClientFit): Promise<number> {
  const defined = new Map((await trx('resource_servers').select<{ identifier: string; scopes: string }[]>('identifier', 'scopes')).map((r) => [r.identifier, r.scopes.split(' ').filter(Boolean)]));
  const clients = await trx('clients').select<{ id: string; resources: string; scopes: string }[]>('id', 'resources', 'scopes');
  let changed = 0;
  for (const c of clients) {
    const before = { resources: JSON.parse(c.resources) as string[], scopes: c.scopes.split(' ').filter(Boolean) };
    const after = fit(before, defined);
    if (!after || JSON.stringify(after) === JSON.stringify(before)) continue;
    await trx('clients').where({ id: c.id }).update({ resources: JSON.stringify(after.resources), scopes: after.scopes.join(' '), updated_at: nowIso() });
    changed++;
  }
  return changed;
}

function fromRow(r: Row): ResourceRecord {
  return {
    id: r.id,
    identifier: r.identifier,
    name: r.name,
    scopes: r.scopes.split(' ').filter(Boolean),
    accessTokenTtl: r.access_token_ttl === null ? null : Number(r.access_token_ttl),
    signingAlg: r.signing_alg,
    rbac: Boolean(r.rbac),
    createdAt: toIso(r.created_at) ?? r.created_at,
    updatedAt: toIso(r.updated_at) ?? r.updated_at,
  };
}

export function createResourcesRepository(db: Db) {
  return {
    /** Inserts a resource server; undefined when its identifier is taken. */
    async insert(r: Omit<ResourceRecord, 'createdAt' | 'updatedAt'>): Promise<ResourceRecord | undefined> {
      const now = nowIso();
      try {
        await db('resource_servers').insert({
          id: r.id,
          identifier: r.identifier,
          name: r.name,
          scopes: r.scopes.join(' '),
          access_token_ttl: r.accessTokenTtl,
          signing_alg: r.signingAlg,
          rbac: r.rbac,
          created_at: now,
          updated_at: now,
        });
      } catch (err) {
        if (isUniqueViolation(err)) return undefined;
        throw err;
      }
      return { ...r, createdAt: now, updatedAt: now };
    },
    async findById(id: string): Promise<ResourceRecord | undefined> {
      const row = await db('resource_servers').where({ id }).first<Row | undefined>();
      return row ? fromRow(row) : undefined;
    },
    /**
     * Changes a resource server in one transaction with what depends on its scopes: role
     * permissions on `removedScopes` are deleted and client registrations are passed to `fit`.
     * Answers the updated record (undefined when it no longer exists) and how many clients changed.
     */
    async update(id: string, patch: ResourcePatch, removedScopes: string[], fit: ClientFit): Promise<{ record: ResourceRecord; clientsChanged: number } | undefined> {
      return db.transaction(async (trx) => {
        const row: Partial<Row> = { updated_at: nowIso() };
        if (patch.name !== undefined) row.name = patch.name;
        if (patch.scopes !== undefined) row.scopes = patch.scopes.join(' ');
        if (patch.accessTokenTtl !== undefined) row.access_token_ttl = patch.accessTokenTtl;
        if (patch.signingAlg !== undefined) row.signing_alg = patch.signingAlg;
        if (patch.rbac !== undefined) row.rbac = patch.rbac;
        if (!(await trx('resource_servers').where({ id }).update(row))) return undefined;
        if (removedScopes.length) await trx('role_permissions').where({ resource_id: id }).whereIn('scope', removedScopes).delete();
        const clientsChanged = removedScopes.length ? await fitClients(trx, fit) : 0;
        const updated = await trx('resource_servers').where({ id }).first<Row>();
        return { record: fromRow(updated), clientsChanged };
      });
    },
    /**
     * Deletes a resource server with the role permissions on it, and passes every client
     * registration to `fit` (in one transaction). False when it did not exist.
     */
    async delete(id: string, fit: ClientFit): Promise<boolean> {
      return db.transaction(async (trx) => {
        // role_permissions also cascade (foreign key); deleted explicitly so the order is clear.
        await trx('role_permissions').where({ resource_id: id }).delete();
        if (!(await trx('resource_servers').where({ id }).delete())) return false;
        await fitClients(trx, fit);
        return true;
      });
    },
    /**
     * Gives the resource server `from` the identifier `to`, with every client registration and
     * personal access token that names it, inside the caller's transaction `trx`. When `to` is
     * already registered, that registration is replaced by `from`'s, so the identifier exists
     * exactly once. False when `from` does not exist.
     */
    async moveIdentifier(trx: Db, from: string, to: string): Promise<boolean> {
      const source = await trx('resource_servers').where({ identifier: from }).first<Row | undefined>();
      if (!source || from === to) return Boolean(source);
      // A registration already holding `to` gives way to the one being moved, which keeps its
      // scopes and role permissions; references to either end up naming `to`.
      const taken = await trx('resource_servers').where({ identifier: to }).first<Row | undefined>();
      if (taken) {
        await trx('role_permissions').where({ resource_id: taken.id }).delete();
        await trx('resource_servers').where({ id: taken.id }).delete();
      }
      await trx('resource_servers').where({ id: source.id }).update({ identifier: to, updated_at: nowIso() });
      const rename = (json: string) => {
        const list = JSON.parse(json) as string[];
        return list.includes(from) ? JSON.stringify([...new Set(list.map((r) => (r === from ? to : r)))]) : undefined;
      };
      for (const c of await trx('clients').select<{ id: string; resources: string }[]>('id', 'resources')) {
        const resources = rename(c.resources);
        if (resources) await trx('clients').where({ id: c.id }).update({ resources, updated_at: nowIso() });
      }
      for (const t of await trx('personal_access_tokens').select<{ id: string; audience: string }[]>('id', 'audience')) {
        const audience = rename(t.audience);
        if (audience) await trx('personal_access_tokens').where({ id: t.id }).update({ audience });
      }
      return true;
    },
    async findByIdentifier(identifier: string): Promise<ResourceRecord | undefined> {
      const row = await db('resource_servers').where({ identifier }).first<Row | undefined>();
      return row ? fromRow(row) : undefined;
    },
    /** One page of resource servers, newest first (keyset on created_at, id); `identifier` narrows to one. */
    async page(request: PageRequest & { filters?: { identifier?: string | undefined } }): Promise<PageOf<ResourceRecord>> {
      const q = db('resource_servers').select('*');
      if (request.filters?.identifier !== undefined) void q.where('identifier', request.filters.identifier);
      return keysetPage(db, q, { at: 'created_at', id: 'id' }, request, fromRow, (r) => ({ at: r.createdAt, id: r.id }));
    },
    async list(): Promise<ResourceRecord[]> {
      return (await db('resource_servers').select<Row[]>('*').orderBy('identifier')).map(fromRow);
    },
  };
}

export type ResourcesRepository = ReturnType<typeof createResourcesRepository>;
