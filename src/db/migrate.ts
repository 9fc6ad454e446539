import type { Knex } from 'knex';

import { migrations } from '../../migrations/index.js';
import type { Db } from './knex.js';

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
    return Promise.resolve(m);
  }
}

const options = (): Knex.MigratorConfig => ({ migrationSource: new StaticSource(), tableName: 'knex_migrations' });

/** Applies every pending migration; returns the names applied. */
export async function migrateLatest(db: Db): Promise<string[]> {
  const [, applied] = (await db.migrate.latest(options())) as [number, string[]];
  return applied;
}

/** Rolls back every migration (tests use it to prove down() works). */
export async function migrateRollbackAll(db: Db): Promise<string[]> {
  const [, rolled] = (await db.migrate.rollback(options(), true)) as [number, string[]];
  return rolled;
}
