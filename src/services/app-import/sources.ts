import { createReadStream, existsSync, mkdtempSync, openSync, readSync, closeSync, copyFileSync, rmSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { createInterface } from 'node:readline';

import Database from 'better-sqlite3';
import pg from 'pg';

import { ImportError } from '../../errors/index.js';
import type { SourceRow } from './values.js';

/** Rows are read and written this many at a time: one transaction per batch. */
export const BATCH_SIZE = 500;

/** A jsonl line that is not a JSON object: reported with its row number, never fatal. */
export const UNREADABLE = Symbol('unreadable row');

/**
 * The app's database, read and never written. These readers are the one place Latch runs SQL on
 * a database that is not its own (repositories/ hold Latch's): the app's tables are named by the
 * operator's mapping, so their identifiers are quoted and the optional `where:` is the operator's
 * own SQL, run read-only.
 */
export interface Source {
  readonly kind: 'sqlite' | 'postgres' | 'jsonl';
  /** A printable name (never a password). */
  readonly label: string;
  hasTable(table: string): Promise<boolean>;
  /** The table's rows in batches, in `orderBy`'s order when given. */
  batches(table: string, options?: { where?: string | undefined; orderBy?: string | undefined }): AsyncIterable<SourceRow[]>;
  close(): Promise<void>;
}

const quoteIdent = (name: string) => name.split('.').map((part) => `"${part.replace(/"/g, '""')}"`).join('.');

function selectSql(table: string, options: { where?: string | undefined; orderBy?: string | undefined }): string {
  return `SELECT * FROM ${quoteIdent(table)}${options.where ? ` WHERE (${options.where})` : ''}${options.orderBy ? ` ORDER BY ${quoteIdent(options.orderBy)}` : ''}`;
}

const firstLine = (err: unknown) => (err instanceof Error ? err.message : String(err)).split('\n')[0];

/** SQLite file format: header bytes 18 and 19 are 2 for a database in WAL mode. */
function inWalMode(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    const header = Buffer.alloc(20);
    return readSync(fd, header, 0, 20, 0) === 20 && header[18] === 2 && header[19] === 2;
  } finally {
    closeSync(fd);
  }
}

/**
 * `readonly` + `fileMustExist`: SQLite opens the file with O_RDONLY, so neither the file nor a
 * journal beside it can be written or created, and a missing path is an error, not a new file.
 * A database in WAL mode is the exception: even a read-only connection creates `-wal` and `-shm`
 * beside it and cannot remove them. Such a file (with its `-wal`, when the app left one) is read
 * through a private copy, removed afterwards, so nothing appears beside the app's file.
 */
function openSqlite(path: string): Source {
  let db: Database.Database;
  let copyDir: string | undefined;
  try {
    let file = path;
    if (!existsSync(path)) throw new ImportError(`cannot read the SQLite source ${path}: no such file`);
    if (inWalMode(path)) {
      copyDir = mkdtempSync(join(tmpdir(), 'latch-import-'));
      file = join(copyDir, 'source.sqlite');
      copyFileSync(path, file);
      if (existsSync(`${path}-wal`)) copyFileSync(`${path}-wal`, `${file}-wal`);
    }
    db = new Database(file, { readonly: true, fileMustExist: true });
    db.prepare('SELECT count(*) FROM sqlite_master').get();
  } catch (err) {
    if (copyDir) rmSync(copyDir, { recursive: true, force: true });
    if (err instanceof ImportError) throw err;
    throw new ImportError(`cannot read the SQLite source ${path}: ${firstLine(err)}`);
  }
  return {
    kind: 'sqlite',
    label: `sqlite:${path}`,
    async hasTable(table) {
      return db.prepare("SELECT 1 FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?").get(table) !== undefined;
    },
    async *batches(table, options = {}) {
      let statement;
      try {
        statement = db.prepare(selectSql(table, options));
      } catch (err) {
        throw new ImportError(`cannot read table ${table}: ${firstLine(err)}`);
      }
      let batch: SourceRow[] = [];
      // Pulled a batch at a time: a large table is never held in memory whole.
      for (const row of statement.iterate() as Iterable<SourceRow>) {
        batch.push(row);
        if (batch.length === BATCH_SIZE) {
          yield batch;
          batch = [];
        }
      }
      if (batch.length) yield batch;
    },
    async close() {
      db.close();
      if (copyDir) rmSync(copyDir, { recursive: true, force: true });
    },
  };
}

/**
 * One REPEATABLE READ, READ ONLY transaction for the whole import: every table is read from the
 * same snapshot and PostgreSQL refuses any write (a `where:` included). Rows come through a
 * cursor, a batch at a time. A `timestamp without time zone` is read as UTC (SQLAlchemy's
 * DateTime stores UTC), not in this process's zone.
 */
