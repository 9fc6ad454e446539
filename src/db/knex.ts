import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

import knexFactory, { type Knex } from 'knex';
import pg from 'pg';

import type { DatabaseConfig } from '../config/schema.js';
import { rememberSqliteConnection, type SqliteConnection, type SqliteStatement } from './driver.js';

export { isPostgres, sqliteConnectionOf, type SqliteConnection, type SqliteStatement } from './driver.js';

// PostgreSQL returns BIGINT (int8) as strings by default; every int8 column of ours holds epoch
// seconds or counters far below 2^53, so numbers are exact and simpler for every caller.
pg.types.setTypeParser(20, (v: string) => Number.parseInt(v, 10));

export type Db = Knex;

/** Opens a Knex instance for SQLite (WAL, busy timeout) or PostgreSQL. */
export function openDatabase(config: DatabaseConfig): Db {
  if (config.client === 'pg') {
    const timeouts = config.timeouts ?? { statementMs: 5000, connectMs: 3000 };
    return knexFactory({
      client: 'pg',
      // Every wait on the database is bounded, so an outage or a stuck lock answers 503
      // (db/outage.ts) instead of holding the request: connecting, waiting for a pooled
      // connection, and each statement (sent as a startup parameter: per connection, no extra
      // round trip). A connection lost with the server is dropped from the pool by Knex, and
      // the next acquire opens a new one: recovery needs no restart.
      connection: { connectionString: config.connectionString, connectionTimeoutMillis: timeouts.connectMs, ...(timeouts.statementMs > 0 ? { statement_timeout: timeouts.statementMs } : {}) },
      acquireConnectionTimeout: timeouts.connectMs,
      pool: { min: 0, max: 10 },
      // A failed connection is rethrown to the caller, which names its cause in one line
      // (db/connect.ts); knex would also print it with a stack trace.
      log: { warn: (message: unknown) => void (typeof message === 'string' && message.startsWith('Acquire connection error') ? undefined : process.stderr.write(`knex: ${String(message).split('\n')[0]}\n`)) },
    });
  }
  if (config.filename !== ':memory:') mkdirSync(dirname(config.filename), { recursive: true });
  const db: Db = knexFactory({
    client: 'better-sqlite3',
    connection: { filename: config.filename },
    useNullAsDefault: true,
    // better-sqlite3 is synchronous: one connection serialises every statement anyway.
    pool: {
      min: 1,
      max: 1,
      afterCreate(conn: SqliteConnection, done: (err: Error | null, conn: unknown) => void) {
        try {
          // Knex prepares every statement again on each query; the SQL text of our queries is
          // fixed (values are bound), so a prepared statement is reused per text. Bounded.
          const prepare = conn.prepare.bind(conn);
          const statements = new Map<string, SqliteStatement>();
          conn.prepare = (sql: string) => {
            let statement = statements.get(sql);
            if (statement === undefined) {
              statement = prepare(sql);
              if (statements.size >= 2000) statements.clear();
              statements.set(sql, statement);
            }
            return statement;
          };
          // WAL lets the CLI write while a server reads and writes; busy_timeout makes a
          // concurrent writer wait instead of failing with SQLITE_BUSY.
          conn.pragma('journal_mode = WAL');
          conn.pragma('busy_timeout = 5000');
          conn.pragma('synchronous = NORMAL');
          conn.pragma('foreign_keys = ON');
          rememberSqliteConnection(db, conn);
          done(null, conn);
        } catch (err) {
          done(err as Error, conn);
        }
      },
    },
  });
  return db;
}

/** Normalises a timestamp read from either engine to an ISO string. */
export function toIso(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  if (v instanceof Date) return v.toISOString();
  const s = String(v);
  const d = new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(s) ? s : `${s.replace(' ', 'T')}Z`);
  return Number.isNaN(d.getTime()) ? s : d.toISOString();
}

/**
 * False for a lookup key no row can have: PostgreSQL text cannot hold U+0000 and fails the whole
 * query ("invalid byte sequence for encoding UTF8: 0x00"), SQLite would just find nothing. Keys
 * that come from requests (client_id, tokens, codes, emails) are checked first, so a NUL byte in
 * one is "not found" on both engines rather than a 500 on PostgreSQL.
 */
export function isStorableKey(value: string): boolean {
  return !value.includes('\u0000');
}
