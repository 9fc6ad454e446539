import { isLoopbackHost } from '../lib/loopback.js';
import { scopeToken, unique } from '../lib/validate.js';
import { GITHUB_API_URL, GITHUB_WEB_URL } from '../federation/upstream.js';
import type { IdentityProviderKind, IdentityProviderPatch, IdentityProviderRecord, IdentityProvidersRepository, LinkPolicy, StoredIdentityProvider } from '../repositories/identity-providers.js';
import type { PageRequest } from '../repositories/keyset.js';
import { diff, type AuditActor, type AuditService } from './audit.js';
import type { ChangeFeed } from './change-feed.js';
import { ConflictError, NotFoundError, ValidationError } from './errors.js';
import type { Secrets } from './secrets.js';

export const PROVIDER_KINDS: IdentityProviderKind[] = ['oidc', 'github'];
export const LINK_POLICIES: LinkPolicy[] = ['auto', 'ask', 'never'];
export const PROVIDER_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** Scopes asked of the upstream when none are configured. */
export const DEFAULT_SCOPES: Record<IdentityProviderKind, string[]> = { oidc: ['openid', 'email', 'profile'], github: ['read:user', 'user:email'] };
/** github.com; GitHub Enterprise Server (and tests) configure their own. */

/** A provider as the upstream flow needs it: with its client secret decrypted. Never output. */
export interface SignInProvider extends IdentityProviderRecord {
  clientSecret: string;
}

/** Fields of a new provider; names as the CLI's flags (errors name the flag). */
export interface CreateIdentityProviderInput {
  name: string;
  kind: string;
  displayName?: string | undefined;
  issuer?: string | null | undefined;
  clientId: string;
  clientSecret: string;
  scopes?: string[] | undefined;
  allowedDomains?: string[] | undefined;
  link?: string | undefined;
  enabled?: boolean | undefined;
  apiUrl?: string | null | undefined;
  webUrl?: string | null | undefined;
}

/** A change (PATCH): a given field replaces the value, an omitted one keeps it, the secret too. */
export type UpdateIdentityProviderInput = Partial<Omit<CreateIdentityProviderInput, 'name'>>;

/** The public shape of a provider (CLI and admin API): never the secret; with the callback to register upstream. */
export function describeIdentityProvider(p: IdentityProviderRecord, issuer: string) {
  return {
    id: p.name,
    name: p.name,
    display_name: p.displayName,
    kind: p.kind,
    issuer: p.issuer,
    client_id: p.clientId,
    scopes: p.scopes,
    allowed_domains: p.allowedDomains,
    link: p.linkPolicy,
    enabled: p.enabled,
    api_url: p.apiUrl,
    web_url: p.webUrl,
    redirect_uri: callbackUri(issuer, p.name),
    created_at: p.createdAt,
    updated_at: p.updatedAt,
  };
}

/** Where the upstream sends the browser back: what to register at the provider. */
export const callbackUri = (issuer: string, name: string) => `${issuer}/federation/callback/${name}`;

/**
 * Whether `email` may sign in through `provider`: any address when it lists no domains, otherwise
 * one whose domain (after the last `@`, case-insensitively) is exactly one of them.
 */
export function emailDomainAllowed(provider: Pick<IdentityProviderRecord, 'allowedDomains'>, email: string): boolean {
  if (provider.allowedDomains.length === 0) return true;
  const at = email.lastIndexOf('@');
  return at > 0 && provider.allowedDomains.includes(email.slice(at + 1).toLowerCase());
}

const CONTROL = /\p{Cc}/u;
const LABEL = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?';
const DOMAIN = new RegExp(`^(?=.{1,253}$)${LABEL}(?:\\.${LABEL})*$`);

