import type { Knex } from 'knex';

import { migrations } from '../../migrations/index.js';
import { isPostgres } from './driver.js';
import type { Db } from './knex.js';

/**
 * A migration may rewrite or index a large table: it runs without the statement timeout that
 * bounds requests (DB_STATEMENT_TIMEOUT_MS). Knex runs each migration in its own transaction
 * on PostgreSQL, so SET LOCAL lifts the limit for that migration only.
 */
const unbounded = (step: (knex: Knex) => PromiseLike<unknown>) => async (knex: Knex) => {
  if (isPostgres(knex)) await knex.raw('SET LOCAL statement_timeout = 0');
  return step(knex);
};

/** Knex migration source over the statically imported list in migrations/index.ts. */
class StaticSource implements Knex.MigrationSource<string> {
  getMigrations(): Promise<string[]> {
    return Promise.resolve(Object.keys(migrations));
  }
  getMigrationName(name: string): string {
    return name;
  }
  getMigration(name: string): Promise<Knex.Migration> {
    const m = migrations[name];
    if (!m) throw new Error(`unknown migration ${name}`);
    return Promise.resolve({ ...m, up: unbounded(m.up), ...(m.down ? { down: unbounded(m.down) } : {}) });
  }
}

const options = (): Knex.MigratorConfig => ({ migrationSource: new StaticSource(), tableName: 'knex_migrations' });

/** Applies every pending migration; returns the names applied. */
export async function migrateLatest(db: Db): Promise<string[]> {
  for (let attempt = 1; ; attempt++) {
    try {
      const [, applied] = (await db.migrate.latest(options())) as [number, string[]];
      return applied;
    } catch (err) {
      // Several processes starting on a fresh PostgreSQL database race to create Knex's own
      // bookkeeping tables ("relation knex_migrations_lock already exists"), or find the
      // migration lock taken: the loser waits and tries again, then finds nothing to do.
      const message = String((err as Error)?.message ?? err);
      if (attempt >= 20 || !/already exists|duplicate key|Migration table is already locked/i.test(message)) throw err;
      await new Promise((r) => setTimeout(r, 100 * attempt));
    }
  }
}

/** Rolls back every migration (tests use it to prove down() works). */
export async function migrateRollbackAll(db: Db): Promise<string[]> {
  const [, rolled] = (await db.migrate.rollback(options(), true)) as [number, string[]];
  return rolled;
}
