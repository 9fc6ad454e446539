import { statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

import { expect } from 'chai';

import { loadConfig } from '../src/config/index.js';
import { startWalCheckpointer } from '../src/db/checkpointer.js';
import { openDatabase, sqliteConnectionOf, type Db } from '../src/db/knex.js';
import { migrateLatest } from '../src/db/migrate.js';
import { createStatements } from '../src/db/statements.js';
import { createProviderStateRepository, storedStateId, type ProviderStateRepository } from '../src/repositories/provider-state.js';
import { nextPurgeStep, purgeExpired } from '../src/services/purge.js';
import { freshDatabase, onPostgres, startTestServer, TEST_SECRET, type TestDatabase } from './helpers/server.js';
import * as hashedTokenIds from '../migrations/20261208030000_hashed_token_ids.js';
import { createSecrets } from '../src/services/secrets.js';

describe('provider state (the oidc-provider adapter table)', () => {
  let database: TestDatabase;
  let db: Db;
  let state: ProviderStateRepository;

  before(async () => {
    database = await freshDatabase();
    db = openDatabase(loadConfig({ DATABASE_URL: database.url, LATCH_SECRET: TEST_SECRET }).database);
    await migrateLatest(db);
    state = createProviderStateRepository(db);
  });
  after(async () => {
    await db.destroy();
    await database.drop();
  });

  it('stores, finds by id, uid and user code, and hides expired rows', async () => {
    await state.upsert('Session', 's1', { uid: 'u1', accountId: 'a' }, 60);
    await state.upsert('DeviceCode', 'd1', { userCode: 'ABCD-EFGH', grantId: 'g0' }, 60);
    expect(await state.find('Session', 's1')).to.deep.equal({ uid: 'u1', accountId: 'a' });
    expect(await state.findBy('Session', 'uid', 'u1')).to.deep.equal({ uid: 'u1', accountId: 'a' });
    expect(await state.findBy('DeviceCode', 'user_code', 'ABCD-EFGH')).to.include({ grantId: 'g0' });
    await state.upsert('Session', 's1', { uid: 'u1', accountId: 'b' }, 60);
    expect(await state.find('Session', 's1')).to.deep.equal({ uid: 'u1', accountId: 'b' });
    await db('provider_state').where({ id: 's1' }).update({ expires_at: Math.floor(Date.now() / 1000) - 1 });
    expect(await state.find('Session', 's1')).to.equal(undefined);
  });

  it('inserts a value if absent exactly once, even when 20 racing connections insert it; an expired row is taken over', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, () => state.insertIfAbsent('ReplayDetection', 'j1', { iss: 'c' }, 60)));
    expect(results.filter(Boolean)).to.have.length(1);
    expect(await state.insertIfAbsent('ReplayDetection', 'j1', { iss: 'c' }, 60)).to.equal(false);
    await db('provider_state').where({ model: 'ReplayDetection', id: 'j1' }).update({ expires_at: Math.floor(Date.now() / 1000) - 1 });
    expect(await state.insertIfAbsent('ReplayDetection', 'j1', { iss: 'd' }, 60)).to.equal(true);
    expect(await state.find('ReplayDetection', 'j1')).to.deep.equal({ iss: 'd' });
    expect(await state.insertIfAbsent('ReplayDetection', 'j1', { iss: 'e' }, 60)).to.equal(false);
  });

  it('consumes a single-use artifact exactly once, even when 20 redemptions race', async () => {
    await state.upsert('AuthorizationCode', 'c1', { grantId: 'g1' }, 60);
    const results = await Promise.all(Array.from({ length: 20 }, () => state.consume('AuthorizationCode', 'c1')));
    expect(results.filter((r) => r.consumed)).to.have.length(1);
    expect(results.filter((r) => !r.consumed).every((r) => r.grantId === 'g1')).to.equal(true);
    const found = await state.find('AuthorizationCode', 'c1');
    expect(found?.consumed).to.be.a('number');
  });

  it('commits a redemption and the tokens it issues together, or nothing when the artifact was already consumed', async () => {
    await state.upsert('Grant', 'g2', { accountId: 'a' }, 60);
    await state.upsert('RefreshToken', 'r1', { grantId: 'g2', accountId: 'a' }, 60);
    const issued = (n: number) => [
      { model: 'RefreshToken', id: `r1-next-${n}`, payload: { grantId: 'g2', accountId: 'a', iat: n }, expiresIn: 60 },
      { model: 'AccessToken', id: `a1-${n}`, payload: { grantId: 'g2', accountId: 'a' }, expiresIn: 60 },
    ];
    expect(await state.commit({ model: 'RefreshToken', id: 'r1' }, [], issued(1))).to.deep.equal({ consumed: true, grantId: null });
    expect((await state.find('RefreshToken', 'r1'))?.consumed).to.be.a('number');
    expect(await state.find('RefreshToken', 'r1-next-1')).to.deep.equal({ grantId: 'g2', accountId: 'a', iat: 1, jti: 'r1-next-1' });
    // A token is stored under a hash of its value, without the value (a dump holds no token).
    expect(await db('provider_state').where({ model: 'AccessToken', id: 'a1-1' }).first()).to.equal(undefined);
    const row = await db('provider_state').where({ model: 'AccessToken', id: storedStateId('AccessToken', 'a1-1') }).first();
    expect(row.payload).to.not.include('a1-1');
    expect(row).to.include({ grant_id: 'g2', account_id: 'a' });
    expect(Number(row.expires_at)).to.be.greaterThan(Math.floor(Date.now() / 1000));
    // Redeemed again: nothing of the second redemption is written, and the grant is reported.
    // …with when it was consumed (the reuse window, src/oidc/refresh-reuse.ts, starts there).
    const again = await state.commit({ model: 'RefreshToken', id: 'r1' }, [], issued(2));
    expect(again).to.deep.include({ consumed: false, grantId: 'g2' });
    expect(again.consumedAt).to.equal((await state.find('RefreshToken', 'r1'))?.consumed);
    expect(await state.find('RefreshToken', 'r1-next-2')).to.equal(undefined);
    expect(await state.find('AccessToken', 'a1-2')).to.equal(undefined);
    // Without a redemption: plain upserts (an existing row is updated).
    expect(await state.commit(undefined, [], [{ model: 'AccessToken', id: 'a1-1', payload: { grantId: 'g2', accountId: 'b' }, expiresIn: 60 }, ...issued(3).slice(1)])).to.deep.equal({ consumed: true, grantId: null });
    expect(await state.find('AccessToken', 'a1-1')).to.deep.equal({ grantId: 'g2', accountId: 'b', jti: 'a1-1' });
    expect(await state.find('AccessToken', 'a1-3')).to.deep.equal({ grantId: 'g2', accountId: 'a', jti: 'a1-3' });
    // Deletes: done with the rest, and not at all when the redemption fails.
    await state.upsert('Interaction', 'i1', { uid: 'i1' }, 60);
    await state.upsert('AuthorizationCode', 'c8', { grantId: 'g2' }, 60);
    expect(await state.commit({ model: 'RefreshToken', id: 'r1' }, [{ model: 'Interaction', id: 'i1' }], issued(5))).to.deep.include({ consumed: false, grantId: 'g2' });
    expect(await state.find('Interaction', 'i1')).to.deep.equal({ uid: 'i1' });
    expect(await state.commit({ model: 'AuthorizationCode', id: 'c8' }, [{ model: 'Interaction', id: 'i1' }, { model: 'Session', id: 'none' }], issued(6))).to.deep.equal({ consumed: true, grantId: null });
    expect(await state.find('Interaction', 'i1')).to.equal(undefined);
    expect(await state.find('RefreshToken', 'r1-next-6')).to.include({ iat: 6 });
    expect(await state.commit(undefined, [{ model: 'AccessToken', id: 'a1-3' }], [])).to.deep.equal({ consumed: true, grantId: null });
    expect(await state.find('AccessToken', 'a1-3')).to.equal(undefined);
    // A redemption alone, and of something that does not exist.
    await state.upsert('AuthorizationCode', 'c9', { grantId: 'g2' }, 60);
    expect(await state.commit({ model: 'AuthorizationCode', id: 'c9' }, [], [])).to.deep.equal({ consumed: true, grantId: null });
    expect(await state.commit({ model: 'AuthorizationCode', id: 'c9' }, [], [])).to.deep.include({ consumed: false, grantId: 'g2' });
    expect(await state.commit({ model: 'AuthorizationCode', id: 'nope' }, [], issued(4))).to.deep.equal({ consumed: false, grantId: null, consumedAt: null });
    expect(await state.find('RefreshToken', 'r1-next-4')).to.equal(undefined);
  });

  it('lets exactly one of 20 racing redemptions write what it issued', async () => {
    await state.upsert('RefreshToken', 'r2', { grantId: 'g3' }, 60);
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, n) => state.commit({ model: 'RefreshToken', id: 'r2' }, [], [{ model: 'RefreshToken', id: `r2-next-${n}`, payload: { grantId: 'g3' }, expiresIn: 60 }])),
    );
    expect(results.filter((r) => r.consumed)).to.have.length(1);
    expect(results.filter((r) => !r.consumed).every((r) => r.grantId === 'g3')).to.equal(true);
    const written = await db('provider_state').where({ model: 'RefreshToken' }).whereIn('id', Array.from({ length: 20 }, (_, n) => storedStateId('RefreshToken', `r2-next-${n}`))).select('id');
    expect(written).to.have.length(1);
    expect(written[0].id).to.equal(storedStateId('RefreshToken', `r2-next-${results.findIndex((r) => r.consumed)}`));
  });

  it('finds a token under any of several models with its grant as of the same moment, and no grant when it is gone or expired', async () => {
    await state.upsert('Grant', 'g4', { accountId: 'a', openid: { scope: 'openid' } }, 60);
    await state.upsert('AccessToken', 't4', { grantId: 'g4', accountId: 'a' }, 60);
    await state.upsert('AccessToken', 't5', { grantId: 'g-none' }, 60);
    await state.upsert('ClientCredentials', 't6', { clientId: 'c' }, 60);
    const opaque = ['AccessToken', 'ClientCredentials', 'RefreshToken'];
    const grant4 = { id: 'g4', payload: { accountId: 'a', openid: { scope: 'openid' } } };
    expect(await state.findWithGrant(opaque, 't4')).to.deep.equal([{ model: 'AccessToken', payload: { grantId: 'g4', accountId: 'a', jti: 't4' }, grant: grant4 }]);
    expect(await state.findWithGrant(['AccessToken'], 't4')).to.deep.equal([{ model: 'AccessToken', payload: { grantId: 'g4', accountId: 'a', jti: 't4' }, grant: grant4 }]);
    expect(await state.findWithGrant(['RefreshToken'], 't4')).to.deep.equal([]);
    expect(await state.findWithGrant(opaque, 't5')).to.deep.equal([{ model: 'AccessToken', payload: { grantId: 'g-none', jti: 't5' }, grant: { id: 'g-none', payload: undefined } }]);
    expect(await state.findWithGrant(opaque, 't6')).to.deep.equal([{ model: 'ClientCredentials', payload: { clientId: 'c', jti: 't6' } }]);
    expect(await state.findWithGrant(opaque, 'missing')).to.deep.equal([]);
    await db('provider_state').where({ model: 'Grant', id: 'g4' }).update({ expires_at: Math.floor(Date.now() / 1000) - 1 });
    expect((await state.findWithGrant(opaque, 't4'))[0]?.grant).to.deep.equal({ id: 'g4', payload: undefined });
    await db('provider_state').where({ model: 'AccessToken', id: storedStateId('AccessToken', 't4') }).update({ expires_at: Math.floor(Date.now() / 1000) - 1 });
    expect(await state.findWithGrant(opaque, 't4')).to.deep.equal([]);
  });

  it('stores codes and tokens under a hash of their value and without it; a device code found by its user code gets its id back', async () => {
    const secrets = createSecrets(TEST_SECRET);
    const sealed = createProviderStateRepository(db, { seal: (id, rowId) => secrets.seal('device-code', id, rowId), open: (v, rowId) => secrets.open('device-code', v, rowId) });
    const value = `dc-${'x'.repeat(40)}`;
    await sealed.upsert('DeviceCode', value, { jti: value, userCode: 'BCDFGHJK', clientId: 'tv' }, 60);
    const row = await db('provider_state').where({ model: 'DeviceCode', user_code: 'BCDFGHJK' }).first<{ id: string; payload: string }>();
    expect(row.id).to.equal(storedStateId('DeviceCode', value)).and.not.include(value);
    expect(row.payload).to.not.include(value);
    expect(await sealed.findBy('DeviceCode', 'user_code', 'BCDFGHJK')).to.include({ jti: value, clientId: 'tv' });
    expect(await sealed.find('DeviceCode', value)).to.include({ jti: value, userCode: 'BCDFGHJK' });
    // Sessions and grants are found by what they are (not bearer credentials): stored as they are.
    await sealed.upsert('Grant', 'g-plain', { accountId: 'a' }, 60);
    expect(await db('provider_state').where({ model: 'Grant', id: 'g-plain' }).first()).to.not.equal(undefined);
  });

  it('the migration moves tokens stored under their value to the hashed key, and drops device codes', async () => {
    const now = Math.floor(Date.now() / 1000);
    await db('provider_state').insert([
      { model: 'RefreshToken', id: 'legacy-refresh', payload: JSON.stringify({ jti: 'legacy-refresh', grantId: 'g-legacy' }), grant_id: 'g-legacy', expires_at: now + 60 },
      { model: 'AuthorizationCode', id: 'legacy-code', payload: JSON.stringify({ jti: 'legacy-code', grantId: 'g-legacy' }), grant_id: 'g-legacy', expires_at: now + 60 },
      { model: 'DeviceCode', id: 'legacy-device', payload: JSON.stringify({ jti: 'legacy-device' }), user_code: 'LGCY', expires_at: now + 60 },
      { model: 'Session', id: 'legacy-session', payload: JSON.stringify({ jti: 'legacy-session' }), expires_at: now + 60 },
    ]);
    await hashedTokenIds.up(db);
    await hashedTokenIds.up(db); // twice: nothing moves again
    expect(await state.find('RefreshToken', 'legacy-refresh')).to.deep.equal({ grantId: 'g-legacy', jti: 'legacy-refresh' });
    expect(await state.find('AuthorizationCode', 'legacy-code')).to.deep.equal({ grantId: 'g-legacy', jti: 'legacy-code' });
    expect(await db('provider_state').whereIn('id', ['legacy-refresh', 'legacy-code', 'legacy-device']).count({ n: '*' }).first<{ n: number | string }>()).to.satisfy((r: { n: number | string }) => Number(r.n) === 0);
    expect(await db('provider_state').where({ model: 'DeviceCode', user_code: 'LGCY' }).first()).to.equal(undefined);
    expect(await state.find('Session', 'legacy-session')).to.deep.equal({ jti: 'legacy-session' });
  });

  it('revokeByGrantId deletes every artifact of the grant and the grant itself, nothing else', async () => {
    await state.upsert('Grant', 'g2', { accountId: 'a', clientId: 'c' }, 60);
    await state.upsert('AccessToken', 'at', { grantId: 'g2' }, 60);
    await state.upsert('RefreshToken', 'rt', { grantId: 'g2' }, 60);
    await state.upsert('RefreshToken', 'other', { grantId: 'g3' }, 60);
    await state.revokeByGrantId('g2');
    for (const [m, id] of [['Grant', 'g2'], ['AccessToken', 'at'], ['RefreshToken', 'rt']] as const) expect(await state.find(m, id), `${m} ${id}`).to.equal(undefined);
    expect(await state.find('RefreshToken', 'other')).to.not.equal(undefined);
  });

  it('purges expired rows in batches and keeps live ones', async () => {
    const past = Math.floor(Date.now() / 1000) - 10;
    const rows = Array.from({ length: 2500 }, (_, i) => ({ model: 'AccessToken', id: `old${i}`, payload: '{}', expires_at: past }));
    for (let i = 0; i < rows.length; i += 500) await db('provider_state').insert(rows.slice(i, i + 500));
    await state.upsert('AccessToken', 'live', {}, 600);
    let total = 0;
    let n: number;
    const batches: number[] = [];
    do {
      n = await state.purgeExpired(1000);
      batches.push(n);
      total += n;
    } while (n === 1000);
    expect(batches.slice(0, 2)).to.deep.equal([1000, 1000]);
    expect(total).to.be.at.least(2500);
    expect(await state.find('AccessToken', 'live')).to.not.equal(undefined);
    const left = await db('provider_state').where('expires_at', '<=', past).count({ n: '*' }).first<{ n: number | string }>();
    expect(Number(left?.n)).to.equal(0);
  });

  it('purges the longest-expired rows first', async () => {
    const now = Math.floor(Date.now() / 1000);
    // In insertion (rowid) order and in id order the newest come first, the longest-expired last.
    const rows = Array.from({ length: 20 }, (_, i) => ({ model: 'AuthorizationCode', id: `z-order${String(i).padStart(2, '0')}`, payload: '{}', expires_at: now - 100 - i * 10 }));
    await db('provider_state').insert(rows);
    expect(await state.purgeExpired(5)).to.equal(5);
    const left = (await db('provider_state').where({ model: 'AuthorizationCode' }).whereLike('id', 'z-order%').orderBy('id').select('id')).map((r: { id: string }) => r.id);
    expect(left).to.deep.equal(rows.slice(0, 15).map((r) => r.id));
    await state.purgeExpired(100);
  });

  it('runs a direct statement outside a transaction that holds the connection, never inside it', async () => {
    const statements = createStatements(db);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let begun!: () => void;
    const inside = new Promise<void>((r) => (begun = r));
    const rolledBack = db
      .transaction(async (trx) => {
        await trx('provider_state').insert({ model: 'Session', id: 'in-trx', payload: '{}' });
        begun();
        await gate;
        throw new Error('roll back');
      })
      .then(
        () => 'committed',
        (err: Error) => err.message,
      );
    await inside;
    let written = false;
    const write = statements.run('insert into provider_state (model, id, payload) values (?, ?, ?)', ['Session', 'beside-trx', '{}']).then((n) => {
      written = true;
      return n;
    });
    // The same for a repository commit (its own transaction on SQLite).
    let committed = false;
    const commit = state
      .commit(undefined, [{ model: 'Session', id: 'in-trx' }], [
        { model: 'Session', id: 'commit-beside-trx', payload: {}, expiresIn: 60 },
        { model: 'Session', id: 'commit-beside-trx-2', payload: {}, expiresIn: 60 },
      ])
      .then(() => (committed = true));
    await sleep(50);
    // SQLite has one connection: the statement waits for the transaction to let it go. PostgreSQL
    // runs it on another connection at once.
    expect(written).to.equal(onPostgres);
    expect(committed).to.equal(onPostgres);
    release();
    expect(await rolledBack).to.equal('roll back');
    expect(await write).to.equal(1);
    expect(await commit).to.equal(true);
    const ids = (await db('provider_state').select('id').whereIn('id', ['in-trx', 'beside-trx', 'commit-beside-trx', 'commit-beside-trx-2']).orderBy('id')).map((r: { id: string }) => r.id);
    expect(ids).to.deep.equal(['beside-trx', 'commit-beside-trx', 'commit-beside-trx-2']);
    expect(await statements.all<{ id: string }>('select id from provider_state where model = ? and id = ?', ['Session', 'beside-trx'])).to.deep.equal([{ id: 'beside-trx' }]);
  });

  it('SQLite: checkpoints the WAL from a worker thread, so it restarts instead of growing', async function () {
    if (onPostgres) this.skip();
    const file = database.url.replace(/^sqlite:/, '');
    const walBytes = () => statSync(`${file}-wal`).size;
    const writePages = async (tag: string) => {
      // ~300 pages (1.2 MB) per round: below the 1000-page automatic checkpoint of the connection.
      const rows = Array.from({ length: 300 }, (_, i) => ({ model: 'Filler', id: `${tag}${i}`, payload: 'x'.repeat(3500) }));
      for (let i = 0; i < rows.length; i += 50) await db('provider_state').insert(rows.slice(i, i + 50));
    };
    await db.raw('pragma wal_checkpoint(TRUNCATE)');
    const connection = sqliteConnectionOf(db)!;
    const autocheckpoint = () => connection.pragma('wal_autocheckpoint');
    expect(autocheckpoint()).to.deep.equal([{ wal_autocheckpoint: 1000 }]);
    const checkpointer = startWalCheckpointer(file, { intervalMs: 50, connection });
    try {
      // While the worker runs, the server's connection never checkpoints inside a statement.
      for (let i = 0; i < 50 && (autocheckpoint() as { wal_autocheckpoint: number }[])[0]!.wal_autocheckpoint !== 0; i++) await sleep(20);
      expect(autocheckpoint()).to.deep.equal([{ wal_autocheckpoint: 0 }]);
      await writePages('a');
      const first = walBytes();
      expect(first).to.be.above(1_000_000);
      await sleep(400);
      await writePages('b');
      // Without the worker's checkpoint the second round would be appended (about twice the size).
      expect(walBytes()).to.be.below(first * 1.5);
    } finally {
      await checkpointer.stop();
    }
    // Stopped: SQLite's own automatic checkpoint is back.
    expect(autocheckpoint()).to.deep.equal([{ wal_autocheckpoint: 1000 }]);
    expect(await db('provider_state').where({ model: 'Filler' }).count({ n: '*' }).first()).to.deep.equal({ n: 600 });
  });

  it('SQLite: a checkpoint worker that fails hands the checkpoints back to the connection and says so', async function () {
    if (onPostgres) this.skip();
    const connection = sqliteConnectionOf(db)!;
    const warnings: string[] = [];
    // The worker cannot open a file that does not exist: it starts, then fails.
    const checkpointer = startWalCheckpointer(`${database.url.replace(/^sqlite:/, '')}.missing`, { connection, onWarning: (m) => warnings.push(m) });
    for (let i = 0; i < 100 && !warnings.length; i++) await sleep(20);
    await checkpointer.stop();
    expect(warnings.join(' ')).to.match(/unable to open|does not exist|SQLITE_CANTOPEN/i);
    expect(connection.pragma('wal_autocheckpoint')).to.deep.equal([{ wal_autocheckpoint: 1000 }]);
  });
});

