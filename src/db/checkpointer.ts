import { Worker } from 'node:worker_threads';

import { sqliteDriverPath, type SqliteConnection } from './driver.js';

/**
 * SQLite WAL checkpoints off the event loop.
 *
 * In WAL mode every commit appends pages to the `-wal` file; a checkpoint copies them back into
 * the database and fsyncs both files. SQLite runs it inside whichever commit crosses
 * `wal_autocheckpoint` pages (1000): on the server's one connection that is a request handler,
 * and the whole event loop waits (tens of ms on a loaded disk: every request in flight gets that
 * on its p99).
 *
 * A worker thread with its own connection runs a PASSIVE checkpoint every `intervalMs` (it never
 * waits for a lock, never blocks a reader or writer), and the WAL restarts from its beginning
 * instead of growing.
 *
 * While the worker runs, the server's own connection (`connection`) does no automatic checkpoint
 * (`wal_autocheckpoint = 0`). Left on, it still fired under sustained writes: with a purge
 * deleting 3,000 rows per second, one statement in ten ran a checkpoint of its own and held the
 * event loop for 30 to 40 ms; with it off, the slowest statement took 10 ms. When the worker
 * fails, warns or stops, the connection gets SQLite's default (1,000 pages) back, so the WAL is
 * always checkpointed by someone. A connection the pool opens anew starts with that default too.
 *
 * The worker is CommonJS evaluated from a string, so it runs the same from the compiled build
 * and under a TypeScript loader; better-sqlite3 is resolved here and handed over by path.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.filename, { fileMustExist: true });
db.pragma('busy_timeout = 0');
let failures = 0;
const timer = setInterval(() => {
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
    failures = 0;
  } catch (err) {
    // SQLITE_BUSY: another checkpoint is running (the server's own, or the CLI's); next time.
    if (++failures === 100) parentPort.postMessage({ warn: String(err && err.message) });
  }
}, workerData.intervalMs);
parentPort.on('message', (m) => {
  if (m !== 'stop') return;
  clearInterval(timer);
  try { db.close(); } catch {}
  parentPort.close();
});
`;

export interface Checkpointer {
  stop(): Promise<void>;
}

/** SQLite's default automatic checkpoint threshold, in WAL pages. */
const DEFAULT_AUTOCHECKPOINT = 1000;

export function startWalCheckpointer(filename: string, options: { intervalMs?: number; onWarning?: (message: string) => void; connection?: SqliteConnection } = {}): Checkpointer {
  const driver = sqliteDriverPath();
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { filename, driver, intervalMs: options.intervalMs ?? 100 } });
  const { connection } = options;
  const autocheckpoint = (pages: number) => {
    try {
      if (connection?.open) connection.pragma(`wal_autocheckpoint = ${pages}`);
    } catch (err) {
      options.onWarning?.(String(err));
    }
  };
  // Never what keeps a process alive, and never a reason for it to fail.
  worker.unref();
  worker.once('online', () => autocheckpoint(0));
  worker.on('message', (m: { warn?: string }) => {
    if (!m.warn) return;
    autocheckpoint(DEFAULT_AUTOCHECKPOINT);
    options.onWarning?.(m.warn);
  });
  worker.on('error', (err: unknown) => {
    autocheckpoint(DEFAULT_AUTOCHECKPOINT);
    // An error of a class the worker defines (better-sqlite3's SqliteError) arrives as a plain
    // object that keeps only its code.
    const { message, code } = (err ?? {}) as { message?: unknown; code?: unknown };
    options.onWarning?.(typeof message === 'string' ? message : typeof code === 'string' ? code : String(err));
  });
  const exited = new Promise<void>((resolve) =>
    worker.once('exit', () => {
      autocheckpoint(DEFAULT_AUTOCHECKPOINT);
      resolve();
    }),
  );
  return {
    async stop() {
      autocheckpoint(DEFAULT_AUTOCHECKPOINT);
      worker.postMessage('stop');
      // A worker that does not close its connection in time is ended: the server is stopping.
      const timeout = setTimeout(() => void worker.terminate(), 2000);
      await exited;
      clearTimeout(timeout);
    },
  };
}
