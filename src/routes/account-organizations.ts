import type Koa from 'koa';

import type { MembershipRecord, OrganizationRecord } from '../repositories/organizations.js';
import type { Subject } from '../repositories/roles.js';
import type { AccountService } from '../services/accounts.js';
import { allowedOrgActions, canInOrganization, ForbiddenError, type OrgActor } from '../services/authorization.js';
import { ConflictError, NotFoundError, ValidationError } from '../services/errors.js';
import { describeInvitation, isUuid, type OrganizationService } from '../services/organizations.js';
import type { RoleService } from '../services/roles.js';
import type { AccountExtension, AccountKit, SignedIn } from './account-kit.js';

/** Notices after an organization form (Post/Redirect/Get): the query names one, never its text. */
const NOTICES: Record<string, string> = {
  invited: 'The invitation was sent.',
  role: 'The role was changed.',
  removed: 'The member was removed.',
  revoked: 'The invitation was revoked.',
};

/** A member as the forms name it: "account:ID" or "client:ID". */
const memberKey = (s: Subject) => `${s.kind}:${s.id}`;
const parseMember = (raw: string | undefined): Subject | undefined => {
  const m = /^(account|client):([\x21-\x7e]{1,128})$/.exec(raw ?? '');
  if (!m) return undefined;
  return m[1] === 'account' ? { kind: 'account', id: m[2]! } : { kind: 'client', id: m[2]! };
};
const sameSubject = (a: Subject, b: Subject) => a.kind === b.kind && a.id === b.id;

interface Loaded {
  org: OrganizationRecord;
  who: { subject: Subject; superuser: boolean };
  actor: OrgActor;
}

type FormErrors = { form?: string; invite?: string };

/**
 * The account area's organization pages (an AccountExtension, so every page has the account
 * page's sign-in guard and every form its CSRF check); invitations seen signed in are
 * account-invitations.ts:
 *
 * - GET /account/organizations/:id — name, slug, members and roles to every member; invitations
 *   and the management forms to those authorization.ts allows (owners, admins, superusers).
 * - POST /account/organizations/:id/invitations (email, role), …/invitations/revoke (invitation),
 *   …/members/role (member, role), …/members/remove (member), …/leave.
 *
 * Every POST asks authorization.ts again through `organizations.authorize`; a non-member gets 404
 * (the organization's existence is not revealed), a member the rules refuse 403.
 */
