import { createHash, randomBytes } from 'node:crypto';

import { createLocalJWKSet, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import type Koa from 'koa';

import type { Logger } from '../lib/logger.js';
import type { Oidc } from '../oidc/provider.js';
import type { AccountRecord } from '../repositories/accounts.js';
import type { AccountService } from '../services/accounts.js';
import type { Secrets } from '../services/secrets.js';
import type { Payload, SessionService } from '../services/sessions.js';
import { ACCOUNT_CLIENT_ID, type AccountCookies, type AccountSession } from './account-session.js';

/**
 * Where Latch's own token endpoint answers this process: the account page redeems its
 * authorization codes over loopback HTTP. The port is known once the server listens.
 */
export interface Loopback {
  host: string;
  port: number | undefined;
}

export interface SignedIn {
  account: AccountRecord;
  cookie: AccountSession;
  /** Every live Latch session of the account. */
  sessions: Payload[];
  /** The Latch session this account-page session came from. */
  current: Payload;
}

/** The scopes the account page asks for. */
const ACCOUNT_SCOPE = 'openid profile email';

export const queryString = (ctx: Koa.Context, name: string): string | undefined => {
  const v = ctx.query[name];
  const s = Array.isArray(v) ? v[0] : v;
  return typeof s === 'string' && s !== '' ? s : undefined;
};

/**
 * A path under /account to come back to after signing in: "/account" and up to four segments of
 * [A-Za-z0-9_-] below it (an organization page, an invitation link carrying its token), never a
 * query, a dot segment, a second slash or another origin, so no open redirect.
 */
const accountPath = (path: string) => (/^\/account(\/[A-Za-z0-9_-]{1,128}){0,4}$/.test(path) && !path.startsWith('/account/callback') ? path : '/account');

type Problem = (ctx: Koa.Context, status: number, title: string, description: string, error?: string) => Promise<void>;

/**
 * How the account page signs in: it is an OpenID Connect client of Latch itself
 * (`latch-account`, public, first-party): authorization code + PKCE through /auth, the code
 * redeemed at Latch's token endpoint over loopback, the ID token verified against the
 * provider's keys, then a signed cookie for an hour, bound to the Latch session it came from
 * (ending that session ends it too).
 */
export function createAccountSignIn(deps: { issuer: string; oidc: Oidc; secrets: Secrets; accounts: AccountService; sessions: SessionService; cookies: AccountCookies; logger: Logger; loopback: Loopback; problem: Problem }) {
  const { issuer, oidc, cookies, logger, problem } = deps;
  const redirectUri = `${issuer}/account/callback`;

  /** Starts the authorization code flow with PKCE (RFC 7636, S256) for the account page. */
  function signIn(ctx: Koa.Context, returnTo: string) {
    const state = randomBytes(32).toString('base64url');
    const nonce = randomBytes(32).toString('base64url');
    const verifier = randomBytes(32).toString('base64url');
    cookies.startLogin(ctx, { state, nonce, verifier, returnTo: accountPath(returnTo) });
    const url = new URL(`${issuer}/auth`);
    url.search = new URLSearchParams({
      client_id: ACCOUNT_CLIENT_ID,
      response_type: 'code',
      redirect_uri: redirectUri,
      scope: ACCOUNT_SCOPE,
      state,
      nonce,
      code_challenge: createHash('sha256').update(verifier).digest('base64url'),
      code_challenge_method: 'S256',
    }).toString();
    ctx.set('Cache-Control', 'no-store');
    ctx.redirect(url.toString());
  }

  /** The account page's session, checked against the account and the Latch session behind it. */
  async function signedIn(ctx: Koa.Context): Promise<SignedIn | undefined> {
    const cookie = cookies.session(ctx);
    if (!cookie) return undefined;
    const account = await deps.accounts.findById(cookie.sub);
    if (!account?.active) return undefined;
    const sessions = await deps.sessions.sessionsOf(account.id);
    const current = sessions.find((s) => s.uid === cookie.sid);
    return current ? { account, cookie, sessions, current } : undefined;
  }

  /** Redeems the code at Latch's own token endpoint (RFC 6749 §4.1.3), over loopback. */
  async function redeem(code: string, verifier: string): Promise<{ id_token?: unknown; access_token?: unknown } | undefined> {
    const { port, host } = deps.loopback;
    if (!port) throw new Error('the server is not listening yet');
    const hostPart = host.includes(':') ? `[${host}]` : host;
    const res = await fetch(`http://${hostPart}:${port}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', 'user-agent': 'latch-account' },
      body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: redirectUri, client_id: ACCOUNT_CLIENT_ID, code_verifier: verifier }),
      signal: AbortSignal.timeout(10_000),
    });
    const body = (await res.json().catch(() => undefined)) as Record<string, unknown> | undefined;
    if (!res.ok || !body) {
      logger.warn('account page: code redemption refused', { status: res.status, error: body?.error });
      return undefined;
    }
    return body;
  }

  /** OIDC Core §3.1.3.7: signature (the provider's keys), iss, aud, exp, nonce. */
  async function verifyIdToken(idToken: string, nonce: string): Promise<JWTPayload | undefined> {
    const verify = () => jwtVerify(idToken, createLocalJWKSet({ keys: oidc.keyRing().publicJwks }), { issuer, audience: ACCOUNT_CLIENT_ID, algorithms: ['RS256'] });
    try {
      let result;
      try {
        result = await verify();
      } catch (err) {
        // Signed by a key another process rotated in a moment ago: reload and try once more.
        if (!(err instanceof joseErrors.JWKSNoMatchingKey)) throw err;
        await oidc.reloadKeys();
        result = await verify();
      }
      const { payload } = result;
      if (typeof payload.nonce !== 'string' || !deps.secrets.equal(payload.nonce, nonce)) throw new Error('nonce mismatch');
      return payload;
    } catch (err) {
      logger.warn('account page: ID token refused', { err: err instanceof Error ? err.message : String(err) });
      return undefined;
    }
  }

  /** GET /account/callback: the authorization response (RFC 6749 §4.1.2, RFC 9207 iss). */
  async function callback(ctx: Koa.Context): Promise<void> {
    const pending = cookies.pendingLogin(ctx);
    cookies.endLogin(ctx);
    const state = queryString(ctx, 'state');
    if (!pending || !state || !deps.secrets.equal(state, pending.state)) {
      await problem(ctx, 400, 'Sign-in expired', 'This sign-in took too long or was started in another tab. Open your account page again.', 'invalid_state');
      return;
    }
    // RFC 9207: the response names its issuer.
    const iss = queryString(ctx, 'iss');
    if (iss !== undefined && iss !== issuer) {
      await problem(ctx, 400, 'Sign-in failed', 'The sign-in response came from another server.', 'invalid_issuer');
      return;
    }
    const error = queryString(ctx, 'error');
    if (error) {
      const cancelled = error === 'access_denied';
      await problem(ctx, cancelled ? 200 : 400, cancelled ? 'Sign-in cancelled' : 'Sign-in failed', cancelled ? 'You cancelled signing in to your account page.' : 'Signing in to your account page did not work.', error.slice(0, 64));
      return;
    }
    const code = queryString(ctx, 'code');
    if (!code || code.length > 512) {
      await problem(ctx, 400, 'Sign-in failed', 'The sign-in response is incomplete.', 'invalid_request');
      return;
    }
    let tokens: { id_token?: unknown; access_token?: unknown } | undefined;
    try {
      tokens = await redeem(code, pending.verifier);
    } catch (err) {
      logger.error('account page: token endpoint unreachable', { err: String(err) });
      await problem(ctx, 502, 'Sign-in failed', 'The account page could not complete signing in. Try again in a moment.', 'temporarily_unavailable');
      return;
    }
    const claims = typeof tokens?.id_token === 'string' ? await verifyIdToken(tokens.id_token, pending.nonce) : undefined;
    // The Latch session the sign-in came from: the account page lives only as long as it does.
    // (The ID token's `sid` names the session to this client only, not by its uid; the access
    // token just issued to us names the session, and we are the server that stores it.)
    const at = claims && typeof tokens?.access_token === 'string' ? await oidc.provider.AccessToken.find(tokens.access_token) : undefined;
    if (!claims || typeof claims.sub !== 'string' || !at || at.accountId !== claims.sub || at.clientId !== ACCOUNT_CLIENT_ID || typeof at.sessionUid !== 'string') {
      await problem(ctx, 400, 'Sign-in failed', 'Signing in to your account page did not work. Open it again.', 'invalid_grant');
      return;
    }
    // The account page calls no API: its access token has served its purpose.
    await at.destroy();
    cookies.startSession(ctx, { sub: claims.sub, sid: at.sessionUid });
    ctx.status = 303;
    ctx.redirect(pending.returnTo);
  }

  /** RP-initiated logout of Latch itself; the account cookie goes first. */
  function signOut(ctx: Koa.Context) {
    cookies.endSession(ctx);
    const url = new URL(`${issuer}/session/end`);
    url.search = new URLSearchParams({ client_id: ACCOUNT_CLIENT_ID, post_logout_redirect_uri: `${issuer}/account` }).toString();
    ctx.status = 303;
    ctx.redirect(url.toString());
  }

  return { signIn, signedIn, callback, signOut };
}

export type AccountSignIn = ReturnType<typeof createAccountSignIn>;
