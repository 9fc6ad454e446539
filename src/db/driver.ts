import { createRequire } from 'node:module';

import type { Knex } from 'knex';

/**
 * Everything Latch takes from Knex beyond its documented query API, in one place: the client's
 * connection pool (raw driver connections for the fixed hot statements, db/statements.ts; pool
 * figures for /metrics), the engine name, and the one better-sqlite3 connection of a SQLite
 * instance. test/db-driver.test.ts fails when a Knex or driver upgrade changes any of it.
 */

/** The parts of a better-sqlite3 statement and connection Latch uses directly (db/statements.ts). */
export interface SqliteStatement {
  all(bindings: readonly unknown[]): unknown[];
  run(bindings: readonly unknown[]): { changes: number };
}
export interface SqliteConnection {
  readonly open: boolean;
  readonly inTransaction: boolean;
  pragma(s: string): unknown;
  prepare(sql: string): SqliteStatement;
  transaction<T>(body: () => T): { immediate(): T };
}

/** The part of a node-postgres client Latch uses directly: named prepared statements. */
export interface PgConnection {
  query(config: { text: string; values: readonly unknown[]; name?: string }): Promise<{ rows: unknown[]; rowCount: number | null }>;
}

/** Knex's client: a driver connection taken from and given back to its pool (Knex's own runner does the same). */
interface KnexClientInternals {
  acquireConnection(): Promise<unknown>;
  releaseConnection(connection: unknown): Promise<unknown>;
  /** The tarn pool, once created. */
  pool?: PoolFigures | null;
  config: { client?: unknown };
}

/** The figures the pool (tarn) reports. */
export interface PoolFigures {
  numUsed(): number;
  numFree(): number;
  numPendingAcquires(): number;
}

const internals = (db: Knex) => db.client as unknown as KnexClientInternals;

/** True on PostgreSQL (Knex's `pg` client), false on SQLite (`better-sqlite3`). */
export function isPostgres(db: Knex): boolean {
  return internals(db).config.client === 'pg';
}

/**
 * Runs `use` with a raw driver connection from Knex's pool (a better-sqlite3 Database or a
 * node-postgres Client) and gives it back, whatever `use` does.
 */
export async function withRawConnection<T>(db: Knex, use: (connection: unknown) => Promise<T> | T): Promise<T> {
  const client = internals(db);
  const connection = await client.acquireConnection();
  try {
    return await use(connection);
  } finally {
    await client.releaseConnection(connection);
  }
}

/** The pool's figures (undefined before Knex creates the pool or after it is destroyed). */
export function poolFigures(db: Knex): PoolFigures | undefined {
  return internals(db).pool ?? undefined;
}

const sqliteConnections = new WeakMap<Knex, { connection?: SqliteConnection }>();

/** Called by the pool's afterCreate (db/knex.ts) with the connection it opened for `db`. */
export function rememberSqliteConnection(db: Knex, connection: SqliteConnection): void {
  const holder = sqliteConnections.get(db) ?? {};
  holder.connection = connection;
  sqliteConnections.set(db, holder);
}

/**
 * The one better-sqlite3 connection of a SQLite Knex instance (its pool holds exactly one), once
 * the pool has opened it; undefined on PostgreSQL.
 */
export function sqliteConnectionOf(db: Knex): SqliteConnection | undefined {
  return sqliteConnections.get(db)?.connection;
}

/** The path of the better-sqlite3 module Knex loads, for a worker thread to open its own connection. */
export function sqliteDriverPath(): string {
  return createRequire(import.meta.url).resolve('better-sqlite3');
}
