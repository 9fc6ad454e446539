import type { KoaContextWithOIDC } from 'oidc-provider';

import { mayBeImportedKey, PAT_PREFIX, type PersonalAccessTokenService } from '../services/personal-access-tokens.js';
import type { ClientLike, mayIntrospect } from './client-policy.js';

type MayIntrospect = typeof mayIntrospect;

/**
 * Personal access tokens at oidc-provider's introspection endpoint (RFC 7662). oidc-provider
 * does not know them and answers `{active: false}` after authenticating the client; for a
 * `lat_` token, or an API key imported from an app (`latch import app`, which keeps the key's
 * old value), this middleware then answers from the personal_access_tokens table instead —
 * when the token is live and the client may introspect it under the same rule as a JWT access
 * token (client-policy.ts `mayIntrospect`: a resource server sees tokens for its resources).
 * Runs after oidc-provider answered, before the structured-token handler (provider.ts `AFTER`).
 */
export function personalAccessTokenIntrospection(deps: { tokens: Pick<PersonalAccessTokenService, 'introspect'>; mayIntrospect: MayIntrospect }) {
  async function answer(ctx: KoaContextWithOIDC, client: ClientLike, token: string): Promise<void> {
    const found = await deps.tokens.introspect(token, (a) => deps.mayIntrospect(client, { clientId: a.client_id, aud: a.aud, kind: 'PersonalAccessToken' }));
    // RFC 7662 §2.2: an inactive, unknown or not-for-you token is just `{"active": false}`.
    if (found) ctx.body = found;
  }
  /** After oidc-provider answered: synchronous unless the answer is about a `lat_` token. */
  return function afterResponse(ctx: KoaContextWithOIDC): Promise<void> | undefined {
    if (ctx.oidc?.route !== 'introspection' || ctx.status !== 200) return undefined;
    const client = ctx.oidc.client as unknown as ClientLike | undefined;
    const body = ctx.body as { active?: unknown } | undefined;
    const token = (ctx.oidc.params as { token?: unknown } | undefined)?.token;
    if (!client || body?.active !== false || typeof token !== 'string' || !(token.startsWith(PAT_PREFIX) || mayBeImportedKey(token))) return undefined;
    return answer(ctx, client, token);
  };
}
