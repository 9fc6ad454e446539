import type { KoaContextWithOIDC } from 'oidc-provider';

/**
 * oidc-provider's routes that answer programs, not browsers: their errors are JSON whatever the
 * Accept header prefers (RFC 6749 §5.2, RFC 7662 §2.3, RFC 7009 §2.2.1, RFC 9126 §2.3,
 * RFC 8628 §3.5, RFC 6750 §3 for userinfo). oidc-provider renders an HTML page for any route
 * when Accept prefers text/html.
 */
const JSON_ROUTES: ReadonlySet<string> = new Set(['token', 'introspection', 'revocation', 'pushed_authorization_request', 'device_authorization', 'userinfo', 'registration', 'client', 'jwks', 'discovery']);

export function answersJson(ctx: KoaContextWithOIDC | undefined): boolean {
  return JSON_ROUTES.has(ctx?.oidc?.route ?? '');
}
