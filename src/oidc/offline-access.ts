import type { KoaContextWithOIDC } from 'oidc-provider';

/**
 * OIDC Core §11: when offline access is requested, `prompt=consent` MUST be used "unless other
 * conditions for processing the request permitting offline access to the requested resources are
 * in place", and the OP MUST always obtain consent before returning a refresh token for it.
 *
 * Latch's other condition is its own consent: the grant records `offline_access` only once the
 * user allowed it on Latch's consent page (which lists it), or for a first-party client, which
 * never shows that page. oidc-provider drops `offline_access` from a request without
 * `prompt=consent` before anything else sees it; this puts it back, so that it is an ordinary
 * OIDC scope from then on: the consent prompt asks for it while the grant lacks it, the grant
 * records it, and a code whose scopes hold it yields a refresh token (issueRefreshToken's default).
 *
 * Only for a client registered for `offline_access` and the `refresh_token` grant, and only when
 * the client itself sent the scope (query or form body of the request at hand; a pushed request
 * was restored when it was pushed). Never with `prompt=none`: no consent can be asked then, and
 * §11 has the scope ignored rather than the request refused.
 */
export function restoreOfflineAccess(ctx: KoaContextWithOIDC): void {
  const { oidc } = ctx;
  const client = oidc.client;
  const params = oidc.params as { scope?: unknown; prompt?: unknown } | undefined;
  if (!client || !params || oidc.entities.PushedAuthorizationRequest) return;
  if (typeof params.prompt === 'string' && params.prompt.split(' ').includes('none')) return;
  const granted = typeof params.scope === 'string' ? params.scope.split(' ') : [];
  if (granted.includes('offline_access')) return;
  const sent = (ctx.method === 'POST' ? (oidc.body as { scope?: unknown } | undefined) : (ctx.query as { scope?: unknown }))?.scope;
  if (typeof sent !== 'string' || !sent.split(' ').includes('offline_access')) return;
  if (!client.grantTypeAllowed('refresh_token') || !client.scope?.split(' ').includes('offline_access')) return;
  params.scope = [...granted.filter(Boolean), 'offline_access'].join(' ');
}
