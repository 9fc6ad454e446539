import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

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
 * waits for a lock, never blocks a reader or writer). The pages are then already back in the
 * database when the server's connection crosses the threshold, so its own automatic checkpoint
 * (kept as the backstop) finds little or nothing to copy, and the WAL restarts from its
 * beginning instead of growing.
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

export function startWalCheckpointer(filename: string, options: { intervalMs?: number; onWarning?: (message: string) => void } = {}): Checkpointer {
  const driver = createRequire(import.meta.url).resolve('better-sqlite3');
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { filename, driver, intervalMs: options.intervalMs ?? 100 } });
  // Never what keeps a process alive, and never a reason for it to fail.
  worker.unref();
  worker.on('message', (m: { warn?: string }) => m.warn && options.onWarning?.(m.warn));
  worker.on('error', (err) => options.onWarning?.(String(err)));
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  return {
    async stop() {
      worker.postMessage('stop');
      // A worker that does not close its connection in time is ended: the server is stopping.
      const timeout = setTimeout(() => void worker.terminate(), 2000);
      await exited;
      clearTimeout(timeout);
    },
  };
}
