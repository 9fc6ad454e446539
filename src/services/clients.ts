import { randomBytes } from 'node:crypto';

import { BoundedCache } from '../lib/lru.js';
import { absoluteUri, httpUrl, scopeToken, unique, webOrigin } from '../lib/validate.js';
import type { ClientRecord, ClientsRepository, TokenAuthMethod } from '../repositories/clients.js';
import type { ResourcesRepository } from '../repositories/resources.js';
import { diff, type AuditActor, type AuditService } from './audit.js';
import type { ChangeFeed } from './change-feed.js';
import { backchannelLogoutMetadata, backchannelLogoutProviderMetadata, backchannelLogoutRegistration, type BackchannelLogoutInput } from './client-backchannel.js';
import { ValidationError } from './errors.js';
import { randomSecret, type Secrets } from './secrets.js';
import type { PageRequest } from '../repositories/keyset.js';

/** The account page's own OIDC client (routes/account-session.ts), created at start. */
export const ACCOUNT_CLIENT_ID = 'latch-account';

export const GRANT_TYPES = ['authorization_code', 'refresh_token', 'client_credentials', 'device_code', 'token_exchange'] as const;
/** RFC 8693 §2.1: the grant_type value of token exchange (`token_exchange` at the CLI and the admin API). */
export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
/** RFC 8628 §3.4: the registered short name `device_code` is this grant type at the token endpoint. */
export const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
/** Registered grant names whose protocol value is a URN. */
const GRANT_TYPE_VALUES: Record<string, string> = { token_exchange: TOKEN_EXCHANGE_GRANT, device_code: DEVICE_CODE_GRANT };
export const AUTH_METHODS: TokenAuthMethod[] = ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none'];
const OIDC_SCOPES = ['openid', 'profile', 'email', 'roles', 'organizations'];
/** OpenID Connect scopes (and offline_access): a client may hold them without any resource. */
export const OIDC_SCOPE_SET = new Set([...OIDC_SCOPES, 'offline_access']);

export interface CreateClientInput extends BackchannelLogoutInput {
  name: string;
  grants?: string[] | undefined;
  redirectUris?: string[] | undefined;
  postLogoutRedirectUris?: string[] | undefined;
  scopes?: string[] | undefined;
  resources?: string[] | undefined;
  isPublic?: boolean | undefined;
  firstParty?: boolean | undefined;
  webOrigins?: string[] | undefined;
  authMethod?: string | undefined;
  jwksUri?: string | undefined;
  /** Token exchange: resources whose access tokens the client may exchange (required with that grant). */
  exchangeSubjectAudiences?: string[] | undefined;
  /** With the device_code grant: a confidential client (with a secret) rather than a public one. */
  secret?: boolean | undefined;
  /** RFC 9126 §6 `require_pushed_authorization_requests`. */
  requirePar?: boolean | undefined;
  /** RFC 9449 §5.2 `dpop_bound_access_tokens`. */
  requireDpop?: boolean | undefined;
}

export interface CreatedClient {
  client_id: string;
  client_secret?: string;
  client: ClientRecord;
}

/** The metadata oidc-provider receives for a client (RFC 7591 names plus Latch's extras). */
export type ProviderClientMetadata = Record<string, unknown> & { client_id: string };

export function toProviderMetadata(c: ClientRecord): ProviderClientMetadata {
  const metadata: ProviderClientMetadata = {
    client_id: c.id,
    client_name: c.name,
    grant_types: c.grantTypes.map((g) => GRANT_TYPE_VALUES[g] ?? g),
    response_types: c.grantTypes.includes('authorization_code') ? ['code'] : [],
    redirect_uris: c.redirectUris,
    post_logout_redirect_uris: c.postLogoutRedirectUris,
    token_endpoint_auth_method: c.tokenEndpointAuthMethod,
    // oidc-provider's `scope` may hold only OpenID Connect scopes; it bounds what the
    // authorization endpoint grants. With none registered, `openid` alone (which a client without
    // the authorization_code grant cannot use) keeps the allow-list from being empty, i.e. open.
    scope: c.scopes.filter((s) => OIDC_SCOPE_SET.has(s)).join(' ') || 'openid',
    // Every scope the client may be granted, resource scopes included (see getResourceServerInfo).
    allowed_scopes: c.scopes,
    web_origins: c.webOrigins,
    first_party: c.firstParty,
    allowed_resources: c.resources,
    exchange_subject_audiences: c.exchangeSubjectAudiences,
    require_pushed_authorization_requests: Boolean(c.requirePar),
    dpop_bound_access_tokens: Boolean(c.requireDpop),
    ...backchannelLogoutProviderMetadata(c),
  };
  // oidc-provider compares the presented secret with this value through our
  // compareClientSecret override: it is the HMAC, never the secret itself.
  if (c.secretHash && (c.tokenEndpointAuthMethod === 'client_secret_basic' || c.tokenEndpointAuthMethod === 'client_secret_post')) {
    metadata.client_secret = c.secretHash;
  }
  if (c.jwksUri) metadata.jwks_uri = c.jwksUri;
  return metadata;
}