function text(field: string, value: unknown, max: number): string {
  if (typeof value !== 'string') throw new ValidationError(field, 'must be a string');
  const trimmed = value.trim();
  if (!trimmed) throw new ValidationError(field, 'must not be empty');
  if (trimmed.length > max) throw new ValidationError(field, `must be at most ${max} characters`);
  if (CONTROL.test(trimmed)) throw new ValidationError(field, 'must not contain control characters');
  return trimmed;
}

/**
 * An upstream URL: absolute, without credentials, query or fragment, and https — plain http only
 * for 127.0.0.1 and localhost (tests, development), since the code, the tokens and the client
 * secret travel over it.
 */
export function upstreamUrl(field: string, value: unknown): string {
  const raw = text(field, value, 2048);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ValidationError(field, `must be an absolute https URL (got "${raw}")`);
  }
  if (url.username || url.password) throw new ValidationError(field, 'must not contain credentials');
  if (url.search || url.hash || raw.includes('#') || raw.includes('?')) throw new ValidationError(field, `must not contain a query or fragment (got "${raw}")`);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopbackHost(url.hostname))) throw new ValidationError(field, `must be an https URL; http only for 127.0.0.1 or localhost (got "${raw}")`);
  return raw;
}

/** A client secret, kept exactly as given (never trimmed: it is compared byte for byte upstream). */
function secretText(value: unknown): string {
  text('client-secret', value, 4096);
  return value as string;
}

const baseUrl = (field: string, value: unknown) => upstreamUrl(field, value).replace(/\/+$/, '');

/** Names the sign-in pages use as path segments beside the providers' (`/interaction/{uid}/federation/link`). */
export const RESERVED_PROVIDER_NAMES = ['link'];

function checkName(name: unknown): string {
  if (typeof name !== 'string' || !PROVIDER_NAME.test(name)) throw new ValidationError('name', 'must be 1 to 63 lower-case letters, digits and dashes, starting with a letter or digit');
  if (RESERVED_PROVIDER_NAMES.includes(name)) throw new ValidationError('name', `"${name}" is reserved`);
  return name;
}

function checkKind(kind: unknown): IdentityProviderKind {
  if (!(PROVIDER_KINDS as unknown[]).includes(kind)) throw new ValidationError('kind', `must be one of ${PROVIDER_KINDS.join(', ')} (got "${String(kind)}")`);
  return kind as IdentityProviderKind;
}

function checkLink(link: unknown): LinkPolicy {
  if (!(LINK_POLICIES as unknown[]).includes(link)) throw new ValidationError('link', `must be one of ${LINK_POLICIES.join(', ')} (got "${String(link)}")`);
  return link as LinkPolicy;
}

function checkScopes(kind: IdentityProviderKind, scopes: string[] | undefined): string[] {
  const list = unique((scopes ?? []).flatMap((s) => String(s).split(/\s+/)).filter(Boolean).map((s) => scopeToken('scope', s)));
  if (list.length === 0) return DEFAULT_SCOPES[kind];
  if (list.length > 50) throw new ValidationError('scope', 'must list at most 50 scopes');
  // Without openid the upstream issues no ID token, and no sign-in could be verified.
  if (kind === 'oidc' && !list.includes('openid')) throw new ValidationError('scope', 'must include openid for an oidc provider');
  return list;
}

function checkDomains(domains: string[] | undefined): string[] {
  const list = unique((domains ?? []).flatMap((d) => String(d).split(/[\s,]+/)).filter(Boolean).map((d) => d.toLowerCase()));
  for (const d of list) if (!DOMAIN.test(d)) throw new ValidationError('allowed-domain', `"${d}" is not a domain name (like example.com)`);
  if (list.length > 100) throw new ValidationError('allowed-domain', 'must list at most 100 domains');
  return list;
}