export function accountOrganizationPages(deps: { organizations: OrganizationService; roles: RoleService; accounts: AccountService }): AccountExtension {
  const { organizations, roles, accounts } = deps;

  return (kit: AccountKit) => {
    const { router, guarded, form, page, done } = kit;

    const message = (ctx: Koa.Context, title: string, lead: string, status: number, link: { href: string; label: string } | null = { href: '/account', label: 'Back to your account' }) =>
      page(ctx, 'message', { title, lead, notes: [], link, resend: null, tone: 'alert' }, status);

    const notFound = (ctx: Koa.Context) => message(ctx, 'Organization not found', 'There is no such organization, or you are not a member of it.', 404);
    const forbidden = (ctx: Koa.Context, org: OrganizationRecord) =>
      message(ctx, 'Not allowed', `Your role in ${org.name} does not allow this.`, 403, { href: `/account/organizations/${org.id}`, label: `Back to ${org.name}` });

    // ---- Organization page -------------------------------------------------------------------

    /** The organization of the path, if the signed-in account may see it; otherwise a 404 page answered. */
    async function load(ctx: Koa.Context, signed: SignedIn): Promise<Loaded | undefined> {
      const raw = String(ctx.params.id ?? '');
      let org: OrganizationRecord | undefined;
      try {
        org = raw.length <= 64 ? await organizations.resolve(raw) : undefined;
      } catch (err) {
        if (!(err instanceof NotFoundError)) throw err;
      }
      const who = { subject: { kind: 'account', id: signed.account.id } as Subject, superuser: signed.account.superuser };
      const actor = org ? await organizations.actor(org.id, who) : undefined;
      // Not a member (and not a superuser): the organization's existence is not revealed.
      if (!org || !actor || !canInOrganization(actor, 'org.read')) {
        await notFound(ctx);
        return undefined;
      }
      return { org, who, actor };
    }

    async function orgPage(ctx: Koa.Context, signed: SignedIn, loaded: Loaded, extra: { errors?: FormErrors; values?: Record<string, string>; notice?: string | null } = {}, status = 200) {
      const { org, actor } = loaded;
      const allowed = allowedOrgActions(actor);
      const orgRoles = (await roles.list('organization')).map((r) => r.name);
      const members = [];
      for (const m of await organizations.members(org.id)) members.push(await memberView(m, actor, signed, orgRoles));
      const invitations = allowed.has('invitations.read')
        ? (await organizations.invitations(org.id)).map((i) => {
            const d = describeInvitation(i);
            return { id: i.id, email: i.email, role: i.role, status: d.status, expiresAt: i.expiresAt, canRevoke: d.status === 'pending' && allowed.has('invitations.revoke') };
          })
        : null;
      const noticeKey = typeof ctx.query.done === 'string' ? ctx.query.done : undefined;
      const notice = extra.notice ?? (noticeKey === 'joined' ? `You joined ${org.name}.` : noticeKey ? (NOTICES[noticeKey] ?? null) : null);
      await page(
        ctx,
        'organization',
        {
          title: org.name,
          wide: true,
          org: { id: org.id, name: org.name, slug: org.slug },
          you: { role: actor.role, superuser: actor.superuser },
          members,
          invitations,
          canInvite: allowed.has('invitations.create'),
          inviteRoles: orgRoles.filter((r) => canInOrganization(actor, 'invitations.create', { newRole: r })),
          canLeave: actor.role !== null,
          errors: extra.errors ?? {},
          values: extra.values ?? {},
          notice,
        },
        status,
      );
    }

    async function memberView(m: MembershipRecord, actor: OrgActor, signed: SignedIn, orgRoles: string[]) {
      const self = m.member.kind === 'account' && m.member.id === signed.account.id;
      let label: string;
      let detail: string | null = null;
      if (m.member.kind === 'account') {
        const account = await accounts.findById(m.member.id);
        label = account?.email ?? `account ${m.member.id}`;
        detail = account?.displayName ?? null;
      } else {
        label = `client ${m.member.id}`;
      }
      const target = { currentRole: m.role, self };
      return {
        key: memberKey(m.member),
        kind: m.member.kind,
        label,
        detail,
        role: m.role,
        self,
        roleOptions: canInOrganization(actor, 'members.update', target) ? orgRoles.filter((r) => canInOrganization(actor, 'members.update', { ...target, newRole: r })) : [],
        canRemove: !self && canInOrganization(actor, 'members.remove', target),
      };
    }

    router.get(
      '/account/organizations/:id',
      guarded(async (ctx, signed) => {
        const loaded = await load(ctx, signed);
        if (loaded) await orgPage(ctx, signed, loaded);
      }),
    );

    // A reload or bookmark of a form's target goes back to its page.
    router.get(['/account/organizations/:id/invitations', '/account/organizations/:id/invitations/revoke', '/account/organizations/:id/members/role', '/account/organizations/:id/members/remove', '/account/organizations/:id/leave'], (ctx) => {
      const id = String(ctx.params.id ?? '');
      ctx.redirect(/^[A-Za-z0-9_-]{1,64}$/.test(id) ? `/account/organizations/${id}` : '/account');
    });

    /**
     * An organization form: CSRF and sign-in (kit.form), then the organization (404 for a
     * non-member). A refusal of authorization.ts is a 403 page; a rule of the service (the last
     * owner, an invitation no longer pending) or bad input is shown on the page as a form error.
     */
    const orgForm = (handler: (ctx: Koa.Context, signed: SignedIn, fields: Record<string, string>, loaded: Loaded) => Promise<void>) =>
      form(async (ctx, signed, fields) => {
        const loaded = await load(ctx, signed);
        if (!loaded) return;
        try {
          await handler(ctx, signed, fields, loaded);
        } catch (err) {
          if (err instanceof ForbiddenError) return forbidden(ctx, loaded.org);
          if (err instanceof ConflictError) return orgPage(ctx, signed, loaded, { errors: { form: capitalize(err.message) } }, 409);
          if (err instanceof NotFoundError || err instanceof ValidationError) return orgPage(ctx, signed, loaded, { errors: { form: capitalize(err.message) } }, 400);
          throw err;
        }
      });

    /** The membership a form names, or a form error. */
    async function targetOf(ctx: Koa.Context, signed: SignedIn, loaded: Loaded, raw: string | undefined): Promise<MembershipRecord | undefined> {
      const subject = parseMember(raw);
      const m = subject ? await organizations.membership(loaded.org.id, subject) : undefined;
      if (!m) await orgPage(ctx, signed, loaded, { errors: { form: 'That member is not in this organization (any more).' } }, 404);
      return m;
    }

    router.post(
      '/account/organizations/:id/invitations',
      orgForm(async (ctx, signed, fields, loaded) => {
        const email = (fields.email ?? '').trim();
        const role = (fields.role ?? '').trim() || 'member';
        const values = { email: email.slice(0, 320), role: role.slice(0, 64) };
        if (role.length > 64) return orgPage(ctx, signed, loaded, { errors: { invite: 'Choose a role from the list.' }, values }, 400);
        await organizations.authorize(loaded.org.id, loaded.who, 'invitations.create', { newRole: role });
        try {
          await organizations.invite(loaded.org, { email, role, invitedBy: signed.account.id });
        } catch (err) {
          if (err instanceof ValidationError && err.field === 'email') return orgPage(ctx, signed, loaded, { errors: { invite: 'Enter a valid email address, like name@example.com.' }, values }, 400);
          if (err instanceof NotFoundError || err instanceof ValidationError) return orgPage(ctx, signed, loaded, { errors: { invite: 'Choose a role from the list.' }, values }, 400);
          throw err;
        }
        done(ctx, `/account/organizations/${loaded.org.id}`, 'invited');
      }),
    );

    router.post(
      '/account/organizations/:id/invitations/revoke',
      orgForm(async (ctx, signed, fields, loaded) => {
        const id = fields.invitation ?? '';
        const inv = isUuid(id) ? await organizations.invitationById(id.toLowerCase()) : undefined;
        await organizations.authorize(loaded.org.id, loaded.who, 'invitations.revoke');
        if (!inv || inv.organizationId !== loaded.org.id) return orgPage(ctx, signed, loaded, { errors: { form: 'That invitation does not exist (any more).' } }, 404);
        await organizations.revokeInvitation(inv, signed.account.id);
        done(ctx, `/account/organizations/${loaded.org.id}`, 'revoked');
      }),
    );

    router.post(
      '/account/organizations/:id/members/role',
      orgForm(async (ctx, signed, fields, loaded) => {
        const role = (fields.role ?? '').trim();
        if (!role || role.length > 64) return orgPage(ctx, signed, loaded, { errors: { form: 'Choose a role from the list.' } }, 400);
        // The right to change roles at all is asked first: a viewer learns nothing about members.
        await organizations.authorize(loaded.org.id, loaded.who, 'members.update');
        const m = await targetOf(ctx, signed, loaded, fields.member);
        if (!m) return;
        await organizations.authorize(loaded.org.id, loaded.who, 'members.update', { currentRole: m.role, newRole: role, self: sameSubject(m.member, loaded.who.subject) });
        await organizations.updateMember(loaded.org, m.member, role, signed.account.id);
        done(ctx, `/account/organizations/${loaded.org.id}`, 'role');
      }),
    );

    router.post(
      '/account/organizations/:id/members/remove',
      orgForm(async (ctx, signed, fields, loaded) => {
        await organizations.authorize(loaded.org.id, loaded.who, 'members.remove');
        const m = await targetOf(ctx, signed, loaded, fields.member);
        if (!m) return;
        const self = sameSubject(m.member, loaded.who.subject);
        await organizations.authorize(loaded.org.id, loaded.who, 'members.remove', { currentRole: m.role, self });
        await organizations.removeMember(loaded.org, m.member, signed.account.id);
        if (self) return done(ctx, '/account', 'organization-left');
        done(ctx, `/account/organizations/${loaded.org.id}`, 'removed');
      }),
    );

    router.post(
      '/account/organizations/:id/leave',
      orgForm(async (ctx, signed, _fields, loaded) => {
        const me = await organizations.membership(loaded.org.id, loaded.who.subject);
        if (!me) return orgPage(ctx, signed, loaded, { errors: { form: 'You are not a member of this organization.' } }, 400);
        await organizations.authorize(loaded.org.id, loaded.who, 'org.leave', { currentRole: me.role, self: true });
        // The last-owner rule is the service's: a ConflictError shows on the page (409).
        await organizations.removeMember(loaded.org, me.member, signed.account.id);
        done(ctx, '/account', 'organization-left');
      }),
    );

  };
}

const capitalize = (s: string) => (s ? s[0]!.toUpperCase() + s.slice(1) + (/[.!?]$/.test(s) ? '' : '.') : s);