/** The public shape of a client (CLI and admin API; never the secret or its HMAC), without its id field. */
export function describeClient(c: ClientRecord) {
  // Shown only while the rotated secret still works.
  const overlapUntil = c.previousSecretExpiresAt && Date.parse(c.previousSecretExpiresAt) > Date.now() ? c.previousSecretExpiresAt : null;
  return {
    name: c.name,
    grant_types: c.grantTypes,
    redirect_uris: c.redirectUris,
    post_logout_redirect_uris: c.postLogoutRedirectUris,
    scope: c.scopes.join(' '),
    resources: c.resources,
    web_origins: c.webOrigins,
    exchange_subject_audiences: c.exchangeSubjectAudiences,
    token_endpoint_auth_method: c.tokenEndpointAuthMethod,
    jwks_uri: c.jwksUri,
    public: c.isPublic,
    first_party: c.firstParty,
    require_pushed_authorization_requests: Boolean(c.requirePar),
    dpop_bound_access_tokens: Boolean(c.requireDpop),
    ...backchannelLogoutMetadata(c),
    enabled: c.enabled,
    previous_secret_expires_at: overlapUntil,
    created_at: c.createdAt,
    updated_at: c.updatedAt,
  };
}

/** A client as the admin API shows it (and its audit events record it): `id` is the client_id; never the secret or its HMAC. */
export const describeApiClient = (c: ClientRecord) => ({ id: c.id, ...describeClient(c) });

/**
 * Clients: registration (secrets generated, shown once, stored as HMAC) and the cached lookup
 * oidc-provider uses on every request. A change anywhere clears every process's cache through
 * the change feed.
 */
/**
 * 128 random bits, base64url. Never led by `-`: an id is a command-line argument (`latch clients
 * disable ID`), and one that looks like a flag would be refused there.
 */
function newClientId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

