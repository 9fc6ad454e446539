import Router from '@koa/router';
import type Koa from 'koa';

import type { RegistrationMode } from '../config/schema.js';
import type { Logger } from '../lib/logger.js';
import { originOf } from '../lib/request-origin.js';
import { readForm } from '../middleware/body.js';
import type { AccountMail } from '../services/account-mail.js';
import { checkPasswordPolicy } from '../services/password-policy.js';
import type { Limits } from '../services/rate-limits.js';
import type { RegistrationService } from '../services/registration.js';
import { afterResponse, type Pages, queryValue, safeReturnTo, SIGN_IN_FALLBACK, validEmail } from './self-service.js';

type FieldErrors = Partial<Record<'email' | 'password' | 'name', string>>;

const minutes = (seconds: number) => Math.max(1, Math.ceil(seconds / 60));

/**
 * Self-service registration (REGISTRATION=open|invite|closed). GET /register shows the form
 * (fields email, password, name); POST /register creates an unverified account and mails a
 * verification link. Registering an address that already has an account answers exactly the
 * same and mails its owner instead, creating nothing: the page never tells whether an address
 * is known. With an invitation (/register?invitation=TOKEN) the address is the invited one and
 * counts as verified: the invitation link was delivered to it.
 */
export function registrationRoutes(deps: {
  mode: RegistrationMode;
  registration: RegistrationService;
  mail: AccountMail;
  limits: Limits;
  pages: Pages;
  logger: Logger;
}): Router {
  const { mode, registration, mail, limits, pages, logger } = deps;
  const router = new Router();

  const closed = (ctx: Koa.Context) =>
    pages.message(ctx, { title: 'Registration is closed', lead: 'New accounts are created by an administrator. Ask yours for an account.', tone: 'alert' }, 403);

  const inviteOnly = (ctx: Koa.Context) =>
    pages.message(ctx, { title: 'Registration by invitation', lead: 'You need an invitation to create an account. Ask an administrator to invite you, then follow the link in the invitation mail.', tone: 'alert' }, 403);

  const badInvitation = (ctx: Koa.Context) =>
    pages.message(ctx, { title: 'Invitation not valid', lead: 'This invitation link has expired or was already used. Ask the person who invited you for a new one.', tone: 'alert' }, 400);

  async function tooMany(ctx: Koa.Context, retryAfterSeconds: number) {
    ctx.set('Retry-After', String(retryAfterSeconds));
    await pages.message(ctx, { title: 'Too many sign-ups', lead: `Too many accounts were created from your network recently. Try again in about ${minutes(retryAfterSeconds)} minute${minutes(retryAfterSeconds) === 1 ? '' : 's'}.`, tone: 'alert' }, 429);
  }

  const form = (ctx: Koa.Context, locals: { email: string; name: string; invitation: string | undefined; returnTo: string | undefined; errors: FieldErrors }, status = 200) =>
    pages.page(ctx, 'register', { title: locals.invitation ? 'Accept your invitation' : 'Create your account', ...locals }, status);

  const invitationOf = registration.invitation;

  router.get('/register', async (ctx) => {
    if (mode === 'closed') return closed(ctx);
    const returnTo = safeReturnTo(queryValue(ctx, 'return_to'));
    const token = queryValue(ctx, 'invitation');
    if (token) {
      const invitation = await invitationOf(token);
      if (!invitation?.email) return badInvitation(ctx);
      return form(ctx, { email: invitation.email, name: '', invitation: token, returnTo, errors: {} });
    }
    if (mode === 'invite') return inviteOnly(ctx);
    return form(ctx, { email: '', name: '', invitation: undefined, returnTo, errors: {} });
  });

  router.post('/register', async (ctx) => {
    const body = await readForm(ctx);
    if (!(await pages.checkCsrf(ctx, body))) return;
    if (mode === 'closed') return closed(ctx);
    const returnTo = safeReturnTo(body.return_to);
    const token = body.invitation || undefined;
    const invitation = await invitationOf(token);
    if (token && !invitation?.email) return badInvitation(ctx);
    if (!invitation && mode === 'invite') return inviteOnly(ctx);

    const ip = ctx.ip || 'unknown';
    const blocked = await limits.check('register_ip', ip);
    if (!blocked.allowed) return tooMany(ctx, blocked.retryAfterSeconds);

    // With an invitation the address is the invited one, whatever the form says.
    const rawEmail = invitation?.email ?? (body.email ?? '').trim();
    const name = (body.name ?? '').trim();
    const password = body.password ?? '';
    const errors: FieldErrors = {};
    const email = validEmail(rawEmail);
    if (!email) errors.email = rawEmail ? 'Enter a valid email address, like name@example.com.' : 'Enter your email address.';
    if (name.length > 255) errors.name = 'Use at most 255 characters.';
    const weak = checkPasswordPolicy(password, { email: rawEmail, name });
    if (weak) errors.password = weak;
    if (!email || Object.keys(errors).length) return form(ctx, { email: rawEmail.slice(0, 320), name: name.slice(0, 255), invitation: token, returnTo, errors }, 400);

    // Counted once the form is complete: a typo does not use up the hour's sign-ups.
    const decision = await limits.hit('register_ip', ip);
    if (!decision.allowed) return tooMany(ctx, decision.retryAfterSeconds);
    const origin = originOf(ctx);

    if (invitation) {
      // The holder of an invitation proved they read mail at this address: no enumeration here.
      const result = await registration.withInvitation(token!, invitation, { email, password, name }, origin);
      if (result === 'invalid') return badInvitation(ctx);
      if (result === 'exists') {
        return pages.message(ctx, { title: 'You already have an account', lead: `An account for ${email} already exists. Sign in with it, or reset its password if you forgot it.`, link: { href: `/forgot-password${returnTo ? `?return_to=${encodeURIComponent(returnTo)}` : ''}`, label: 'Reset my password' } });
      }
      return pages.message(ctx, { title: 'Your account is ready', lead: `Your account for ${email} has been created. You can sign in now.`, link: { href: returnTo ?? SIGN_IN_FALLBACK, label: 'Sign in' } });
    }

    // Open registration: the same page whether or not the address had an account; the mail is
    // sent after the answer, so its timing does not tell either.
    const result = await registration.open({ email, password, name }, origin);
    if ('created' in result && result.mailAllowed) {
      const account = result.created;
      afterResponse(logger, 'verification mail', () => mail.sendVerification(account, { returnTo }));
    } else if ('existing' in result && result.mailAllowed) {
      const owner = result.existing;
      afterResponse(logger, 'already-registered mail', () => mail.sendAlreadyRegistered(owner, { returnTo }));
    }
    await pages.message(ctx, {
      title: 'Check your mail',
      // The mail is queued, not yet sent, when this page is rendered: say so.
      lead: `We are sending a message to ${email} (it is queued for sending). Follow the link in it to confirm your address; it is valid for 24 hours.`,
      notes: ['If our mail server cannot be reached, the message stays queued and is retried for an hour; once you sign in, your account page shows whether it was sent.', 'Nothing arrived after a few minutes? Look in your spam folder, or ask for a new link from the sign-in page.'],
      ...(returnTo ? { link: { href: returnTo, label: 'Back to sign in' } } : {}),
    });
  });

  return router;
}
