import type { Db } from '../db/knex.js';
import { epochSeconds, isStorableKey } from '../db/knex.js';

export type Payload = Record<string, unknown>;

const words = (v: unknown) => String(v ?? '').split(' ').filter(Boolean);

/** Every scope a stored Grant payload grants: its OpenID Connect scopes and each resource's. */
export function grantScopes(g: Payload): string[] {
  const scopes = new Set(words((g.openid as { scope?: string } | undefined)?.scope));
  for (const scope of Object.values((g.resources as Record<string, string> | undefined) ?? {})) for (const s of words(scope)) scopes.add(s);
  return [...scopes].sort();
}

export interface ConsumeResult {
  /** True when this call consumed the row; false when it was already consumed (or gone). */
  consumed: boolean;
  grantId: string | null;
}

/** The generic table behind oidc-provider's adapter: one row per model instance. */
export function createProviderStateRepository(db: Db) {
  const table = () => db('provider_state');
  const alive = (now: number) => (q: ReturnType<typeof table>) => q.where((w) => void w.whereNull('expires_at').orWhere('expires_at', '>', now));

  function decode(row: { payload: string; consumed_at: number | null } | undefined): Payload | undefined {
    if (!row) return undefined;
    const payload = JSON.parse(row.payload) as Payload;
    if (row.consumed_at !== null && row.consumed_at !== undefined) payload.consumed = Number(row.consumed_at);
    return payload;
  }

  return {
    async upsert(model: string, id: string, payload: Payload, expiresIn: number | undefined): Promise<void> {
      const row = {
        model,
        id,
        payload: JSON.stringify(payload),
        grant_id: typeof payload.grantId === 'string' ? payload.grantId : null,
        user_code: typeof payload.userCode === 'string' ? payload.userCode : null,
        uid: typeof payload.uid === 'string' ? payload.uid : null,
        account_id: typeof payload.accountId === 'string' ? payload.accountId : null,
        expires_at: expiresIn ? epochSeconds() + expiresIn : null,
        consumed_at: typeof payload.consumed === 'number' ? payload.consumed : null,
      };
      await table().insert(row).onConflict(['model', 'id']).merge();
    },

    async find(model: string, id: string): Promise<Payload | undefined> {
      if (!isStorableKey(id)) return undefined;
      const row = await alive(epochSeconds())(table().select('payload', 'consumed_at').where({ model, id })).first();
      return decode(row);
    },

    async findBy(model: string, column: 'uid' | 'user_code', value: string): Promise<Payload | undefined> {
      if (!isStorableKey(value)) return undefined;
      const row = await alive(epochSeconds())(table().select('payload', 'consumed_at').where({ model, [column]: value })).first();
      return decode(row);
    },

    /**
     * Marks a single-use artifact consumed with ONE conditional UPDATE, so that of two concurrent
     * redemptions exactly one sees a changed row. Never read-then-write.
     */
    async consume(model: string, id: string): Promise<ConsumeResult> {
      const changed = await table().where({ model, id }).whereNull('consumed_at').update({ consumed_at: epochSeconds() });
      if (changed === 1) return { consumed: true, grantId: null };
      const row = await table().select('grant_id').where({ model, id }).first<{ grant_id: string | null } | undefined>();
      return { consumed: false, grantId: row?.grant_id ?? null };
    },

    async destroy(model: string, id: string): Promise<void> {
      await table().where({ model, id }).delete();
    },

    /** Deletes every artifact of a grant, and the grant itself. */
    async revokeByGrantId(grantId: string): Promise<number> {
      return table()
        .where('grant_id', grantId)
        .orWhere((w) => void w.where({ model: 'Grant', id: grantId }))
        .delete();
    },

    /**
     * Ends everything an account holds: sessions, grants, codes, opaque tokens and refresh
     * tokens (JWT access tokens die with their grant at introspection, and offline at expiry).
     */
    async revokeByAccountId(accountId: string, options: { exceptSessionUid?: string | undefined } = {}): Promise<number> {
      const grants = db('provider_state').select('id').where({ model: 'Grant', account_id: accountId });
      const q = table().where((w) => void w.where('account_id', accountId).orWhereIn('grant_id', grants));
      // A password change keeps the session it was made from (and only that one).
      const keep = options.exceptSessionUid;
      if (keep && isStorableKey(keep)) void q.whereNot((w) => void w.where({ model: 'Session', uid: keep }));
      return q.delete();
    },

    /** The live rows of one model that belong to an account (its sessions, its grants). */
    async listByAccount(model: 'Session' | 'Grant', accountId: string): Promise<Payload[]> {
      const rows = await alive(epochSeconds())(table().select('payload', 'consumed_at').where({ model, account_id: accountId })).orderBy('id');
      return rows.map((r: { payload: string; consumed_at: number | null }) => decode(r)!);
    },

    /** Deletes the session with this uid if it belongs to the account; true when one was. */
    async destroySessionByUid(accountId: string, uid: string): Promise<boolean> {
      if (!isStorableKey(uid)) return false;
      return (await table().where({ model: 'Session', uid, account_id: accountId }).delete()) > 0;
    },

    /** Deletes up to `batch` expired rows; returns how many. Call repeatedly until 0. */
    async purgeExpired(batch = 1000): Promise<number> {
      const now = epochSeconds();
      const victims = db('provider_state').select('model', 'id').whereNotNull('expires_at').where('expires_at', '<=', now).limit(batch);
      // Row-value IN: portable to SQLite (>= 3.15) and PostgreSQL, bounded by `batch`.
      return table().whereIn(['model', 'id'], victims).delete();
    },
  };
}

export type ProviderStateRepository = ReturnType<typeof createProviderStateRepository>;
