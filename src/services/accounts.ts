import { randomUUID } from 'node:crypto';

import { BoundedCache } from '../lib/lru.js';
import { type AccountFilters, type AccountRecord, type AccountsRepository, DuplicateEmailError } from '../repositories/accounts.js';
import type { PageRequest } from '../repositories/keyset.js';
import type { FederatedIdentitiesRepository } from '../repositories/federated-identities.js';
import type { ProviderStateRepository } from '../repositories/provider-state.js';
import type { RoleKind, RoleRecord, Subject } from '../repositories/roles.js';
import type { Transact, Transaction } from '../repositories/transaction.js';
import type { BackchannelLogout } from './backchannel-logout.js';
import type { AccountMail } from './account-mail.js';
import { diff, type AuditActor, type AuditService } from './audit.js';
import type { ChangeFeed } from './change-feed.js';
import { ConflictError, ValidationError, NotFoundError } from './errors.js';
import { checkPasswordPolicy } from './password-policy.js';
import { hashFormat, MAX_PASSWORD_LENGTH, type PasswordHasher } from './passwords.js';
import { endAccountSessions } from './sessions.js';

/** Thrown when the email already has an account: callers of the service catch it from here. */
export { DuplicateEmailError };

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

export interface CreateAccountInput {
  email: string;
  password: string;
  name?: string | undefined;
  superuser?: boolean | undefined;
  emailVerified?: boolean | undefined;
  /** Skip the strength check and the policy's minimum length (never below 8 characters). */
  allowWeakPassword?: boolean | undefined;
}

export interface UpdateAccountInput {
  name?: string | null | undefined;
  active?: boolean | undefined;
  superuser?: boolean | undefined;
  emailVerified?: boolean | undefined;
}

export type LoginResult =
  | { ok: true; account: AccountRecord }
  | { ok: false; reason: 'invalid_credentials' | 'inactive' | 'unverified'; account?: AccountRecord };

export interface ImportReport {
  imported: number;
  skipped: number;
  errors: { line: number; reason: string }[];
}

/** The public shape of an account (never the hash). */
export function describeAccount(a: AccountRecord) {
  return {
    id: a.id,
    email: a.email,
    name: a.displayName,
    email_verified: a.emailVerified,
    active: a.active,
    superuser: a.superuser,
    created_at: a.createdAt,
    updated_at: a.updatedAt,
    last_login_at: a.lastLoginAt,
  };
}

export function checkEmail(raw: string): string {
  const email = raw.trim();
  if (!EMAIL.test(email) || email.length > 320) throw new ValidationError('email', 'must be a valid email address');
  return email;
}

/**
 * An installation keeps at least one active superuser: without one, nobody can reach the admin
 * API as a person or promote anyone again (only a database edit would). `superusers` are the
 * active superusers' ids, locked by the caller's transaction.
 */
function assertNotLastSuperuser(account: AccountRecord, superusers: readonly string[], how: 'deleted' | 'deactivated' | 'demoted'): void {
  if (superusers.includes(account.id) && superusers.length === 1) {
    throw new ConflictError(`${account.email} is the last active superuser and cannot be ${how}: make another account a superuser first`);
  }
}

/** How long an account read for tokens is reused at most, should a change-feed poll fail. */
const TOKEN_VIEW_TTL_MS = 30_000;

/** What accounts need of the role service: global roles by name, held, given and taken (each change audited). */
export interface AccountRoles {
  find(kind: RoleKind, name: string): Promise<RoleRecord | undefined>;
  rolesOf(subject: Subject): Promise<RoleRecord[]>;
  assign(role: RoleRecord, subject: Subject, by: AuditActor): Promise<boolean>;
  unassign(role: RoleRecord, subject: Subject, by: AuditActor): Promise<boolean>;
}

/** An account an administrator creates (admin API, CLI): with its global roles, optionally invited by mail. */
export interface ProvisionAccountInput extends CreateAccountInput {
  roles?: RoleRecord[] | undefined;
  /** Mails a password-reset link: how an account created without a known password is taken up. */
  sendInvitation?: boolean | undefined;
}

