import { createHash } from 'node:crypto';

import * as oidc from 'openid-client';

import { AppError } from '../errors/index.js';
import type { Logger } from '../lib/logger.js';
import { isLoopbackHost } from '../lib/loopback.js';
import { constantTimeEqual } from '../services/secrets.js';

/**
 * Latch as a relying party of an upstream identity provider: the protocol half of "sign in with
 * GitHub, Google or any OpenID Connect provider". It builds the authorization request, checks
 * the callback and returns who signed in; where the transaction is kept, which account the
 * identity belongs to and which page is shown are the sign-in flow's business. Nothing here
 * touches storage, so one client serves every process and every provider.
 */

/** What the protocol needs of a configured provider (the provider table holds more). */
export interface UpstreamProvider {
  name: string;
  kind: 'oidc' | 'github';
  /** Named in the messages a person reads ("Google could not be reached"). */
  display_name?: string | null;
  /** oidc: the issuer, discovered at `${issuer}/.well-known/openid-configuration`. */
  issuer?: string | null;
  client_id: string;
  client_secret: string;
  scopes: string[];
  /** github: REST API base, `https://api.github.com` by default (GitHub Enterprise: `https://HOST/api/v3`). */
  api_url?: string | null;
  /** github: web base for the OAuth endpoints, `https://github.com` by default. */
  web_url?: string | null;
}

/**
 * What start() hands to the sign-in flow and finish() needs back: the caller keeps it on the
 * server side (or encrypted) for the one callback it belongs to, and drops it after use. The
 * code_verifier is a secret of this one exchange (RFC 7636 §4.1).
 */
export interface UpstreamTransaction {
  provider: string;
  state: string;
  nonce?: string;
  code_verifier?: string;
  redirect_uri: string;
}

/** Who signed in upstream. */
export interface UpstreamIdentity {
  /** The upstream's stable identifier: the ID token's `sub`, GitHub's numeric user id. */
  subject: string;
  email: string | null;
  /** True only when the upstream says so of this very address. */
  email_verified: boolean;
  name: string | null;
  /** oidc: the validated ID token's claims, then userinfo's when it was read; github: the user. */
  claims: Record<string, unknown>;
}

export type UpstreamErrorReason = 'access_denied' | 'state' | 'unreachable' | 'bad_id_token' | 'no_verified_email' | 'upstream_error';

/**
 * Why an upstream sign-in did not give an identity. The message is short and meant for the
 * person signing in; it is shown even on a 502 (it names the provider's failure, never a
 * secret). `detail` is for the log only: the library's error code and message, the upstream's
 * `error` and `error_description`, a network error code — never a secret, code or token.
 */
export class UpstreamError extends AppError {
  // An upstream's failure is explained to the user even when it is a 502: "GitHub could not be
  // reached" is the truth, and it is free of anything secret.
  override readonly expose: boolean = true;

  constructor(
    readonly reason: UpstreamErrorReason,
    status: number,
    message: string,
    readonly provider: string,
    readonly detail?: string,
  ) {
    super(status, `upstream-${reason.replace(/_/g, '-')}`, message);
  }
}

export interface UpstreamClient {
  /** The authorization request URL to send the browser to, and the transaction to keep for the callback. */
  start(provider: UpstreamProvider, redirectUri: string): Promise<{ url: URL; transaction: UpstreamTransaction }>;
  /** Checks the callback (state, error), exchanges the code and returns who signed in. */
  finish(provider: UpstreamProvider, transaction: UpstreamTransaction, callbackUrl: URL): Promise<UpstreamIdentity>;
  /** Drops what is cached of a provider (its discovery): called when it is changed or deleted. */
  forget(name: string): void;
}

