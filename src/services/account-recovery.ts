import type { AccountRecord } from '../repositories/accounts.js';
import type { AccountTokenRecord } from '../repositories/account-tokens.js';
import type { AccountService } from './accounts.js';
import type { AuditService, RequestOrigin } from './audit.js';
import type { MailLinkService } from './mail-links.js';

const sameAddress = (a: string | null, b: string) => a !== null && a.toLowerCase() === b.toLowerCase();

/** A live mailed link and the account it is for. */
export interface LinkedAccount {
  link: AccountTokenRecord;
  account: AccountRecord;
}

/**
 * Email verification and password reset through mailed single-use links: which account a link
 * is for, using it, and the audit trail of each change.
 */
export function createAccountRecovery(deps: { accounts: AccountService; links: MailLinkService; audit: AuditService }) {
  const { accounts, links, audit } = deps;

  /** The account a live link belongs to, when it still exists, is active and has that address. */
  async function accountOf(link: AccountTokenRecord | undefined): Promise<LinkedAccount | undefined> {
    if (!link?.accountId) return undefined;
    const account = await accounts.findById(link.accountId);
    return account?.active && sameAddress(link.email, account.email) ? { link, account } : undefined;
  }

  return {
    /** The account of a verification or reset link, without using the link (to show a form). */
    peek: async (purpose: 'verify_email' | 'reset_password', token: string): Promise<LinkedAccount | undefined> => (token ? accountOf(await links.peek(purpose, token)) : undefined),

    /** Uses a verification link: the account's address is verified. Undefined for a dead link. */
    async verifyEmail(token: string, origin: RequestOrigin): Promise<LinkedAccount | undefined> {
      const found = token ? await accountOf(await links.consume('verify_email', token)) : undefined;
      if (!found) return undefined;
      const { account } = found;
      if (!account.emailVerified) await accounts.update(account.id, { emailVerified: true }, { actorId: account.id, origin });
      await audit.record({ type: 'email.verify', actorId: account.id, subjectId: account.id, origin, details: { email: account.email } });
      return found;
    },

    /**
     * Uses a reset link: the new password is set (every session ends), the account's other
     * reset links die, and its address counts as verified (the link reached it). The caller
     * checked the password policy. Undefined for a dead link.
     */
    async resetPassword(token: string, password: string, origin: RequestOrigin): Promise<LinkedAccount | undefined> {
      // One conditional UPDATE: of two concurrent submissions, exactly one gets past it.
      const found = await accountOf(await links.consume('reset_password', token));
      if (!found) return undefined;
      const { account } = found;
      await accounts.setPassword(account.id, password);
      await links.revokeFor(account.id, 'reset_password');
      if (!account.emailVerified) await accounts.update(account.id, { emailVerified: true }, { actorId: account.id, origin });
      await audit.record({ type: 'password.reset', actorId: account.id, subjectId: account.id, origin });
      return found;
    },

    /** Records a reset request for an existing account (`mailed`: false when the mail limit held it back). */
    async resetRequested(account: AccountRecord, mailed: boolean, origin: RequestOrigin): Promise<void> {
      await audit.record({ type: 'password.reset_request', actorId: account.id, subjectId: account.id, origin, details: { mailed } });
    },
  };
}

export type AccountRecovery = ReturnType<typeof createAccountRecovery>;
