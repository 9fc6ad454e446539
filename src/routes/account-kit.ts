import type Router from '@koa/router';
import type Koa from 'koa';

import type { Render } from '../lib/views.js';
import { originOf } from '../lib/request-origin.js';
import { readForm } from '../middleware/body.js';
import type { Csrf } from '../middleware/csrf.js';
import type { AccountRecord } from '../repositories/accounts.js';
import { tooManyAttemptsMessage, type LoginGuard } from '../services/login-guard.js';
import type { MfaService } from '../services/mfa.js';
import type { PasswordHasher } from '../services/passwords.js';
import { reauthenticate as reauthenticateAccount } from '../services/reauthentication.js';
import type { AuditService } from '../services/audit.js';
import { ACCOUNT_CLIENT_ID, type AccountCookies } from './account-session.js';
import { queryString, type AccountSignIn, type SignedIn } from './account-sign-in.js';

export type { SignedIn };

/** Fixed notices after a form (Post/Redirect/Get): the query names one, never its text. */
const NOTICES: Record<string, string> = {
  profile: 'Your profile was saved.',
  password: 'Your password was changed. Your other sessions were signed out and applications must sign in again.',
  session: 'That session was signed out.',
  application: 'Access was revoked: the application must ask you again.',
  'mfa-off': 'Two-step verification is off.',
  'invitation-declined': 'The invitation was declined.',
  'organization-left': 'You left the organization.',
  linked: 'The provider was linked: you can sign in with it now.',
  unlinked: 'The provider was unlinked.',
};

export type Reauthentication = { ok: true } | { ok: false; message: string; status: number };

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
  /** The text of the notice the query names (`?done=`), if it is one of ours. */
  notice: (ctx: Koa.Context) => string | null;
  /** Re-authentication for a sensitive change (services/reauthentication.ts), as a page message. */
  reauthenticate: (ctx: Koa.Context, account: AccountRecord, fields: { password?: string | undefined; code?: string | undefined }) => Promise<Reauthentication>;
}

/** A group of account pages living in its own module (organizations, access tokens, ...). */
export type AccountExtension = (kit: AccountKit) => void;

/** The shared parts of every account page (see AccountKit). */
export function createAccountKit(deps: { router: Router; csrf: Csrf; render: Render; cookies: AccountCookies; signIn: AccountSignIn; passwords: PasswordHasher; mfa: MfaService; audit: AuditService; loginGuard: LoginGuard }): AccountKit {
  const { router, csrf, render, cookies, signIn } = deps;

  const page: AccountKit['page'] = async (ctx, view, locals, status = 200) => {
    ctx.status = status;
    ctx.type = 'html';
    ctx.set('Cache-Control', 'no-store');
    ctx.body = await render(view, { csrfToken: csrf.token(ctx), error: null, notice: null, ...locals });
  };

  /** Runs a page for a signed-in user, or sends the browser through sign-in first. */
  const guarded: AccountKit['guarded'] = (handler) => async (ctx) => {
    const signed = await signIn.signedIn(ctx);
    if (!signed) {
      cookies.endSession(ctx);
      signIn.signIn(ctx, ctx.path);
      return;
    }
    await handler(ctx, signed);
  };

  /** A form for a signed-in user: CSRF first; without a session, back to the page (which signs in). */
  const form: AccountKit['form'] = (handler) => async (ctx) => {
    const fields = await readForm(ctx);
    if (!csrf.verify(ctx, fields._csrf)) {
      await page(ctx, 'error', { title: 'Form expired', error: 'invalid_csrf_token', description: 'This form has expired. Go back, reload the page and try again.' }, 403);
      return;
    }
    const signed = await signIn.signedIn(ctx);
    if (!signed) {
      cookies.endSession(ctx);
      ctx.status = 303;
      ctx.redirect('/account');
      return;
    }
    await handler(ctx, signed, fields);
  };

  const done: AccountKit['done'] = (ctx, path, notice) => {
    ctx.status = 303;
    ctx.redirect(`${path}?done=${notice}`);
  };

  const notice: AccountKit['notice'] = (ctx) => {
    const name = queryString(ctx, 'done');
    return (name && NOTICES[name]) ?? null;
  };

  const reauthenticate: AccountKit['reauthenticate'] = async (ctx, account, fields) => {
    const check = await reauthenticateAccount({ passwords: deps.passwords, mfa: deps.mfa, audit: deps.audit, loginGuard: deps.loginGuard }, account, fields, { ip: ctx.ip, origin: originOf(ctx), clientId: ACCOUNT_CLIENT_ID, context: 'account_page' });
    if (check.ok) return check;
    if (check.reason === 'missing') return { ok: false, message: 'Enter your current password or a code.', status: 400 };
    if (check.reason === 'locked') {
      ctx.set('Retry-After', String(check.retryAfterSeconds));
      return { ok: false, message: tooManyAttemptsMessage(check.retryAfterSeconds), status: 429 };
    }
    return { ok: false, message: fields.password ? 'That is not your current password.' : 'That code is not valid.', status: 401 };
  };

  return { router, guarded, form, page, done, notice, reauthenticate };
}
