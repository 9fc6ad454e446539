import type { AccountRecord } from '../repositories/accounts.js';
import type { AccountTokenRecord } from '../repositories/account-tokens.js';
import type { InvitationRecord } from '../repositories/organizations.js';
import type { AccountMail } from './account-mail.js';
import { DuplicateEmailError, type AccountService } from './accounts.js';
import type { AuditService, RequestOrigin } from './audit.js';
import { ConflictError } from './errors.js';
import type { MailLinkService } from './mail-links.js';
import type { OrganizationService } from './organizations.js';
import type { PasswordHasher } from './passwords.js';

/** A registration form that passed its checks (address, name, password policy). */
export interface Registration {
  email: string;
  password: string;
  name: string;
}

/** The outcome of an open registration; the mail to send, if the per-address limit allows one. */
export type OpenRegistration = { created: AccountRecord; mailAllowed: boolean } | { existing: AccountRecord; mailAllowed: boolean } | { nothing: true; mailAllowed: boolean };

/**
 * Self-service registration: with an invitation (the address is verified by the link) or open
 * (an unverified account, or a note to the owner of an address that already has one). Creates
 * the account and records `account.register` / `account.register_existing`.
 */
export function createRegistration(deps: { accounts: AccountService; passwords: PasswordHasher; links: MailLinkService; mail: Pick<AccountMail, 'allow'>; audit: AuditService; organizations: Pick<OrganizationService, 'acceptInvitation'> }) {
  const { accounts, links, audit } = deps;

  return {
    /** The live invitation a token names, if any (without using it). */
    invitation: async (token: string | undefined): Promise<AccountTokenRecord | undefined> => (token ? links.peek('invitation', token) : undefined),

    /**
     * Registers the invited address: `exists` when it already has an account, `invalid` when the
     * invitation was used meanwhile; otherwise the new, verified account.
     */
    async withInvitation(token: string, invitation: AccountTokenRecord, form: Registration, origin: RequestOrigin): Promise<{ account: AccountRecord } | 'exists' | 'invalid'> {
      if (await accounts.findByEmail(form.email)) return 'exists';
      if (!(await links.consume('invitation', token))) return 'invalid';
      let account: AccountRecord;
      try {
        account = await accounts.create({ email: form.email, password: form.password, name: form.name, emailVerified: true });
      } catch (err) {
        if (err instanceof DuplicateEmailError) return 'exists';
        throw err;
      }
      await audit.record({ type: 'account.register', actorId: account.id, subjectId: account.id, origin, details: { via: 'invitation', invitedBy: invitation.data?.invitedBy ?? null } });
      return { account };
    },

    /**
     * Registers the address an organization invitation was sent to (verified: the link reached
     * it) and joins the organization: `exists` when the address already has an account, `used`
     * when the invitation was used meanwhile (the account then exists without the membership).
     */
    async withOrganizationInvitation(invitation: InvitationRecord, form: Omit<Registration, 'email'>, origin: RequestOrigin): Promise<{ account: AccountRecord } | 'exists' | 'used'> {
      let account: AccountRecord;
      try {
        account = await accounts.create({ email: invitation.email, password: form.password, name: form.name, emailVerified: true });
      } catch (err) {
        if (!(err instanceof DuplicateEmailError)) throw err;
        return 'exists';
      }
      await audit.record({ type: 'account.register', actorId: account.id, subjectId: account.id, origin, details: { via: 'organization_invitation', organization: invitation.organizationId, invitation: invitation.id } });
      try {
        await deps.organizations.acceptInvitation(invitation, account);
      } catch (err) {
        if (!(err instanceof ConflictError)) throw err;
        return 'used';
      }
      return { account };
    },

    /**
     * Open registration. Both branches hash the password (the same time is spent) and count a
     * mail against the address, so that the answer and its timing never tell whether the
     * address is known.
     */
    async open(form: Registration, origin: RequestOrigin): Promise<OpenRegistration> {
      let existing = await accounts.findByEmail(form.email);
      let created: AccountRecord | undefined;
      if (!existing) {
        try {
          created = await accounts.create({ email: form.email, password: form.password, name: form.name, emailVerified: false });
        } catch (err) {
          if (!(err instanceof DuplicateEmailError)) throw err;
          // Registered a moment ago by a concurrent request: the same as "already exists".
          existing = await accounts.findByEmail(form.email);
        }
      } else {
        await deps.passwords.hash(form.password);
      }
      const mailAllowed = await deps.mail.allow(form.email);
      if (created) {
        await audit.record({ type: 'account.register', actorId: created.id, subjectId: created.id, origin, details: { via: 'open', verificationMailed: mailAllowed } });
        return { created, mailAllowed };
      }
      if (existing) {
        await audit.record({ type: 'account.register_existing', subjectId: existing.id, origin, details: { ownerMailed: mailAllowed } });
        return { existing, mailAllowed };
      }
      return { nothing: true, mailAllowed };
    },
  };
}

export type RegistrationService = ReturnType<typeof createRegistration>;