export interface UpstreamClientOptions {
  logger: Logger;
  /** The fetch every upstream request goes through (tests count or break requests). */
  fetch?: typeof fetch;
  /** The clock of the discovery cache, in milliseconds. */
  now?: () => number;
  /** The bound of every upstream request; 10 s by default. */
  timeoutMs?: number;
  /** How long a discovery document is trusted; 1 h by default. */
  discoveryTtlMs?: number;
  /**
   * How long a failed discovery is remembered, so that a provider that is down is not asked
   * again (and waited for) on every click; 5 s by default.
   */
  discoveryRetryMs?: number;
}

/** GitHub.com's endpoints; a provider's `web_url`/`api_url` point at GitHub Enterprise instead. */
export const GITHUB_WEB_URL = 'https://github.com';
export const GITHUB_API_URL = 'https://api.github.com';
const GITHUB_API_VERSION = '2022-11-28';
const USER_AGENT = 'Latch (OpenID Connect provider; upstream sign-in)';

/**
 * Why an upstream URL may not be used, or undefined when it may: https everywhere, plain http
 * only on this machine (tests, development). A token or a code sent in clear over a network
 * is readable by anyone on the path (RFC 6749 §3.1 and §3.2 require TLS).
 */
export function upstreamUrlProblem(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'must be an absolute URL';
  }
  if (url.protocol === 'https:') return undefined;
  if (url.protocol === 'http:' && isLoopbackHost(url.hostname)) return undefined;
  return 'must use https (http only for 127.0.0.1 or localhost)';
}

/** Thrown inside the guarded fetch; openid-client wraps it, describe() unwraps it. */
class TransportFailure extends Error {
  constructor(
    readonly detail: string,
    /** A URL the upstream named that Latch will not fetch (plain http elsewhere): a misconfigured upstream, not an outage. */
    readonly refused = false,
  ) {
    super(detail);
  }
}

interface CachedDiscovery {
  issuer: string;
  /** ms epoch after which the entry is stale. */
  expires: number;
  pending?: Promise<oidc.Configuration>;
  discovered?: oidc.Configuration;
  /** The discovered server with client authentication settled; rebuilt when the client changes. */
  config?: oidc.Configuration;
  /** What the Configuration was built for: client id and a digest of the secret. */
  client?: string;
  failure?: UpstreamError;
}

const displayName = (provider: UpstreamProvider) => provider.display_name || (provider.kind === 'github' ? 'GitHub' : 'The sign-in provider');

