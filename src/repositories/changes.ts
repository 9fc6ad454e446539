import type { Db } from '../db/knex.js';
import { nowIso } from '../lib/time.js';

export type ChangeTopic = 'clients' | 'resources' | 'keys' | 'accounts' | 'rbac' | 'identity_providers';

/** The change feed: appended on every write to a cached table, polled by every process. */
export function createChangesRepository(db: Db) {
  return {
    async record(topic: ChangeTopic): Promise<void> {
      await db('changes').insert({ topic, created_at: nowIso() });
    },
    async latestId(): Promise<number> {
      const row = await db('changes').max({ id: 'id' }).first<{ id: number | string | null }>();
      return Number(row?.id ?? 0);
    },
    /** Feed rows with an id above `afterId`, oldest first. */
    async since(afterId: number): Promise<{ id: number; topic: ChangeTopic }[]> {
      const rows = await db('changes').select('id', 'topic').where('id', '>', afterId).orderBy('id');
      return (rows as { id: number | string; topic: ChangeTopic }[]).map((r) => ({ id: Number(r.id), topic: r.topic }));
    },
    /** Drops feed rows older than `olderThan` (an ISO time); returns how many. */
    async prune(olderThan: string): Promise<number> {
      return db('changes').where('created_at', '<', olderThan).delete();
    },
  };
}

export type ChangesRepository = ReturnType<typeof createChangesRepository>;
