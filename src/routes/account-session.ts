import type Koa from 'koa';

import { ACCOUNT_CLIENT_ID } from '../services/clients.js';
import type { Secrets } from '../services/secrets.js';

/** The account page is an OpenID Connect client of Latch itself, registered at start-up. */
export { ACCOUNT_CLIENT_ID };

/** How long the account page stays signed in without going back through Latch. */
export const ACCOUNT_SESSION_SECONDS = 3600;
/** How long a sign-in started by the account page may take. */
const LOGIN_SECONDS = 600;

const SESSION_COOKIE = 'latch.account';
const LOGIN_COOKIE = 'latch.account_login';
/** Both cookies are sent to the account pages only. */
const COOKIE_PATH = '/account';

/** What the account page's session cookie holds. */
export interface AccountSession {
  /** The account id (ID token `sub`). */
  sub: string;
  /** The uid of the Latch browser session it came from: ending that session ends this one. */
  sid: string;
  /** Epoch seconds. */
  exp: number;
}

/** A sign-in in progress: what the callback checks (RFC 6749 §10.12 state, OIDC nonce, RFC 7636 verifier). */
export interface PendingAccountLogin {
  state: string;
  nonce: string;
  verifier: string;
  /** Path under /account to go back to. */
  returnTo: string;
  exp: number;
}

const now = () => Math.floor(Date.now() / 1000);

/**
 * The account page's own cookies: JSON sealed with an HMAC-SHA-256 under a key derived from
 * LATCH_SECRET (services/secrets.ts, purpose "account-cookie"), the cookie's name inside the
 * MAC so one cannot stand in for the other. HttpOnly, SameSite=Lax, Secure behind TLS, and sent
 * to /account only. Stateless: any instance can read what another one wrote.
 */
export function createAccountCookies(secrets: Secrets) {
  const seal = (name: string, value: object) => {
    const body = Buffer.from(JSON.stringify(value)).toString('base64url');
    return `${body}.${secrets.mac('account-cookie', `${name}.${body}`)}`;
  };

  function unseal(name: string, raw: string | undefined): Record<string, unknown> | undefined {
    if (!raw || raw.length > 4096) return undefined;
    const dot = raw.lastIndexOf('.');
    if (dot <= 0) return undefined;
    const body = raw.slice(0, dot);
    if (!secrets.equal(secrets.mac('account-cookie', `${name}.${body}`), raw.slice(dot + 1))) return undefined;
    try {
      const value = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as unknown;
      if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
      const record = value as Record<string, unknown>;
      return typeof record.exp === 'number' && record.exp > now() ? record : undefined;
    } catch {
      return undefined;
    }
  }

  const options = (ctx: Koa.Context, maxAgeSeconds: number) => ({ httpOnly: true, sameSite: 'lax' as const, secure: ctx.secure, path: COOKIE_PATH, overwrite: true, signed: false, maxAge: maxAgeSeconds * 1000 });
  const clear = (ctx: Koa.Context, name: string) => ctx.cookies.set(name, null, { httpOnly: true, sameSite: 'lax', secure: ctx.secure, path: COOKIE_PATH, overwrite: true, signed: false });
  const isString = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= 512;

  return {
    session(ctx: Koa.Context): AccountSession | undefined {
      const v = unseal(SESSION_COOKIE, ctx.cookies.get(SESSION_COOKIE));
      return v && isString(v.sub) && isString(v.sid) ? { sub: v.sub, sid: v.sid, exp: v.exp as number } : undefined;
    },
    startSession(ctx: Koa.Context, value: { sub: string; sid: string }): void {
      ctx.cookies.set(SESSION_COOKIE, seal(SESSION_COOKIE, { ...value, exp: now() + ACCOUNT_SESSION_SECONDS }), options(ctx, ACCOUNT_SESSION_SECONDS));
    },
    endSession(ctx: Koa.Context): void {
      clear(ctx, SESSION_COOKIE);
    },

    pendingLogin(ctx: Koa.Context): PendingAccountLogin | undefined {
      const v = unseal(LOGIN_COOKIE, ctx.cookies.get(LOGIN_COOKIE));
      if (!v || !isString(v.state) || !isString(v.nonce) || !isString(v.verifier) || !isString(v.returnTo)) return undefined;
      return { state: v.state, nonce: v.nonce, verifier: v.verifier, returnTo: v.returnTo, exp: v.exp as number };
    },
    startLogin(ctx: Koa.Context, value: Omit<PendingAccountLogin, 'exp'>): void {
      ctx.cookies.set(LOGIN_COOKIE, seal(LOGIN_COOKIE, { ...value, exp: now() + LOGIN_SECONDS }), options(ctx, LOGIN_SECONDS));
    },
    endLogin(ctx: Koa.Context): void {
      clear(ctx, LOGIN_COOKIE);
    },
  };
}

export type AccountCookies = ReturnType<typeof createAccountCookies>;

/** The address this process reaches its own listener at: loopback unless bound to one interface. */
export function loopbackHost(bound: string | undefined): string {
  return !bound || bound === '0.0.0.0' || bound === '::' ? '127.0.0.1' : bound;
}
