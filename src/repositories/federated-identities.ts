import type { Db } from '../db/knex.js';
import { toIso } from '../db/knex.js';
import { nowIso } from '../lib/time.js';
import type { Transaction } from './transaction.js';

/** An upstream identity linked to a local account. */
export interface FederatedIdentityRecord {
  id: string;
  provider: string;
  subject: string;
  accountId: string;
  /** The upstream email as of the last sign-in (or the link). */
  email: string | null;
  linkedAt: string;
  lastLoginAt: string | null;
}

/** A link with its provider's display name (an account's list). */
export interface LinkedIdentity extends FederatedIdentityRecord {
  displayName: string;
}

interface Row {
  id: string;
  provider: string;
  subject: string;
  account_id: string;
  email: string | null;
  linked_at: string;
  last_login_at: string | null;
  display_name?: string;
}

function fromRow(r: Row): FederatedIdentityRecord {
  return {
    id: r.id,
    provider: r.provider,
    subject: r.subject,
    accountId: r.account_id,
    email: r.email,
    linkedAt: toIso(r.linked_at) ?? r.linked_at,
    lastLoginAt: toIso(r.last_login_at),
  };
}

/** Which unique rule an insert broke, if any. */
function violation(err: unknown): 'unique' | 'foreign-key' | undefined {
  const e = err as { code?: string; message?: string };
  if (e.code === '23505' || /^SQLITE_CONSTRAINT_(PRIMARYKEY|UNIQUE)$/.test(e.code ?? '') || /UNIQUE constraint failed/.test(e.message ?? '')) return 'unique';
  if (e.code === '23503' || e.code === 'SQLITE_CONSTRAINT_FOREIGNKEY' || /FOREIGN KEY constraint failed/.test(e.message ?? '')) return 'foreign-key';
  return undefined;
}

function queries(db: Db) {
  return {
    /**
     * Inserts a link. `unique` when the provider + subject (or the account + provider) is linked
     * already, `foreign-key` when the account or the provider does not exist.
     */
    async insert(link: Omit<FederatedIdentityRecord, 'linkedAt' | 'lastLoginAt'>): Promise<FederatedIdentityRecord | 'unique' | 'foreign-key'> {
      const now = nowIso();
      try {
        await db('federated_identities').insert({ id: link.id, provider: link.provider, subject: link.subject, account_id: link.accountId, email: link.email, linked_at: now, last_login_at: null });
      } catch (err) {
        const kind = violation(err);
        if (kind) return kind;
        throw err;
      }
      return { ...link, linkedAt: now, lastLoginAt: null };
    },
    async findBySubject(provider: string, subject: string): Promise<FederatedIdentityRecord | undefined> {
      const row = await db('federated_identities').where({ provider, subject }).first<Row | undefined>();
      return row ? fromRow(row) : undefined;
    },
    async findByAccount(accountId: string, provider: string): Promise<FederatedIdentityRecord | undefined> {
      const row = await db('federated_identities').where({ account_id: accountId, provider }).first<Row | undefined>();
      return row ? fromRow(row) : undefined;
    },
    /** The account's links with their providers' display names, by provider name. */
    async listForAccount(accountId: string): Promise<LinkedIdentity[]> {
      const rows = await db('federated_identities as f')
        .join('identity_providers as p', 'p.name', 'f.provider')
        .where('f.account_id', accountId)
        .orderBy('f.provider')
        .select<Row[]>('f.*', 'p.display_name');
      return rows.map((r) => ({ ...fromRow(r), displayName: r.display_name ?? r.provider }));
    },
    async countForAccount(accountId: string): Promise<number> {
      const row = await db('federated_identities').where({ account_id: accountId }).count({ n: '*' }).first<{ n: number | string }>();
      return Number(row?.n ?? 0);
    },
    /** A sign-in through the link: its time, and the upstream email as it is now. */
    async recordLogin(id: string, email: string | null): Promise<boolean> {
      return (await db('federated_identities').where({ id }).update({ last_login_at: nowIso(), email })) > 0;
    },
    async delete(id: string): Promise<boolean> {
      return (await db('federated_identities').where({ id }).delete()) > 0;
    },
  };
}

export type FederatedIdentityQueries = ReturnType<typeof queries>;

/** The federated_identities table. */
export function createFederatedIdentitiesRepository(db: Db) {
  return {
    ...queries(db),
    /** The statements inside a caller's transaction (the last-way-in check of an unlink). */
    within(trx: Transaction): FederatedIdentityQueries {
      return queries(trx as unknown as Db);
    },
  };
}

export type FederatedIdentitiesRepository = ReturnType<typeof createFederatedIdentitiesRepository>;
