import type Koa from 'koa';
import type { JWTPayload } from 'jose';

import { boundKeyOf, DPOP_SIGNING_ALGS, DpopProofError } from '../oidc/dpop.js';
import { GRANT_CLAIM } from '../oidc/structured-tokens.js';
import type { AccountRecord } from '../repositories/accounts.js';
import type { Limits } from '../services/rate-limits.js';
import { ProblemError } from './api-problem.js';

/** Who calls the API, from a verified bearer token. */
export interface ApiPrincipal {
  /** `account`: a user's token (authorization code or personal access token); `client`: a machine client's (client credentials). */
  kind: 'account' | 'client';
  /** The account id or the client id. */
  id: string;
  /** The client the token was issued to. */
  clientId: string;
  scopes: Set<string>;
  /** Superuser flag of the account, read at request time (false for clients). */
  superuser: boolean;
  account?: AccountRecord;
}

export interface PersonalTokenIntrospector {
  introspect(token: string): Promise<{ sub: string; scope: string; aud: string[]; client_id: string } | undefined>;
}

const challenge = (error?: string, scope?: string) => `Bearer realm="latch"${error ? `, error="${error}"` : ''}${scope ? `, scope="${scope}"` : ''}`;
/** RFC 9449 §7.1: the DPoP challenge, with the algorithms a proof may use. */
const dpopChallenge = (error: string, detail: string) => `DPoP realm="latch", error="${error}", error_description="${detail}", algs="${DPOP_SIGNING_ALGS.join(' ')}"`;
/** 401 for a DPoP-bound token used without its proof, or a proof that does not hold (RFC 9449 §7.1, §12.2). */
const dpopRefused = (error: 'invalid_token' | 'invalid_dpop_proof', detail: string) => new ProblemError(401, 'unauthorized', detail, { headers: { 'WWW-Authenticate': dpopChallenge(error, detail) } });

/** RFC 9449 §7.1: what the API checks a DPoP proof with (oidc.ts `checkDpopProof`: validity for this request and token, single use across instances). */
/**
 * The URL a DPoP proof names for a request to one of Latch's endpoints (RFC 9449 §4.3 `htu`):
 * the issuer followed by the request path, without query or fragment. An issuer with a path
 * (`https://example.com/auth`, behind a proxy that strips `/auth`) keeps it: `new URL(path,
 * issuer)` would drop it.
 */
export function proofUrl(issuer: string, path: string): string {
  return new URL(`${issuer.replace(/\/+$/, '')}${path}`).href;
}

export type DpopProofCheck = (proof: string, expected: { method: string; url: string; accessToken: string; clientId: string }) => Promise<{ jkt: string }>;

/** 401 (RFC 6750 §3): `error` is omitted when the request carried no token at all. */
export const unauthorized = (detail: string, noToken = false) => new ProblemError(401, 'unauthorized', detail, { headers: { 'WWW-Authenticate': challenge(noToken ? undefined : 'invalid_token') } });

/** 403 (RFC 6750 §3.1) naming the scope needed. */
export const insufficientScope = (scope: string, detail = `this operation needs the scope ${scope}`) =>
  new ProblemError(403, 'insufficient-scope', detail, { headers: { 'WWW-Authenticate': challenge('insufficient_scope', scope) } });

/** 429 with Retry-After (RFC 6585 §4, RFC 9110 §10.2.3). */
const tooMany = (retryAfterSeconds: number, detail: string) => new ProblemError(429, 'too-many-requests', detail, { headers: { 'Retry-After': String(retryAfterSeconds) } });

/**
 * Bearer authentication for /api/v1 (RFC 6750 §2.1): a JWT access token Latch issued for
 * `audience` (signature against the provider's key ring, `typ: at+jwt`, issuer, expiry, not
 * revoked, client still enabled, grant still present: structured-tokens.ts `verify`), or a
 * personal access token (`lat_…`) whose audience includes the API. Sets `ctx.state.principal`.
 *
 * With `limits`: an IP whose requests carried API_AUTH_FAILURES_PER_MINUTE rejected tokens is
 * refused (429) before any token is checked, and each caller (token subject) gets
 * API_REQUESTS_PER_MINUTE requests.
 */
