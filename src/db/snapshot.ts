import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

import { openDatabase, type Db } from './knex.js';

/** A private, writable copy of a SQLite database; `dispose` closes and deletes it. */
export interface Snapshot {
  readonly db: Db;
  dispose(): Promise<void>;
}

/**
 * Copies the SQLite database `db` (opened from `filename`) into a new file and opens the copy.
 * `VACUUM INTO` reads the database in one read transaction: in WAL mode it never blocks the
 * server's writes, and the copy is consistent as of one moment. The copy lives in a new folder
 * beside the database (the same file system, the operator's data folder; a temporary folder
 * for `:memory:`).
 *
 * What it is for: work that must write to see its outcome, then throw it away (`latch import
 * app --dry-run`). Done in a rolled-back transaction on the live file, it would hold SQLite's one
 * write lock for its whole duration, and every sign-in would wait behind it.
 */
export async function openSqliteSnapshot(db: Db, filename: string): Promise<Snapshot> {
  const dir = mkdtempSync(join(filename === ':memory:' ? tmpdir() : dirname(filename), '.latch-snapshot-'));
  const remove = () => rmSync(dir, { recursive: true, force: true });
  try {
    const copyFile = join(dir, 'snapshot.sqlite');
    await db.raw('VACUUM INTO ?', [copyFile]);
    const copy = openDatabase({ client: 'sqlite', filename: copyFile });
    return {
      db: copy,
      async dispose() {
        try {
          await copy.destroy();
        } finally {
          remove();
        }
      },
    };
  } catch (err) {
    remove();
    throw err;
  }
}
