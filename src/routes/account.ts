import { createHash, randomBytes } from 'node:crypto';

import Router from '@koa/router';
import { createLocalJWKSet, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import type Koa from 'koa';

import type { Config } from '../config/index.js';
import type { Logger } from '../lib/logger.js';
import type { Render } from '../lib/views.js';
import { originOf } from '../lib/request-origin.js';
import { readForm } from '../middleware/body.js';
import type { Csrf } from '../middleware/csrf.js';
import type { Oidc } from '../oidc/provider.js';
import type { AccountRecord } from '../repositories/accounts.js';
import type { AccountService } from '../services/accounts.js';
import type { AuditService } from '../services/audit.js';
import type { ClientService } from '../services/clients.js';
import { ValidationError } from '../services/errors.js';
import { tooManyAttemptsMessage, type LoginGuard } from '../services/login-guard.js';
import type { MfaService } from '../services/mfa.js';
import type { OrganizationService } from '../services/organizations.js';
import { checkPasswordPolicy } from '../services/password-policy.js';
import type { PasswordHasher } from '../services/passwords.js';
import { reauthenticate as reauthenticateAccount } from '../services/reauthentication.js';
import type { Secrets } from '../services/secrets.js';
import { authorizationsOf, type Payload, type SessionService } from '../services/sessions.js';
import { ACCOUNT_CLIENT_ID, createAccountCookies, type AccountSession } from './account-session.js';

/**
 * Where Latch's own token endpoint answers this process: the account page redeems its
 * authorization codes over loopback HTTP. The port is known once the server listens.
 */
export interface Loopback {
  host: string;
  port: number | undefined;
}

/** The scopes the account page asks for. */
const ACCOUNT_SCOPE = 'openid profile email';

/** Fixed notices after a form (Post/Redirect/Get): the query names one, never its text. */
const NOTICES: Record<string, string> = {
  profile: 'Your profile was saved.',
  password: 'Your password was changed. Your other sessions were signed out and applications must sign in again.',
  session: 'That session was signed out.',
  application: 'Access was revoked: the application must ask you again.',
  'mfa-off': 'Two-step verification is off.',
  'invitation-declined': 'The invitation was declined.',
  'organization-left': 'You left the organization.',
};

const SCOPE_NAMES: Record<string, string> = {
  openid: 'sign you in',
  profile: 'your name',
  email: 'your email address',
  offline_access: 'stay connected (refresh tokens)',
};

export interface SignedIn {
  account: AccountRecord;
  cookie: AccountSession;
  /** Every live Latch session of the account. */
  sessions: Payload[];
  /** The Latch session this account-page session came from. */
  current: Payload;
}

const isoOf = (epochSeconds: unknown) => (typeof epochSeconds === 'number' ? new Date(epochSeconds * 1000).toISOString() : null);
const queryString = (ctx: Koa.Context, name: string): string | undefined => {
  const v = ctx.query[name];
  const s = Array.isArray(v) ? v[0] : v;
  return typeof s === 'string' && s !== '' ? s : undefined;
};

/** "Firefox on Linux": enough for a person to recognise a device, from the User-Agent header. */
export function describeUserAgent(ua: string | null | undefined): string {
  if (!ua) return 'Unknown device';
  const browser = /Edg\//.test(ua) ? 'Edge' : /OPR\/|Opera/.test(ua) ? 'Opera' : /Firefox\//.test(ua) ? 'Firefox' : /HeadlessChrome\//.test(ua) ? 'Headless Chrome' : /Chrome\/|Chromium\//.test(ua) ? 'Chrome' : /Safari\//.test(ua) ? 'Safari' : /curl\//.test(ua) ? 'curl' : /node|undici/i.test(ua) ? 'Node.js' : 'Browser';
  const os = /iPhone|iPad|iPod/.test(ua) ? 'iOS' : /Android/.test(ua) ? 'Android' : /Windows/.test(ua) ? 'Windows' : /Mac OS X|Macintosh/.test(ua) ? 'macOS' : /CrOS/.test(ua) ? 'ChromeOS' : /Linux/.test(ua) ? 'Linux' : undefined;
  return os ? `${browser} on ${os}` : browser;
}

/**
 * A path under /account to come back to after signing in: "/account" and up to four segments of
 * [A-Za-z0-9_-] below it (an organization page, an invitation link carrying its token), never a
 * query, a dot segment, a second slash or another origin, so no open redirect.
 */
const accountPath = (path: string) => (/^\/account(\/[A-Za-z0-9_-]{1,128}){0,4}$/.test(path) && !path.startsWith('/account/callback') ? path : '/account');

/**
 * The account page (GET /account, GET /account/mfa): profile, password, email verification,
 * TOTP enrolment and recovery codes, sessions and linked applications. It is an OpenID Connect
 * client of Latch itself (`latch-account`, public, first-party): authorization code + PKCE
 * through /auth, the code redeemed at Latch's token endpoint over loopback, the ID token
 * verified against the provider's keys, then a signed cookie for an hour, bound to the Latch
 * session it came from (ending that session ends it too).
 */
/**
 * What a page of the account area gets: its router, and the sign-in guard, CSRF-checked form
 * handler, renderer and Post/Redirect/Get helper every account page shares.
 */
export interface AccountKit {
  router: Router;
  guarded: (handler: (ctx: Koa.Context, signed: SignedIn) => Promise<void>) => (ctx: Koa.Context) => Promise<void>;
  form: (handler: (ctx: Koa.Context, signed: SignedIn, fields: Record<string, string>) => Promise<void>) => (ctx: Koa.Context) => Promise<void>;
  page: (ctx: Koa.Context, view: string, locals: Record<string, unknown> & { title: string }, status?: number) => Promise<void>;
  done: (ctx: Koa.Context, path: string, notice: string) => void;
}

/** A group of account pages living in its own module (organizations, access tokens, ...). */
export type AccountExtension = (kit: AccountKit) => void;

export function accountRoutes(deps: {
  config: Config;
  oidc: Oidc;
  secrets: Secrets;
  accounts: AccountService;
  passwords: PasswordHasher;
  mfa: MfaService;
  sessions: SessionService;
  clients: ClientService;
  audit: AuditService;
  csrf: Csrf;
  render: Render;
  logger: Logger;
  loopback: Loopback;
  loginGuard: LoginGuard;
  /** Organizations: the overview lists the account's memberships and pending invitations. */
  organizations?: OrganizationService;
  /** More pages under /account, registered with the shared kit. */
  extensions?: AccountExtension[];
}): Router {
  const { config, oidc, accounts, mfa, sessions: sessionService, csrf, render, logger } = deps;
  const router = new Router();
  const cookies = createAccountCookies(deps.secrets);
  const issuer = config.issuer;
  const redirectUri = `${issuer}/account/callback`;

  const page = async (ctx: Koa.Context, view: string, locals: Record<string, unknown> & { title: string }, status = 200) => {
    ctx.status = status;
    ctx.type = 'html';
    ctx.set('Cache-Control', 'no-store');
    ctx.body = await render(view, { csrfToken: csrf.token(ctx), error: null, notice: null, ...locals });
  };

  const problem = (ctx: Koa.Context, status: number, title: string, description: string, error = 'account_sign_in_failed') =>
    page(ctx, 'account-problem', { title, description, error }, status);

  // ---- Signing in through Latch ------------------------------------------------------------

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
    const account = await accounts.findById(cookie.sub);
    if (!account?.active) return undefined;
    const sessions = await sessionService.sessionsOf(account.id);
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

  router.get('/account/callback', async (ctx) => {
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
    // (The ID token carries `sid` only for back-channel logout clients; the access token just
    // issued to us names the session, and we are the server that stores it.)
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
  });

  // ---- Pages -------------------------------------------------------------------------------

  /** Runs a page for a signed-in user, or sends the browser through sign-in first. */
  const guarded =
    (handler: (ctx: Koa.Context, signed: SignedIn) => Promise<void>) =>
    async (ctx: Koa.Context): Promise<void> => {
      const signed = await signedIn(ctx);
      if (!signed) {
        cookies.endSession(ctx);
        signIn(ctx, ctx.path);
        return;
      }
      await handler(ctx, signed);
    };

  /** A form for a signed-in user: CSRF first; without a session, back to the page (which signs in). */
  const form =
    (handler: (ctx: Koa.Context, signed: SignedIn, fields: Record<string, string>) => Promise<void>) =>
    async (ctx: Koa.Context): Promise<void> => {
      const fields = await readForm(ctx);
      if (!csrf.verify(ctx, fields._csrf)) {
        await page(ctx, 'error', { title: 'Form expired', error: 'invalid_csrf_token', description: 'This form has expired. Go back, reload the page and try again.' }, 403);
        return;
      }
      const signed = await signedIn(ctx);
      if (!signed) {
        cookies.endSession(ctx);
        ctx.status = 303;
        ctx.redirect('/account');
        return;
      }
      await handler(ctx, signed, fields);
    };

  const done = (ctx: Koa.Context, path: string, notice: string) => {
    ctx.status = 303;
    ctx.redirect(`${path}?done=${notice}`);
  };

  async function clientName(id: string): Promise<string> {
    const client = await deps.clients.findById(id).catch(() => undefined);
    return client?.name ?? id;
  }

  /** Devices: the `session.start` audit event of each Latch session (oidc/provider.ts) tells IP and browser. */
  async function devices(accountId: string): Promise<Map<string, { ip: string | null; userAgent: string | null }>> {
    const events = await deps.audit.list({ subjectId: accountId, type: 'session.start', limit: 500 });
    const bySession = new Map<string, { ip: string | null; userAgent: string | null }>();
    for (const e of events) {
      // Newest first: a session signed in again shows its latest device.
      const uid = e.details?.session;
      if (typeof uid === 'string' && !bySession.has(uid)) bySession.set(uid, { ip: e.ip, userAgent: e.userAgent });
    }
    return bySession;
  }

  async function overview(ctx: Koa.Context, signed: SignedIn, extra: Record<string, unknown> = {}, status = 200) {
    const { account, sessions, current } = signed;
    const known = await devices(account.id);
    const sessionViews = [];
    for (const s of [...sessions].sort((a, b) => (s2n(b.loginTs) - s2n(a.loginTs)))) {
      const device = known.get(String(s.uid));
      const apps = [];
      for (const id of Object.keys(authorizationsOf(s))) if (id !== ACCOUNT_CLIENT_ID) apps.push(await clientName(id));
      sessionViews.push({
        uid: String(s.uid),
        current: s === current,
        signedInAt: isoOf(s.loginTs),
        mfa: Array.isArray(s.amr) && s.amr.includes('otp'),
        device: describeUserAgent(device?.userAgent),
        ip: device?.ip ?? null,
        apps,
      });
    }
    sessionViews.sort((a, b) => Number(b.current) - Number(a.current));

    const applications = [];
    for (const app of await sessionService.applicationsOf(account.id, ACCOUNT_CLIENT_ID)) {
      applications.push({ clientId: app.clientId, name: await clientName(app.clientId), scopes: app.scopes.map((s) => ({ name: s, description: SCOPE_NAMES[s] ?? null })), since: isoOf(app.since) });
    }
    applications.sort((a, b) => a.name.localeCompare(b.name));

    // Organizations the account belongs to, and invitations addressed to its email (pending, unexpired).
    const organizations = deps.organizations ? await deps.organizations.membershipsOf({ kind: 'account', id: account.id }) : [];
    const invitations = [];
    for (const inv of deps.organizations ? await deps.organizations.pendingInvitationsFor(account.email) : []) {
      const org = await deps.organizations!.findById(inv.organizationId);
      if (org) invitations.push({ id: inv.id, organization: org.name, slug: org.slug, role: inv.role, expiresAt: inv.expiresAt });
    }

    const notice = queryString(ctx, 'done');
    await page(
      ctx,
      'account',
      {
        title: 'Your account',
        wide: true,
        account: { email: account.email, name: account.displayName ?? '', emailVerified: account.emailVerified },
        mfa: await mfa.status(account.id),
        sessions: sessionViews,
        applications,
        organizations: organizations.map((o) => ({ id: o.id, name: o.name, slug: o.slug, role: o.role })),
        invitations,
        notice: (notice && NOTICES[notice]) ?? null,
        errors: {},
        ...extra,
      },
      status,
    );
  }

  /** Re-authentication for sensitive changes (services/reauthentication.ts), as a page message. */
  async function reauthenticate(ctx: Koa.Context, account: AccountRecord, fields: { password?: string | undefined; code?: string | undefined }): Promise<{ ok: true } | { ok: false; message: string; status: number }> {
    const check = await reauthenticateAccount({ passwords: deps.passwords, mfa, audit: deps.audit, loginGuard: deps.loginGuard }, account, fields, { ip: ctx.ip, origin: originOf(ctx), clientId: ACCOUNT_CLIENT_ID, context: 'account_page' });
    if (check.ok) return check;
    if (check.reason === 'missing') return { ok: false, message: 'Enter your current password or a code.', status: 400 };
    if (check.reason === 'locked') {
      ctx.set('Retry-After', String(check.retryAfterSeconds));
      return { ok: false, message: tooManyAttemptsMessage(check.retryAfterSeconds), status: 429 };
    }
    return { ok: false, message: fields.password ? 'That is not your current password.' : 'That code is not valid.', status: 401 };
  }

  router.get('/account', guarded(async (ctx, signed) => overview(ctx, signed)));

  // A reload or bookmark of a form's target goes back to its page.
  router.get(['/account/profile', '/account/password', '/account/sessions/end', '/account/applications/revoke', '/account/signout'], (ctx) => {
    ctx.redirect('/account');
  });
  router.get(['/account/mfa/enable', '/account/mfa/disable', '/account/mfa/recovery-codes'], (ctx) => {
    ctx.redirect('/account/mfa');
  });

  router.post(
    '/account/profile',
    form(async (ctx, signed, fields) => {
      const name = fields.name ?? '';
      // Control characters have no place in a name (and PostgreSQL text cannot hold U+0000).
      if (/\p{Cc}/u.test(name)) {
        await overview(ctx, signed, { errors: { name: 'Use letters, digits, spaces and punctuation only.' }, values: { name: name.replace(/\p{Cc}/gu, '') } }, 400);
        return;
      }
      try {
        await accounts.update(signed.account.id, { name: name.slice(0, 1024) }, { actorId: signed.account.id, origin: originOf(ctx) });
      } catch (err) {
        if (!(err instanceof ValidationError)) throw err;
        await overview(ctx, signed, { errors: { name: 'Use at most 255 characters.' }, values: { name: fields.name } }, 400);
        return;
      }
      done(ctx, '/account', 'profile');
    }),
  );

  router.post(
    '/account/password',
    form(async (ctx, signed, fields) => {
      const { account } = signed;
      const next = fields.new_password ?? '';
      const policy = checkPasswordPolicy(next, { email: account.email, name: account.displayName });
      if (policy) {
        await overview(ctx, signed, { errors: { new_password: policy } }, 400);
        return;
      }
      if (!fields.current_password) {
        await overview(ctx, signed, { errors: { current_password: 'Enter your current password.' } }, 400);
        return;
      }
      const check = await reauthenticate(ctx, account, { password: fields.current_password });
      if (!check.ok) {
        await overview(ctx, signed, { errors: { current_password: check.message } }, check.status);
        return;
      }
      // Ends every other session and revokes every refresh token of the account; this browser
      // stays signed in.
      await accounts.setPassword(account.id, next, { exceptSessionUid: String(signed.current.uid) });
      await deps.audit.record({ type: 'password.change', actorId: account.id, subjectId: account.id, clientId: ACCOUNT_CLIENT_ID, origin: originOf(ctx) });
      done(ctx, '/account', 'password');
    }),
  );

  /** RP-initiated logout of Latch itself; the account cookie goes first. */
  const signOut = (ctx: Koa.Context) => {
    cookies.endSession(ctx);
    const url = new URL(`${issuer}/session/end`);
    url.search = new URLSearchParams({ client_id: ACCOUNT_CLIENT_ID, post_logout_redirect_uri: `${issuer}/account` }).toString();
    ctx.status = 303;
    ctx.redirect(url.toString());
  };

  router.post(
    '/account/signout',
    form(async (ctx) => signOut(ctx)),
  );

  router.post(
    '/account/sessions/end',
    form(async (ctx, signed, fields) => {
      const uid = fields.session ?? '';
      if (uid === signed.current.uid) {
        signOut(ctx);
        return;
      }
      await sessionService.end(signed.account.id, uid, { type: 'session.end', actorId: signed.account.id, clientId: ACCOUNT_CLIENT_ID, origin: originOf(ctx) });
      done(ctx, '/account', 'session');
    }),
  );

  router.post(
    '/account/applications/revoke',
    form(async (ctx, signed, fields) => {
      const clientId = fields.client_id ?? '';
      if (clientId && clientId !== ACCOUNT_CLIENT_ID) await sessionService.revokeApplication(signed.account.id, clientId, { actorId: signed.account.id, origin: originOf(ctx) });
      done(ctx, '/account', 'application');
    }),
  );

  // ---- Two-step verification ----------------------------------------------------------------

  async function mfaPage(ctx: Koa.Context, signed: SignedIn, extra: Record<string, unknown> = {}, status = 200) {
    const current = await mfa.status(signed.account.id);
    const enrolment = current.enabled ? undefined : await mfa.beginEnrolment(signed.account);
    const notice = queryString(ctx, 'done');
    await page(ctx, 'account-mfa', { title: 'Two-step verification', wide: true, mfa: current, enrolment: enrolment ?? null, notice: (notice && NOTICES[notice]) ?? null, ...extra }, status);
  }

  router.get('/account/mfa', guarded(async (ctx, signed) => mfaPage(ctx, signed)));

  router.post(
    '/account/mfa/enable',
    form(async (ctx, signed, fields) => {
      const codes = await mfa.confirmEnrolment(signed.account.id, (fields.code ?? '').slice(0, 64), { actorId: signed.account.id, origin: originOf(ctx) });
      if (!codes) {
        await mfaPage(ctx, signed, { error: 'That code is not valid. Enter the 6-digit code your app shows now.' }, 400);
        return;
      }
      await page(ctx, 'mfa-recovery-codes', { title: 'Save your recovery codes', codes, next: '/account/mfa' });
    }),
  );

  router.post(
    '/account/mfa/disable',
    form(async (ctx, signed, fields) => {
      const check = await reauthenticate(ctx, signed.account, { password: fields.password, code: fields.code });
      if (!check.ok) {
        await mfaPage(ctx, signed, { error: check.message }, check.status);
        return;
      }
      await mfa.disable(signed.account.id, { actorId: signed.account.id, origin: originOf(ctx) });
      done(ctx, '/account/mfa', 'mfa-off');
    }),
  );

  router.post(
    '/account/mfa/recovery-codes',
    form(async (ctx, signed, fields) => {
      const check = await reauthenticate(ctx, signed.account, { password: fields.password, code: fields.code });
      if (!check.ok) {
        await mfaPage(ctx, signed, { error: check.message }, check.status);
        return;
      }
      const codes = await mfa.regenerateRecoveryCodes(signed.account.id, { actorId: signed.account.id, origin: originOf(ctx) });
      if (!codes) {
        ctx.status = 303;
        ctx.redirect('/account/mfa');
        return;
      }
      await page(ctx, 'mfa-recovery-codes', { title: 'Your new recovery codes', codes, next: '/account/mfa' });
    }),
  );

  for (const extend of deps.extensions ?? []) extend({ router, guarded, form, page, done });

  return router;
}

const s2n = (v: unknown): number => (typeof v === 'number' ? v : 0);
