/**
 * Verification of Latch access tokens for resource servers.
 *
 * - JWT access tokens (RFC 9068) are checked against the issuer's published keys: `typ` must be
 *   `at+jwt` (§4, so an ID token is refused), `iss` exact, `aud` containing the audience,
 *   `exp`/`nbf` with a small tolerance, and only the asymmetric algorithms Latch signs with.
 * - Other tokens (personal access tokens `lat_…`, opaque tokens) go to the introspection
 *   endpoint (RFC 7662) when the verifier has client credentials for it; JWTs never do.
 * - Failures are a VerifyError carrying the HTTP status and the RFC 6750 §3 challenge.
 */
import { createLocalJWKSet, decodeProtectedHeader, errors as joseErrors, jwtVerify, type JSONWebKeySet, type JWTPayload } from 'jose';

/** RFC 9068 §4 wants asymmetric signatures; these are the ones Latch signs access tokens with. */
const ALGORITHMS = ['RS256', 'PS256', 'ES256', 'EdDSA'];
/** At most one key set fetch per this many milliseconds, the first fetch included. */
const JWKS_REFETCH_INTERVAL_MS = 30_000;
/** Every call to the authorization server (discovery, key set, introspection) ends within this. */
const FETCH_TIMEOUT_MS = 10_000;
/** Bounds the introspection cache so distinct junk tokens cannot grow it without limit. */
const INTROSPECTION_CACHE_MAX = 10_000;

export interface VerifierOptions {
  /** The issuer exactly as Latch publishes it (`iss` of its tokens). */
  issuer: string;
  /** This API's resource identifier: a token's `aud` must contain it. */
  audience: string;
  /** Leeway for `exp`/`nbf`, in seconds (default 5). */
  clockToleranceSeconds?: number;
  /** Client credentials of this API at Latch, to introspect tokens that are not JWTs. */
  introspection?: { clientId: string; clientSecret: string; cacheSeconds?: number };
  /** The fetch to use (default: the global one), e.g. to route through a proxy. */
  fetch?: typeof fetch;
  /** Milliseconds since the epoch (default Date.now); lets tests move time. */
  now?: () => number;
}

/** What a route may require beyond a valid token; a token lacking one is answered 403. */
export interface Requirements {
  /** Every one of these scopes. */
  scopes?: string[];
  /** The token must be for this organization (`org_id`). */
  organization?: string;
  /** The token's `org_role` must be one of these (so the token must be for an organization). */
  orgRoles?: string[];
  /** The subject must be a superuser (`is_superuser`, issued with scope `roles`). */
  superuser?: boolean;
}

export interface OrganizationClaim {
  id: string;
  slug: string;
  role: string;
}

/** The claims of a verified token. Absent claims are undefined; lists are empty. */
export interface AccessClaims {
  sub: string;
  /** The `scope` claim as a list. */
  scopes: string[];
  client_id?: string;
  email?: string;
  email_verified?: boolean;
  name?: string;
  roles: string[];
  is_superuser: boolean;
  org_id?: string;
  org_role?: string;
  organizations: OrganizationClaim[];
  /** RFC 8693 §4.1 actor, for delegated tokens. */
  act?: Record<string, unknown>;
  /** `jwt`: verified locally; `introspection`: answered by Latch. */
  source: 'jwt' | 'introspection';
  /** The JWT payload or the introspection response, as received. */
  payload: Record<string, unknown>;
}

export interface Verifier {
  /** Resolves to the token's claims, or rejects with a VerifyError. */
  verify(token: string | undefined | null, requirements?: Requirements): Promise<AccessClaims>;
  readonly audience: string;
}

type ErrorCode = 'invalid_token' | 'insufficient_scope';

/** Why a request is refused: `status` (401/403) and the RFC 6750 §3 `WWW-Authenticate` value. */
export class VerifyError extends Error {
  readonly status: 401 | 403;
  readonly challenge: string;
  /** The RFC 6750 §3.1 error code; undefined when no token was sent. */
  readonly code: ErrorCode | undefined;

  constructor(status: 401 | 403, realm: string, code: ErrorCode | undefined, description: string, scope?: string[]) {
    super(description);
    this.name = 'VerifyError';
    this.status = status;
    this.code = code;
    // RFC 6750 §3: no error attribute when the request carried no token (§3.1 last paragraph).
    const params = [`realm="${quoted(realm)}"`];
    if (code) params.push(`error="${code}"`, `error_description="${quoted(description)}"`);
    if (scope?.length) params.push(`scope="${quoted(scope.join(' '))}"`);
    this.challenge = `Bearer ${params.join(', ')}`;
  }
}

