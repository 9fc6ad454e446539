import type { Db } from '../db/knex.js';
import { createStatements } from '../db/statements.js';
import { isStorableKey, toIso } from '../db/knex.js';
import { DuplicateEmailError } from '../errors/index.js';
import { nowIso } from '../lib/time.js';
import { keysetPage, type PageOf, type PageRequest } from './keyset.js';
import type { Transaction } from './transaction.js';

/** What a list of accounts may be narrowed to; every filter is applied in SQL. */
export interface AccountFilters {
  /** Case-insensitive substring of the email. */
  email?: string | undefined;
  active?: boolean | undefined;
  /** Members of this organization (its id). */
  organizationId?: string | undefined;
  /** Holders of this global role (its id). */
  roleId?: string | undefined;
}

/** `%`, `_` and the escape character itself are literal in a substring search. */
const likeSubstring = (s: string) => `%${s.toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

export interface AccountRecord {
  id: string;
  email: string;
  passwordHash: string | null;
  displayName: string | null;
  emailVerified: boolean;
  active: boolean;
  superuser: boolean;
  createdAt: string;
  updatedAt: string;
  lastLoginAt: string | null;
}

interface Row {
  id: string;
  email: string;
  password_hash: string | null;
  display_name: string | null;
  email_verified: boolean | number;
  active: boolean | number;
  superuser: boolean | number;
  created_at: string;
  updated_at: string;
  last_login_at: string | null;
}

function fromRow(r: Row): AccountRecord {
  return {
    id: r.id,
    email: r.email,
    passwordHash: r.password_hash,
    displayName: r.display_name,
    emailVerified: Boolean(r.email_verified),
    active: Boolean(r.active),
    superuser: Boolean(r.superuser),
    createdAt: toIso(r.created_at) ?? r.created_at,
    updatedAt: toIso(r.updated_at) ?? r.updated_at,
    lastLoginAt: toIso(r.last_login_at),
  };
}

/** Thrown by insert when the email is taken (case-insensitively). */
export { DuplicateEmailError };

function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  return e.code === '23505' || e.code === 'SQLITE_CONSTRAINT_UNIQUE' || /UNIQUE constraint failed/.test(e.message ?? '');
}

/** The account statements, over the database or over one transaction. */
function queries(db: Db) {
  // Outside a transaction, a sign-in's lookup and its last_login_at go straight to the driver
  // (db/statements.ts): Knex's runner costs several times the SQLite statement itself.
  const direct = (db as { isTransaction?: boolean }).isTransaction ? undefined : createStatements(db);
  return {
    /** `createdAt`: when the account was made elsewhere (an import); now otherwise. */
    async insert(a: Omit<AccountRecord, 'createdAt' | 'updatedAt' | 'lastLoginAt'> & { createdAt?: string | undefined }): Promise<AccountRecord> {
      const now = nowIso();
      const createdAt = a.createdAt ?? now;
      try {
        await db('accounts').insert({
          id: a.id,
          email: a.email,
          password_hash: a.passwordHash,
          display_name: a.displayName,
          email_verified: a.emailVerified,
          active: a.active,
          superuser: a.superuser,
          created_at: createdAt,
          updated_at: now,
        });
      } catch (err) {
        if (isUniqueViolation(err)) throw new DuplicateEmailError();
        throw err;
      }
      return { ...a, createdAt, updatedAt: now, lastLoginAt: null };
    },
    async findById(id: string): Promise<AccountRecord | undefined> {
      const row = await db('accounts').where({ id }).first<Row | undefined>();
      return row ? fromRow(row) : undefined;
    },
    /** Case-insensitive lookup, served by the lower(email) index. */
    async findByEmail(email: string): Promise<AccountRecord | undefined> {
      if (!isStorableKey(email)) return undefined;
      const row = direct ? (await direct.all<Row>('select * from accounts where lower(email) = ? limit 1', [email.toLowerCase()]))[0] : await db('accounts').whereRaw('lower(email) = ?', [email.toLowerCase()]).first<Row | undefined>();
      return row ? fromRow(row) : undefined;
    },
    async recordLogin(id: string): Promise<void> {
      if (direct) await direct.run('update accounts set last_login_at = ? where id = ?', [nowIso(), id]);
      else await db('accounts').where({ id }).update({ last_login_at: nowIso() });
    },
    async updatePasswordHash(id: string, passwordHash: string): Promise<void> {
      await db('accounts').where({ id }).update({ password_hash: passwordHash, updated_at: nowIso() });
    },
    async update(id: string, patch: Partial<Pick<AccountRecord, 'email' | 'displayName' | 'emailVerified' | 'active' | 'superuser' | 'passwordHash'>>): Promise<boolean> {
      const row: Record<string, unknown> = { updated_at: nowIso() };
      if (patch.email !== undefined) row.email = patch.email;
      if (patch.displayName !== undefined) row.display_name = patch.displayName;
      if (patch.emailVerified !== undefined) row.email_verified = patch.emailVerified;
      if (patch.active !== undefined) row.active = patch.active;
      if (patch.superuser !== undefined) row.superuser = patch.superuser;
      if (patch.passwordHash !== undefined) row.password_hash = patch.passwordHash;
      try {
        return (await db('accounts').where({ id }).update(row)) > 0;
      } catch (err) {
        if (isUniqueViolation(err)) throw new DuplicateEmailError();
        throw err;
      }
    },
    /** Accounts ordered by creation; `after` is the id cursor of the previous page. */
    async list(options: { limit?: number; afterCreatedAt?: string } = {}): Promise<AccountRecord[]> {
      const q = db('accounts').select<Row[]>('*').orderBy([{ column: 'created_at' }, { column: 'id' }]);
      if (options.limit) void q.limit(options.limit);
      return (await q).map(fromRow);
    },
    /** One page of accounts, newest first, filtered and paged in SQL (keyset on created_at, id). */
    async page(request: PageRequest & { filters?: AccountFilters }): Promise<PageOf<AccountRecord>> {
      const f = request.filters ?? {};
      const q = db('accounts').select('*');
      // The escape character is named: SQLite's LIKE has none by default.
      if (f.email) void q.whereRaw("lower(email) like ? escape '\\'", [likeSubstring(f.email)]);
      if (f.active !== undefined) void q.where('active', f.active);
      if (f.organizationId !== undefined) void q.whereIn('id', db('organization_members').select('account_id').where('organization_id', f.organizationId).whereNotNull('account_id'));
      if (f.roleId !== undefined) void q.whereIn('id', db('role_assignments').select('account_id').where('role_id', f.roleId).whereNotNull('account_id'));
      return keysetPage(db, q, { at: 'created_at', id: 'id' }, request, fromRow, (a) => ({ at: a.createdAt, id: a.id }));
    },
    /** Deletes the account row (its MFA, tokens, roles and memberships go with it: foreign keys). */
    async delete(id: string, trx?: Transaction): Promise<boolean> {
      return (await (trx ?? db)('accounts').where({ id }).delete()) > 0;
    },
    async count(): Promise<number> {
      const row = await db('accounts').count({ n: '*' }).first<{ n: number | string }>();
      return Number(row?.n ?? 0);
    },
    /** Deletes the account unless it is an active superuser (then false, and nothing changes). */
    async deleteUnlessActiveSuperuser(id: string): Promise<boolean> {
      return (await db('accounts').where({ id }).andWhere((w) => void w.where('superuser', false).orWhere('active', false)).delete()) > 0;
    },
    /**
     * The account, its row locked until the transaction ends: a check across its other rows (the
     * last way to sign in before an unlink) and the change it guards run one after the other.
     * PostgreSQL: SELECT ... FOR UPDATE; SQLite serialises writing transactions anyway.
     */
    async lockById(id: string): Promise<AccountRecord | undefined> {
      const row = await db('accounts').where({ id }).forUpdate().first<Row | undefined>();
      return row ? fromRow(row) : undefined;
    },
    /**
     * The ids of the active superusers, their rows locked until the transaction ends, so that two
     * demotions (or a demotion and an erase) check the last-superuser rule one after the other.
     * PostgreSQL: SELECT ... FOR UPDATE, whose waiter re-reads the rows after the first commits
     * and so no longer counts one just demoted; SQLite serialises writing transactions anyway.
     */
    async lockActiveSuperusers(): Promise<string[]> {
      const rows = await db('accounts').where({ superuser: true, active: true }).forUpdate().select<{ id: string }[]>('id');
      return rows.map((r) => r.id);
    },
  };
}

export type AccountQueries = ReturnType<typeof queries>;

export function createAccountsRepository(db: Db) {
  return {
    ...queries(db),
    /** Runs `fn` in a transaction (changes that check the last-superuser rule). */
    transaction<T>(fn: (repo: AccountQueries) => Promise<T>): Promise<T> {
      return db.transaction((trx) => fn(queries(trx as unknown as Db)));
    },
    /** The statements inside a caller's transaction (a change that spans several tables). */
    within(trx: Transaction): AccountQueries {
      return queries(trx as unknown as Db);
    },
  };
}

export type AccountsRepository = ReturnType<typeof createAccountsRepository>;