export function bearerAuth(deps: {
  audience: string;
  verify: (token: string) => Promise<JWTPayload | undefined>;
  accounts: { findById(id: string): Promise<AccountRecord | undefined> };
  personalTokens?: PersonalTokenIntrospector | undefined;
  limits?: Limits | undefined;
  /** DPoP-bound tokens (RFC 9449 §7.1): their proofs are checked with this; `issuer` gives the URL a proof names (`htu`). */
  dpop: { check: DpopProofCheck; issuer: string };
}): Koa.Middleware {
  const { limits } = deps;
  const authenticate = async (ctx: Koa.Context): Promise<void> => {
    const header = ctx.get('Authorization');
    const match = /^(Bearer|DPoP) +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(header);
    if (!header || !/^(Bearer|DPoP)\b/i.test(header)) throw unauthorized('this endpoint needs a bearer access token', true);
    if (!match) throw unauthorized('malformed Authorization header');
    const token = match[2]!;
    const dpopScheme = match[1]!.toLowerCase() === 'dpop';
    const proof = ctx.get('DPoP');
    if (dpopScheme && !proof) throw dpopRefused('invalid_token', 'the DPoP scheme needs a DPoP proof header');

    let principal: Omit<ApiPrincipal, 'superuser'> | undefined;
    // Hook: personal access tokens (services/personal-access-tokens.ts) are accepted like
    // user tokens when their audience includes the API.
    if (token.startsWith('lat_') && deps.personalTokens) {
      const answer = await deps.personalTokens.introspect(token);
      // Never bound to a key: under the DPoP scheme it is refused (RFC 9449 §7.1), as oidc-provider refuses an unbound token with a proof.
      if (answer?.aud.includes(deps.audience) && dpopScheme) throw dpopRefused('invalid_token', 'the access token is not bound to a DPoP key');
      if (answer?.aud.includes(deps.audience)) principal = { kind: 'account', id: answer.sub, clientId: answer.client_id, scopes: new Set(answer.scope.split(' ').filter(Boolean)) };
    } else if (token.length <= 8192) {
      const payload = await deps.verify(token);
      const aud = Array.isArray(payload?.aud) ? payload.aud : typeof payload?.aud === 'string' ? [payload.aud] : [];
      if (payload && aud.includes(deps.audience) && typeof payload.sub === 'string') {
        await checkBinding(ctx, token, payload, dpopScheme ? proof : undefined);
        // A user's token carries its grant; a client-credentials token has none (sub = client id).
        const kind = typeof payload[GRANT_CLAIM] === 'string' ? 'account' : 'client';
        const scopes = new Set(typeof payload.scope === 'string' ? payload.scope.split(' ').filter(Boolean) : []);
        principal = { kind, id: payload.sub, clientId: String(payload.client_id), scopes };
      }
    }
    if (!principal) throw unauthorized('the access token is invalid, expired, revoked or not for this API');

    let superuser = false;
    let account: AccountRecord | undefined;
    if (principal.kind === 'account') {
      account = await deps.accounts.findById(principal.id);
      if (!account?.active) throw unauthorized('the account of this token is deleted or deactivated');
      superuser = account.superuser;
    }
    ctx.state.principal = { ...principal, superuser, ...(account ? { account } : {}) } satisfies ApiPrincipal;
  };
  /**
   * RFC 9449 §7.1: a token bound by `cnf.jkt` is accepted only under the DPoP scheme with a proof
   * for this request (method, URL, `ath`), signed by that key and never used before; an unbound
   * token only without one.
   */
  const checkBinding = async (ctx: Koa.Context, token: string, payload: JWTPayload, proof: string | undefined): Promise<void> => {
    const jkt = boundKeyOf(payload);
    if (!jkt) {
      if (proof !== undefined) throw dpopRefused('invalid_token', 'the access token is not bound to a DPoP key');
      return;
    }
    if (proof === undefined) throw dpopRefused('invalid_token', 'a DPoP-bound access token needs the DPoP scheme and a proof');
    let proven: { jkt: string };
    try {
      proven = await deps.dpop.check(proof, { method: ctx.method, url: proofUrl(deps.dpop.issuer, ctx.path), accessToken: token, clientId: String(payload.client_id) });
    } catch (err) {
      if (err instanceof DpopProofError) throw dpopRefused('invalid_dpop_proof', err.message);
      throw err;
    }
    if (proven.jkt !== jkt) throw dpopRefused('invalid_token', 'the DPoP proof is not signed by the key the access token is bound to');
  };

  return async (ctx, next) => {
    const ip = ctx.ip || 'unknown';
    if (limits) {
      const blocked = await limits.check('api_auth_failures_ip', ip);
      if (!blocked.allowed) throw tooMany(blocked.retryAfterSeconds, 'too many requests with rejected tokens from this address');
    }
    try {
      await authenticate(ctx);
    } catch (err) {
      // A request that carried a token which was rejected counts against its IP.
      if (limits && err instanceof ProblemError && err.status === 401 && ctx.get('Authorization')) await limits.hit('api_auth_failures_ip', ip);
      throw err;
    }
    if (limits) {
      const p = principalOf(ctx);
      const allowed = await limits.hit('api_caller', `${p.kind}:${p.id}`);
      if (!allowed.allowed) throw tooMany(allowed.retryAfterSeconds, 'too many requests from this caller');
    }
    await next();
  };
}

export const principalOf = (ctx: Koa.Context): ApiPrincipal => ctx.state.principal as ApiPrincipal;

/**
 * Admin rights: the token carries the scope (admin:write also reads) and, for a user's token,
 * the account is a superuser now (a non-superuser's admin-scoped token gets 403).
 */
export function requireAdmin(need: 'read' | 'write'): Koa.Middleware {
  const scope = `admin:${need}`;
  return async (ctx, next) => {
    const p = principalOf(ctx);
    const scoped = p.scopes.has('admin:write') || (need === 'read' && p.scopes.has('admin:read'));
    if (!scoped) throw insufficientScope(scope);
    if (p.kind === 'account' && !p.superuser) throw new ProblemError(403, 'forbidden', `${scope} is for superusers only`, { headers: { 'WWW-Authenticate': challenge('insufficient_scope', scope) } });
    await next();
  };
}

/** The `account` scope on a user's token (the /me endpoints). */
export function requireAccount(): Koa.Middleware {
  return async (ctx, next) => {
    const p = principalOf(ctx);
    if (p.kind !== 'account' || !p.scopes.has('account')) throw insufficientScope('account', 'this operation needs a user token with the scope account');
    await next();
  };
}

/** Audit actor of a principal. */
export const actorOf = (p: ApiPrincipal) => ({ actorId: p.id, clientId: p.clientId });
