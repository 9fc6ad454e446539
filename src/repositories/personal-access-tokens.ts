import type { Db } from '../db/knex.js';
import { isStorableKey, toIso } from '../db/knex.js';
import { keysetPage, type PageOf, type PageRequest } from './keyset.js';

export interface PersonalAccessTokenRecord {
  id: string;
  accountId: string;
  name: string;
  /** Scope names, as the token's `scope` says them. */
  scopes: string[];
  /** Resource identifiers the scopes belong to (the token's `aud`). */
  audience: string[];
  organizationId: string | null;
  createdAt: string;
  expiresAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
  /**
   * How the token hash was made: null for Latch's own `lat_` tokens; `sha256` or `bcrypt` for an
   * API key imported from an app, which keeps its old value (migration 20261208000000).
   */
  format: 'sha256' | 'bcrypt' | null;
  /** An imported key's first characters as its app stored them (a bcrypt key is found by them). */
  prefix: string | null;
}

/** A live token found by its hash, with what introspection must re-check about its owner now. */
export interface PersonalAccessTokenUse {
  token: PersonalAccessTokenRecord;
  /** accounts.active of the owner at this moment. */
  ownerActive: boolean;
  /** The owner's current role in the token's organization; null when not (or no longer) a member. */
  organizationRole: string | null;
}

interface Row {
  id: string;
  account_id: string;
  name: string;
  token_hash: string;
  scopes: string;
  audience: string;
  organization_id: string | null;
  created_at: string;
  expires_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
  token_format?: string | null;
  token_prefix?: string | null;
}

const parseAudience = (text: string): string[] => {
  try {
    const value: unknown = JSON.parse(text);
    return Array.isArray(value) ? value.filter((a): a is string => typeof a === 'string') : [];
  } catch {
    return [];
  }
};

const fromRow = (r: Row): PersonalAccessTokenRecord => ({
  id: r.id,
  accountId: r.account_id,
  name: r.name,
  scopes: r.scopes.split(' ').filter(Boolean),
  audience: parseAudience(r.audience),
  organizationId: r.organization_id,
  createdAt: toIso(r.created_at) ?? r.created_at,
  expiresAt: toIso(r.expires_at) ?? r.expires_at,
  lastUsedAt: toIso(r.last_used_at),
  revokedAt: toIso(r.revoked_at),
  format: r.token_format === 'sha256' || r.token_format === 'bcrypt' ? r.token_format : null,
  prefix: r.token_prefix ?? null,
});

/**
 * Personal access tokens, stored by hash (never the token). Timestamps are ISO strings, which
 * compare in time order as text on both engines.
 */
