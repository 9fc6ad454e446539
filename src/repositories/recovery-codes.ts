import type { Db } from '../db/knex.js';
import { isStorableKey } from '../db/knex.js';
import { nowIso } from '../lib/time.js';

/** The recovery_codes table: HMACs of one-time codes, each consumed by one conditional UPDATE. */
export function createRecoveryCodesRepository(db: Db) {
  const table = () => db('recovery_codes');
  return {
    /** Replaces every code of the account (used or not) with these hashes, atomically. */
    async replace(accountId: string, codeHashes: string[]): Promise<void> {
      await db.transaction(async (trx) => {
        await trx('recovery_codes').where({ account_id: accountId }).delete();
        if (codeHashes.length) await trx('recovery_codes').insert(codeHashes.map((h) => ({ account_id: accountId, code_hash: h, used_at: null })));
      });
    },

    /** Marks the unused code with this hash used; true only for the one call that did. */
    async consume(accountId: string, codeHash: string): Promise<boolean> {
      if (!isStorableKey(codeHash)) return false;
      const changed = await table().where({ account_id: accountId, code_hash: codeHash }).whereNull('used_at').update({ used_at: nowIso() });
      return changed >= 1;
    },

    async countUnused(accountId: string): Promise<number> {
      const row = await table().where({ account_id: accountId }).whereNull('used_at').count({ n: '*' }).first<{ n: number | string } | undefined>();
      return Number(row?.n ?? 0);
    },

    async deleteAll(accountId: string): Promise<void> {
      await table().where({ account_id: accountId }).delete();
    },
  };
}

export type RecoveryCodesRepository = ReturnType<typeof createRecoveryCodesRepository>;
