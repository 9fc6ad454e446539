import type { KoaContextWithOIDC } from 'oidc-provider';

import type { RbacIntegration } from './rbac.js';

/** Scopes of Latch's own API that administer the server. */
export const ADMIN_SCOPES: ReadonlySet<string> = new Set(['admin:read', 'admin:write']);

/**
 * The admin scopes of Latch's API resource (`${ISSUER}/api`) are granted to a user only when the
 * user is a superuser; a machine client (client_credentials) keeps what it is registered for.
 * Dropped from the resource server's scopes, they are neither offered on the consent page nor
 * issued nor shown by introspection: a scope the server does not grant is simply left out
 * (RFC 6749 §3.3). The API still checks superuser status on each request (middleware/api-auth.ts).
 *
 * Before the user is known (an authorization request before sign-in) nothing is decided here:
 * the resource is resolved again once the user has signed in, before consent.
 */
export async function withoutAdminScopesUnlessSuperuser(ctx: KoaContextWithOIDC, scopes: string[], deps: { rbac: Pick<RbacIntegration, 'subjectOf'>; isSuperuser: (accountId: string) => Promise<boolean> }): Promise<string[]> {
  if (!scopes.some((s) => ADMIN_SCOPES.has(s))) return scopes;
  const subject = deps.rbac.subjectOf(ctx);
  if (subject?.kind === 'client') return scopes;
  // At the token endpoint a grant for a user whose account is not loaded is refused the admin scopes.
  if (!subject) return ctx.oidc.route === 'token' ? scopes.filter((s) => !ADMIN_SCOPES.has(s)) : scopes;
  return (await deps.isSuperuser(subject.id)) ? scopes : scopes.filter((s) => !ADMIN_SCOPES.has(s));
}
