import type { Db } from '../db/knex.js';
import { isStorableKey } from '../db/knex.js';
import { epochSeconds, nowIso } from '../lib/time.js';

export type TokenPurpose = 'verify_email' | 'reset_password' | 'invitation';

export interface AccountTokenRecord {
  id: string;
  purpose: TokenPurpose;
  accountId: string | null;
  email: string | null;
  data: Record<string, unknown> | null;
  expiresAt: number;
  usedAt: number | null;
}

interface Row {
  id: string;
  purpose: TokenPurpose;
  account_id: string | null;
  email: string | null;
  data: string | null;
  expires_at: number;
  used_at: number | null;
}

const fromRow = (r: Row): AccountTokenRecord => ({
  id: r.id,
  purpose: r.purpose,
  accountId: r.account_id,
  email: r.email,
  data: r.data ? (JSON.parse(r.data) as Record<string, unknown>) : null,
  expiresAt: Number(r.expires_at),
  usedAt: r.used_at === null ? null : Number(r.used_at),
});

/** Single-use mailed tokens, stored by hash. */
export function createAccountTokensRepository(db: Db) {
  return {
    async insert(t: { id: string; purpose: TokenPurpose; accountId: string | null; email: string | null; data?: Record<string, unknown> | null; expiresAt: number }): Promise<void> {
      await db('account_tokens').insert({ id: t.id, purpose: t.purpose, account_id: t.accountId, email: t.email, data: t.data ? JSON.stringify(t.data) : null, expires_at: t.expiresAt, used_at: null, created_at: nowIso() });
    },
    /** The unused, unexpired token with this hash and purpose. */
    async findLive(id: string, purpose: TokenPurpose): Promise<AccountTokenRecord | undefined> {
      if (!isStorableKey(id)) return undefined;
      const row = await db('account_tokens').where({ id, purpose }).whereNull('used_at').where('expires_at', '>', epochSeconds()).first<Row | undefined>();
      return row ? fromRow(row) : undefined;
    },
    /** The newest unused, unexpired token of this purpose for the address (case-insensitive). */
    async findLiveByEmail(purpose: TokenPurpose, email: string): Promise<AccountTokenRecord | undefined> {
      if (!isStorableKey(email)) return undefined;
      const row = await db('account_tokens').where({ purpose }).whereRaw('lower(email) = ?', [email.toLowerCase()]).whereNull('used_at').where('expires_at', '>', epochSeconds()).orderBy('expires_at', 'desc').first<Row | undefined>();
      return row ? fromRow(row) : undefined;
    },
    /** Marks the token used with one conditional UPDATE: of concurrent uses, exactly one wins. */
    async consume(id: string, purpose: TokenPurpose): Promise<AccountTokenRecord | undefined> {
      if (!isStorableKey(id)) return undefined;
      const now = epochSeconds();
      const changed = await db('account_tokens').where({ id, purpose }).whereNull('used_at').where('expires_at', '>', now).update({ used_at: now });
      if (changed !== 1) return undefined;
      const row = await db('account_tokens').where({ id }).first<Row>();
      return fromRow(row);
    },
    /** Voids every live token of an account for a purpose (a new reset link replaces older ones). */
    async revokeFor(accountId: string, purpose: TokenPurpose): Promise<void> {
      await db('account_tokens').where({ account_id: accountId, purpose }).whereNull('used_at').update({ used_at: epochSeconds() });
    },
    async purgeExpired(): Promise<number> {
      return db('account_tokens').where('expires_at', '<=', epochSeconds() - 86_400).delete();
    },
  };
}

export type AccountTokensRepository = ReturnType<typeof createAccountTokensRepository>;