export function createPersonalAccessTokensRepository(db: Db) {
  return {
    async insert(t: Omit<PersonalAccessTokenRecord, 'lastUsedAt' | 'revokedAt' | 'format' | 'prefix'> & { tokenHash: string; format?: PersonalAccessTokenRecord['format']; prefix?: string | null }): Promise<PersonalAccessTokenRecord> {
      await db('personal_access_tokens').insert({
        id: t.id,
        account_id: t.accountId,
        name: t.name,
        token_hash: t.tokenHash,
        scopes: t.scopes.join(' '),
        audience: JSON.stringify(t.audience),
        organization_id: t.organizationId,
        created_at: t.createdAt,
        expires_at: t.expiresAt,
        last_used_at: null,
        revoked_at: null,
        token_format: t.format ?? null,
        token_prefix: t.prefix ?? null,
      });
      const { tokenHash: _hash, ...record } = t;
      return { ...record, format: t.format ?? null, prefix: t.prefix ?? null, lastUsedAt: null, revokedAt: null };
    },

    /** A token by id whatever its state and owner, with its stored hash (an import's re-run compares them). */
    async findWithHash(id: string): Promise<(PersonalAccessTokenRecord & { tokenHash: string }) | undefined> {
      const row = await db('personal_access_tokens').where({ id }).first<Row | undefined>();
      return row ? { ...fromRow(row), tokenHash: row.token_hash } : undefined;
    },

    /** An import's refresh of a key whose app changed it (name, scopes, organization, expiry). */
    async updateImported(id: string, patch: Pick<PersonalAccessTokenRecord, 'name' | 'scopes' | 'audience' | 'organizationId' | 'expiresAt'>): Promise<void> {
      await db('personal_access_tokens')
        .where({ id })
        .update({ name: patch.name, scopes: patch.scopes.join(' '), audience: JSON.stringify(patch.audience), organization_id: patch.organizationId, expires_at: patch.expiresAt });
    },

    /**
     * Live imported bcrypt keys whose stored prefix is one of `prefixes` (the presented key's
     * leading characters), with their bcrypt hash, for the caller to verify.
     */
    async bcryptCandidates(prefixes: string[], now: string): Promise<{ id: string; tokenHash: string }[]> {
      if (prefixes.length === 0) return [];
      const rows = await db('personal_access_tokens')
        .whereIn('token_prefix', prefixes)
        .where('token_format', 'bcrypt')
        .whereNull('revoked_at')
        .where('expires_at', '>', now)
        .orderBy('id')
        .limit(10)
        .select<{ id: string; token_hash: string }[]>('id', 'token_hash');
      return rows.map((r) => ({ id: r.id, tokenHash: r.token_hash }));
    },

    /**
     * Moves a verified bcrypt key to the SHA-256 lookup (its first use): conditional on still
     * being bcrypt, so two processes verifying it at once write it once.
     */
    async upgradeToSha256(id: string, tokenHash: string): Promise<void> {
      await db('personal_access_tokens').where({ id, token_format: 'bcrypt' }).update({ token_hash: tokenHash, token_format: 'sha256' });
    },

    /** Every token of an account, newest first (revoked and expired ones too). */
    /** One page of the account's tokens not revoked, newest first (keyset on created_at, id). */
    async pageByAccount(accountId: string, request: PageRequest): Promise<PageOf<PersonalAccessTokenRecord>> {
      const q = db('personal_access_tokens').where({ account_id: accountId }).whereNull('revoked_at').select('*');
      return keysetPage(db, q, { at: 'created_at', id: 'id' }, request, fromRow, (t) => ({ at: t.createdAt, id: t.id }));
    },
    async listByAccount(accountId: string): Promise<PersonalAccessTokenRecord[]> {
      const rows = await db('personal_access_tokens').where({ account_id: accountId }).orderBy('created_at', 'desc').orderBy('id').select<Row[]>('*');
      return rows.map(fromRow);
    },

    /** One token of the account (revoked and expired ones too); undefined when it is not theirs. */
    async find(accountId: string, id: string): Promise<PersonalAccessTokenRecord | undefined> {
      if (!isStorableKey(id) || id.length > 64) return undefined;
      const row = await db('personal_access_tokens').where({ id, account_id: accountId }).first<Row | undefined>();
      return row ? fromRow(row) : undefined;
    },

    /** Tokens of an account neither revoked nor expired at `now`. */
    async countLive(accountId: string, now: string): Promise<number> {
      const row = await db('personal_access_tokens').where({ account_id: accountId }).whereNull('revoked_at').where('expires_at', '>', now).count({ n: '*' }).first<{ n: number | string }>();
      return Number(row?.n ?? 0);
    },

    /**
     * The unrevoked, unexpired token with this hash, with its owner's `active` flag and current
     * role in the token's organization: one indexed lookup, so introspection sees a deactivation
     * or a removed membership at once.
     */
    async findLiveByHash(tokenHash: string, now: string): Promise<PersonalAccessTokenUse | undefined> {
      const row = (await db('personal_access_tokens as t')
        .join('accounts as a', 'a.id', 't.account_id')
        .leftJoin('organization_members as m', function () {
          this.on('m.organization_id', '=', 't.organization_id').andOn('m.account_id', '=', 't.account_id');
        })
        .leftJoin('roles as r', 'r.id', 'm.role_id')
        .where('t.token_hash', tokenHash)
        .whereNull('t.revoked_at')
        .where('t.expires_at', '>', now)
        .first('t.*', 'a.active as owner_active', 'r.name as org_role')) as (Row & { owner_active: boolean | number; org_role: string | null }) | undefined;
      if (!row) return undefined;
      return { token: fromRow(row), ownerActive: Boolean(row.owner_active), organizationRole: row.org_role ?? null };
    },

    /** Revokes one token of the account; false when it is not theirs or already revoked. */
    async revoke(accountId: string, id: string, now: string): Promise<boolean> {
      if (!isStorableKey(id)) return false;
      return (await db('personal_access_tokens').where({ id, account_id: accountId }).whereNull('revoked_at').update({ revoked_at: now })) > 0;
    },

    /**
     * Records last uses, one UPDATE per token in one transaction. A time only moves forward, so
     * two processes flushing in either order leave the latest.
     */
    async touch(uses: ReadonlyMap<string, string>): Promise<void> {
      if (uses.size === 0) return;
      await db.transaction(async (trx) => {
        for (const [id, at] of uses) {
          await trx('personal_access_tokens')
            .where({ id })
            .where((w) => void w.whereNull('last_used_at').orWhere('last_used_at', '<', at))
            .update({ last_used_at: at });
        }
      });
    },
  };
}

export type PersonalAccessTokensRepository = ReturnType<typeof createPersonalAccessTokensRepository>;