export function createUpstreamClient(opts: UpstreamClientOptions): UpstreamClient {
  const { logger } = opts;
  const baseFetch = opts.fetch ?? fetch;
  const now = opts.now ?? Date.now;
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const discoveryTtlMs = opts.discoveryTtlMs ?? 3_600_000;
  const discoveryRetryMs = opts.discoveryRetryMs ?? 5_000;
  const discoveries = new Map<string, CachedDiscovery>();

  /**
   * Every upstream request: only to allowed URLs, bounded in time, a network failure or a 5xx
   * answer turned into "unreachable" (RFC 9110 §15.6: the upstream failed, not the user).
   */
  const guardedFetch = async (input: string | URL, init: RequestInit = {}): Promise<Response> => {
    const url = String(input);
    const problem = upstreamUrlProblem(url);
    if (problem) throw new TransportFailure(`refused ${url.split('?')[0]}: ${problem}`, true);
    const signal = init.signal ? AbortSignal.any([init.signal, AbortSignal.timeout(timeoutMs)]) : AbortSignal.timeout(timeoutMs);
    let res: Response;
    try {
      res = await baseFetch(url, { ...init, signal });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause;
      const name = (err as Error).name;
      throw new TransportFailure(name === 'TimeoutError' || name === 'AbortError' ? `timed out after ${timeoutMs} ms` : (cause?.code ?? (err as Error).message));
    }
    if (res.status >= 500) {
      await res.body?.cancel();
      throw new TransportFailure(`${new URL(url).pathname} answered ${res.status}`);
    }
    return res;
  };

  const fail = (provider: UpstreamProvider, error: UpstreamError): never => {
    // Expected failures (a user who cancels, a stale tab) are info; an upstream that misbehaves is a warning.
    const level = error.status >= 500 ? 'warn' : 'info';
    logger[level]('upstream sign-in failed', { provider: provider.name, kind: provider.kind, reason: error.reason, detail: error.detail });
    throw error;
  };

  const unreachable = (provider: UpstreamProvider, detail: string) =>
    new UpstreamError('unreachable', 502, `${displayName(provider)} could not be reached. Please try again in a moment.`, provider.name, detail);
  const misbehaved = (provider: UpstreamProvider, detail: string) =>
    new UpstreamError('upstream_error', 502, `${displayName(provider)} gave an answer Latch cannot use. Please try again or choose another way to sign in.`, provider.name, detail);

  /** The TransportFailure somewhere in an error's cause chain (openid-client wraps what fetch throws). */
  function transportFailure(err: unknown): TransportFailure | undefined {
    for (let e = err, i = 0; e && i < 5; e = (e as { cause?: unknown }).cause, i++) if (e instanceof TransportFailure) return e;
    return undefined;
  }

  function checkUrl(provider: UpstreamProvider, field: string, value: string) {
    const problem = upstreamUrlProblem(value);
    if (problem) fail(provider, misbehaved(provider, `${field} ${problem}`));
  }

  // --- OpenID Connect ---------------------------------------------------------------------

  const clientKey = (provider: UpstreamProvider) => `${provider.client_id}\u0000${createHash('sha256').update(provider.client_secret).digest('base64url')}`;

  /** A Configuration for the provider as it is now, from the cached discovery. */
  function configured(provider: UpstreamProvider, entry: CachedDiscovery, discovered: oidc.Configuration): oidc.Configuration {
    const key = clientKey(provider);
    if (entry.config && entry.client === key) return entry.config;
    const server = discovered.serverMetadata();
    // OIDC Discovery §3: token_endpoint_auth_methods_supported defaults to client_secret_basic;
    // RFC 6749 §2.3.1 prefers it too. client_secret_post only when basic is not offered.
    const methods = server.token_endpoint_auth_methods_supported ?? ['client_secret_basic'];
    const auth = methods.includes('client_secret_basic') || !methods.includes('client_secret_post') ? oidc.ClientSecretBasic(provider.client_secret) : oidc.ClientSecretPost(provider.client_secret);
    const config = new oidc.Configuration(server, provider.client_id, { client_secret: provider.client_secret }, auth);
    config[oidc.customFetch] = guardedFetch as oidc.CustomFetch;
    config.timeout = Math.ceil(timeoutMs / 1000);
    // openid-client trusts an ID token from the token endpoint on the strength of TLS alone
    // (OIDC Core §3.1.3.7 step 6 allows it); Latch verifies its signature against the
    // upstream's JWKS as well, so a token endpoint answer cannot put words in the upstream's mouth.
    oidc.enableNonRepudiationChecks(config);
    if (new URL(provider.issuer!).protocol === 'http:') oidc.allowInsecureRequests(config);
    entry.config = config;
    entry.client = key;
    return config;
  }

  async function discover(provider: UpstreamProvider): Promise<oidc.Configuration> {
    const issuer = provider.issuer;
    if (!issuer) return fail(provider, misbehaved(provider, 'no issuer configured'));
    checkUrl(provider, 'issuer', issuer);
    let entry = discoveries.get(provider.name);
    if (entry && (entry.issuer !== issuer || (entry.expires <= now() && !entry.pending))) entry = undefined;
    if (entry?.failure) return fail(provider, entry.failure);
    if (!entry) {
      const fresh: CachedDiscovery = { issuer, expires: Infinity };
      fresh.pending = oidc
        .discovery(new URL(issuer), provider.client_id, undefined, undefined, {
          [oidc.customFetch]: guardedFetch as oidc.CustomFetch,
          timeout: Math.ceil(timeoutMs / 1000),
          execute: new URL(issuer).protocol === 'http:' ? [oidc.allowInsecureRequests] : [],
        })
        .then(
          (discovered) => {
            fresh.pending = undefined;
            fresh.discovered = discovered;
            fresh.expires = now() + discoveryTtlMs;
            return discovered;
          },
          (err: unknown) => {
            fresh.pending = undefined;
            fresh.expires = now() + discoveryRetryMs;
            const transport = transportFailure(err);
            fresh.failure = transport && !transport.refused ? unreachable(provider, `discovery: ${transport.detail}`) : misbehaved(provider, `discovery: ${transport?.detail ?? libraryDetail(err)}`);
            throw fresh.failure;
          },
        );
      discoveries.set(provider.name, fresh);
      entry = fresh;
    }
    let discovered: oidc.Configuration;
    try {
      discovered = entry.pending ? await entry.pending : entry.discovered!;
    } catch (err) {
      return fail(provider, err as UpstreamError);
    }
    try {
      return configured(provider, entry, discovered);
    } catch (err) {
      // An empty client_id, or a discovered server openid-client will not work with.
      return fail(provider, misbehaved(provider, `client: ${libraryDetail(err)}`));
    }
  }

  async function startOidc(provider: UpstreamProvider, redirectUri: string) {
    const config = await discover(provider);
    const code_verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const nonce = oidc.randomNonce();
    // OIDC Core §3.1.2.1: without the openid scope the request is plain OAuth and no ID token comes back.
    const scopes = provider.scopes.includes('openid') ? provider.scopes : ['openid', ...provider.scopes];
    const params = {
      response_type: 'code',
      // The callback is a GET with the parameters in its query (OAuth 2.0 Multiple Response Types §2.1).
      response_mode: 'query',
      redirect_uri: redirectUri,
      scope: scopes.join(' '),
      state,
      nonce,
      // RFC 7636 §4.2, required by RFC 9700 §2.1.1 even for confidential clients.
      code_challenge: await oidc.calculatePKCECodeChallenge(code_verifier),
      code_challenge_method: 'S256',
    };
    let url: URL;
    try {
      url = oidc.buildAuthorizationUrl(config, params);
    } catch (err) {
      // openid-client refuses a plain-http authorization endpoint of an https issuer here.
      return fail(provider, misbehaved(provider, `authorization_endpoint: ${libraryDetail(err)}`));
    }
    // The browser is sent there with the request: the same https rule as for what Latch fetches.
    checkUrl(provider, 'authorization_endpoint', url.href);
    return { url, transaction: { provider: provider.name, state, nonce, code_verifier, redirect_uri: redirectUri } };
  }

  async function finishOidc(provider: UpstreamProvider, transaction: UpstreamTransaction, callback: URL): Promise<UpstreamIdentity> {
    const config = await discover(provider);
    if (!transaction.nonce || !transaction.code_verifier) return fail(provider, stateError(provider, 'transaction without nonce or code_verifier'));
    let tokens: Awaited<ReturnType<typeof oidc.authorizationCodeGrant>>;
    try {
      tokens = await oidc.authorizationCodeGrant(config, callback, { expectedState: transaction.state, expectedNonce: transaction.nonce, pkceCodeVerifier: transaction.code_verifier, idTokenExpected: true });
    } catch (err) {
      return fail(provider, classifyOidc(provider, err));
    }
    const claims: Record<string, unknown> = { ...tokens.claims()! };
    const subject = claims.sub as string;
    let source: Record<string, unknown> = claims;
    // OIDC Core §5.4: scope-requested claims may come from userinfo only; the ID token's sub is
    // the one userinfo must match (§5.3.4), which fetchUserInfo checks.
    if (typeof claims.email !== 'string' && config.serverMetadata().userinfo_endpoint) {
      try {
        const userinfo = await oidc.fetchUserInfo(config, tokens.access_token, subject);
        for (const [k, v] of Object.entries(userinfo)) if (!(k in claims)) claims[k] = v;
        source = userinfo as Record<string, unknown>;
      } catch (err) {
        return fail(provider, classifyOidc(provider, err));
      }
    }
    const email = typeof source.email === 'string' && source.email ? source.email : null;
    const verified = email !== null && (source.email_verified === true || source.email_verified === 'true');
    const name = typeof claims.name === 'string' && claims.name ? claims.name : typeof claims.preferred_username === 'string' ? claims.preferred_username : null;
    return { subject, email, email_verified: verified, name, claims };
  }

  /** What openid-client (or oauth4webapi beneath it) threw, as an UpstreamError. */
  function classifyOidc(provider: UpstreamProvider, err: unknown): UpstreamError {
    const transport = transportFailure(err);
    if (transport) return transport.refused ? misbehaved(provider, transport.detail) : unreachable(provider, transport.detail);
    if (err instanceof oidc.ResponseBodyError) {
      // RFC 6749 §5.2: invalid_grant is a code that is unknown, used already or expired: a replayed
      // or stale callback, which a fresh attempt fixes. Anything else is the client's configuration.
      const detail = `token endpoint: ${err.error}${err.error_description ? ` (${err.error_description})` : ''}`;
      if (err.error === 'invalid_grant') return expiredCode(provider, detail);
      return misbehaved(provider, detail);
    }
    const code = (err as { code?: string }).code;
    const message = (err as Error).message ?? String(err);
    const causeMessage = ((err as { cause?: { message?: string } }).cause?.message ?? '') as string;
    const detail = libraryDetail(err);
    // RFC 9207 §2.4: an authorization response whose `iss` is not this provider's was meant for
    // another one (a mix-up): refused like a foreign state, before any code is exchanged.
    if (code === 'OAUTH_INVALID_RESPONSE' && /"iss" \(issuer\) (response )?parameter|response parameter "iss"/.test(message + ' ' + causeMessage)) return stateError(provider, detail);
    // ID token checks: claim values (iss, aud, nonce, azp), timestamps (exp, iat), the key and the
    // signature (OIDC Core §3.1.3.7). 502: the upstream's answer cannot be trusted (RFC 9110 §15.6.3).
    if (code === 'OAUTH_JWT_CLAIM_COMPARISON_FAILED' || code === 'OAUTH_JWT_TIMESTAMP_CHECK_FAILED' || code === 'OAUTH_KEY_SELECTION_FAILED') return badIdToken(provider, detail);
    if ((code === 'OAUTH_INVALID_RESPONSE' || code === 'OAUTH_PARSE_ERROR') && /JWT|ID Token|id_token/.test(`${message} ${causeMessage}`)) return badIdToken(provider, detail);
    return misbehaved(provider, detail);
  }

  const badIdToken = (provider: UpstreamProvider, detail: string) =>
    new UpstreamError('bad_id_token', 502, `${displayName(provider)} returned a sign-in token that could not be verified. Please try again.`, provider.name, detail);

  // --- GitHub -------------------------------------------------------------------------------

  const webUrl = (provider: UpstreamProvider) => (provider.web_url || GITHUB_WEB_URL).replace(/\/+$/, '');
  const apiUrl = (provider: UpstreamProvider) => (provider.api_url || GITHUB_API_URL).replace(/\/+$/, '');

  async function startGithub(provider: UpstreamProvider, redirectUri: string) {
    checkUrl(provider, 'web_url', webUrl(provider));
    checkUrl(provider, 'api_url', apiUrl(provider));
    const code_verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    // GitHub's web application flow, step 1 (docs.github.com "Authorizing OAuth apps"), with
    // PKCE S256 (RFC 7636 §4.3), which GitHub supports and an upstream that ignores it ignores.
    const url = new URL(`${webUrl(provider)}/login/oauth/authorize`);
    url.searchParams.set('client_id', provider.client_id);
    url.searchParams.set('redirect_uri', redirectUri);
    url.searchParams.set('scope', provider.scopes.join(' '));
    url.searchParams.set('state', state);
    url.searchParams.set('code_challenge', await oidc.calculatePKCECodeChallenge(code_verifier));
    url.searchParams.set('code_challenge_method', 'S256');
    return { url, transaction: { provider: provider.name, state, code_verifier, redirect_uri: redirectUri } };
  }

  async function githubJson(provider: UpstreamProvider, url: string, init: RequestInit): Promise<{ status: number; body: unknown }> {
    let res: Response;
    try {
      res = await guardedFetch(url, { ...init, redirect: 'manual' });
    } catch (err) {
      return fail(provider, err instanceof TransportFailure && !err.refused ? unreachable(provider, err.detail) : misbehaved(provider, err instanceof TransportFailure ? err.detail : String(err)));
    }
    const path = new URL(url).pathname;
    let body: unknown;
    try {
      body = await res.json();
    } catch {
      return fail(provider, misbehaved(provider, `${path} answered ${res.status} without JSON`));
    }
    return { status: res.status, body };
  }

  async function finishGithub(provider: UpstreamProvider, transaction: UpstreamTransaction, callback: URL): Promise<UpstreamIdentity> {
    const code = callback.searchParams.get('code');
    if (!code) return fail(provider, misbehaved(provider, 'callback without code'));
    checkUrl(provider, 'web_url', webUrl(provider));
    checkUrl(provider, 'api_url', apiUrl(provider));
    // Step 2: exchange the code. GitHub answers 200 even on failure, with an `error` field.
    const form = new URLSearchParams({ client_id: provider.client_id, client_secret: provider.client_secret, code, redirect_uri: transaction.redirect_uri });
    if (transaction.code_verifier) form.set('code_verifier', transaction.code_verifier);
    const exchange = await githubJson(provider, `${webUrl(provider)}/login/oauth/access_token`, {
      method: 'POST',
      headers: { accept: 'application/json', 'content-type': 'application/x-www-form-urlencoded', 'user-agent': USER_AGENT },
      body: form.toString(),
    });
    const token = exchange.body as { access_token?: unknown; token_type?: unknown; error?: unknown; error_description?: unknown };
    if (typeof token?.error === 'string') {
      const detail = `access_token: ${token.error}${typeof token.error_description === 'string' ? ` (${token.error_description})` : ''}`;
      // bad_verification_code: the code is unknown, used or expired (a replayed or stale callback).
      if (token.error === 'bad_verification_code') return fail(provider, expiredCode(provider, detail));
      return fail(provider, misbehaved(provider, detail));
    }
    if (exchange.status !== 200 || typeof token?.access_token !== 'string' || !token.access_token) return fail(provider, misbehaved(provider, `access_token answered ${exchange.status} without a token`));
    // Step 3: the API with the token (docs.github.com REST "Users" and "Emails").
    const api = { authorization: `Bearer ${token.access_token}`, accept: 'application/vnd.github+json', 'x-github-api-version': GITHUB_API_VERSION, 'user-agent': USER_AGENT };
    const user = await githubJson(provider, `${apiUrl(provider)}/user`, { headers: api });
    const u = user.body as { id?: unknown; login?: unknown; name?: unknown };
    if (user.status !== 200 || !u || typeof u.id !== 'number' || !Number.isSafeInteger(u.id)) return fail(provider, misbehaved(provider, `/user answered ${user.status} without a numeric id`));
    const emails = await githubJson(provider, `${apiUrl(provider)}/user/emails`, { headers: api });
    const list = emails.status === 200 && Array.isArray(emails.body) ? (emails.body as { email?: unknown; primary?: unknown; verified?: unknown }[]) : [];
    // Only the primary address, and only when GitHub has verified it: a secondary verified
    // address is not who the account says it is by default, and the public `email` of /user is
    // whatever the user typed.
    const primary = list.find((e) => e && e.primary === true && e.verified === true && typeof e.email === 'string' && e.email);
    if (!primary) return fail(provider, new UpstreamError('no_verified_email', 403, 'GitHub did not return a verified email address. Verify your primary email address on GitHub, or choose another way to sign in.', provider.name, `/user/emails answered ${emails.status} with ${list.length} addresses, no verified primary`));
    const name = typeof u.name === 'string' && u.name ? u.name : typeof u.login === 'string' ? u.login : null;
    const claims: Record<string, unknown> = {};
    for (const k of ['id', 'login', 'name', 'avatar_url', 'html_url', 'type']) if (k in u) claims[k] = (u as Record<string, unknown>)[k];
    claims.email = primary.email;
    return { subject: String(u.id), email: primary.email as string, email_verified: true, name, claims };
  }

  // --- both kinds ---------------------------------------------------------------------------

  const stateError = (provider: UpstreamProvider, detail: string) =>
    new UpstreamError('state', 400, 'This sign-in link is not valid any more. Please start again from the sign-in page.', provider.name, detail);
  const expiredCode = (provider: UpstreamProvider, detail: string) =>
    new UpstreamError('upstream_error', 400, `${displayName(provider)} did not accept this sign-in (it may have been used already or have expired). Please start again from the sign-in page.`, provider.name, detail);

  /**
   * The checks every callback passes before anything is sent upstream: the transaction is this
   * provider's, and `state` is the one this transaction sent (RFC 6749 §10.12: the CSRF check,
   * done first so that a forged error response is refused as forged). Then an error response
   * (RFC 6749 §4.1.2.1) ends the sign-in.
   */
  function checkCallback(provider: UpstreamProvider, transaction: UpstreamTransaction, callback: URL) {
    if (transaction.provider !== provider.name) fail(provider, stateError(provider, `transaction of provider ${transaction.provider}`));
    const states = callback.searchParams.getAll('state');
    if (states.length !== 1 || !constantTimeEqual(states[0]!, transaction.state)) fail(provider, stateError(provider, states.length === 0 ? 'callback without state' : 'state does not match'));
    const error = callback.searchParams.get('error');
    if (error === 'access_denied') fail(provider, new UpstreamError('access_denied', 403, `Sign-in with ${provider.display_name || (provider.kind === 'github' ? 'GitHub' : 'the provider')} was cancelled or refused.`, provider.name, 'access_denied'));
    if (error !== null) {
      const description = callback.searchParams.get('error_description');
      fail(provider, new UpstreamError('upstream_error', 400, `${displayName(provider)} could not complete the sign-in. Please try again or choose another way to sign in.`, provider.name, `${error.slice(0, 64)}${description ? ` (${description.slice(0, 200)})` : ''}`));
    }
  }

  return {
    async start(provider, redirectUri) {
      return provider.kind === 'github' ? startGithub(provider, redirectUri) : startOidc(provider, redirectUri);
    },

    async finish(provider, transaction, callbackUrl) {
      checkCallback(provider, transaction, callbackUrl);
      // The token request's redirect_uri is the one the authorization request sent (RFC 6749
      // §4.1.3), whatever host or proxy the callback reached Latch through.
      const callback = new URL(transaction.redirect_uri);
      callback.search = callbackUrl.search;
      return provider.kind === 'github' ? finishGithub(provider, transaction, callback) : finishOidc(provider, transaction, callback);
    },

    forget(name) {
      discoveries.delete(name);
    },
  };
}

/** An openid-client error for the log: its code and static message, never its cause (which may hold a response body). */
function libraryDetail(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  const message = err instanceof Error ? err.message : String(err);
  const cause = (err as { cause?: unknown }).cause;
  const causeMessage = cause instanceof Error ? `: ${cause.message}` : '';
  return `${typeof code === 'string' ? `${code} ` : ''}${message}${causeMessage}`.slice(0, 300);
}
