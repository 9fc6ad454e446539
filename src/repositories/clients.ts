import type { Db } from '../db/knex.js';
import { isStorableKey, toIso } from '../db/knex.js';
import { nowIso } from '../lib/time.js';
import { keysetPage, type PageOf, type PageRequest } from './keyset.js';

export type TokenAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt' | 'none';

export interface ClientRecord {
  id: string;
  name: string;
  secretHash: string | null;
  grantTypes: string[];
  redirectUris: string[];
  postLogoutRedirectUris: string[];
  scopes: string[];
  resources: string[];
  webOrigins: string[];
  /** Token exchange (RFC 8693): resources whose access tokens the client may present as subject_token. */
  exchangeSubjectAudiences: string[];
  tokenEndpointAuthMethod: TokenAuthMethod;
  jwksUri: string | null;
  isPublic: boolean;
  firstParty: boolean;
  enabled: boolean;
  /** RFC 9126 §6: authorization requests only through pushed authorization requests. */
  requirePar?: boolean;
  /** RFC 9449 §5.2 `dpop_bound_access_tokens`: every token request carries a DPoP proof. */
  requireDpop?: boolean;
  /** OIDC Back-Channel Logout 1.0 §2.2 (services/client-backchannel.ts). */
  backchannelLogoutUri?: string | null;
  backchannelLogoutSessionRequired?: boolean;
  /** HMAC of the secret before the last rotation, accepted until previousSecretExpiresAt (rotation overlap). */
  previousSecretHash?: string | null;
  previousSecretExpiresAt?: string | null;
  createdAt: string;
  updatedAt: string;
}

interface Row {
  id: string;
  name: string;
  secret_hash: string | null;
  grant_types: string;
  redirect_uris: string;
  post_logout_redirect_uris: string;
  scopes: string;
  resources: string;
  web_origins: string;
  exchange_subject_audiences?: string | null;
  token_endpoint_auth_method: TokenAuthMethod;
  jwks_uri: string | null;
  is_public: boolean | number;
  first_party: boolean | number;
  enabled: boolean | number;
  require_par?: boolean | number;
  require_dpop?: boolean | number;
  backchannel_logout_uri?: string | null;
  backchannel_logout_session_required?: boolean | number;
  previous_secret_hash?: string | null;
  previous_secret_expires_at?: string | null;
  created_at: string;
  updated_at: string;
}

const list = (s: string): string[] => JSON.parse(s) as string[];
const words = (s: string): string[] => s.split(' ').filter(Boolean);

function fromRow(r: Row): ClientRecord {
  return {
    id: r.id,
    name: r.name,
    secretHash: r.secret_hash,
    grantTypes: list(r.grant_types),
    redirectUris: list(r.redirect_uris),
    postLogoutRedirectUris: list(r.post_logout_redirect_uris),
    scopes: words(r.scopes),
    resources: list(r.resources),
    webOrigins: list(r.web_origins),
    exchangeSubjectAudiences: r.exchange_subject_audiences ? list(r.exchange_subject_audiences) : [],
    tokenEndpointAuthMethod: r.token_endpoint_auth_method,
    jwksUri: r.jwks_uri,
    isPublic: Boolean(r.is_public),
    firstParty: Boolean(r.first_party),
    enabled: Boolean(r.enabled),
    requirePar: Boolean(r.require_par),
    requireDpop: Boolean(r.require_dpop),
    backchannelLogoutUri: r.backchannel_logout_uri ?? null,
    backchannelLogoutSessionRequired: r.backchannel_logout_session_required === undefined ? true : Boolean(r.backchannel_logout_session_required),
    previousSecretHash: r.previous_secret_hash ?? null,
    previousSecretExpiresAt: r.previous_secret_expires_at ?? null,
    createdAt: toIso(r.created_at) ?? r.created_at,
    updatedAt: toIso(r.updated_at) ?? r.updated_at,
  };
}

function toRow(c: Partial<ClientRecord>): Partial<Row> {
  const row: Partial<Row> = {};
  if (c.id !== undefined) row.id = c.id;
  if (c.name !== undefined) row.name = c.name;
  if (c.secretHash !== undefined) row.secret_hash = c.secretHash;
  if (c.grantTypes) row.grant_types = JSON.stringify(c.grantTypes);
  if (c.redirectUris) row.redirect_uris = JSON.stringify(c.redirectUris);
  if (c.postLogoutRedirectUris) row.post_logout_redirect_uris = JSON.stringify(c.postLogoutRedirectUris);
  if (c.scopes) row.scopes = c.scopes.join(' ');
  if (c.resources) row.resources = JSON.stringify(c.resources);
  if (c.webOrigins) row.web_origins = JSON.stringify(c.webOrigins);
  if (c.exchangeSubjectAudiences) row.exchange_subject_audiences = JSON.stringify(c.exchangeSubjectAudiences);
  if (c.tokenEndpointAuthMethod) row.token_endpoint_auth_method = c.tokenEndpointAuthMethod;
  if (c.jwksUri !== undefined) row.jwks_uri = c.jwksUri;
  if (c.isPublic !== undefined) row.is_public = c.isPublic;
  if (c.firstParty !== undefined) row.first_party = c.firstParty;
  if (c.enabled !== undefined) row.enabled = c.enabled;
  if (c.requirePar !== undefined) row.require_par = c.requirePar;
  if (c.requireDpop !== undefined) row.require_dpop = c.requireDpop;
  if (c.backchannelLogoutUri !== undefined) row.backchannel_logout_uri = c.backchannelLogoutUri;
  if (c.backchannelLogoutSessionRequired !== undefined) row.backchannel_logout_session_required = c.backchannelLogoutSessionRequired;
  if (c.previousSecretHash !== undefined) row.previous_secret_hash = c.previousSecretHash;
  if (c.previousSecretExpiresAt !== undefined) row.previous_secret_expires_at = c.previousSecretExpiresAt;
  return row;
}

export function createClientsRepository(db: Db) {
  return {
    async insert(c: Omit<ClientRecord, 'createdAt' | 'updatedAt'>): Promise<ClientRecord> {
      const now = nowIso();
      await db('clients').insert({ ...toRow(c), created_at: now, updated_at: now });
      return { ...c, createdAt: now, updatedAt: now };
    },
    async findById(id: string): Promise<ClientRecord | undefined> {
      if (!isStorableKey(id)) return undefined;
      const row = await db('clients').where({ id }).first<Row | undefined>();
      return row ? fromRow(row) : undefined;
    },
    /** One page of clients, newest first (keyset on created_at, id). */
    async page(request: PageRequest): Promise<PageOf<ClientRecord>> {
      return keysetPage(db, db('clients').select('*'), { at: 'created_at', id: 'id' }, request, fromRow, (c) => ({ at: c.createdAt, id: c.id }));
    },
    async list(): Promise<ClientRecord[]> {
      const rows = await db('clients').select<Row[]>('*').orderBy('created_at');
      return rows.map(fromRow);
    },
    async update(id: string, patch: Partial<Omit<ClientRecord, 'id' | 'createdAt' | 'updatedAt'>>): Promise<boolean> {
      const n = await db('clients').where({ id }).update({ ...toRow(patch), updated_at: nowIso() });
      return n > 0;
    },
    async delete(id: string): Promise<boolean> {
      return (await db('clients').where({ id }).delete()) > 0;
    },
  };
}

export type ClientsRepository = ReturnType<typeof createClientsRepository>;
