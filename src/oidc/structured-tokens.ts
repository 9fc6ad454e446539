import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JWTPayload } from 'jose';
import type { KoaContextWithOIDC } from 'oidc-provider';

import type { ProviderStateRepository } from '../repositories/provider-state.js';
import type { ClientService } from '../services/clients.js';
import type { KeyRing } from '../services/keys.js';
import { mayIntrospect, type ClientLike } from './client-policy.js';
import { boundKeyOf } from './dpop.js';

/** Private claim carrying the grant id of a user's JWT access token. */
export const GRANT_CLAIM = 'grant_id';
/** provider_state model recording revoked JWT access tokens (by jti) until they expire. */
export const REVOKED_JWT_MODEL = 'RevokedAccessToken';

type Grant = { clientId?: string; accountId?: string; exp?: number };

const isJwt = (token: unknown): token is string => {
  if (typeof token !== 'string' || token.split('.').length !== 3) return false;
  try {
    return Boolean(decodeProtectedHeader(token));
  } catch {
    return false;
  }
};

/**
 * oidc-provider answers unsupported_token_type for JWT access tokens at the introspection and
 * revocation endpoints (it does not store them). Latch issues them (RFC 9068), so it answers for
 * them too — after oidc-provider has authenticated the client:
 * - introspection (RFC 7662): `active: true` with the token's claims while the signature is ours,
 *   the token is unexpired, not revoked, its client still enabled and its grant still present;
 * - revocation (RFC 7009): the jti is recorded as revoked until the token would expire.
 */
export function createStructuredTokenHandler(deps: {
  issuer: string;
  state: ProviderStateRepository;
  clients: ClientService;
  keyRing: () => KeyRing;
}) {
  let jwksFor: KeyRing | undefined;
  let jwks: ReturnType<typeof createLocalJWKSet> | undefined;
  const keySet = () => {
    const ring = deps.keyRing();
    if (ring !== jwksFor) {
      jwks = createLocalJWKSet({ keys: ring.publicJwks });
      jwksFor = ring;
    }
    return jwks!;
  };

  /** The verified payload of a live JWT access token of ours, or undefined. */
  async function verify(token: string): Promise<JWTPayload | undefined> {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, keySet(), { issuer: deps.issuer, typ: 'at+jwt', algorithms: ['RS256', 'ES256', 'EdDSA'] }));
    } catch {
      return undefined;
    }
    if (typeof payload.jti !== 'string' || typeof payload.client_id !== 'string') return undefined;
    if (await deps.state.find(REVOKED_JWT_MODEL, payload.jti)) return undefined;
    if (!(await deps.clients.findMetadata(payload.client_id))) return undefined;
    const grantId = payload[GRANT_CLAIM];
    if (typeof grantId === 'string') {
      const grant = (await deps.state.find('Grant', grantId)) as Grant | undefined;
      // An exchanged token (RFC 8693, token-exchange.ts) keeps the grant of the token it was
      // exchanged from, so revoking that grant ends it too; its client is the actor, not the grant's.
      // Only a token whose actor is its own client is one: `act.sub` names the exchanging client.
      const exchanged = typeof payload.act === 'object' && payload.act !== null && (payload.act as { sub?: unknown }).sub === payload.client_id;
      if (!grant || (grant.clientId !== payload.client_id && !exchanged) || grant.accountId !== payload.sub) return undefined;
    }
    return payload;
  }

  /**
   * After oidc-provider answered introspection or revocation (RFC 7662, RFC 7009): JWT access
   * tokens, which oidc-provider itself does not look up, and public clients at introspection.
   * Synchronous when there is nothing to do (the token endpoint's hot path).
   */
  function afterResponse(ctx: KoaContextWithOIDC): Promise<void> | undefined {
    const route = ctx.oidc?.route;
    if (route !== 'introspection' && route !== 'revocation') return undefined;
    const client = ctx.oidc.client as unknown as ClientLike | undefined;
    if (!client) return undefined;

    if (route === 'introspection' && client.clientAuthMethod === 'none') {
      // RFC 6749 §5.2 / RFC 7662 §2.1: the caller must be an authenticated, confidential client.
      ctx.status = 401;
      ctx.body = { error: 'invalid_client', error_description: 'public clients may not use the introspection endpoint' };
      return undefined;
    }

    const body = ctx.body as { error?: string } | undefined;
    const token = (ctx.oidc.params as { token?: unknown } | undefined)?.token;
    if (ctx.status !== 400 || body?.error !== 'unsupported_token_type' || !isJwt(token)) return undefined;
    return answerForJwt(ctx, route, client, token);
  }

  async function answerForJwt(ctx: KoaContextWithOIDC, route: 'introspection' | 'revocation', client: ClientLike, token: string): Promise<void> {
    const payload = await verify(token);
    if (route === 'revocation') {
      // RFC 7009 §2.2: 200 whether or not the token was valid. Only its own client may revoke it.
      if (payload && payload.client_id === client.clientId && typeof payload.exp === 'number') {
        const ttl = Math.max(1, payload.exp - Math.floor(Date.now() / 1000));
        await deps.state.upsert(REVOKED_JWT_MODEL, payload.jti!, { jti: payload.jti, clientId: payload.client_id }, ttl);
      }
      ctx.status = 200;
      ctx.body = '';
      return;
    }

    ctx.status = 200;
    ctx.set('Cache-Control', 'no-store');
    if (!payload || !mayIntrospect(client, { clientId: payload.client_id as string, aud: payload.aud })) {
      ctx.body = { active: false };
      return;
    }
    const { [GRANT_CLAIM]: _grant, ...claims } = payload;
    // RFC 7662 §2.2 members, plus every claim the token carries.
    // RFC 9449 §6.2: a bound token's type is DPoP; its cnf.jkt is among the claims.
    ctx.body = { ...claims, active: true, token_type: boundKeyOf(claims) ? 'DPoP' : 'Bearer' };
  }

  // verify: also the admin API's bearer check (Oidc.verifyAccessToken), which adds its own audience rule.
  return { afterResponse, verify };
}