/** RFC 9110 §5.6.4 quoted-string: backslash-escape `"` and `\`, drop control characters. */
function quoted(value: string): string {
  // eslint-disable-next-line no-control-regex
  return value.replace(/[\u0000-\u001f\u007f]/g, ' ').replace(/["\\]/g, '\\$&');
}

const stringOr = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

function claimsOf(payload: Record<string, unknown>, source: AccessClaims['source']): AccessClaims {
  const organizations = Array.isArray(payload.organizations)
    ? (payload.organizations as unknown[]).filter((o): o is OrganizationClaim => typeof o === 'object' && o !== null && typeof (o as OrganizationClaim).id === 'string')
    : [];
  return {
    sub: stringOr(payload.sub) ?? '',
    scopes: typeof payload.scope === 'string' ? payload.scope.split(' ').filter(Boolean) : [],
    client_id: stringOr(payload.client_id),
    email: stringOr(payload.email),
    email_verified: typeof payload.email_verified === 'boolean' ? payload.email_verified : undefined,
    name: stringOr(payload.name),
    roles: Array.isArray(payload.roles) ? (payload.roles as unknown[]).filter((r): r is string => typeof r === 'string') : [],
    is_superuser: payload.is_superuser === true,
    org_id: stringOr(payload.org_id),
    org_role: stringOr(payload.org_role),
    organizations,
    act: typeof payload.act === 'object' && payload.act !== null ? (payload.act as Record<string, unknown>) : undefined,
    source,
    payload,
  };
}

/** A compact JWS: three base64url parts whose header parses. Anything else is an opaque token. */
function looksLikeJwt(token: string): boolean {
  if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$/.test(token)) return false;
  try {
    decodeProtectedHeader(token);
    return true;
  } catch {
    return false;
  }
}

async function sha256(value: string): Promise<string> {
  const digest = await globalThis.crypto.subtle.digest('SHA-256', new TextEncoder().encode(value));
  return Buffer.from(digest).toString('base64url');
}

/** RFC 6749 §2.3.1: client id and secret are form-urlencoded before Basic encoding. */
function basic(clientId: string, clientSecret: string): string {
  const enc = (s: string) => encodeURIComponent(s).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${enc(clientId)}:${enc(clientSecret)}`).toString('base64')}`;
}

interface Discovery {
  jwks_uri: string;
  introspection_endpoint?: string;
}

export function createVerifier(options: VerifierOptions): Verifier {
  const { issuer, audience } = options;
  if (!issuer || !audience) throw new TypeError('createVerifier needs an issuer and an audience');
  const tolerance = options.clockToleranceSeconds ?? 5;
  const doFetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const now = options.now ?? Date.now;
  const cacheMs = Math.max(0, options.introspection?.cacheSeconds ?? 30) * 1000;

  const realm = audience;
  const invalid = (description: string) => new VerifyError(401, realm, 'invalid_token', description);

  let discovery: Promise<Discovery> | undefined;
  let keys: { jwks: JSONWebKeySet; kids: Set<string | undefined>; local: ReturnType<typeof createLocalJWKSet> } | undefined;
  let lastJwksFetch = -Infinity;
  let pendingJwks: Promise<void> | undefined;
  const introspected = new Map<string, { until: number; payload: Record<string, unknown> | null }>();

  async function getJson(url: string, init?: RequestInit): Promise<Record<string, unknown>> {
    let res: Response;
    try {
      // Bounded: a Latch that hangs must not hold this request (and every one waiting on the same key set fetch).
      res = await doFetch(url, { ...init, headers: { accept: 'application/json', ...(init?.headers as Record<string, string> | undefined) }, redirect: 'error', signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
    } catch {
      throw new VerifyError(401, realm, 'invalid_token', 'the authorization server could not be reached');
    }
    if (!res.ok) throw new VerifyError(401, realm, 'invalid_token', `the authorization server answered ${res.status}`);
    const body = (await res.json().catch(() => undefined)) as unknown; // a body cut by the timeout is no JSON either
    if (typeof body !== 'object' || body === null) throw new VerifyError(401, realm, 'invalid_token', 'the authorization server sent no JSON object');
    return body as Record<string, unknown>;
  }

  /** Fetched once, on first use; a failure is forgotten so the next request tries again. */
  function discover(): Promise<Discovery> {
    if (!discovery) {
      discovery = (async () => {
        const doc = await getJson(`${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`);
        // RFC 8414 §3.3: the metadata's issuer must be the one configured.
        if (doc.issuer !== issuer) throw invalid('the discovery document names another issuer');
        if (typeof doc.jwks_uri !== 'string') throw invalid('the discovery document has no jwks_uri');
        return { jwks_uri: doc.jwks_uri, introspection_endpoint: stringOr(doc.introspection_endpoint) };
      })();
      discovery.catch(() => {
        discovery = undefined;
      });
    }
    return discovery;
  }

  /** Fetches the key set unless one was fetched within the last 30 s (concurrent callers share one fetch). */
  async function refreshKeys(): Promise<void> {
    if (pendingJwks) return pendingJwks;
    if (now() - lastJwksFetch < JWKS_REFETCH_INTERVAL_MS) return;
    lastJwksFetch = now();
    pendingJwks = (async () => {
      const { jwks_uri } = await discover();
      const body = await getJson(jwks_uri);
      if (!Array.isArray(body.keys)) throw invalid('the key set has no keys');
      const jwks = body as unknown as JSONWebKeySet;
      let local: ReturnType<typeof createLocalJWKSet>;
      try {
        local = createLocalJWKSet(jwks);
      } catch {
        throw invalid('the key set is malformed');
      }
      keys = { jwks, kids: new Set(jwks.keys.map((k) => k.kid)), local };
    })();
    try {
      await pendingJwks;
    } finally {
      pendingJwks = undefined;
    }
  }

  /**
   * RFC 9449 §7.1: a DPoP-bound token (`cnf.jkt`) is worth nothing without a proof of its key, so
   * a resource server that takes bearer tokens only must not accept one: a thief holding just the
   * token would otherwise get in.
   */
  function refuseBound(payload: Record<string, unknown>): void {
    const cnf = payload.cnf as Record<string, unknown> | undefined;
    if (cnf && typeof cnf === 'object' && cnf.jkt !== undefined) throw invalid('the token is bound to a key (DPoP) and cannot be used as a bearer token');
  }

  async function verifyJwt(token: string): Promise<AccessClaims> {
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(token);
    } catch {
      throw invalid('the token is malformed');
    }
    // Refused before any key is looked up: `none`, HS* (the public key as an HMAC secret) and the rest.
    if (typeof header.alg !== 'string' || !ALGORITHMS.includes(header.alg)) throw invalid('the token is not signed with an accepted algorithm');
    if (!keys || !keys.kids.has(header.kid)) await refreshKeys();
    if (!keys) throw invalid('no signing keys are known');
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, keys.local, {
        algorithms: ALGORITHMS,
        issuer,
        audience,
        typ: 'at+jwt',
        clockTolerance: tolerance,
        currentDate: new Date(now()),
        requiredClaims: ['sub', 'exp'],
      }));
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) throw invalid('the token has expired');
      if (err instanceof joseErrors.JWKSNoMatchingKey) throw invalid('the token is signed by an unknown key');
      if (err instanceof joseErrors.JWTClaimValidationFailed) throw invalid(`the token's ${err.claim} claim is not accepted`);
      throw invalid('the token is not valid');
    }
    refuseBound(payload);
    return claimsOf(payload as JWTPayload & Record<string, unknown>, 'jwt');
  }

  async function introspect(token: string): Promise<AccessClaims> {
    const creds = options.introspection;
    if (!creds) throw invalid('the token is not a JWT and introspection is not configured');
    const key = await sha256(token);
    const cached = introspected.get(key);
    let payload: Record<string, unknown> | null;
    if (cached && cached.until > now()) {
      payload = cached.payload;
    } else {
      const { introspection_endpoint } = await discover();
      if (!introspection_endpoint) throw invalid('the authorization server offers no introspection');
      const body = await getJson(introspection_endpoint, {
        method: 'POST',
        headers: { authorization: basic(creds.clientId, creds.clientSecret), 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token }).toString(),
      });
      payload = body.active === true ? body : null;
      if (cacheMs > 0) {
        const exp = typeof payload?.exp === 'number' ? payload.exp * 1000 : Infinity;
        if (introspected.size >= INTROSPECTION_CACHE_MAX) introspected.delete(introspected.keys().next().value!);
        introspected.set(key, { until: Math.min(now() + cacheMs, exp), payload });
      }
    }
    // RFC 7662 §2.2: inactive tokens say nothing else.
    if (!payload) throw invalid('the token is not active');
    if (payload.iss !== undefined && payload.iss !== issuer) throw invalid("the token's iss claim is not accepted");
    const aud = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
    if (!aud.includes(audience)) throw invalid("the token's aud claim is not accepted");
    if (typeof payload.exp === 'number' && payload.exp * 1000 + tolerance * 1000 <= now()) throw invalid('the token has expired');
    if (typeof payload.nbf === 'number' && payload.nbf * 1000 - tolerance * 1000 > now()) throw invalid('the token is not valid yet');
    if (typeof payload.sub !== 'string' || payload.sub === '') throw invalid("the token's sub claim is missing");
    refuseBound(payload);
    return claimsOf(payload, 'introspection');
  }

  function check(claims: AccessClaims, req: Requirements): void {
    const missing = (req.scopes ?? []).filter((s) => !claims.scopes.includes(s));
    if (missing.length) throw new VerifyError(403, realm, 'insufficient_scope', 'the token lacks a required scope', req.scopes);
    if (req.superuser && !claims.is_superuser) throw new VerifyError(403, realm, 'insufficient_scope', 'the subject must be a superuser');
    if (req.organization !== undefined && claims.org_id?.toLowerCase() !== req.organization.toLowerCase()) {
      throw new VerifyError(403, realm, 'insufficient_scope', 'the token is not for this organization');
    }
    if (req.orgRoles?.length && (!claims.org_role || !req.orgRoles.includes(claims.org_role))) {
      throw new VerifyError(403, realm, 'insufficient_scope', 'the organization role does not allow this');
    }
  }

  return {
    audience,
    async verify(token, requirements = {}) {
      if (!token) throw new VerifyError(401, realm, undefined, 'an access token is required');
      const claims = looksLikeJwt(token) ? await verifyJwt(token) : await introspect(token);
      check(claims, requirements);
      return claims;
    },
  };
}

