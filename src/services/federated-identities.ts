import { randomUUID } from 'node:crypto';

import type { AccountsRepository } from '../repositories/accounts.js';
import type { FederatedIdentitiesRepository, FederatedIdentityRecord, LinkedIdentity } from '../repositories/federated-identities.js';
import type { Transact } from '../repositories/transaction.js';
import type { AuditActor, AuditService } from './audit.js';
import { ConflictError, NotFoundError, ValidationError } from './errors.js';

export interface LinkInput {
  accountId: string;
  provider: string;
  /** The upstream subject: the ID token's `sub`, or GitHub's numeric user id as text. */
  subject: string;
  /** The upstream email at link time. */
  email: string | null;
  /** How the link came about, for the audit trail (auto, ask, account, registration, ...). */
  method?: string | undefined;
}

/** The public shape of a linked identity (admin API, account page). */
export function describeLinkedIdentity(l: LinkedIdentity) {
  return { id: l.provider, provider: l.provider, display_name: l.displayName, subject: l.subject, email: l.email, linked_at: l.linkedAt, last_login_at: l.lastLoginAt };
}

const CONTROL = /\p{Cc}/u;

function checkSubject(subject: unknown): string {
  // OpenID Connect Core §2: `sub` is at most 255 ASCII characters.
  if (typeof subject !== 'string' || !subject || subject.length > 255 || CONTROL.test(subject)) throw new ValidationError('subject', 'must be 1 to 255 characters without control characters');
  return subject;
}

function checkEmail(email: unknown): string | null {
  if (email === null || email === undefined || email === '') return null;
  if (typeof email !== 'string' || email.length > 320 || CONTROL.test(email)) throw new ValidationError('email', 'must be at most 320 characters without control characters');
  return email;
}

/**
 * Upstream identities linked to local accounts: the sign-in flow looks them up, links and records
 * sign-ins; the account page and the admin API list and unlink them. Links and unlinks are
 * audited here (`federation.link`, `federation.unlink`) as `by`.
 */
export function createFederatedIdentityService(deps: { identities: FederatedIdentitiesRepository; accounts: AccountsRepository; transact: Transact; audit: AuditService }) {
  const { identities, audit } = deps;

  return {
    /** The account's links with their providers' display names, by provider name. */
    listForAccount: (accountId: string): Promise<LinkedIdentity[]> => identities.listForAccount(accountId),

    findBySubject: (provider: string, subject: string): Promise<FederatedIdentityRecord | undefined> => identities.findBySubject(provider, subject),

    /** The account's link through `provider` (at most one), if any. */
    findByAccount: (accountId: string, provider: string): Promise<FederatedIdentityRecord | undefined> => identities.findByAccount(accountId, provider),

    /**
     * Links an upstream identity to an account. ConflictError when that identity is linked
     * already (to any account) or the account has a link through this provider already;
     * NotFoundError when the account or the provider does not exist.
     */
    async link(input: LinkInput, by: AuditActor): Promise<FederatedIdentityRecord> {
      const subject = checkSubject(input.subject);
      const email = checkEmail(input.email);
      if (await identities.findBySubject(input.provider, subject)) throw new ConflictError(`this ${input.provider} identity is linked to an account already`);
      if (await identities.findByAccount(input.accountId, input.provider)) throw new ConflictError(`the account has a ${input.provider} identity linked already`);
      // The unique indexes decide when two sign-ins link at once; the foreign keys whether both ends exist.
      const created = await identities.insert({ id: randomUUID(), accountId: input.accountId, provider: input.provider, subject, email });
      if (created === 'unique') throw new ConflictError(`this ${input.provider} identity is linked already`);
      if (created === 'foreign-key') throw new NotFoundError(`account ${input.accountId} or identity provider ${input.provider}`);
      await audit.recordBy('federation.link', input.accountId, by, { provider: input.provider, subject, ...(input.method ? { method: input.method } : {}) });
      return created;
    },

    /** A sign-in through the link: last_login_at now, and the upstream email as it is now. */
    async recordLogin(id: string, email: string | null): Promise<void> {
      await identities.recordLogin(id, checkEmail(email));
    },

    /**
     * Removes the account's link through `provider`. Refused (ConflictError, 409) when it is the
     * account's last way to sign in: no password and no other link. The account row is locked
     * while the rule is checked, so two unlinks at once cannot both pass it.
     */
    async unlink(accountId: string, provider: string, by: AuditActor): Promise<void> {
      const removed = await deps.transact(async (trx) => {
        const account = await deps.accounts.within(trx).lockById(accountId);
        if (!account) throw new NotFoundError(`account ${accountId}`);
        const links = identities.within(trx);
        const link = await links.findByAccount(accountId, provider);
        if (!link) throw new NotFoundError(`linked identity ${provider}`);
        if (account.passwordHash === null && (await links.countForAccount(accountId)) <= 1) {
          throw new ConflictError(`${provider} is the account's last way to sign in: set a password or link another provider first`);
        }
        await links.delete(link.id);
        return link;
      });
      await audit.recordBy('federation.unlink', accountId, by, { provider, subject: removed.subject });
    },

    /** How the account can sign in: with a password, and through how many linked identities. */
    async waysIn(accountId: string): Promise<{ password: boolean; identities: number }> {
      const account = await deps.accounts.findById(accountId);
      if (!account) throw new NotFoundError(`account ${accountId}`);
      return { password: account.passwordHash !== null, identities: await identities.countForAccount(accountId) };
    },
  };
}

export type FederatedIdentityService = ReturnType<typeof createFederatedIdentityService>;
