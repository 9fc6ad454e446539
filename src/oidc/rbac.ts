import { errors, type KoaContextWithOIDC } from 'oidc-provider';

import type { ProviderStateRepository } from '../repositories/provider-state.js';
import type { Subject } from '../repositories/roles.js';
import type { AccessService, SubjectAccess } from '../services/access.js';
import { canonicalId } from '../lib/ids.js';

/**
 * A grant belongs to at most one organization, kept in the Grant's own payload (oidc-provider
 * is told to keep the property, see provider.ts): a string is the organization's id, null none.
 * Reading it costs nothing at the token endpoint, where oidc-provider has loaded the grant.
 */
export type GrantOrganizationView = { jti: string; organizationId?: string | null };
export type GrantWithOrganization = GrantOrganizationView & { save(): Promise<unknown> };

/** The organization a token is issued for, and the subject's role there. */
export interface OrganizationBinding {
  id: string;
  slug: string;
  role: string;
}

type Ctx = KoaContextWithOIDC;
/** What an access token says about its account (scopes `email`, `profile`, `roles`). */
export interface TokenIdentity {
  email: string;
  emailVerified: boolean;
  displayName?: string | null;
  superuser: boolean;
}

type TokenLike = { kind?: string; accountId?: string; grantId?: string; scope?: string; clientId?: string; client?: { clientId: string } };

const scopesOf = (scope: unknown): Set<string> => new Set(typeof scope === 'string' ? scope.split(' ').filter(Boolean) : []);

/**
 * Roles and organizations in tokens (claims `roles`, `is_superuser`, `organizations`, `org_id`,
 * `org_role`) and RBAC on resource servers. Everything per request goes through here:
 * - which organization a token is for: the `organization` parameter of the authorization,
 *   token (client_credentials, refresh_token) request, else the organization of the grant;
 * - whether the subject is a member (if not: access_denied at the authorization endpoint,
 *   invalid_grant at the token endpoint; an unknown or malformed id: invalid_request);
 * - the scopes RBAC permits on a resource for the subject (global roles, or the organization
 *   role alone for an organization token).
 */
