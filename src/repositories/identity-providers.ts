import type { Db } from '../db/knex.js';
import { toIso } from '../db/knex.js';
import { nowIso } from '../lib/time.js';
import { keysetPage, type PageOf, type PageRequest } from './keyset.js';

export type IdentityProviderKind = 'oidc' | 'github';
export type LinkPolicy = 'auto' | 'ask' | 'never';

/** An upstream identity provider, without its client secret. */
export interface IdentityProviderRecord {
  name: string;
  displayName: string;
  kind: IdentityProviderKind;
  issuer: string | null;
  clientId: string;
  scopes: string[];
  allowedDomains: string[];
  linkPolicy: LinkPolicy;
  enabled: boolean;
  apiUrl: string | null;
  webUrl: string | null;
  createdAt: string;
  updatedAt: string;
}

/** The stored row's view: the record with its client secret as stored (encrypted). */
export interface StoredIdentityProvider extends IdentityProviderRecord {
  clientSecretEncrypted: string;
}

export type IdentityProviderPatch = Partial<Omit<StoredIdentityProvider, 'name' | 'kind' | 'createdAt' | 'updatedAt'>>;

interface Row {
  name: string;
  display_name: string;
  kind: IdentityProviderKind;
  issuer: string | null;
  client_id: string;
  client_secret: string;
  scopes: string;
  allowed_domains: string;
  link_policy: LinkPolicy;
  enabled: boolean | number;
  api_url: string | null;
  web_url: string | null;
  created_at: string;
  updated_at: string;
}

const words = (s: string) => s.split(' ').filter(Boolean);

function fromRow(r: Row): StoredIdentityProvider {
  return {
    name: r.name,
    displayName: r.display_name,
    kind: r.kind,
    issuer: r.issuer,
    clientId: r.client_id,
    clientSecretEncrypted: r.client_secret,
    scopes: words(r.scopes),
    allowedDomains: words(r.allowed_domains),
    linkPolicy: r.link_policy,
    enabled: Boolean(r.enabled),
    apiUrl: r.api_url,
    webUrl: r.web_url,
    createdAt: toIso(r.created_at) ?? r.created_at,
    updatedAt: toIso(r.updated_at) ?? r.updated_at,
  };
}

function toRow(p: IdentityProviderPatch): Partial<Row> {
  const row: Partial<Row> = {};
  if (p.displayName !== undefined) row.display_name = p.displayName;
  if (p.issuer !== undefined) row.issuer = p.issuer;
  if (p.clientId !== undefined) row.client_id = p.clientId;
  if (p.clientSecretEncrypted !== undefined) row.client_secret = p.clientSecretEncrypted;
  if (p.scopes !== undefined) row.scopes = p.scopes.join(' ');
  if (p.allowedDomains !== undefined) row.allowed_domains = p.allowedDomains.join(' ');
  if (p.linkPolicy !== undefined) row.link_policy = p.linkPolicy;
  if (p.enabled !== undefined) row.enabled = p.enabled;
  if (p.apiUrl !== undefined) row.api_url = p.apiUrl;
  if (p.webUrl !== undefined) row.web_url = p.webUrl;
  return row;
}

function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  return e.code === '23505' || /^SQLITE_CONSTRAINT_(PRIMARYKEY|UNIQUE)$/.test(e.code ?? '') || /UNIQUE constraint failed/.test(e.message ?? '');
}

/** A link removed together with its provider. */
export interface RemovedLink {
  id: string;
  accountId: string;
  subject: string;
}

/** The identity_providers table. */
export function createIdentityProvidersRepository(db: Db) {
  return {
    /** Inserts a provider; undefined when its name is taken. */
    async insert(p: Omit<StoredIdentityProvider, 'createdAt' | 'updatedAt'>): Promise<StoredIdentityProvider | undefined> {
      const now = nowIso();
      try {
        await db('identity_providers').insert({ ...toRow(p), name: p.name, kind: p.kind, created_at: now, updated_at: now });
      } catch (err) {
        if (isUniqueViolation(err)) return undefined;
        throw err;
      }
      return { ...p, createdAt: now, updatedAt: now };
    },
    async find(name: string): Promise<StoredIdentityProvider | undefined> {
      const row = await db('identity_providers').where({ name }).first<Row | undefined>();
      return row ? fromRow(row) : undefined;
    },
    /** Applies `patch`; the updated provider, or undefined when it does not exist. */
    async update(name: string, patch: IdentityProviderPatch): Promise<StoredIdentityProvider | undefined> {
      if (!(await db('identity_providers').where({ name }).update({ ...toRow(patch), updated_at: nowIso() }))) return undefined;
      return this.find(name);
    },
    /**
     * Deletes a provider and its links in one transaction; answers the links removed, or
     * undefined when the provider did not exist.
     */
    async delete(name: string): Promise<RemovedLink[] | undefined> {
      return db.transaction(async (trx) => {
        const links = await trx('federated_identities').where({ provider: name }).select<{ id: string; account_id: string; subject: string }[]>('id', 'account_id', 'subject');
        await trx('federated_identities').where({ provider: name }).delete();
        if (!(await trx('identity_providers').where({ name }).delete())) return undefined;
        return links.map((l) => ({ id: l.id, accountId: l.account_id, subject: l.subject }));
      });
    },
    /** Every provider, by name (the cache's source: a handful of rows). */
    async list(): Promise<StoredIdentityProvider[]> {
      return (await db('identity_providers').select<Row[]>('*').orderBy('name')).map(fromRow);
    },
    /** One page of providers, newest first (keyset on created_at, name). */
    async page(request: PageRequest): Promise<PageOf<StoredIdentityProvider>> {
      return keysetPage(db, db('identity_providers').select('*'), { at: 'created_at', id: 'name' }, request, fromRow, (p) => ({ at: p.createdAt, id: p.name }));
    },
  };
}

export type IdentityProvidersRepository = ReturnType<typeof createIdentityProvidersRepository>;
