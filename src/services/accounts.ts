import { randomUUID } from 'node:crypto';

import type { AccountRecord, AccountsRepository } from '../repositories/accounts.js';
import { MAX_PASSWORD_LENGTH, type PasswordHasher } from './passwords.js';
import { ValidationError } from './errors.js';

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

export interface CreateAccountInput {
  email: string;
  password: string;
  name?: string | undefined;
  superuser?: boolean | undefined;
  emailVerified?: boolean | undefined;
}

export type LoginResult =
  | { ok: true; account: AccountRecord }
  | { ok: false; reason: 'invalid_credentials' | 'inactive' };

export function createAccountService(deps: { accounts: AccountsRepository; passwords: PasswordHasher }) {
  const { accounts, passwords } = deps;
  return {
    async create(input: CreateAccountInput): Promise<AccountRecord> {
      const email = input.email.trim();
      if (!EMAIL.test(email) || email.length > 320) throw new ValidationError('email', 'must be a valid email address');
      if (input.password.length < 8) throw new ValidationError('password', 'must be at least 8 characters');
      if (input.password.length > MAX_PASSWORD_LENGTH) throw new ValidationError('password', `must be at most ${MAX_PASSWORD_LENGTH} characters`);
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
    },

    findById: (id: string) => accounts.findById(id),
    findByEmail: (email: string) => accounts.findByEmail(email),

    /**
     * Password login. An unknown email and a wrong password take the same time and give the
     * same answer; only a correct password reveals that an account is inactive.
     */
    async authenticate(email: string, password: string): Promise<LoginResult> {
      const account = email && email.length <= 320 ? await accounts.findByEmail(email.trim()) : undefined;
      if (!account?.passwordHash) {
        await passwords.verifyDummy(password);
        return { ok: false, reason: 'invalid_credentials' };
      }
      if (!(await passwords.verify(account.passwordHash, password))) return { ok: false, reason: 'invalid_credentials' };
      if (!account.active) return { ok: false, reason: 'inactive' };
      await accounts.recordLogin(account.id);
      return { ok: true, account };
    },

    /** Creates ADMIN_EMAIL as a superuser when no account has that email yet. */
    async ensureAdmin(admin: { email: string; password: string } | undefined): Promise<AccountRecord | undefined> {
      if (!admin) return undefined;
      if (await accounts.findByEmail(admin.email)) return undefined;
      return this.create({ email: admin.email, password: admin.password, superuser: true, emailVerified: true, name: 'Administrator' });
    },
  };
}

export type AccountService = ReturnType<typeof createAccountService>;
