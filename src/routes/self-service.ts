import type Koa from 'koa';
import { errors, type InteractionResults } from 'oidc-provider';

import { epochSeconds } from '../lib/time.js';
import type { Logger } from '../lib/logger.js';
import type { Render } from '../lib/views.js';
import type { Csrf } from '../middleware/csrf.js';
import type { Oidc } from '../oidc/provider.js';
import { checkEmail } from '../services/accounts.js';

/**
 * Helpers shared by the self-service pages (registration, email verification, password reset):
 * rendering with a CSRF token, the CSRF check, safe return paths and mails sent after the answer.
 */

/** The trimmed address when it looks like one (the account service's rule), else undefined. */
export function validEmail(raw: string | undefined): string | undefined {
  try {
    return checkEmail(raw ?? '');
  } catch {
    return undefined;
  }
}

/** A query parameter as one string (the first when repeated). */
export function queryValue(ctx: Koa.Context, name: string): string | undefined {
  const v = ctx.query[name];
  const s = Array.isArray(v) ? v[0] : v;
  return typeof s === 'string' && s !== '' ? s : undefined;
}

/**
 * Where to send the browser back to after registration, verification or a reset: only a path on
 * this server ("/interaction/abc"), never another origin. "//evil.example" and "/\evil.example"
 * are protocol-relative URLs to browsers, so anything but one leading "/" followed by a non-slash
 * is refused, as are control characters and backslashes.
 */
export function safeReturnTo(raw: unknown): string | undefined {
  if (typeof raw !== 'string' || raw.length > 512) return undefined;
  if (!/^\/(?![/\\])[\x21-\x7e]*$/.test(raw) || raw.includes('\\')) return undefined;
  const base = 'http://latch.invalid';
  let url: URL;
  try {
    url = new URL(raw, base);
  } catch {
    return undefined;
  }
  if (url.origin !== base) return undefined;
  const path = `${url.pathname}${url.search}`;
  return path.startsWith('/') && !path.startsWith('//') ? path : undefined;
}

/** Where "sign in" goes when no sign-in page sent the user here: the account page signs in through Latch. */
export const SIGN_IN_FALLBACK = '/account';

/**
 * Runs a job after the answer is sent. Used for mails whose sending must not show in the
 * response time (a mail only goes to existing accounts: waiting for SMTP would tell an attacker
 * which addresses have one). The job is not lost silently: a failure is logged.
 */
export function afterResponse(logger: Logger, what: string, job: () => Promise<void>): void {
  void job().catch((err: unknown) => logger.error('background job failed', { job: what, err: String(err) }));
}

export interface MessagePage {
  title: string;
  lead?: string;
  notes?: string[];
  link?: { href: string; label: string };
  /** Shows the "send the verification link again" form. */
  resend?: { email: string; returnTo: string | undefined };
  /** Style of the lead: a problem (alert) or plain. */
  tone?: 'alert' | 'plain';
}

export function createPages(deps: { csrf: Csrf; render: Render }) {
  const { csrf, render } = deps;

  const page = async (ctx: Koa.Context, view: string, locals: Record<string, unknown> & { title: string }, status = 200) => {
    ctx.status = status;
    ctx.type = 'html';
    // These pages carry tokens and personal data: never cached, by the browser or a proxy.
    ctx.set('Cache-Control', 'no-store');
    ctx.body = await render(view, { csrfToken: csrf.token(ctx), ...locals });
  };

  const message = (ctx: Koa.Context, m: MessagePage, status = 200) => page(ctx, 'message', { lead: null, notes: [], link: null, resend: null, tone: 'plain', ...m }, status);

  return {
    page,
    message,
    /** True when the form's CSRF token matches this browser; otherwise answers 403 with a page. */
    async checkCsrf(ctx: Koa.Context, form: Record<string, string>): Promise<boolean> {
      if (csrf.verify(ctx, form._csrf)) return true;
      await page(ctx, 'error', { title: 'Form expired', error: 'invalid_csrf_token', description: 'This form has expired. Go back, reload the page and try again.' }, 403);
      return false;
    },
  };
}

export type Pages = ReturnType<typeof createPages>;

type InteractionDetails = Awaited<ReturnType<Oidc['provider']['interactionDetails']>>;

/**
 * Saves the result of a loaded interaction and returns where the browser goes next: what
 * oidc-provider's `interactionResult` (without merging) does, minus reading the interaction a
 * second time. The TTL rule is the same: the interaction keeps its expiry.
 */
export async function completeInteraction(details: InteractionDetails, result: InteractionResults): Promise<string> {
  details.result = result;
  await details.save(details.exp - epochSeconds());
  return details.returnTo;
}

/**
 * The oidc-provider interaction of this browser for `ctx.params.uid`, or an error page (400) when
 * it expired or belongs to another browser or request.
 */
export function interactionLoader(oidc: Oidc, pages: Pages) {
  return async (ctx: Koa.Context): Promise<InteractionDetails | undefined> => {
    try {
      const details = await oidc.provider.interactionDetails(ctx.req, ctx.res);
      if (details.uid !== ctx.params.uid) throw new errors.SessionNotFound('interaction mismatch');
      return details;
    } catch (err) {
      if (!(err instanceof errors.OIDCProviderError)) throw err;
      await pages.page(ctx, 'error', { title: 'Sign-in expired', error: 'session_expired', description: 'This sign-in request has expired or was opened in another browser. Go back to the application and start again.' }, 400);
      return undefined;
    }
  };
}
