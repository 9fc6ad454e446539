import { randomBytes } from 'node:crypto';

import { decodeProtectedHeader, importJWK, SignJWT, type JWK, type JWTPayload } from 'jose';
import { epochSeconds } from '../lib/time.js';
import { errors, type KoaContextWithOIDC } from 'oidc-provider';

import type { AccessService } from '../services/access.js';
import { TOKEN_EXCHANGE_GRANT } from '../services/clients.js';
import type { KeyRing } from '../services/keys.js';
import { PAT_PREFIX, type PersonalAccessTokenService } from '../services/personal-access-tokens.js';
import type { ResourceService } from '../services/resources.js';
import { ADMIN_SCOPES } from './admin-scopes.js';
import { allowedResourcesOf, allowedScopesOf, defaultResource, type ClientLike } from './client-policy.js';
import { GRANT_CLAIM } from './structured-tokens.js';

/** RFC 8693 §2.1. */
/** RFC 8693 §2.1: the grant_type value (the clients service names it for registration). */
export const TOKEN_EXCHANGE_GRANT_TYPE = TOKEN_EXCHANGE_GRANT;
/** RFC 8693 §3: the only token type Latch accepts as subject and issues. */
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
/** The token endpoint parameters of the grant (RFC 8693 §2.1); anything else is stripped by oidc-provider. */
export const TOKEN_EXCHANGE_PARAMETERS = ['subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'requested_token_type', 'resource', 'audience', 'scope'];

/**
 * Claims an exchanged token keeps exactly as the subject token had them: who the user is
 * (RFC 9068 §2.2.3.1 identity claims), roles, and the organization the token is for.
 */
const CARRIED_CLAIMS = ['email', 'email_verified', 'name', 'roles', 'is_superuser', 'organizations', 'org_id', 'org_role', 'auth_time', 'acr', 'amr', GRANT_CLAIM] as const;

/** What Latch knows of a presented subject token once it is found live. */
interface Subject {
  sub: string;
  aud: string[];
  scopes: Set<string>;
  exp: number;
  claims: Record<string, unknown>;
  act?: Record<string, unknown>;
}

export interface TokenExchangeDeps {
  issuer: string;
  /** The verified payload of a live JWT access token of ours (structured-tokens.ts verify). */
  verifyJwt(token: string): Promise<JWTPayload | undefined>;
  personalTokens?: Pick<PersonalAccessTokenService, 'introspect'> | undefined;
  resources: Pick<ResourceService, 'get'>;
  access: Pick<AccessService, 'of' | 'permitted'>;
  accounts: { findForTokens(id: string): Promise<{ active: boolean; superuser: boolean } | undefined> };
  keyRing(): KeyRing;
  /** Latch's own API resource, whose admin scopes only superusers get. */
  adminApi: string;
  defaultAccessTokenTtl: number;
  /** The request's verified DPoP proof (RFC 9449 §5), undefined without one; throws for a bad or replayed one. */
  dpopProofOf(ctx: KoaContextWithOIDC): Promise<{ jkt: string } | undefined>;
}

const words = (scope: unknown): string[] => (typeof scope === 'string' ? scope.split(' ').filter(Boolean) : []);
const audiences = (aud: unknown): string[] => (Array.isArray(aud) ? aud.filter((a): a is string => typeof a === 'string') : typeof aud === 'string' ? [aud] : []);
type SigningKey = Awaited<ReturnType<typeof importJWK>>;

const looksLikeJwt = (token: string): boolean => {
  if (token.split('.').length !== 3) return false;
  try {
    return Boolean(decodeProtectedHeader(token));
  } catch {
    return false;
  }
};

/**
 * oidc-provider's InvalidGrant keeps its reason to itself ("grant request is invalid"); an
 * exchange refusal names the rule that refused (RFC 6749 §5.2 error_description), which tells
 * the calling service's developer nothing about other users.
 */
function invalidGrant(why: string): Error {
  const err = new errors.InvalidGrant();
  err.error_description = why;
  return err;
}

/** One string parameter (oidc-provider refuses repeated ones before the handler runs). */
function param(ctx: KoaContextWithOIDC, name: string): string | undefined {
  const value = (ctx.oidc.params as Record<string, unknown>)[name];
  if (value === undefined || value === '') return undefined;
  if (typeof value !== 'string') throw new errors.InvalidRequest(`${name} must be given once`);
  return value;
}

/**
 * The token-exchange grant (RFC 8693) for a confidential client acting for a user towards
 * another resource: the user's access token in, an RFC 9068 JWT access token for the target
 * resource out, naming the client as the current actor (`act`, RFC 8693 §4.1). Registered
 * with `provider.registerGrantType`: oidc-provider has authenticated the client and checked
 * that the grant is in its `grant_types` before this runs.
 */
export function createTokenExchangeHandler(deps: TokenExchangeDeps) {
  const signingKeys = new WeakMap<KeyRing, Map<string, Promise<{ key: SigningKey; kid: string | undefined }>>>();
  function signingKey(alg: string) {
    const ring = deps.keyRing();
    let byAlg = signingKeys.get(ring);
    if (!byAlg) signingKeys.set(ring, (byAlg = new Map()));
    let found = byAlg.get(alg);
    if (!found) {
      // privateJwks lists the current key of each algorithm first (keys.ts loadKeyRing).
      const jwk = ring.privateJwks.find((k: JWK) => k.alg === alg);
      if (!jwk) throw new Error(`no active signing key for ${alg}`);
      found = importJWK(jwk, alg).then((key) => ({ key, kid: jwk.kid }));
      byAlg.set(alg, found);
    }
    return found;
  }

  /** The live subject behind `subject_token`, or invalid_grant (RFC 8693 §2.2.2). */
  async function subjectOf(ctx: KoaContextWithOIDC, token: string): Promise<Subject> {
    if (token.startsWith(PAT_PREFIX)) {
      const pat = deps.personalTokens ? await deps.personalTokens.introspect(token) : undefined;
      if (!pat) throw invalidGrant('subject_token is not an active access token');
      const { active: _active, token_type: _type, iss: _iss, client_id: _client, jti: _jti, iat: _iat, exp, aud, sub, scope, ...claims } = pat as unknown as Record<string, unknown>;
      return { sub: sub as string, aud: audiences(aud), scopes: new Set(words(scope)), exp: exp as number, claims };
    }
    if (looksLikeJwt(token)) {
      // Signature by one of Latch's keys, iss, typ at+jwt, exp, not revoked, client and grant still there.
      const payload = await deps.verifyJwt(token);
      if (!payload || typeof payload.sub !== 'string' || typeof payload.exp !== 'number') throw invalidGrant('subject_token is not an active access token of this server');
      const act = typeof payload.act === 'object' && payload.act !== null && !Array.isArray(payload.act) ? (payload.act as Record<string, unknown>) : undefined;
      return { sub: payload.sub, aud: audiences(payload.aud), scopes: new Set(words(payload.scope)), exp: payload.exp, claims: payload as Record<string, unknown>, ...(act ? { act } : {}) };
    }
    // An opaque oidc-provider access token is one for userinfo alone (resource tokens are JWTs):
    // it names no resource whose token the client could be allowed to exchange.
    const opaque = await ctx.oidc.provider.AccessToken.find(token);
    if (opaque && !opaque.isExpired) throw invalidGrant('subject_token is an access token for userinfo alone, not for a resource');
    throw invalidGrant('subject_token is not an active access token of this server');
  }

  return async function tokenExchange(ctx: KoaContextWithOIDC): Promise<void> {
    const client = ctx.oidc.client as unknown as ClientLike;
    if (client.clientAuthMethod === 'none') throw new errors.UnauthorizedClient('token exchange needs an authenticated client');

    const subjectToken = param(ctx, 'subject_token');
    const subjectTokenType = param(ctx, 'subject_token_type');
    if (!subjectToken) throw new errors.InvalidRequest('missing required parameter subject_token');
    if (!subjectTokenType) throw new errors.InvalidRequest('missing required parameter subject_token_type');
    // RFC 8693 §2.2.2: an unsupported token type is invalid_request.
    if (subjectTokenType !== ACCESS_TOKEN_TYPE) throw new errors.InvalidRequest(`subject_token_type must be ${ACCESS_TOKEN_TYPE}`);
    if (param(ctx, 'actor_token') !== undefined || param(ctx, 'actor_token_type') !== undefined) {
      throw new errors.InvalidRequest('actor_token is not supported: the authenticated client is the actor');
    }
    const requestedType = param(ctx, 'requested_token_type');
    if (requestedType !== undefined && requestedType !== ACCESS_TOKEN_TYPE) throw new errors.InvalidRequest(`requested_token_type must be ${ACCESS_TOKEN_TYPE}`);

    // RFC 9449 §5: a proof binds the issued token to the exchanging client's key. A client
    // registered with dpop_bound_access_tokens must send one (as at oidc-provider's own grants).
    const proof = await deps.dpopProofOf(ctx);
    if (!proof && client.dpopBoundAccessTokens === true) throw invalidGrant('DPoP proof JWT not provided');

    // A DPoP-bound subject token is accepted like any other: the exchanging client presents it
    // on its own authentication, not on the subject token's key, which it never holds; the
    // resource server it was sent to checked that key. Its binding is not carried over.
    const subject = await subjectOf(ctx, subjectToken);
    const account = await deps.accounts.findForTokens(subject.sub);
    // Tokens of a machine (client credentials) or of an account since deactivated are not a user's to delegate.
    if (!account?.active) throw invalidGrant('subject_token does not belong to an active user');
    const allowedSubjects = Array.isArray(client.exchange_subject_audiences) ? (client.exchange_subject_audiences as string[]) : [];
    if (!subject.aud.some((a) => allowedSubjects.includes(a))) throw invalidGrant('subject_token is not for a resource this client may exchange tokens of');

    // RFC 8693 §2.1: `resource` (RFC 8707) or `audience` names the target; Latch's targets are resources.
    const resourceParam = param(ctx, 'resource');
    const audienceParam = param(ctx, 'audience');
    if (resourceParam && audienceParam && resourceParam !== audienceParam) throw new errors.InvalidTarget('resource and audience name different targets');
    const target = resourceParam ?? audienceParam ?? (defaultResource(client) as string | undefined);
    if (!target) throw new errors.InvalidTarget('resource (or audience) is required');
    if (!allowedResourcesOf(client).includes(target)) throw new errors.InvalidTarget('resource indicator is not allowed for this client');
    const rs = await deps.resources.get(target);
    if (!rs) throw new errors.InvalidTarget('resource indicator is not registered');

    // What the token may carry: the target's scopes the subject token holds, the client is
    // registered for, and the user's roles permit there (RBAC resources; in the subject token's
    // organization when it has one). Admin scopes of Latch's API only for superusers.
    const clientScopes = allowedScopesOf(client);
    let allowed = rs.scopes.filter((s) => subject.scopes.has(s) && clientScopes.has(s));
    if (rs.rbac) {
      const orgId = typeof subject.claims.org_id === 'string' ? subject.claims.org_id : null;
      const permitted = deps.access.permitted(await deps.access.of({ kind: 'account', id: subject.sub }), rs.identifier, orgId);
      allowed = allowed.filter((s) => permitted.has(s));
    }
    if (rs.identifier === deps.adminApi && !account.superuser) allowed = allowed.filter((s) => !ADMIN_SCOPES.has(s));
    const requested = words(param(ctx, 'scope'));
    // RFC 6749 §5.2 invalid_scope: a scope beyond what the exchange may grant is refused, not trimmed.
    const outside = requested.filter((s) => !allowed.includes(s));
    if (outside.length) throw new errors.InvalidScope('requested scope is not allowed for this exchange', outside.join(' '));
    const scopes = requested.length ? [...new Set(requested)] : allowed;
    if (!scopes.length) throw new errors.InvalidScope('the subject token, the client and the user have no scope of this resource in common', rs.scopes.join(' '));

    const iat = epochSeconds();
    const remaining = subject.exp - iat;
    if (remaining <= 0) throw invalidGrant('subject_token has expired');
    const expiresIn = Math.min(rs.accessTokenTtl ?? deps.defaultAccessTokenTtl, remaining);

    const carried: Record<string, unknown> = {};
    for (const name of CARRIED_CLAIMS) if (subject.claims[name] !== undefined) carried[name] = subject.claims[name];
    // RFC 8693 §4.1: the current actor outermost, earlier actors nested inside it.
    const act = subject.act ? { sub: client.clientId, act: subject.act } : { sub: client.clientId };
    const { key, kid } = await signingKey(rs.signingAlg);
    // RFC 9068 §2.2 claims.
    const accessToken = await new SignJWT({ ...carried, client_id: client.clientId, scope: scopes.join(' '), act, ...(proof ? { cnf: { jkt: proof.jkt } } : {}) })
      .setProtectedHeader({ alg: rs.signingAlg, typ: 'at+jwt', ...(kid ? { kid } : {}) })
      .setIssuer(deps.issuer)
      .setSubject(subject.sub)
      .setAudience(rs.identifier)
      .setIssuedAt(iat)
      .setExpirationTime(iat + expiresIn)
      .setJti(randomBytes(24).toString('base64url'))
      .sign(key);

    // RFC 8693 §2.2.1; no refresh token: the exchange is repeated with a fresh subject token.
    ctx.body = {
      access_token: accessToken,
      issued_token_type: ACCESS_TOKEN_TYPE,
      token_type: proof ? 'DPoP' : 'Bearer',
      expires_in: expiresIn,
      scope: scopes.join(' '),
    };
  };
}
