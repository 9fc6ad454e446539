import { createRequire } from 'node:module';

import { expect } from 'chai';
import pg from 'pg';

import { loadConfig } from '../src/config/index.js';
import { isPostgres, poolFigures, sqliteConnectionOf, sqliteDriverPath, withRawConnection } from '../src/db/driver.js';
import { openDatabase, type Db } from '../src/db/knex.js';
import { freshDatabase, onPostgres, TEST_SECRET, type TestDatabase } from './helpers/server.js';

/**
 * What src/db/driver.ts takes from Knex beyond its documented API, asserted as it is used: a
 * Knex or driver upgrade that changes one of these fails here, not in production.
 */
describe('Knex driver internals (src/db/driver.ts)', () => {
  let database: TestDatabase;
  let db: Db;

  before(async () => {
    database = await freshDatabase();
    db = openDatabase(loadConfig({ DATABASE_URL: database.url, LATCH_SECRET: TEST_SECRET }).database);
    await db.raw('select 1');
  });
  after(async () => {
    await db.destroy();
    await database.drop();
  });

  it('tells the engine from the Knex client name', () => {
    expect(isPostgres(db)).to.equal(onPostgres);
  });

  it('lends a raw driver connection from the pool and takes it back, also when its user throws', async () => {
    const figures = poolFigures(db);
    expect(figures, 'the tarn pool').to.be.an('object');
    for (const f of ['numUsed', 'numFree', 'numPendingAcquires'] as const) expect(figures![f](), f).to.be.a('number');
    expect(figures!.numUsed()).to.equal(0);
    const used = await withRawConnection(db, (connection) => {
      if (onPostgres) expect(connection).to.be.instanceOf(pg.Client);
      else expect(connection).to.be.instanceOf(createRequire(import.meta.url)(sqliteDriverPath()) as new () => unknown);
      return poolFigures(db)!.numUsed();
    });
    expect(used).to.equal(1);
    expect(poolFigures(db)!.numUsed()).to.equal(0);
    const failure = await withRawConnection(db, () => Promise.reject(new Error('boom'))).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((failure as Error).message).to.equal('boom');
    expect(poolFigures(db)!.numUsed()).to.equal(0);
  });

  it('runs the driver calls db/statements.ts makes on the raw connection', async () => {
    if (onPostgres) {
      const result = await withRawConnection(db, (c) => (c as pg.Client).query({ name: 'latch_driver_test', text: 'select $1::int + 1 as n', values: [41] }));
      expect(result.rows).to.deep.equal([{ n: 42 }]);
      expect(result.rowCount).to.equal(1);
      expect(sqliteConnectionOf(db)).to.equal(undefined);
      return;
    }
    const connection = sqliteConnectionOf(db)!;
    expect(connection, 'the pool opened the one connection').to.not.equal(undefined);
    // The pool holds exactly one connection: the one the driver lends is the one remembered.
    expect(await withRawConnection(db, (c) => c)).to.equal(connection);
    expect(connection.open).to.equal(true);
    expect(connection.inTransaction).to.equal(false);
    expect(connection.prepare('select ? + 1 as n').all([41])).to.deep.equal([{ n: 42 }]);
    connection.prepare('create table if not exists driver_probe (n integer)').run([]);
    const inside = connection.transaction(() => {
      expect(connection.inTransaction).to.equal(true);
      return connection.prepare('insert into driver_probe (n) values (?)').run([1]).changes;
    }).immediate();
    expect(inside).to.equal(1);
    expect(connection.pragma('journal_mode = WAL')).to.deep.equal([{ journal_mode: 'wal' }]);
  });
});
