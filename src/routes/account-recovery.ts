import Router from '@koa/router';
import type Koa from 'koa';

import type { Logger } from '../lib/logger.js';
import { originOf } from '../lib/request-origin.js';
import { readForm } from '../middleware/body.js';
import type { AccountTokenRecord } from '../repositories/account-tokens.js';
import type { AccountMail } from '../services/account-mail.js';
import type { AccountRecovery } from '../services/account-recovery.js';
import type { AccountService } from '../services/accounts.js';
import { checkPasswordPolicy } from '../services/password-policy.js';
import { afterResponse, type Pages, queryValue, safeReturnTo, SIGN_IN_FALLBACK, validEmail } from './self-service.js';

/** The return path stored with a mailed token, checked again before it is used. */
const returnToOf = (token: AccountTokenRecord) => safeReturnTo(token.data?.returnTo);

/**
 * Email verification and password reset by mailed single-use links.
 *
 * Mail scanners and link previews open links: a GET never uses a token, it only shows a page
 * whose button POSTs it (with the CSRF token). Every "send me a link" form answers the same for
 * any address, and the mail itself is sent after the answer, so neither the page nor its timing
 * tells whether an account exists. At most MAILS_PER_ADDRESS_PER_HOUR links go to one address.
 */
export function accountRecoveryRoutes(deps: { accounts: AccountService; recovery: AccountRecovery; mail: AccountMail; pages: Pages; logger: Logger }): Router {
  const { accounts, recovery, mail, pages, logger } = deps;
  const router = new Router();

  const verificationExpired = (ctx: Koa.Context, returnTo?: string) =>
    pages.message(ctx, { title: 'Link expired', lead: 'This verification link has expired or was already used. Enter your email address to get a new one.', tone: 'alert', resend: { email: '', returnTo } }, 400);

  const resetExpired = (ctx: Koa.Context) =>
    pages.message(ctx, { title: 'Link expired', lead: 'This password reset link has expired or was already used. Reset links are valid for 1 hour and work once.', tone: 'alert', link: { href: '/forgot-password', label: 'Get a new link' } }, 400);

  // ---- Email verification -------------------------------------------------------------------

  router.get('/verify-email', async (ctx) => {
    const token = queryValue(ctx, 'token');
    const found = token ? await recovery.peek('verify_email', token) : undefined;
    if (!found) return verificationExpired(ctx);
    await pages.page(ctx, 'verify-email', { title: 'Confirm your email address', email: found.account.email, token });
  });

  router.post('/verify-email', async (ctx) => {
    const form = await readForm(ctx);
    if (!(await pages.checkCsrf(ctx, form))) return;
    const found = await recovery.verifyEmail(form.token ?? '', originOf(ctx));
    if (!found) return verificationExpired(ctx);
    const { account } = found;
    const returnTo = returnToOf(found.link);
    await pages.message(ctx, { title: 'Email address confirmed', lead: `Thank you: ${account.email} is confirmed.`, link: { href: returnTo ?? SIGN_IN_FALLBACK, label: returnTo ? 'Continue to sign in' : 'Sign in' } });
  });

  router.get('/verify-email/resend', async (ctx) => {
    await pages.message(ctx, { title: 'Confirm your email address', lead: 'Enter your email address and we will send you a new verification link.', resend: { email: '', returnTo: safeReturnTo(queryValue(ctx, 'return_to')) } });
  });

  router.post('/verify-email/resend', async (ctx) => {
    const form = await readForm(ctx);
    if (!(await pages.checkCsrf(ctx, form))) return;
    const returnTo = safeReturnTo(form.return_to);
    const email = validEmail(form.email);
    if (email) {
      // Counted for every address, known or not, so that the work done does not depend on it.
      const allowed = await mail.allow(email);
      const account = await accounts.findByEmail(email);
      if (allowed && account?.active && !account.emailVerified) {
        afterResponse(logger, 'verification mail', () => mail.sendVerification(account, { returnTo }));
      }
    }
    await pages.message(ctx, {
      title: 'Check your mail',
      lead: `If ${email ?? 'this address'} belongs to an account that still needs to confirm its address, we are sending a new verification link to it (it is queued for sending). The link is valid for 24 hours.`,
      ...(returnTo ? { link: { href: returnTo, label: 'Back to sign in' } } : {}),
    });
  });

  // ---- Password reset -----------------------------------------------------------------------

  router.get('/forgot-password', async (ctx) => {
    await pages.page(ctx, 'forgot-password', { title: 'Reset your password', email: '', returnTo: safeReturnTo(queryValue(ctx, 'return_to')), errors: {} });
  });

  router.post('/forgot-password', async (ctx) => {
    const form = await readForm(ctx);
    if (!(await pages.checkCsrf(ctx, form))) return;
    const returnTo = safeReturnTo(form.return_to);
    const raw = (form.email ?? '').trim();
    const email = validEmail(raw);
    if (!email) {
      // Only the shape of the input is judged here, never whether an account has it.
      return pages.page(ctx, 'forgot-password', { title: 'Reset your password', email: raw.slice(0, 320), returnTo, errors: { email: raw ? 'Enter a valid email address, like name@example.com.' : 'Enter your email address.' } }, 400);
    }
    const allowed = await mail.allow(email);
    const account = await accounts.findByEmail(email);
    if (account?.active) {
      const origin = originOf(ctx);
      afterResponse(logger, 'password reset mail', async () => {
        await recovery.resetRequested(account, allowed, origin);
        if (allowed) await mail.sendPasswordReset(account, { returnTo });
      });
    }
    await pages.message(ctx, {
      title: 'Check your mail',
      lead: `If an account exists for ${email}, we are sending a link to reset its password (it is queued for sending). The link is valid for 1 hour.`,
      notes: ['Nothing arrived after a few minutes? Check your spam folder and that the address is the one you signed up with.'],
      ...(returnTo ? { link: { href: returnTo, label: 'Back to sign in' } } : {}),
    });
  });

  router.get('/reset-password', async (ctx) => {
    // Shows the form only: the token is used by the POST (a prefetched link stays valid).
    const token = queryValue(ctx, 'token');
    const found = token ? await recovery.peek('reset_password', token) : undefined;
    if (!token || !found) return resetExpired(ctx);
    await pages.page(ctx, 'reset-password', { title: 'Choose a new password', email: found.account.email, token, errors: {} });
  });

  router.post('/reset-password', async (ctx) => {
    const form = await readForm(ctx);
    if (!(await pages.checkCsrf(ctx, form))) return;
    const token = form.token ?? '';
    const password = form.password ?? '';
    const before = (await recovery.peek('reset_password', token))?.account;
    if (!before) return resetExpired(ctx);
    const weak = checkPasswordPolicy(password, { email: before.email, name: before.displayName });
    // A refused password leaves the link usable, so the user can try another.
    if (weak) return pages.page(ctx, 'reset-password', { title: 'Choose a new password', email: before.email, token, errors: { password: weak } }, 400);
    const reset = await recovery.resetPassword(token, password, originOf(ctx));
    if (!reset) return resetExpired(ctx);
    const returnTo = returnToOf(reset.link);
    await pages.message(ctx, {
      title: 'Password changed',
      lead: 'Your password has been changed and you were signed out everywhere. Sign in with your new password.',
      link: { href: returnTo ?? SIGN_IN_FALLBACK, label: 'Sign in' },
    });
  });

  return router;
}