/** The kind-specific URLs after a create or update: issuer for oidc; api/web bases for github. */
function kindUrls(kind: IdentityProviderKind, issuer: string | null | undefined, apiUrl: string | null | undefined, webUrl: string | null | undefined) {
  if (kind === 'oidc') {
    if (apiUrl) throw new ValidationError('api-url', 'is only for kind github');
    if (webUrl) throw new ValidationError('web-url', 'is only for kind github');
    if (issuer === undefined || issuer === null || issuer === '') throw new ValidationError('issuer', 'is required for kind oidc');
    return { issuer: upstreamUrl('issuer', issuer), apiUrl: null, webUrl: null };
  }
  if (issuer) throw new ValidationError('issuer', 'is only for kind oidc');
  return { issuer: null, apiUrl: apiUrl ? baseUrl('api-url', apiUrl) : GITHUB_API_URL, webUrl: webUrl ? baseUrl('web-url', webUrl) : GITHUB_WEB_URL };
}

const public_ = ({ clientSecretEncrypted: _secret, ...record }: StoredIdentityProvider): IdentityProviderRecord => record;

/**
 * Upstream identity providers: CRUD for the CLI and the admin API (audited as `by`), and the
 * sign-in flow's cached view, refreshed in every process through the change feed.
 */
export function createIdentityProviderService(deps: { providers: IdentityProvidersRepository; secrets: Secrets; audit: AuditService; feed: Pick<ChangeFeed, 'on' | 'publish'>; issuer: string }) {
  const { providers, secrets, audit } = deps;
  let cache: Promise<Map<string, StoredIdentityProvider>> | undefined;
  deps.feed.on('identity_providers', () => {
    cache = undefined;
  });

  const cached = async () => {
    cache ??= providers
      .list()
      .then((list) => new Map(list.map((p) => [p.name, p])))
      .catch((err: unknown) => {
        cache = undefined;
        throw err;
      });
    return cache;
  };

  /** Drops this process's cache at once, and every other process's through the change feed. */
  async function changed(): Promise<void> {
    cache = undefined;
    await deps.feed.publish('identity_providers');
  }

  const view = (p: IdentityProviderRecord) => describeIdentityProvider(p, deps.issuer);
  const lookup = async (name: string) => (typeof name === 'string' && PROVIDER_NAME.test(name) ? providers.find(name) : undefined);

  return {
    async create(input: CreateIdentityProviderInput, by: AuditActor): Promise<IdentityProviderRecord> {
      const name = checkName(input.name);
      const kind = checkKind(input.kind);
      const urls = kindUrls(kind, input.issuer, input.apiUrl, input.webUrl);
      const record = {
        name,
        kind,
        displayName: input.displayName === undefined ? name : text('display-name', input.displayName, 255),
        clientId: text('client-id', input.clientId, 512),
        clientSecretEncrypted: secrets.encrypt(secretText(input.clientSecret)),
        scopes: checkScopes(kind, input.scopes),
        allowedDomains: checkDomains(input.allowedDomains),
        linkPolicy: input.link === undefined ? 'ask' : checkLink(input.link),
        enabled: input.enabled ?? true,
        ...urls,
      } satisfies Omit<StoredIdentityProvider, 'createdAt' | 'updatedAt'>;
      // The primary key decides when two requests create the same name at once.
      const created = await providers.insert(record);
      if (!created) throw new ConflictError(`identity provider ${name} already exists`);
      await changed();
      await audit.recordBy('identity_provider.create', name, by, { after: view(public_(created)) });
      return public_(created);
    },

    /** PATCH: given fields replace, omitted ones keep their value (the secret included). */
    async update(name: string, input: UpdateIdentityProviderInput, by: AuditActor): Promise<IdentityProviderRecord> {
      const existing = await lookup(name);
      if (!existing) throw new NotFoundError(`identity provider ${name}`);
      // Links hold subjects of one kind's namespace: another kind is another provider.
      if (input.kind !== undefined && checkKind(input.kind) !== existing.kind) throw new ValidationError('kind', 'cannot be changed (create another provider)');
      const patch: IdentityProviderPatch = {};
      if (input.displayName !== undefined) patch.displayName = text('display-name', input.displayName, 255);
      if (input.clientId !== undefined) patch.clientId = text('client-id', input.clientId, 512);
      let secretChanged = false;
      if (input.clientSecret !== undefined) {
        const secret = secretText(input.clientSecret);
        secretChanged = !secrets.equal(secret, secrets.decrypt(existing.clientSecretEncrypted));
        if (secretChanged) patch.clientSecretEncrypted = secrets.encrypt(secret);
      }
      if (input.scopes !== undefined) patch.scopes = checkScopes(existing.kind, input.scopes);
      if (input.allowedDomains !== undefined) patch.allowedDomains = checkDomains(input.allowedDomains);
      if (input.link !== undefined) patch.linkPolicy = checkLink(input.link);
      if (input.enabled !== undefined) patch.enabled = input.enabled;
      if (input.issuer !== undefined || input.apiUrl !== undefined || input.webUrl !== undefined) {
        // An omitted URL keeps its value; null (API) restores a github default.
        const pick = <T>(given: T | undefined, current: T) => (given === undefined ? current : given);
        const urls = kindUrls(existing.kind, pick(input.issuer, existing.issuer), pick(input.apiUrl, existing.apiUrl), pick(input.webUrl, existing.webUrl));
        Object.assign(patch, urls);
      }
      const updated = await providers.update(existing.name, patch);
      if (!updated) throw new NotFoundError(`identity provider ${name}`);
      const changes = diff(view(public_(existing)), view(public_(updated)), ['updated_at']);
      if (Object.keys(changes.after).length || secretChanged) {
        await changed();
        // The secret is never written to the trail: only that it changed.
        await audit.recordBy('identity_provider.update', existing.name, by, { ...changes, ...(secretChanged ? { client_secret_changed: true } : {}) });
      }
      return public_(updated);
    },

    /**
     * Deletes a provider with every identity linked through it, in one transaction; each removed
     * link is audited as `federation.unlink` (reason `provider_deleted`) on its account. An
     * account whose only way in was that provider can then get in through a password reset.
     */
    async delete(name: string, by: AuditActor): Promise<void> {
      const existing = await lookup(name);
      if (!existing) throw new NotFoundError(`identity provider ${name}`);
      const removed = await providers.delete(existing.name);
      if (!removed) throw new NotFoundError(`identity provider ${name}`);
      await changed();
      await audit.recordBy('identity_provider.delete', existing.name, by, { before: view(public_(existing)), links_deleted: removed.length });
      for (const link of removed) await audit.recordBy('federation.unlink', link.accountId, by, { provider: existing.name, subject: link.subject, reason: 'provider_deleted' });
    },

    async get(name: string): Promise<IdentityProviderRecord | undefined> {
      const p = await lookup(name);
      return p ? public_(p) : undefined;
    },
    async list(): Promise<IdentityProviderRecord[]> {
      return (await providers.list()).map(public_);
    },
    async page(request: PageRequest) {
      const { items, next } = await providers.page(request);
      return { items: items.map(public_), next };
    },
    describe: view,

    /** The enabled providers (cached), by display name: the login page's buttons. */
    async enabled(): Promise<IdentityProviderRecord[]> {
      return [...(await cached()).values()]
        .filter((p) => p.enabled)
        .map(public_)
        .sort((a, b) => a.displayName.localeCompare(b.displayName) || a.name.localeCompare(b.name));
    },

    /**
     * The provider `name` (cached) with its client secret decrypted, for the upstream flow only:
     * never logged, rendered or returned by an API. Disabled providers are answered too (with
     * `enabled: false`), so the flow can refuse them with their reason; undefined when unknown.
     */
    async forSignIn(name: string): Promise<SignInProvider | undefined> {
      const p = (await cached()).get(name);
      if (!p) return undefined;
      return { ...public_(p), clientSecret: secrets.decrypt(p.clientSecretEncrypted) };
    },
  };
}

export type IdentityProviderService = ReturnType<typeof createIdentityProviderService>;