describe('the scheduled purge of expired provider state', () => {
  it('paces its statements: each aims at a few milliseconds, and it yields more time the busier the process is', () => {
    // A fast statement doubles the batch (at most), a slow one halves it (at most).
    expect(nextPurgeStep(50, 1).batch).to.equal(100);
    expect(nextPurgeStep(50, 4).batch).to.equal(50);
    expect(nextPurgeStep(50, 40).batch).to.equal(25);
    expect(nextPurgeStep(200, 8).batch).to.equal(100);
    // Within limits: never below 10 rows, never above 2,000.
    expect(nextPurgeStep(12, 500).batch).to.equal(10);
    expect(nextPurgeStep(1500, 0).batch).to.equal(2000);
    // Idle process: a quarter of the time (the pause is three times the statement), at least 10 ms.
    expect(nextPurgeStep(50, 4, 0).pauseMs).to.equal(12);
    expect(nextPurgeStep(50, 40, 0.2).pauseMs).to.equal(120);
    expect(nextPurgeStep(50, 1, 0).pauseMs).to.equal(10);
    // Busy process (event loop three quarters busy or more): a twentieth of the time.
    expect(nextPurgeStep(50, 4, 0.75).pauseMs).to.equal(76);
    expect(nextPurgeStep(50, 4, 1).pauseMs).to.equal(76);
    // Between: the duty falls linearly (half busy: 15 %).
    expect(nextPurgeStep(50, 3, 0.5).pauseMs).to.equal(17);
  });

  it('works off a backlog in several statements, keeps live rows, and stops early when asked', async () => {
    const server = await startTestServer();
    try {
      const { db, services } = server.running;
      const past = Math.floor(Date.now() / 1000) - 10;
      const rows = Array.from({ length: 700 }, (_, i) => ({ model: 'AccessToken', id: `expired${i}`, payload: '{}', expires_at: past }));
      for (let i = 0; i < rows.length; i += 100) await db('provider_state').insert(rows.slice(i, i + 100));
      await services.state.upsert('RefreshToken', 'live', { grantId: 'g' }, 600);
      const expired = async () => Number((await db('provider_state').where('expires_at', '<=', past).count({ n: '*' }).first<{ n: number | string }>())?.n);

      // Stopped after its first statement (shutdown): one batch of 50 is gone, the rest waits.
      expect(await purgeExpired(services, () => true)).to.equal(50);
      expect(await expired()).to.equal(650);

      expect(await purgeExpired(services)).to.equal(650);
      expect(await expired()).to.equal(0);
      expect(await services.state.find('RefreshToken', 'live')).to.deep.equal({ grantId: 'g', jti: 'live' });
      expect(server.errors()).to.deep.equal([]);
    } finally {
      await server.close();
    }
  });
});