export function createRbacIntegration(deps: { access: AccessService; state: ProviderStateRepository; organizationExists: (id: string) => Promise<boolean> }) {
  const { access, state } = deps;
  /**
   * One resolution per request: findAccount, getResourceServerInfo and extraTokenClaims share it.
   * Kept on the request's context under this symbol (no per-request WeakMap entry: see adapter.ts).
   */
  const RESOLVED = Symbol('organization of this request');
  type WithResolved = { [RESOLVED]?: Promise<OrganizationBinding | null> };

  /** The `organization` the request names, if any (the token endpoint's body, or the authorization parameters). */
  function named(ctx: Ctx): string | undefined {
    const { oidc } = ctx;
    const raw = oidc.route === 'token' ? (oidc.body as Record<string, unknown> | undefined)?.organization : (oidc.params as Record<string, unknown> | undefined)?.organization;
    if (raw === undefined || raw === '') return undefined;
    if (typeof raw !== 'string') throw new errors.InvalidRequest('organization must be given once');
    return raw;
  }

  /** RFC 6749 §5.2 / §4.1.2.1: an id that is not an organization's is a malformed request. */
  async function checkExists(id: string): Promise<void> {
    const key = canonicalId(id);
    if (!key) throw new errors.InvalidRequest('organization must be an organization id');
    if (!(await deps.organizationExists(key))) throw new errors.InvalidRequest('organization is unknown');
  }

  async function bind(subject: Subject, id: string, notMember: () => Error): Promise<OrganizationBinding> {
    const held = (await access.of(subject)).organizations.get(canonicalId(id) ?? id);
    if (held) return { id: held.id, slug: held.slug, role: held.role };
    await checkExists(id);
    throw notMember();
  }

  /** The organization of a grant (undefined: none). `grant` is the loaded Grant or its id. */
  async function grantOrganization(grant: GrantOrganizationView | string | undefined): Promise<string | undefined> {
    if (!grant) return undefined;
    const id = typeof grant === 'string' ? grant : grant.jti;
    const payload = typeof grant === 'string' ? await state.find('Grant', id) : grant;
    return typeof payload?.organizationId === 'string' ? payload.organizationId : undefined;
  }

  /** Who the token being issued is about: the account, or the client itself (client_credentials). */
  function subjectOf(ctx: Ctx, token?: TokenLike): Subject | undefined {
    const { oidc } = ctx;
    if (token?.kind === 'ClientCredentials') return { kind: 'client', id: token.client?.clientId ?? token.clientId ?? oidc.client!.clientId };
    if (token?.accountId) return { kind: 'account', id: token.accountId };
    if (oidc.route === 'token' && (oidc.params as { grant_type?: string } | undefined)?.grant_type === 'client_credentials') return oidc.client ? { kind: 'client', id: oidc.client.clientId } : undefined;
    const accountId = oidc.entities.Account?.accountId ?? (oidc.route === 'token' ? undefined : oidc.session?.accountId);
    return accountId ? { kind: 'account', id: accountId } : undefined;
  }

  /**
   * The organization of the token this request issues, or null. At the token endpoint a named
   * organization wins (a refresh may switch), else the grant's. Memoised per request.
   */
  function organizationFor(ctx: Ctx, subject: Subject, grantId?: string): Promise<OrganizationBinding | null> {
    let pending = (ctx as unknown as WithResolved)[RESOLVED];
    if (!pending) {
      pending = (async () => {
        const loaded = ctx.oidc.entities.Grant as GrantOrganizationView | undefined;
        const id = named(ctx) ?? (ctx.oidc.route === 'token' ? await grantOrganization(loaded && loaded.jti === grantId ? loaded : grantId) : undefined);
        if (!id) return null;
        const atToken = ctx.oidc.route === 'token';
        // RFC 6749 §5.2 invalid_grant at the token endpoint; §4.1.2.1 access_denied at the authorization endpoint.
        return bind(subject, id, () => (atToken ? new errors.InvalidGrant('the subject is not a member of the organization') : new errors.AccessDenied('you are not a member of the requested organization')));
      })();
      (ctx as unknown as WithResolved)[RESOLVED] = pending;
    }
    return pending;
  }

  return {
    named,
    checkExists,
    subjectOf,
    organizationFor,
    grantOrganization,

    /** Records (or clears) the organization a grant belongs to and saves the grant. */
    async bindGrant(grant: GrantWithOrganization, organizationId: string | null): Promise<void> {
      grant.organizationId = organizationId;
      await grant.save();
    },

    /** Scopes RBAC permits on a resource for the subject of this request (undefined: no subject known yet). */
    async permittedScopes(ctx: Ctx, resource: string): Promise<Set<string> | undefined> {
      const subject = subjectOf(ctx);
      if (!subject) return undefined;
      const grantId = ctx.oidc.entities.RefreshToken?.grantId ?? ctx.oidc.entities.AuthorizationCode?.grantId;
      const org = await organizationFor(ctx, subject, grantId);
      return access.permitted(await access.of(subject), resource, org?.id ?? null);
    },

    /**
     * Claims an access token carries (JWT payload, or opaque token introspection), by the
     * scopes the request asked for: `email`/`email_verified` (scope `email`) and `name` (scope
     * `profile`) so a resource server knows the caller without a userinfo call (RFC 9068
     * §2.2.3.1), `roles`/`is_superuser`, `organizations`, and for an organization token
     * `org_id`/`org_role`.
     */
    async tokenClaims(ctx: Ctx, token: TokenLike, account: (accountId: string) => Promise<TokenIdentity | undefined>): Promise<Record<string, unknown> | undefined> {
      if (token.kind !== 'AccessToken' && token.kind !== 'ClientCredentials') return undefined;
      const source = ctx.oidc.entities.RefreshToken ?? ctx.oidc.entities.AuthorizationCode;
      // The scopes the client asked for (OIDC scopes such as `roles` are not in a resource token's own scope).
      const requested = token.kind === 'ClientCredentials' ? scopesOf((ctx.oidc.params as { scope?: unknown }).scope) : scopesOf(source?.scope ?? token.scope);
      // The client-credentials hot path: no roles or organizations asked for, nothing to look up.
      if (token.kind === 'ClientCredentials' && !requested.has('roles') && !requested.has('organizations') && !named(ctx)) return undefined;
      const subject = subjectOf(ctx, token);
      if (!subject) return undefined;
      const org = await organizationFor(ctx, subject, token.grantId);
      const claims: Record<string, unknown> = {};
      const wantsIdentity = subject.kind === 'account' && (requested.has('email') || requested.has('profile') || requested.has('roles'));
      const who = wantsIdentity ? await account(subject.id) : undefined;
      if (who && requested.has('email')) Object.assign(claims, { email: who.email, email_verified: who.emailVerified });
      if (who && requested.has('profile') && who.displayName) claims.name = who.displayName;
      if (requested.has('roles') || requested.has('organizations')) {
        const held = await access.of(subject);
        Object.assign(claims, subjectClaims(held, requested));
        if (requested.has('roles') && who?.superuser === true) claims.is_superuser = true;
      }
      if (org) Object.assign(claims, { org_id: org.id, org_role: org.role });
      return Object.keys(claims).length ? claims : undefined;
    },
  };
}

/** `roles` and `organizations` claims of a subject, for the scopes granted. */
export function subjectClaims(held: SubjectAccess, scopes: Set<string>): Record<string, unknown> {
  const claims: Record<string, unknown> = {};
  if (scopes.has('roles')) claims.roles = held.roles;
  if (scopes.has('organizations')) claims.organizations = [...held.organizations.values()].map((o) => ({ id: o.id, slug: o.slug, role: o.role })).sort((a, b) => a.slug.localeCompare(b.slug));
  return claims;
}

export type RbacIntegration = ReturnType<typeof createRbacIntegration>;
