import type Koa from 'koa';

import { ConflictError } from '../services/errors.js';
import { describeInvitation, isUuid, type OrganizationService } from '../services/organizations.js';
import type { AccountExtension, AccountKit, SignedIn } from './account-kit.js';
import { invitationGone, type InvitationLookupFn } from './invitations.js';

/**
 * Organization invitations seen signed in (an AccountExtension: the account page's sign-in guard
 * and CSRF check):
 *
 * - GET /account/invitation/:token — the invitation link (the "Sign in to accept" link of
 *   /invitation): Accept / Decline when the account's email is the invited address.
 * - POST /account/invitations/accept, /account/invitations/decline (field `id`): an invitation
 *   addressed to the signed-in account's email.
 */
export function accountInvitationPages(deps: { organizations: OrganizationService; lookup: InvitationLookupFn }): AccountExtension {
  const { organizations, lookup } = deps;

  return (kit: AccountKit) => {
    const { router, guarded, form, page, done } = kit;

    const message = (ctx: Koa.Context, title: string, lead: string, status: number) => page(ctx, 'message', { title, lead, notes: [], link: { href: '/account', label: 'Back to your account' }, resend: null, tone: 'alert' }, status);

    // ---- The invitation link, signed in ------------------------------------------------------

    router.get(
      '/account/invitation/:token',
      guarded(async (ctx, signed) => {
        const found = await lookup(ctx.params.token);
        if (found.state !== 'valid') return invitationGone(page, ctx, found.state, found.state === 'unknown' ? undefined : found.organization.name);
        const { invitation, organization } = found;
        const mine = invitation.email.toLowerCase() === signed.account.email.toLowerCase();
        await page(
          ctx,
          'invitation',
          { title: `Join ${organization.name}`, view: mine ? 'accept' : 'mismatch', organization: organization.name, role: invitation.role, email: invitation.email, expiresAt: invitation.expiresAt, invitationId: invitation.id, signedInAs: signed.account.email, alert: null },
          mine ? 200 : 403,
        );
      }),
    );

    /** The invitation `id` names, if it is addressed to the signed-in account; otherwise a page answered. */
    async function myInvitation(ctx: Koa.Context, signed: SignedIn, id: string | undefined) {
      const inv = id && isUuid(id) ? await organizations.invitationById(id.toLowerCase()) : undefined;
      const org = inv ? await organizations.findById(inv.organizationId) : undefined;
      if (!inv || !org || inv.email.toLowerCase() !== signed.account.email.toLowerCase()) {
        await message(ctx, 'Invitation not found', 'There is no such invitation for your email address.', 404);
        return undefined;
      }
      const status = describeInvitation(inv).status;
      if (status !== 'pending') {
        await invitationGone(page, ctx, status === 'expired' ? 'expired' : status === 'revoked' ? 'revoked' : 'used', org.name);
        return undefined;
      }
      return { inv, org };
    }

    router.get(['/account/invitations/accept', '/account/invitations/decline'], (ctx) => {
      ctx.redirect('/account');
    });

    router.post(
      '/account/invitations/accept',
      form(async (ctx, signed, fields) => {
        const mine = await myInvitation(ctx, signed, fields.id);
        if (!mine) return;
        try {
          await organizations.acceptInvitation(mine.inv, signed.account);
        } catch (err) {
          if (!(err instanceof ConflictError)) throw err;
          // Used a moment ago (another tab), or expired since the page was shown.
          await invitationGone(page, ctx, Date.parse(mine.inv.expiresAt) <= Date.now() ? 'expired' : 'used', mine.org.name);
          return;
        }
        done(ctx, `/account/organizations/${mine.org.id}`, 'joined');
      }),
    );

    router.post(
      '/account/invitations/decline',
      form(async (ctx, signed, fields) => {
        const mine = await myInvitation(ctx, signed, fields.id);
        if (!mine) return;
        try {
          await organizations.declineInvitation(mine.inv, signed.account);
        } catch (err) {
          if (!(err instanceof ConflictError)) throw err;
          await invitationGone(page, ctx, 'used', mine.org.name);
          return;
        }
        done(ctx, '/account', 'invitation-declined');
      }),
    );
  };
}
