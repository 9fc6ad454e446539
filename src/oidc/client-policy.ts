/**
 * Per-client rules read from a client's metadata (Latch's extra fields `allowed_resources`,
 * `allowed_scopes`, `first_party`). Pure functions: the provider configuration and the bench's
 * bare oidc-provider apply the same rules.
 */

export type ClientLike = { clientId: string; clientAuthMethod: string; scope?: string; [k: string]: unknown };

export const allowedResourcesOf = (client: ClientLike): string[] => (Array.isArray(client.allowed_resources) ? (client.allowed_resources as string[]) : []);
export const allowedScopesOf = (client: ClientLike): Set<string> => new Set(Array.isArray(client.allowed_scopes) ? (client.allowed_scopes as string[]) : []);
export const isFirstParty = (client: ClientLike): boolean => client.first_party === true;

/**
 * RFC 8707: the resource(s) already chosen (`oneOf`: what the request or grant names) stand;
 * with none, a client allowed exactly one resource gets it.
 */
export function defaultResource<T>(client: ClientLike, oneOf?: T): T | string | undefined {
  if (oneOf) return oneOf;
  const allowed = allowedResourcesOf(client);
  return allowed.length === 1 ? allowed[0] : undefined;
}

/**
 * True for a sign-in that asks for nothing but OpenID Connect scopes (`openid profile email …`,
 * no resource scope): its access token is for userinfo, so no resource is chosen for it by
 * default. OIDC Core §5.3.1 requires userinfo to accept the access token of such a request, and
 * an access token for a resource server (an audience) cannot be used there.
 */
export function isSignInOnly(scope: unknown, oidcScopes: ReadonlySet<string>): boolean {
  if (typeof scope !== 'string') return false;
  const scopes = scope.split(' ').filter(Boolean);
  return scopes.includes('openid') && scopes.every((s) => oidcScopes.has(s));
}

/**
 * Introspection rights: a confidential client may introspect tokens issued to it and tokens
 * whose audience is a resource it is registered for. Public clients never (RFC 7662 §2.1
 * requires the caller to be authorised).
 */
export function mayIntrospect(client: ClientLike, token: { clientId?: string | undefined; aud?: unknown; kind?: string }): boolean {
  if (client.clientAuthMethod === 'none') return false;
  if (token.clientId === client.clientId) return true;
  if (token.kind === 'RefreshToken') return false;
  const allowed = allowedResourcesOf(client);
  const aud = Array.isArray(token.aud) ? (token.aud as string[]) : typeof token.aud === 'string' ? [token.aud] : [];
  return aud.some((a) => allowed.includes(a));
}
