import Router from '@koa/router';
import type Koa from 'koa';

import type { RegistrationMode } from '../config/schema.js';
import type { Logger } from '../lib/logger.js';
import { originOf } from '../lib/request-origin.js';
import { readForm } from '../middleware/body.js';
import type { AccountRecord } from '../repositories/accounts.js';
import type { InvitationRecord, OrganizationRecord } from '../repositories/organizations.js';
import type { AccountService } from '../services/accounts.js';
import { describeInvitation, type OrganizationService } from '../services/organizations.js';
import { checkPasswordPolicy } from '../services/password-policy.js';
import type { RegistrationService } from '../services/registration.js';
import { type Pages, queryValue } from './self-service.js';

/** An invitation token as organizations.ts makes them (32 random bytes, base64url); anything else is unknown. */
const TOKEN = /^[A-Za-z0-9_-]{20,100}$/;

/** The account page's view of an invitation link: where a signed-in browser accepts or declines it. */
export const accountInvitationPath = (token: string) => `/account/invitation/${token}`;

export type InvitationState = 'valid' | 'expired' | 'used' | 'revoked' | 'unknown';

export type InvitationLookup =
  | { state: 'unknown' }
  | { state: Exclude<InvitationState, 'unknown'>; invitation: InvitationRecord; organization: OrganizationRecord };

/**
 * What an invitation link points to, without using it up. The organization service answers only
 * for usable links (`peekInvitation`); to tell a link that expired or was used (410) from one that
 * never existed (404), the row is read by the token's hash (SHA-256 hex, as organizations.ts
 * stores it). Only the holder of the token learns anything.
 */
export function createInvitationLookup(deps: { organizations: OrganizationService }) {
  return async (token: string | undefined): Promise<InvitationLookup> => {
    if (typeof token !== 'string' || !TOKEN.test(token)) return { state: 'unknown' };
    const invitation = await deps.organizations.inspectInvitation(token);
    if (!invitation) return { state: 'unknown' };
    const organization = await deps.organizations.findById(invitation.organizationId);
    if (!organization) return { state: 'unknown' };
    const status = describeInvitation(invitation).status;
    const state: InvitationState = status === 'pending' ? 'valid' : status === 'expired' ? 'expired' : status === 'revoked' ? 'revoked' : 'used';
    return { state, invitation, organization };
  };
}

export type InvitationLookupFn = ReturnType<typeof createInvitationLookup>;

type PageFn = (ctx: Koa.Context, view: string, locals: Record<string, unknown> & { title: string }, status?: number) => Promise<void>;

/** The friendly page for a link that cannot be used: 404 when unknown, 410 when expired, used or revoked. */
export function invitationGone(page: PageFn, ctx: Koa.Context, state: Exclude<InvitationState, 'valid'>, organization?: string): Promise<void> {
  const who = organization ? `the person who invited you to ${organization}` : 'the person who invited you';
  const texts: Record<Exclude<InvitationState, 'valid'>, { title: string; lead: string }> = {
    unknown: { title: 'Invitation not found', lead: `This invitation link is not valid. Check that you copied the whole link from the mail, or ask ${who} for a new one.` },
    expired: { title: 'Invitation expired', lead: `This invitation has expired. Ask ${who} for a new one.` },
    used: { title: 'Invitation already used', lead: 'This invitation was already used: an invitation works once.' },
    revoked: { title: 'Invitation withdrawn', lead: `This invitation was withdrawn. Ask ${who} if you think this is a mistake.` },
  };
  const { title, lead } = texts[state];
  return page(ctx, 'message', { title, lead, notes: [], link: state === 'used' ? { href: '/account', label: 'Open your account page' } : null, resend: null, tone: 'alert', error: `invitation_${state}` }, state === 'unknown' ? 404 : 410);
}

type FieldErrors = Partial<Record<'name' | 'password', string>>;