type HeaderValue = string | string[] | undefined;
type Headers = Record<string, HeaderValue>;

const first = (v: HeaderValue): string | undefined => (Array.isArray(v) ? v[0] : v);

/** RFC 6750 §2.1: `Authorization: Bearer <token>` (scheme case-insensitive). */
export function bearerToken(headers: Headers): string | undefined {
  const value = first(headers.authorization);
  const match = value ? /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(value) : null;
  return match?.[1];
}

/** RFC 9457 problem details for a refusal. */
export function problemOf(err: VerifyError): { type: string; title: string; status: number; detail: string } {
  return { type: 'about:blank', title: err.status === 403 ? 'Forbidden' : 'Unauthorized', status: err.status, detail: err.message };
}

/** A header present without a usable Bearer token is a malformed request, answered like an invalid token. */
function tokenOrRefusal(headers: Headers, realm: string): string | undefined {
  const token = bearerToken(headers);
  if (!token && first(headers.authorization)) throw new VerifyError(401, realm, 'invalid_token', 'the Authorization header is not a Bearer token');
  return token;
}

/** The parts of a Koa context the middleware uses (no dependency on Koa). */
export interface KoaLikeContext {
  headers: Headers;
  status: number;
  body: unknown;
  type: string;
  set(field: string, value: string): void;
  state: Record<string, unknown>;
  /** Path parameters, as @koa/router sets them. */
  params?: Record<string, string>;
}

