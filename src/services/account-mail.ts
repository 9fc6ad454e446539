import type { AccountRecord } from '../repositories/accounts.js';
import type { AuditActor, AuditService } from './audit.js';
import { TOKEN_TTL, type MailLinkService } from './mail-links.js';
import type { Mailer } from './mail.js';
import type { Limits } from './rate-limits.js';

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** One mail: paragraphs of plain text, and links each on its own line (full absolute URLs). */
export type MailPart = string | { link: string; label: string };

export function composeMail(parts: MailPart[]): { text: string; html: string } {
  const text = parts.map((p) => (typeof p === 'string' ? p : p.link)).join('\n\n');
  const html = parts.map((p) => (typeof p === 'string' ? `<p>${escapeHtml(p)}</p>` : `<p><a href="${escapeHtml(p.link)}">${escapeHtml(p.label)}</a><br>${escapeHtml(p.link)}</p>`)).join('\n');
  return { text: `${text}\n`, html: `<!DOCTYPE html><html><body style="font-family:sans-serif">\n${html}\n</body></html>\n` };
}

const hours = (seconds: number) => (seconds % 3600 === 0 && seconds >= 3600 ? `${seconds / 3600} hour${seconds === 3600 ? '' : 's'}` : `${Math.round(seconds / 60)} minutes`);

/** The key of the per-address mail limit: one counter for an address however it is spelled. */
export const mailKey = (email: string) => email.trim().toLowerCase();

/**
 * The mails of self-service account flows: email verification, password reset, invitation, and
 * the note to an address owner that someone tried to register it. Each mails a single-use link
 * under ISSUER (the token exists only in the mail; its hash in the database).
 */
export function createAccountMail(deps: { issuer: string; mailer: Mailer; tokens: MailLinkService; limits: Limits; audit: AuditService; productName?: string }) {
  const { issuer, mailer, tokens } = deps;
  const product = deps.productName ?? 'Latch';

  // The issuer has no trailing slash and may have a path (https://example.com/auth): links are under it.
  const link = (path: string, params: Record<string, string>) => {
    const query = new URLSearchParams(params).toString();
    return `${issuer}${path}${query ? `?${query}` : ''}`;
  };

  return {
    /**
     * Counts one mail to `email` against MAILS_PER_ADDRESS_PER_HOUR. False when over the limit:
     * the caller then sends nothing but answers as if it had (the answer never tells).
     */
    async allow(email: string): Promise<boolean> {
      return (await deps.limits.hit('mail_address', mailKey(email))).allowed;
    },

    /** Mails a link that verifies the account's address (valid 24 hours). */
    async sendVerification(account: Pick<AccountRecord, 'id' | 'email'>, options: { returnTo?: string | undefined } = {}): Promise<void> {
      const token = await tokens.issue('verify_email', { accountId: account.id, email: account.email, ...(options.returnTo ? { data: { returnTo: options.returnTo } } : {}) });
      const { text, html } = composeMail([
        `Confirm that ${account.email} is your email address by opening this link:`,
        { link: link('/verify-email', { token }), label: 'Confirm my email address' },
        `The link is valid for ${hours(TOKEN_TTL.verify_email)} and can be used once. If you did not create a ${product} account, ignore this mail.`,
      ]);
      await mailer.send({ to: account.email, subject: `Confirm your email address for ${product}`, text, html }, { kind: 'verify_email', accountId: account.id });
    },

    /** Mails a password-reset link (valid 1 hour). */
    async sendPasswordReset(account: Pick<AccountRecord, 'id' | 'email'>, options: { returnTo?: string | undefined } = {}): Promise<void> {
      const token = await tokens.issue('reset_password', { accountId: account.id, email: account.email, ...(options.returnTo ? { data: { returnTo: options.returnTo } } : {}) });
      const { text, html } = composeMail([
        `Someone (hopefully you) asked to reset the password of the ${product} account for ${account.email}. To choose a new password, open this link:`,
        { link: link('/reset-password', { token }), label: 'Choose a new password' },
        `The link is valid for ${hours(TOKEN_TTL.reset_password)} and can be used once. If you did not ask for it, ignore this mail: your password stays as it is.`,
      ]);
      await mailer.send({ to: account.email, subject: `Reset your ${product} password`, text, html }, { kind: 'reset_password', accountId: account.id });
    },

    /**
     * Tells the owner of an address that someone tried to register it again. Registration
     * answers the same whether or not the address has an account; only its owner learns it.
     */
    async sendAlreadyRegistered(account: Pick<AccountRecord, 'id' | 'email'>, options: { returnTo?: string | undefined } = {}): Promise<void> {
      const { text, html } = composeMail([
        `Someone tried to create a ${product} account with your email address, ${account.email}, which already has an account. No new account was created.`,
        'If it was you, sign in with your existing account. If you forgot your password, reset it here:',
        { link: link('/forgot-password', options.returnTo ? { return_to: options.returnTo } : {}), label: 'Reset my password' },
        'If it was not you, ignore this mail: nothing has changed.',
      ]);
      await mailer.send({ to: account.email, subject: `Someone tried to register with your address on ${product}`, text, html }, { kind: 'already_registered', accountId: account.id });
    },

    /** Creates an invitation to register `email` (valid 7 days) by `by`, mails it (`account.invite`); returns the link. */
    async sendInvitation(email: string, by: AuditActor): Promise<{ email: string; url: string; expiresAt: string }> {
      const token = await tokens.issue('invitation', { accountId: null, email, data: { invitedBy: by.actorId } });
      const expiresAt = new Date(Date.now() + TOKEN_TTL.invitation * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
      const url = link('/register', { invitation: token });
      const { text, html } = composeMail([
        `You are invited to create a ${product} account for ${email}. To accept, open this link and choose a password:`,
        { link: url, label: 'Create my account' },
        `The invitation is valid until ${expiresAt} and can be used once. If you did not expect it, ignore this mail.`,
      ]);
      await mailer.send({ to: email, subject: `You are invited to ${product}`, text, html }, { kind: 'invitation' });
      await deps.audit.recordBy('account.invite', null, by, { email });
      return { email, url, expiresAt };
    },
  };
}

export type AccountMail = ReturnType<typeof createAccountMail>;