/**
 * The organization invitation link (GET /invitation?token=…, mailed by `latch orgs invite` and
 * the organization page). The GET never uses the link up (mail scanners follow links); it shows
 * the organization and the role and, for the invited address:
 * - an account exists: "Sign in to accept", which opens /account/invitation/TOKEN on the account
 *   page (signing in first); there a signed-in account whose email is the invited one accepts or
 *   declines. (The account page's cookie is scoped to /account, so this page cannot see it.)
 * - no account, REGISTRATION open or invite: a form (name, password) whose POST creates the
 *   account for the invited address, already verified (the link proves it), and accepts.
 * - no account, REGISTRATION closed: the page says an administrator must create the account.
 */
export function invitationRoutes(deps: { mode: RegistrationMode; accounts: AccountService; registration: RegistrationService; pages: Pages; lookup: InvitationLookupFn; logger: Logger }): Router {
  const { mode, accounts, registration, pages, lookup } = deps;
  const router = new Router();

  const show = (ctx: Koa.Context, found: { invitation: InvitationRecord; organization: OrganizationRecord }, token: string, extra: { account?: AccountRecord | undefined; name?: string; errors?: FieldErrors; alert?: string | null }, status = 200) => {
    const { invitation, organization } = found;
    const view = extra.account ? 'sign-in' : mode === 'closed' ? 'closed' : 'register';
    return pages.page(
      ctx,
      'invitation',
      {
        title: `Join ${organization.name}`,
        view,
        organization: organization.name,
        role: invitation.role,
        email: invitation.email,
        expiresAt: invitation.expiresAt,
        token,
        signInHref: accountInvitationPath(token),
        name: extra.name ?? '',
        errors: extra.errors ?? {},
        alert: extra.alert ?? null,
      },
      status,
    );
  };

  router.get('/invitation', async (ctx) => {
    const token = queryValue(ctx, 'token');
    const found = await lookup(token);
    if (found.state !== 'valid') return invitationGone(pages.page, ctx, found.state, found.state === 'unknown' ? undefined : found.organization.name);
    // The token holder is the invitee: telling them whether their address has an account is fine.
    return show(ctx, found, token!, { account: await accounts.findByEmail(found.invitation.email) });
  });

  router.post('/invitation', async (ctx) => {
    const body = await readForm(ctx);
    if (!(await pages.checkCsrf(ctx, body))) return;
    const token = body.token ?? '';
    const found = await lookup(token);
    if (found.state !== 'valid') return invitationGone(pages.page, ctx, found.state, found.state === 'unknown' ? undefined : found.organization.name);
    const { invitation, organization } = found;
    const existing = await accounts.findByEmail(invitation.email);
    if (existing) return show(ctx, found, token, { account: existing, alert: `An account for ${invitation.email} already exists: sign in to accept.` }, 409);
    if (mode === 'closed') return show(ctx, found, token, { alert: 'Accounts are created by an administrator here.' }, 403);

    const name = (body.name ?? '').trim();
    const password = body.password ?? '';
    const errors: FieldErrors = {};
    if (name.length > 255) errors.name = 'Use at most 255 characters.';
    // Control characters have no place in a name (and PostgreSQL text cannot hold U+0000).
    else if (/\p{Cc}/u.test(name)) errors.name = 'Use letters, digits, spaces and punctuation only.';
    const weak = checkPasswordPolicy(password, { email: invitation.email, name });
    if (weak) errors.password = weak;
    if (Object.keys(errors).length) return show(ctx, found, token, { name: name.slice(0, 255).replace(/\p{Cc}/gu, ''), errors }, 400);

    const result = await registration.withOrganizationInvitation(invitation, { password, name }, originOf(ctx));
    if (result === 'exists') {
      // Created a moment ago by a concurrent request.
      return show(ctx, found, token, { account: await accounts.findByEmail(invitation.email), alert: `An account for ${invitation.email} already exists: sign in to accept.` }, 409);
    }
    if (result === 'used') {
      deps.logger.info('invitation used concurrently with account creation', { invitation: invitation.id });
      return invitationGone(pages.page, ctx, 'used', organization.name);
    }
    return pages.message(ctx, {
      title: `You joined ${organization.name}`,
      lead: `Your account for ${invitation.email} was created and you joined ${organization.name} as ${invitation.role}.`,
      link: { href: '/account', label: 'Sign in to your account' },
    });
  });

  return router;
}