/** Fixed requirements, or requirements read off the request (a path parameter naming the organization). */
export type RequirementsOf<T> = Requirements | ((request: T) => Requirements);

const requirementsFor = <T>(requirements: RequirementsOf<T>, request: T): Requirements => (typeof requirements === 'function' ? requirements(request) : requirements);

/**
 * Koa middleware: the claims land on `ctx.state.auth`; refusals are 401/403 problem+json.
 * `requirements` may be a function of the context: `koaBearer(v, (ctx) => ({ organization: ctx.params.org_id }))`.
 */
export function koaBearer<C extends KoaLikeContext = KoaLikeContext>(verifier: Verifier, requirements: RequirementsOf<C> = {}) {
  return async (ctx: C, next: () => Promise<unknown>): Promise<void> => {
    let claims: AccessClaims;
    try {
      claims = await verifier.verify(tokenOrRefusal(ctx.headers, verifier.audience), requirementsFor(requirements, ctx));
    } catch (err) {
      if (!(err instanceof VerifyError)) throw err;
      ctx.status = err.status;
      ctx.set('WWW-Authenticate', err.challenge);
      ctx.set('Cache-Control', 'no-store');
      ctx.body = JSON.stringify(problemOf(err));
      ctx.type = 'application/problem+json';
      return;
    }
    ctx.state.auth = claims;
    await next();
  };
}

