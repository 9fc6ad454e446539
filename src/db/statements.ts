import { isPostgres, sqliteConnectionOf, withRawConnection, type PgConnection, type SqliteConnection, type SqliteStatement } from './driver.js';
import type { Db } from './knex.js';

/**
 * Fixed SQL straight to the driver, for the few statements every token request runs (the
 * oidc-provider adapter's). Knex's runner (compiling bindings, the pool round trip, response
 * processing) costs more than the SQLite statement itself; these skip it.
 *
 * `sql` uses `?` placeholders and must be valid on both engines (no `?` inside literals).
 *
 * SQLite: the server's one connection is used as is when no Knex transaction is open on it
 * (better-sqlite3 runs each statement synchronously, so nothing can interleave with it). While a
 * transaction holds it, the statement waits for the pool like any Knex query, so it never joins
 * (or is rolled back with) someone else's transaction.
 * PostgreSQL: a pooled connection runs it as a named prepared statement, `$n` placeholders
 * (behind PgBouncer in transaction mode, set its max_prepared_statements, PgBouncer 1.21+).
 */
export interface Statements {
  /** The rows a select returns. */
  all<Row>(sql: string, bindings: readonly unknown[]): Promise<Row[]>;
  /** How many rows an insert, update or delete changed. */
  run(sql: string, bindings: readonly unknown[]): Promise<number>;
  /** True on PostgreSQL: `sql` may then use its own syntax (casts, data-modifying CTEs). */
  readonly postgres: boolean;
  /**
   * SQLite only: `body` runs synchronously in one BEGIN IMMEDIATE transaction (a throw rolls it
   * back); `run` inside it is synchronous. PostgreSQL makes one statement atomic instead.
   */
  sqliteTransaction<T>(body: (run: (sql: string, bindings: readonly unknown[]) => number) => T): Promise<T>;
}

/**
 * PostgreSQL form of a `?` statement: `$n` placeholders and a name. One name per SQL text in the
 * whole process (a pg connection refuses a name it knows with another text).
 */
const pgStatements = new Map<string, { name: string; text: string }>();
function pgStatement(sql: string): { name: string; text: string } {
  let statement = pgStatements.get(sql);
  if (statement === undefined) {
    let n = 0;
    statement = { name: `latch_${pgStatements.size}`, text: sql.replace(/\?/g, () => `$${++n}`) };
    pgStatements.set(sql, statement);
  }
  return statement;
}

/**
 * SQLite: each connection's compiled statements, by SQL text. better-sqlite3 compiles on every
 * `prepare`, and compiling costs as much as running the statement; these are a fixed handful of
 * texts, so each is compiled once per connection. A schema change does not stale them (SQLite
 * recompiles a prepared statement whose schema changed, sqlite3_prepare_v2), and statements run
 * synchronously to completion, so one is never in use twice at once.
 */
const sqlitePrepared = new WeakMap<SqliteConnection, Map<string, SqliteStatement>>();
function prepared(c: SqliteConnection, sql: string): SqliteStatement {
  let cache = sqlitePrepared.get(c);
  if (cache === undefined) sqlitePrepared.set(c, (cache = new Map()));
  let statement = cache.get(sql);
  if (statement === undefined) cache.set(sql, (statement = c.prepare(sql)));
  return statement;
}

export function createStatements(db: Db): Statements {
  const withConnection = <T>(use: (connection: unknown) => Promise<T> | T): Promise<T> => withRawConnection(db, use);

  if (isPostgres(db)) {
    // Named: each connection parses and plans a statement once, later runs only bind and
    // execute it (most of PostgreSQL's own cost for a primary-key lookup is the parse and plan).
    const query = (sql: string, values: readonly unknown[]) => withConnection((c) => (c as PgConnection).query({ ...pgStatement(sql), values }));
    return {
      all: async <Row>(sql: string, bindings: readonly unknown[]) => (await query(sql, bindings)).rows as Row[],
      run: async (sql, bindings) => (await query(sql, bindings)).rowCount ?? 0,
      postgres: true,
      sqliteTransaction: () => Promise.reject(new Error('sqliteTransaction is for SQLite only')),
    };
  }

  const usable = (c: SqliteConnection | undefined): c is SqliteConnection => c !== undefined && c.open && !c.inTransaction;
  const onSqlite = <T>(use: (c: SqliteConnection) => T): Promise<T> | T => {
    const c = sqliteConnectionOf(db);
    return usable(c) ? use(c) : withConnection((acquired) => use(acquired as SqliteConnection));
  };
  return {
    all: async <Row>(sql: string, bindings: readonly unknown[]) => onSqlite((c) => prepared(c, sql).all(bindings) as Row[]),
    run: async (sql, bindings) => onSqlite((c) => prepared(c, sql).run(bindings).changes),
    postgres: false,
    sqliteTransaction: async (body) => onSqlite((c) => c.transaction(() => body((sql, bindings) => prepared(c, sql).run(bindings).changes)).immediate()),
  };
}
