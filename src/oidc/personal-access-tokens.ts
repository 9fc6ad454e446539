import type { KoaContextWithOIDC } from 'oidc-provider';

import { PAT_PREFIX, type PersonalAccessTokenService } from '../services/personal-access-tokens.js';
import type { createStructuredTokenHandler } from './structured-tokens.js';

type MayIntrospect = ReturnType<typeof createStructuredTokenHandler>['mayIntrospect'];
type ClientLike = Parameters<MayIntrospect>[0];

/**
 * Personal access tokens at oidc-provider's introspection endpoint (RFC 7662). oidc-provider
 * does not know them and answers `{active: false}` after authenticating the client; for a
 * `lat_` token this middleware then answers from the personal_access_tokens table instead —
 * when the token is live and the client may introspect it under the same rule as a JWT access
 * token (structured-tokens.ts `mayIntrospect`: a resource server sees tokens for its resources).
 * Installed with `provider.use()` right after the structured-token handler, so it runs inside it.
 */
export function personalAccessTokenIntrospection(deps: { tokens: Pick<PersonalAccessTokenService, 'introspect'>; mayIntrospect: MayIntrospect }) {
  return async function middleware(ctx: KoaContextWithOIDC, next: () => Promise<unknown>): Promise<void> {
    await next();
    if (ctx.oidc?.route !== 'introspection' || ctx.status !== 200) return;
    const client = ctx.oidc.client as unknown as ClientLike | undefined;
    const body = ctx.body as { active?: unknown } | undefined;
    const token = (ctx.oidc.params as { token?: unknown } | undefined)?.token;
    if (!client || body?.active !== false || typeof token !== 'string' || !token.startsWith(PAT_PREFIX)) return;

    const answer = await deps.tokens.introspect(token, (a) => deps.mayIntrospect(client, { clientId: a.client_id, aud: a.aud, kind: 'PersonalAccessToken' }));
    // RFC 7662 §2.2: an inactive, unknown or not-for-you token is just `{"active": false}`.
    if (answer) ctx.body = answer;
  };
}