/** The parts of an Express request and response the middleware uses (node:http's suffice). */
export interface ExpressLikeRequest {
  headers: Headers;
  auth?: AccessClaims;
}
export interface ExpressLikeResponse {
  statusCode: number;
  setHeader(name: string, value: string): unknown;
  end(body?: string): unknown;
}

/** Express middleware: the claims land on `req.auth`; refusals are 401/403 problem+json. `requirements` may be a function of the request. */
export function expressBearer<R extends ExpressLikeRequest = ExpressLikeRequest>(verifier: Verifier, requirements: RequirementsOf<R> = {}) {
  return (req: R, res: ExpressLikeResponse, next: (err?: unknown) => void): void => {
    let token: string | undefined;
    try {
      token = tokenOrRefusal(req.headers, verifier.audience);
    } catch (err) {
      refuse(res, err as VerifyError);
      return;
    }
    let required: Requirements;
    try {
      required = requirementsFor(requirements, req);
    } catch (err) {
      next(err);
      return;
    }
    verifier.verify(token, required).then(
      (claims) => {
        req.auth = claims;
        next();
      },
      (err: unknown) => {
        if (err instanceof VerifyError) refuse(res, err);
        else next(err);
      },
    );
  };
}

function refuse(res: ExpressLikeResponse, err: VerifyError): void {
  res.statusCode = err.status;
  res.setHeader('WWW-Authenticate', err.challenge);
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Content-Type', 'application/problem+json');
  res.end(JSON.stringify(problemOf(err)));
}

/** The parts of an upgrade request (node:http IncomingMessage) verifyUpgrade reads. */
export interface UpgradeRequest {
  headers: Headers;
  url?: string;
}

export interface UpgradeAuth {
  auth: AccessClaims;
  /** `bearer` when the token came as the subprotocol pair: the server must select that subprotocol. */
  protocol: 'bearer' | undefined;
}

/**
 * The subprotocol a WebSocket server selects (for `ws`'s synchronous `handleProtocols`): `bearer`
 * when the client offered the pair `bearer, <token>`, never the token itself.
 */
export function bearerProtocol(offered: Iterable<string>): 'bearer' | false {
  for (const p of offered) if (p === 'bearer') return 'bearer';
  return false;
}

/**
 * Authenticates a WebSocket upgrade. Browsers cannot set headers on a WebSocket, so besides
 * `Authorization: Bearer` the token may come as the subprotocol pair `Sec-WebSocket-Protocol:
 * bearer, <token>` (subprotocol names are case-sensitive, RFC 6455 §4.1) or in the query string
 * as `?access_token=` (RFC 6750 §2.3) or `?token=`. Rejects with a VerifyError; a server
 * answers it by accepting the socket and closing it with 1008 (RFC 6455 §7.4.1, policy violation).
 */
export async function verifyUpgrade(verifier: Verifier, req: UpgradeRequest, requirements: Requirements = {}): Promise<UpgradeAuth> {
  const fromHeader = tokenOrRefusal(req.headers, verifier.audience);
  if (fromHeader) return { auth: await verifier.verify(fromHeader, requirements), protocol: undefined };
  const offered = (first(req.headers['sec-websocket-protocol']) ?? '').split(',').map((p) => p.trim());
  const at = offered.indexOf('bearer');
  if (at >= 0 && offered[at + 1]) return { auth: await verifier.verify(offered[at + 1], requirements), protocol: 'bearer' };
  const query = new URL(req.url ?? '/', 'http://localhost').searchParams;
  const fromQuery = query.get('access_token') ?? query.get('token');
  return { auth: await verifier.verify(fromQuery ?? undefined, requirements), protocol: undefined };
}
