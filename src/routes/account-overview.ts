import type Koa from 'koa';

import { originOf } from '../lib/request-origin.js';
import type { AccountService } from '../services/accounts.js';
import type { ClientService } from '../services/clients.js';
import type { AuditActor } from '../services/audit.js';
import { ConflictError, NotFoundError, ValidationError } from '../services/errors.js';
import type { MailQueue } from '../services/mail-queue.js';
import type { MfaService } from '../services/mfa.js';
import type { OrganizationService } from '../services/organizations.js';
import { checkPasswordPolicy } from '../services/password-policy.js';
import { authorizationsOf, type SessionService } from '../services/sessions.js';
import type { AccountExtension, SignedIn } from './account-kit.js';
import { ACCOUNT_CLIENT_ID } from './account-session.js';
import type { AccountSignIn } from './account-sign-in.js';

const SCOPE_NAMES: Record<string, string> = {
  openid: 'sign you in',
  profile: 'your name',
  email: 'your email address',
  offline_access: 'stay connected (refresh tokens)',
};

const isoOf = (epochSeconds: unknown) => (typeof epochSeconds === 'number' ? new Date(epochSeconds * 1000).toISOString() : null);
const s2n = (v: unknown): number => (typeof v === 'number' ? v : 0);

/** "Firefox on Linux": enough for a person to recognise a device, from the User-Agent header. */
export function describeUserAgent(ua: string | null | undefined): string {
  if (!ua) return 'Unknown device';
  const browser = /Edg\//.test(ua) ? 'Edge' : /OPR\/|Opera/.test(ua) ? 'Opera' : /Firefox\//.test(ua) ? 'Firefox' : /HeadlessChrome\//.test(ua) ? 'Headless Chrome' : /Chrome\/|Chromium\//.test(ua) ? 'Chrome' : /Safari\//.test(ua) ? 'Safari' : /curl\//.test(ua) ? 'curl' : /node|undici/i.test(ua) ? 'Node.js' : 'Browser';
  const os = /iPhone|iPad|iPod/.test(ua) ? 'iOS' : /Android/.test(ua) ? 'Android' : /Windows/.test(ua) ? 'Windows' : /Mac OS X|Macintosh/.test(ua) ? 'macOS' : /CrOS/.test(ua) ? 'ChromeOS' : /Linux/.test(ua) ? 'Linux' : undefined;
  return os ? `${browser} on ${os}` : browser;
}

/**
 * The account overview (GET /account): profile, password, sessions with their devices, linked
 * applications, organizations and invitations; and its forms.
 */
/**
 * The account's ways in through upstream providers ("Sign-in methods"): the linked ones and the
 * enabled ones it can still link; unlinking is refused (ConflictError) for the last way in.
 */
export interface SignInMethods {
  list(accountId: string): Promise<{ linked: { name: string; displayName: string; email: string | null; linkedAt: string; lastLoginAt: string | null }[]; linkable: { name: string; displayName: string }[] }>;
  unlink(accountId: string, provider: string, by: AuditActor): Promise<void>;
}

export function accountOverviewPages(deps: { accounts: AccountService; sessions: SessionService; clients: ClientService; mfa: MfaService; organizations: OrganizationService; mail: Pick<MailQueue, 'delivery'>; signIn: AccountSignIn; signInMethods?: SignInMethods | undefined }): AccountExtension {
  const { accounts, sessions: sessionService, organizations } = deps;

  async function clientName(id: string): Promise<string> {
    const client = await deps.clients.findById(id).catch(() => undefined);
    return client?.name ?? id;
  }

  async function verificationMail(accountId: string) {
    const delivery = await deps.mail.delivery(accountId, 'verify_email');
    return delivery ? { state: delivery.state, at: isoOf(delivery.sentAt ?? delivery.createdAt) } : null;
  }

  return ({ router, guarded, form, page, done, notice, reauthenticate }) => {
    async function overview(ctx: Koa.Context, signed: SignedIn, extra: Record<string, unknown> = {}, status = 200) {
      const { account, sessions, current } = signed;
      const known = await sessionService.devicesOf(account.id);
      const sessionViews = [];
      for (const s of [...sessions].sort((a, b) => s2n(b.loginTs) - s2n(a.loginTs))) {
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
      const memberships = await organizations.membershipsOf({ kind: 'account', id: account.id });
      const invitations = [];
      for (const inv of await organizations.pendingInvitationsFor(account.email)) {
        const org = await organizations.findById(inv.organizationId);
        if (org) invitations.push({ id: inv.id, organization: org.name, slug: org.slug, role: inv.role, expiresAt: inv.expiresAt });
      }

      await page(
        ctx,
        'account',
        {
          title: 'Your account',
          wide: true,
          account: { email: account.email, name: account.displayName ?? '', emailVerified: account.emailVerified },
          // What became of the last verification mail: queued and not yet sent (SMTP down), sent, or given up.
          verificationMail: account.emailVerified ? null : await verificationMail(account.id),
          mfa: await deps.mfa.status(account.id),
          sessions: sessionViews,
          applications,
          organizations: memberships.map((o) => ({ id: o.id, name: o.name, slug: o.slug, role: o.role })),
          invitations,
          signInMethods: deps.signInMethods ? await deps.signInMethods.list(account.id) : null,
          notice: notice(ctx),
          errors: {},
          ...extra,
        },
        status,
      );
    }

    router.get('/account', guarded(async (ctx, signed) => overview(ctx, signed)));

    // A reload or bookmark of a form's target goes back to its page.
    router.get(['/account/profile', '/account/password', '/account/sessions/end', '/account/applications/revoke', '/account/signout', '/account/federation/:name/unlink'], (ctx) => {
      ctx.redirect('/account');
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
        await accounts.changePassword(account.id, next, { actorId: account.id, clientId: ACCOUNT_CLIENT_ID, origin: originOf(ctx) }, { exceptSessionUid: String(signed.current.uid) });
        done(ctx, '/account', 'password');
      }),
    );

    router.post(
      '/account/federation/:name/unlink',
      form(async (ctx, signed) => {
        if (!deps.signInMethods) return;
        try {
          await deps.signInMethods.unlink(signed.account.id, ctx.params.name!, { actorId: signed.account.id, clientId: ACCOUNT_CLIENT_ID, origin: originOf(ctx) });
        } catch (err) {
          // The last way in stays: the page says why (409), the row keeps its form.
          if (err instanceof ConflictError) {
            await overview(ctx, signed, { errors: { federation: 'This is your only way to sign in: set a password or link another provider before unlinking it.' } }, 409);
            return;
          }
          if (!(err instanceof NotFoundError)) throw err;
        }
        done(ctx, '/account', 'unlinked');
      }),
    );

    router.post(
      '/account/signout',
      form(async (ctx) => deps.signIn.signOut(ctx)),
    );

    router.post(
      '/account/sessions/end',
      form(async (ctx, signed, fields) => {
        const uid = fields.session ?? '';
        if (uid === signed.current.uid) {
          deps.signIn.signOut(ctx);
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
  };
}