export function createAccountService(deps: { accounts: AccountsRepository; passwords: PasswordHasher; roles: AccountRoles; mail: Pick<AccountMail, 'sendPasswordReset'>; state: ProviderStateRepository; identities: Pick<FederatedIdentitiesRepository, 'within'>; audit: AuditService; transact: Transact; backchannelLogout: Pick<BackchannelLogout, 'enqueueForSessions'>; requireVerifiedEmail?: boolean; feed?: Pick<ChangeFeed, 'on' | 'publish'> }) {
  const { passwords } = deps;

  /** An account as administrators see it (admin API, audit details): never the hash; its global role names. */
  async function adminView(a: AccountRecord) {
    const roles = (await deps.roles.rolesOf({ kind: 'account', id: a.id })).map((r) => r.name).sort();
    return { ...describeAccount(a), roles };
  }

  /** Makes the account's global roles exactly `wanted` (each assignment and removal is audited). */
  async function setRoles(accountId: string, wanted: RoleRecord[], by: AuditActor): Promise<void> {
    const subject = { kind: 'account' as const, id: accountId };
    const held = await deps.roles.rolesOf(subject);
    for (const r of held) if (r.kind === 'global' && !wanted.some((w) => w.id === r.id)) await deps.roles.unassign(r, subject, by);
    for (const r of wanted) if (!held.some((h) => h.id === r.id)) await deps.roles.assign(r, subject, by);
  }

  // Accounts as token issuance sees them (claims, active, superuser), cached per process: the
  // token endpoint needs one on every code exchange and refresh. Every write that changes what a
  // token carries (update, a password change's updated_at, delete) goes through `accounts` below
  // and publishes `accounts` on the change feed, which empties the cache here at once and in
  // every other process at its next poll. Only last_login_at (recordLogin) is left out: no token
  // carries it, and a login must not empty every cache. A read that overlapped a
  // change is not kept (generation), and no entry lives longer than TOKEN_VIEW_TTL_MS.
  const tokenView = new BoundedCache<string, { at: number; account: AccountRecord }>(10_000);
  let generation = 0;
  const forget = () => {
    generation++;
    tokenView.clear();
  };
  deps.feed?.on('accounts', forget);
  const changed = async () => {
    forget();
    await deps.feed?.publish('accounts');
  };
  const accounts: AccountsRepository = {
    ...deps.accounts,
    async update(id, patch) {
      const updated = await deps.accounts.update(id, patch);
      if (updated) await changed();
      return updated;
    },
    async updatePasswordHash(id, passwordHash) {
      await deps.accounts.updatePasswordHash(id, passwordHash);
      await changed();
    },
    async delete(id) {
      const deleted = await deps.accounts.delete(id);
      if (deleted) await changed();
      return deleted;
    },
  };

  async function create(input: CreateAccountInput): Promise<AccountRecord> {
    const email = checkEmail(input.email);
    // One policy for every way an account gets a password (pages, CLI, admin API).
    const weak = checkPasswordPolicy(input.password, { email, name: input.name }, { allowWeak: input.allowWeakPassword });
    if (weak) throw new ValidationError('password', weak);
    const passwordHash = await passwords.hash(input.password);
    return accounts.insert({
      id: randomUUID(),
      email,
      passwordHash,
      displayName: input.name?.trim() || null,
      emailVerified: input.emailVerified ?? false,
      active: true,
      superuser: input.superuser ?? false,
    });
  }

  /**
   * An account without a password (created by an upstream sign-in): it signs in through its
   * linked identity only, until a password reset gives it one. `authenticate` treats it like an
   * unknown address, so a password login neither works nor tells that it exists.
   */
  async function createPasswordless(input: { email: string; name?: string | null | undefined; emailVerified: boolean }): Promise<AccountRecord> {
    return accounts.insert({ id: randomUUID(), email: checkEmail(input.email), passwordHash: null, displayName: input.name?.trim().slice(0, 255) || null, emailVerified: input.emailVerified, active: true, superuser: false });
  }

  /**
   * Ends every session and refresh token of the account, at once and everywhere, and queues the
   * back-channel logouts of the sessions that end in the same transaction: a session cannot
   * end without its applications being told.
   */
  async function endSessions(accountId: string, options: { exceptSessionUid?: string | undefined } = {}, trx?: Transaction): Promise<void> {
    const run = (t: Transaction) => endAccountSessions({ state: deps.state, enqueueForSessions: (sessions, within) => deps.backchannelLogout.enqueueForSessions(sessions, within) }, accountId, t, options);
    await (trx ? run(trx) : deps.transact(run));
  }

  return {
    /** Creates an account and nothing more (self-registration records its own `account.register`). */
    create,
    createPasswordless,
    adminView,

    /**
     * An account created by an administrator (admin API, CLI): created, given its global roles,
     * invited when asked, and recorded as `account.create` with its view (without the email,
     * which is personal data the trail must not keep beyond the account).
     */
    async provision(input: ProvisionAccountInput, by: AuditActor): Promise<AccountRecord> {
      const { roles = [], sendInvitation = false, ...fields } = input;
      const account = await create(fields);
      for (const r of roles) await deps.roles.assign(r, { kind: 'account', id: account.id }, by);
      if (sendInvitation) await deps.mail.sendPasswordReset(account);
      await deps.audit.recordBy('account.create', account.id, by, { after: { ...(await adminView(account)), email: undefined }, invitation_sent: sendInvitation });
      return account;
    },

    /**
     * An administrator's change of an account (admin API, CLI): `update` (with its own event),
     * the global roles made exactly `roles` when given, and `account.admin_update` with the
     * fields of the administrator's view that changed.
     */
    async adminUpdate(id: string, patch: UpdateAccountInput & { roles?: RoleRecord[] | undefined }, by: AuditActor): Promise<AccountRecord> {
      const { roles, ...fields } = patch;
      const found = await accounts.findById(id);
      if (!found) throw new NotFoundError(`account ${id}`);
      const before = await adminView(found);
      const updated = await this.update(id, fields, by);
      if (roles) await setRoles(id, roles, by);
      await deps.audit.recordChanges('account.admin_update', id, by, diff(before, await adminView(updated)));
      return updated;
    },

    /** Mails the account a password-reset link on an administrator's request (`account.password_reset_sent`). */
    async sendPasswordReset(account: AccountRecord, by: AuditActor): Promise<void> {
      await deps.mail.sendPasswordReset(account);
      await deps.audit.recordBy('account.password_reset_sent', account.id, by);
    },

    /** Ends everything the account holds on an administrator's request (`account.sessions_revoke`). */
    async revokeSessions(accountId: string, by: AuditActor): Promise<void> {
      await endSessions(accountId);
      await deps.audit.recordBy('account.sessions_revoke', accountId, by);
    },

    findById: (id: string) => accounts.findById(id),
    /** A sign-in that did not go through `authenticate` (an upstream provider): last_login_at now. */
    recordLogin: (id: string) => accounts.recordLogin(id),
    /** The account for issuing tokens: cached (see above), without its password hash. */
    async findForTokens(id: string): Promise<AccountRecord | undefined> {
      const hit = tokenView.get(id);
      if (hit && Date.now() - hit.at < TOKEN_VIEW_TTL_MS) return hit.account;
      const seen = generation;
      const account = await accounts.findById(id);
      if (!account) return undefined;
      // The password hash has no business in a long-lived cache.
      const view = { ...account, passwordHash: null };
      if (seen === generation) tokenView.set(id, { at: Date.now(), account: view });
      return view;
    },
    findByEmail: (email: string) => accounts.findByEmail(email),
    list: () => accounts.list(),
    /** One page of accounts, newest first, filtered in the database. */
    page: (request: PageRequest & { filters?: AccountFilters }) => accounts.page(request),

    /**
     * Sets a new password (argon2id) and ends every session and refresh token of the account:
     * whoever knew the old password is signed out everywhere. The caller checks the policy.
     * `exceptSessionUid`: the session the change was made from stays (the account page).
     */
    async setPassword(id: string, password: string, options: { exceptSessionUid?: string | undefined } = {}): Promise<void> {
      if (password.length > MAX_PASSWORD_LENGTH) throw new ValidationError('password', `must be at most ${MAX_PASSWORD_LENGTH} characters`);
      await accounts.updatePasswordHash(id, await passwords.hash(password));
      await endSessions(id, options);
    },

    /**
     * A password change by the account's owner (account page, /me), who re-authenticated: set as
     * setPassword does, and recorded as `password.change`.
     */
    async changePassword(id: string, password: string, by: AuditActor, options: { exceptSessionUid?: string | undefined } = {}): Promise<void> {
      await this.setPassword(id, password, options);
      await deps.audit.recordBy('password.change', id, by);
    },

    /**
     * Password login. An unknown email and a wrong password take the same time and give the
     * same answer; only a correct password reveals that an account is inactive or unverified.
     * A hash in an older format or with older parameters is rewritten as argon2id now.
     */
    async authenticate(email: string, password: string): Promise<LoginResult> {
      const account = email && email.length <= 320 ? await accounts.findByEmail(email.trim()) : undefined;
      if (!account?.passwordHash) {
        await passwords.verifyDummy(password);
        return { ok: false, reason: 'invalid_credentials' };
      }
      if (!(await passwords.verify(account.passwordHash, password))) return { ok: false, reason: 'invalid_credentials', account };
      if (!account.active) return { ok: false, reason: 'inactive', account };
      if (deps.requireVerifiedEmail && !account.emailVerified) return { ok: false, reason: 'unverified', account };
      if (passwords.needsRehash(account.passwordHash)) {
        await accounts.update(account.id, { passwordHash: await passwords.hash(password) });
      }
      await accounts.recordLogin(account.id);
      return { ok: true, account };
    },

    /**
     * Updates an account; deactivating it ends its sessions and refresh tokens at once. Neither
     * deactivating nor demoting may leave the installation without an active superuser.
     */
    async update(id: string, patch: UpdateAccountInput, by: AuditActor): Promise<AccountRecord> {
      const name = patch.name === undefined ? undefined : patch.name?.trim() || null;
      if (name && name.length > 255) throw new ValidationError('name', 'must be at most 255 characters');
      const removesSuperuser = patch.active === false || patch.superuser === false;
      const { before, after } = await deps.accounts.transaction(async (repo) => {
        // Locked before the account is read, so the check and the write see the same superusers.
        const superusers = removesSuperuser ? await repo.lockActiveSuperusers() : [];
        const before = await repo.findById(id);
        if (!before) throw new NotFoundError(`account ${id}`);
        if (removesSuperuser) assertNotLastSuperuser(before, superusers, patch.active === false ? 'deactivated' : 'demoted');
        await repo.update(id, { displayName: name, active: patch.active, superuser: patch.superuser, emailVerified: patch.emailVerified });
        return { before, after: (await repo.findById(id))! };
      });
      await changed();
      if (before.active && !after.active) await endSessions(id);
      const fields = (['displayName', 'active', 'superuser', 'emailVerified'] as const).filter((k) => before[k] !== after[k]);
      if (fields.length) {
        await deps.audit.record({ type: after.active === before.active ? 'account.update' : after.active ? 'account.activate' : 'account.deactivate', actorId: by.actorId, subjectId: id, origin: by.origin, details: Object.fromEntries(fields.map((k) => [k, { before: before[k], after: after[k] }])) });
      }
      return after;
    },

    /**
     * Erases an account (GDPR art. 17): its sessions and grants end, the row and everything
     * hanging from it are deleted, so the email may register again, and the audit rows by or
     * about it are kept under a pseudonym without the email. One transaction: an erase cut
     * short must not leave a deleted account whose email still sits in the audit trail, nor
     * sessions of an account that is gone. The last active superuser cannot be erased.
     * `account.erase` is recorded under the pseudonym.
     */
    async erase(id: string, by: AuditActor): Promise<{ account: AccountRecord; pseudonym: string }> {
      const pseudonym = `erased:${randomUUID()}`;
      const account = await deps.transact(async (trx) => {
        const repo = deps.accounts.within(trx);
        const found = await repo.findById(id);
        if (!found) throw new NotFoundError(`account ${id}`);
        // Its linked identities go with the row (cascade); the upstream emails they carried are
        // erased from the trail like the account's own.
        const upstreamEmails = (await deps.identities.within(trx).listForAccount(id)).flatMap((l) => (l.email ? [l.email] : []));
        // Most accounts are no superuser: deleted at once, unless one became it meanwhile.
        if (found.superuser && found.active || !(await repo.deleteUnlessActiveSuperuser(id))) {
          const superusers = await repo.lockActiveSuperusers();
          const current = await repo.findById(id);
          if (!current) throw new NotFoundError(`account ${id}`);
          assertNotLastSuperuser(current, superusers, 'deleted');
          await repo.delete(id);
        }
        await endSessions(id, {}, trx);
        await deps.audit.pseudonymise(id, pseudonym, [found.email, ...upstreamEmails], trx);
        return found;
      });
      await changed();
      await deps.audit.recordBy('account.erase', pseudonym, by);
      return { account, pseudonym };
    },

    /** Creates ADMIN_EMAIL as a superuser when no account has that email yet. */
    async ensureAdmin(admin: { email: string; password: string } | undefined): Promise<AccountRecord | undefined> {
      if (!admin) return undefined;
      if (await accounts.findByEmail(admin.email)) return undefined;
      // ADMIN_PASSWORD is the operator's own deliberate choice: the 8-character floor, no strength check.
      return create({ email: admin.email, password: admin.password, superuser: true, emailVerified: true, name: 'Administrator', allowWeakPassword: true });
    },

    /**
     * Imports users from JSON Lines (`{"email","password_hash","name","email_verified","superuser","roles"}`)
     * with argon2, bcrypt ($2a$/$2b$/$2y$) or PBKDF2-SHA256 (Django's, passlib's) hashes, kept as they are until
     * each user's next login rewrites them as argon2id. Recorded as `account.import` (the counts;
     * the roles given as `role.assign`).
     */
    async importLines(text: string, by: AuditActor): Promise<ImportReport> {
      const report: ImportReport = { imported: 0, skipped: 0, errors: [] };
      // Global roles by name, looked up once per import (a line names roles, an account holds global ones).
      const roleByName = new Map<string, RoleRecord | undefined>();
      const roleNamed = async (name: string) => {
        if (!roleByName.has(name)) roleByName.set(name, await deps.roles.find('global', name));
        return roleByName.get(name);
      };
      const lines = text.split(/\r?\n/);
      for (let i = 0; i < lines.length; i++) {
        const raw = lines[i]!.trim();
        if (!raw) continue;
        const line = i + 1;
        const skip = (reason: string) => {
          report.skipped++;
          report.errors.push({ line, reason });
        };
        let rec: Record<string, unknown>;
        try {
          rec = JSON.parse(raw) as Record<string, unknown>;
          if (typeof rec !== 'object' || rec === null || Array.isArray(rec)) throw new Error('not an object');
        } catch {
          skip('not a JSON object');
          continue;
        }
        const { email, password_hash: hash, name, email_verified: verified, superuser, roles } = rec;
        if (typeof email !== 'string' || !EMAIL.test(email.trim()) || email.length > 320) {
          skip('email is missing or not a valid address');
          continue;
        }
        if (typeof hash !== 'string' || !hashFormat(hash)) {
          skip('password_hash is missing or not a supported format (argon2, bcrypt $2a$/$2b$/$2y$, pbkdf2_sha256, $pbkdf2-sha256$)');
          continue;
        }
        if (name !== undefined && name !== null && typeof name !== 'string') {
          skip('name must be a string');
          continue;
        }
        if ((verified !== undefined && typeof verified !== 'boolean') || (superuser !== undefined && typeof superuser !== 'boolean')) {
          skip('email_verified and superuser must be true or false');
          continue;
        }
        if (roles !== undefined && (!Array.isArray(roles) || roles.some((r) => typeof r !== 'string'))) {
          skip('roles must be an array of role names');
          continue;
        }
        let account: AccountRecord;
        try {
          account = await accounts.insert({ id: randomUUID(), email: email.trim(), passwordHash: hash, displayName: (name as string | undefined)?.trim() || null, emailVerified: verified === true, active: true, superuser: superuser === true });
          report.imported++;
        } catch (err) {
          if (err instanceof DuplicateEmailError) {
            skip(`an account with email ${email.trim()} already exists`);
            continue;
          }
          throw err;
        }
        // The account is imported either way; roles that do not exist are named once for the line.
        const unknown: string[] = [];
        for (const roleName of new Set(roles as string[] | undefined)) {
          const role = await roleNamed(roleName);
          if (role) await deps.roles.assign(role, { kind: 'account', id: account.id }, by);
          else unknown.push(`"${roleName}"`);
        }
        if (unknown.length) report.errors.push({ line, reason: `unknown role${unknown.length === 1 ? '' : 's'} ${unknown.join(', ')} (imported without ${unknown.length === 1 ? 'it' : 'them'})` });
      }
      await deps.audit.recordBy('account.import', null, by, { imported: report.imported, skipped: report.skipped });
      return report;
    },
  };
}

export type AccountService = ReturnType<typeof createAccountService>;