/** `production`: NODE_ENV=production, where a back-channel logout URI must be https. */
export function createClientService(deps: { clients: ClientsRepository; resources: ResourcesRepository; secrets: Secrets; audit: AuditService; feed?: ChangeFeed; production: boolean }) {
  const { clients, resources, secrets } = deps;
  const cache = new BoundedCache<string, ProviderClientMetadata | null>(10_000);
  // Secret rotation with overlap: current HMAC → the previous HMAC and until when it is accepted.
  // Filled by findMetadata (which oidc-provider calls before comparing a secret), cleared with the cache.
  const overlaps = new BoundedCache<string, { previous: string; until: number }>(10_000);
  deps.feed?.on('clients', () => {
    cache.clear();
    overlaps.clear();
  });

  /**
   * `defaultToResourceScopes`: a new client registered without scopes may be granted every scope
   * its resources have now (as well as the OpenID Connect defaults of its grants), so that what
   * it asks for later, a refresh included, is not refused as invalid_scope (RFC 6749 §3.3).
   */
  async function validate(input: CreateClientInput, defaultToResourceScopes = false) {
    const name = input.name?.trim();
    if (!name) throw new ValidationError('name', 'is required');
    if (name.length > 255) throw new ValidationError('name', 'must be at most 255 characters');

    // http(s) only: oidc-provider treats Latch clients as application_type "web", whose redirect
    // URIs must be web URLs (javascript:, data:, custom schemes are refused when it loads the
    // client). Refuse them here rather than register a client no sign-in can ever use.
    const redirectUris = unique((input.redirectUris ?? []).map((u) => httpUrl('redirect-uri', u)));
    const postLogoutRedirectUris = unique((input.postLogoutRedirectUris ?? []).map((u) => httpUrl('post-logout-redirect-uri', u)));
    const grants = unique(input.grants?.length ? input.grants : redirectUris.length ? ['authorization_code', 'refresh_token'] : ['client_credentials']);
    for (const g of grants) {
      if (!(GRANT_TYPES as readonly string[]).includes(g)) throw new ValidationError('grant', `must be one of ${GRANT_TYPES.join(', ')} (got "${g}")`);
    }
    if (grants.includes('authorization_code') && redirectUris.length === 0) {
      throw new ValidationError('redirect-uri', 'is required for the authorization_code grant');
    }
    if (grants.includes('refresh_token') && !grants.includes('authorization_code') && !grants.includes('device_code')) {
      throw new ValidationError('grant', 'refresh_token needs authorization_code or device_code');
    }
    // A device (a TV, a CLI) cannot keep a secret: a device_code client is public unless one is asked for.
    const wantsPublic = input.isPublic ?? (grants.includes('device_code') && !input.secret && !input.authMethod);
    if (wantsPublic && input.secret) throw new ValidationError('secret', 'a public client has no secret');

    let authMethod = (input.authMethod ?? (wantsPublic ? 'none' : 'client_secret_basic')) as TokenAuthMethod;
    if (!AUTH_METHODS.includes(authMethod)) throw new ValidationError('auth-method', `must be one of ${AUTH_METHODS.join(', ')} (got "${String(input.authMethod)}")`);
    const isPublic = Boolean(wantsPublic) || authMethod === 'none';
    if (isPublic && authMethod !== 'none') throw new ValidationError('auth-method', 'a public client authenticates with none');
    authMethod = isPublic ? 'none' : authMethod;
    if (isPublic && grants.includes('client_credentials')) throw new ValidationError('grant', 'client_credentials needs a confidential client');
    // RFC 8693 §2.1: the exchanging party authenticates (it acts for the user on its own credentials).
    if (isPublic && grants.includes('token_exchange')) throw new ValidationError('grant', 'token_exchange needs a confidential client');
    const exchangeSubjectAudiences = unique((input.exchangeSubjectAudiences ?? []).map((a) => absoluteUri('exchange-subject-audience', a)));
    if (grants.includes('token_exchange') && exchangeSubjectAudiences.length === 0) throw new ValidationError('exchange-subject-audience', 'is required for the token_exchange grant');
    if (!grants.includes('token_exchange') && exchangeSubjectAudiences.length > 0) throw new ValidationError('exchange-subject-audience', 'needs the token_exchange grant');
    const jwksUri = input.jwksUri ? httpUrl('jwks-uri', input.jwksUri) : null;
    if (authMethod === 'private_key_jwt' && !jwksUri) throw new ValidationError('jwks-uri', 'is required with --auth-method private_key_jwt');

    const resourceIds = unique((input.resources ?? []).map((r) => absoluteUri('resource', r)));
    const resourceScopes = new Set<string>();
    for (const id of resourceIds) {
      const rs = await resources.findByIdentifier(id);
      if (!rs) throw new ValidationError('resource', `"${id}" is not a registered resource (create it with \`latch resources create\`)`);
      rs.scopes.forEach((s) => resourceScopes.add(s));
    }

    const signsIn = grants.includes('authorization_code') || grants.includes('device_code');
    const defaultScopes = [
      ...(signsIn ? [...OIDC_SCOPES, ...(grants.includes('refresh_token') ? ['offline_access'] : [])] : []),
      ...(defaultToResourceScopes ? resourceScopes : []),
    ];
    const scopes = unique((input.scopes?.length ? input.scopes.flatMap((s) => s.split(/\s+/)).filter(Boolean) : defaultScopes).map((s) => scopeToken('scope', s)));
    for (const s of scopes) {
      if (!OIDC_SCOPE_SET.has(s) && !resourceScopes.has(s)) {
        throw new ValidationError('scope', `"${s}" is neither an OpenID Connect scope nor a scope of the client's resources`);
      }
    }

    const webOrigins = unique((input.webOrigins ?? []).map((o) => webOrigin('web-origin', o)));
    const backchannel = backchannelLogoutRegistration(input, deps.production);
    return { name, redirectUris, postLogoutRedirectUris, grants, authMethod, isPublic, jwksUri, resourceIds, scopes, webOrigins, exchangeSubjectAudiences, backchannel };
  }

  /** The stored registration for validated input (everything but id, secret and enabled). */
  const registration = (v: Awaited<ReturnType<typeof validate>>, input: CreateClientInput) => ({
    name: v.name,
    grantTypes: v.grants,
    redirectUris: v.redirectUris,
    postLogoutRedirectUris: v.postLogoutRedirectUris,
    scopes: v.scopes,
    resources: v.resourceIds,
    webOrigins: v.webOrigins,
    exchangeSubjectAudiences: v.exchangeSubjectAudiences,
    tokenEndpointAuthMethod: v.authMethod,
    jwksUri: v.jwksUri,
    isPublic: v.isPublic,
    firstParty: Boolean(input.firstParty),
    requirePar: Boolean(input.requirePar),
    requireDpop: Boolean(input.requireDpop),
    ...v.backchannel,
  });

  return {
    /**
     * The registration `input` would be given, validated as `create` does, for a caller that
     * writes it itself in its own transaction (an import keeps the app's id and secret).
     */
    async validateRegistration(input: CreateClientInput): Promise<Omit<ClientRecord, 'id' | 'secretHash' | 'enabled' | 'createdAt' | 'updatedAt'>> {
      return registration(await validate(input, true), input);
    },

    /** Registers a client (recorded as `client.create`); its secret is returned once, here. */
    async create(input: CreateClientInput, by: AuditActor): Promise<CreatedClient> {
      const v = await validate(input, true);
      const secret = v.isPublic || v.authMethod === 'private_key_jwt' ? undefined : randomSecret(32);
      const client = await clients.insert({
        id: newClientId(),
        secretHash: secret ? secrets.hashClientSecret(secret) : null,
        enabled: true,
        ...registration(v, input),
      });
      await deps.feed?.publish('clients');
      await deps.audit.recordBy('client.create', client.id, by, { after: describeApiClient(client) });
      return { client_id: client.id, ...(secret ? { client_secret: secret } : {}), client };
    },

    /**
     * Creates or updates a client Latch itself relies on, under a fixed id (the account page's
     * `latch-account`): its registration follows the code, e.g. new URIs when ISSUER changed.
     */
    async ensureBuiltIn(id: string, input: CreateClientInput): Promise<void> {
      const v = await validate(input);
      const want = registration(v, input);
      const existing = await clients.findById(id);
      if (!existing) {
        try {
          await clients.insert({ id, secretHash: null, enabled: true, ...want });
        } catch (err) {
          // Another instance starting at the same moment inserted it first.
          if (!(await clients.findById(id))) throw err;
          return;
        }
      } else {
        const same = (Object.keys(want) as (keyof typeof want)[]).every((k) => JSON.stringify(existing[k]) === JSON.stringify(want[k]));
        // An administrator may have disabled it (`latch clients disable`): that choice stays.
        if (same) return;
        await clients.update(id, want);
      }
      await deps.feed?.publish('clients');
    },

    /** Enables or disables a client; false when it does not exist. Only a change is an event. */
    async setEnabled(id: string, enabled: boolean, by: AuditActor): Promise<boolean> {
      const existing = await clients.findById(id);
      if (!existing) return false;
      const ok = await clients.update(id, { enabled });
      if (ok) await deps.feed?.publish('clients');
      if (ok && existing.enabled !== enabled) await deps.audit.recordBy(`client.${enabled ? 'enable' : 'disable'}`, id, by, { before: { enabled: existing.enabled }, after: { enabled } });
      return ok;
    },

    async delete(id: string, by: AuditActor): Promise<boolean> {
      const existing = await clients.findById(id);
      if (!existing) return false;
      const ok = await clients.delete(id);
      if (ok) await deps.feed?.publish('clients');
      // Its roles and memberships went with it (foreign keys): what tokens carry changed.
      if (ok) await deps.feed?.publish('rbac');
      if (ok) await deps.audit.recordBy('client.delete', id, by, { before: describeApiClient(existing) });
      return ok;
    },

    list: () => clients.list(),
    page: (request: PageRequest) => clients.page(request),
    findById: (id: string) => clients.findById(id),

    /** oidc-provider's client lookup: served from memory after the first read. */
    async findMetadata(id: string): Promise<ProviderClientMetadata | undefined> {
      const cached = cache.get(id);
      if (cached !== undefined) return cached ?? undefined;
      const record = await clients.findById(id);
      const metadata = record?.enabled ? toProviderMetadata(record) : null;
      if (metadata && record?.secretHash && record.previousSecretHash && record.previousSecretExpiresAt) {
        overlaps.set(record.secretHash, { previous: record.previousSecretHash, until: Date.parse(record.previousSecretExpiresAt) });
      }
      cache.set(id, metadata);
      return metadata ?? undefined;
    },

    /**
     * Drops one client's cached metadata: its next lookup reads the database. For a decision that
     * must not rest on a cache the change feed has not cleared yet (a back-channel logout queued
     * for a client registered a moment ago).
     */
    forget(id: string): void {
      cache.delete(id);
    },

    /** The current secret, or the previous one while its rotation overlap lasts. */
    verifySecret(presented: string, storedHash: string): boolean {
      if (secrets.verifyClientSecret(presented, storedHash)) return true;
      const overlap = overlaps.get(storedHash);
      return Boolean(overlap && overlap.until > Date.now() && secrets.verifyClientSecret(presented, overlap.previous));
    },

    /**
     * Changes a client's registration (fields not given keep their value; the secret, the
     * authentication method and public/confidential do not change here).
     */
    async update(id: string, patch: Omit<Partial<CreateClientInput>, 'isPublic' | 'authMethod' | 'jwksUri'> & { jwksUri?: string | null | undefined }, by: AuditActor): Promise<ClientRecord | undefined> {
      const existing = await clients.findById(id);
      if (!existing) return undefined;
      const input: CreateClientInput = {
        name: patch.name ?? existing.name,
        grants: patch.grants ?? existing.grantTypes,
        redirectUris: patch.redirectUris ?? existing.redirectUris,
        postLogoutRedirectUris: patch.postLogoutRedirectUris ?? existing.postLogoutRedirectUris,
        scopes: patch.scopes ?? existing.scopes,
        resources: patch.resources ?? existing.resources,
        webOrigins: patch.webOrigins ?? existing.webOrigins,
        firstParty: patch.firstParty ?? existing.firstParty,
        // Dropping the grant drops its subject audiences with it.
        exchangeSubjectAudiences: patch.exchangeSubjectAudiences ?? ((patch.grants ?? existing.grantTypes).includes('token_exchange') ? existing.exchangeSubjectAudiences : []),
        requirePar: patch.requirePar ?? existing.requirePar,
        requireDpop: patch.requireDpop ?? existing.requireDpop,
        ...backchannelLogoutRegistration(patch, deps.production, existing),
        jwksUri: patch.jwksUri === undefined ? (existing.jwksUri ?? undefined) : (patch.jwksUri ?? undefined),
        isPublic: existing.isPublic,
        authMethod: existing.tokenEndpointAuthMethod,
      };
      // An empty scope list means "none" here, not the defaults of a new client.
      const v = await validate({ ...input, scopes: input.scopes?.length ? input.scopes : undefined });
      const reg = registration(v, input);
      if (patch.scopes && patch.scopes.length === 0) reg.scopes = [];
      await clients.update(id, reg);
      await deps.feed?.publish('clients');
      const updated = await clients.findById(id);
      if (updated) await deps.audit.recordChanges('client.update', id, by, diff(describeApiClient(existing), describeApiClient(updated), ['updated_at']));
      return updated;
    },

    /**
     * A new secret (returned once). With `overlapSeconds` > 0 the previous one keeps working
     * that long (the previous HMAC is stored with its end), so deployments switch without downtime.
     */
    async rotateSecret(id: string, overlapSeconds: number, by: AuditActor): Promise<{ client: ClientRecord; secret: string } | undefined> {
      const existing = await clients.findById(id);
      if (!existing) return undefined;
      if (!existing.secretHash || (existing.tokenEndpointAuthMethod !== 'client_secret_basic' && existing.tokenEndpointAuthMethod !== 'client_secret_post')) {
        throw new ValidationError('client', 'has no client secret (public or private_key_jwt client)');
      }
      const secret = randomSecret(32);
      const keep = overlapSeconds > 0;
      await clients.update(id, {
        secretHash: secrets.hashClientSecret(secret),
        previousSecretHash: keep ? existing.secretHash : null,
        previousSecretExpiresAt: keep ? new Date(Date.now() + overlapSeconds * 1000).toISOString() : null,
      });
      await deps.feed?.publish('clients');
      await deps.audit.recordBy('client.rotate_secret', id, by, { overlap_seconds: overlapSeconds });
      return { client: (await clients.findById(id))!, secret };
    },
  };
}

export type ClientService = ReturnType<typeof createClientService>;
