import type { Db } from '../db/knex.js';
import { nowIso } from '../lib/time.js';

/** Names of the deployment-wide settings kept in the `settings` table. */
export type SettingKey = 'issuer';

function queries(db: Db) {
  return {
    async get(key: SettingKey): Promise<string | undefined> {
      const row = await db('settings').where({ key }).first<{ value: string } | undefined>();
      return row?.value;
    },
    /**
     * Records `value` unless the key is already set (by another process starting at the same
     * moment, for instance); answers the value stored afterwards, whichever won.
     */
    async setIfAbsent(key: SettingKey, value: string): Promise<string> {
      await db('settings').insert({ key, value, updated_at: nowIso() }).onConflict('key').ignore();
      const row = await db('settings').where({ key }).first<{ value: string }>();
      return row.value;
    },
    async set(key: SettingKey, value: string): Promise<void> {
      await db('settings').insert({ key, value, updated_at: nowIso() }).onConflict('key').merge(['value', 'updated_at']);
    },
  };
}

export type SettingsQueries = ReturnType<typeof queries>;

/** Deployment-wide settings (key/value). */
export function createSettingsRepository(db: Db) {
  return {
    ...queries(db),
    /** Runs `fn` in one transaction; `trx` is handed to other repositories taking part in it. */
    transaction<T>(fn: (repo: SettingsQueries, trx: Db) => Promise<T>): Promise<T> {
      return db.transaction((trx) => fn(queries(trx as unknown as Db), trx as unknown as Db));
    },
  };
}

export type SettingsRepository = ReturnType<typeof createSettingsRepository>;