async function openPostgres(url: string): Promise<Source> {
  const types = { getTypeParser: (oid: number, format?: 'text' | 'binary') => (oid === 1114 ? (v: string) => new Date(`${v.replace(' ', 'T')}Z`) : pg.types.getTypeParser(oid, format as 'text')) };
  const client = new pg.Client({ connectionString: url, types: types as unknown as pg.CustomTypesConfig });
  const label = (() => {
    const u = new URL(url);
    return `postgres://${u.host}${u.pathname}`;
  })();
  try {
    await client.connect();
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  } catch (err) {
    await client.end().catch(() => undefined);
    throw new ImportError(`cannot read the PostgreSQL source ${label}: ${firstLine(err)}`);
  }
  let cursors = 0;
  return {
    kind: 'postgres',
    label,
    async hasTable(table) {
      const { rows } = await client.query<{ found: string | null }>('SELECT to_regclass($1)::text AS found', [quoteIdent(table)]);
      return rows[0]?.found != null;
    },
    async *batches(table, options = {}) {
      const cursor = `latch_import_${++cursors}`;
      try {
        await client.query('SAVEPOINT latch_import_read');
        await client.query(`DECLARE ${cursor} NO SCROLL CURSOR FOR ${selectSql(table, options)}`);
        await client.query('RELEASE SAVEPOINT latch_import_read');
      } catch (err) {
        await client.query('ROLLBACK TO SAVEPOINT latch_import_read');
        throw new ImportError(`cannot read table ${table}: ${firstLine(err)}`);
      }
      for (;;) {
        let rows: SourceRow[];
        try {
          ({ rows } = await client.query<SourceRow>(`FETCH ${BATCH_SIZE} FROM ${cursor}`));
        } catch (err) {
          // The transaction is aborted now: close() rolls it back.
          throw new ImportError(`cannot read table ${table}: ${firstLine(err)}`);
        }
        if (rows.length === 0) break;
        yield rows;
      }
      await client.query(`CLOSE ${cursor}`);
    },
    async close() {
      await client.query('ROLLBACK').catch(() => undefined);
      await client.end();
    },
  };
}

/**
 * `DIR/<table>.jsonl`, one document per line as mongoexport writes it (Extended JSON is decoded
 * per column, values.ts). Streamed line by line.
 */
async function openJsonl(dir: string): Promise<Source> {
  try {
    if (!(await stat(dir)).isDirectory()) throw new Error('not a directory');
  } catch (err) {
    throw new ImportError(`cannot read the jsonl source ${dir}: ${(err as NodeJS.ErrnoException).code ?? firstLine(err)}`);
  }
  const fileOf = (table: string) => {
    // A table names a file in DIR, never a path out of it.
    if (basename(table) !== table || table.startsWith('.')) throw new ImportError(`table ${table} is not a file name in ${dir}`);
    return join(dir, `${table}.jsonl`);
  };
  return {
    kind: 'jsonl',
    label: `jsonl:${dir}`,
    async hasTable(table) {
      try {
        return (await stat(fileOf(table))).isFile();
      } catch (err) {
        if (err instanceof ImportError) throw err;
        return false;
      }
    },
    async *batches(table) {
      const stream = createReadStream(fileOf(table), { encoding: 'utf8' });
      const lines = createInterface({ input: stream, crlfDelay: Infinity });
      let batch: SourceRow[] = [];
      try {
        for await (const line of lines) {
          if (!line.trim()) continue;
          let row: SourceRow;
          try {
            const parsed: unknown = JSON.parse(line);
            row = parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as SourceRow) : { [UNREADABLE]: true };
          } catch {
            row = { [UNREADABLE]: true };
          }
          batch.push(row);
          if (batch.length === BATCH_SIZE) {
            yield batch;
            batch = [];
          }
        }
      } catch (err) {
        throw new ImportError(`cannot read ${fileOf(table)}: ${(err as NodeJS.ErrnoException).code ?? firstLine(err)}`);
      } finally {
        lines.close();
        stream.destroy();
      }
      if (batch.length) yield batch;
    },
    async close() {},
  };
}

/** `sqlite:PATH`, `postgres://…` (or `postgresql://…`) or `jsonl:DIR`. */
export async function openSource(spec: string): Promise<Source> {
  if (spec.startsWith('sqlite:')) return openSqlite(spec.slice('sqlite:'.length));
  if (/^postgres(ql)?:\/\//.test(spec)) return openPostgres(spec);
  if (spec.startsWith('jsonl:')) return openJsonl(spec.slice('jsonl:'.length));
  throw new ImportError(`--from must be sqlite:PATH, postgres://… or jsonl:DIR (got "${spec.slice(0, 100)}")`);
}
