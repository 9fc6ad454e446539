import type { Services } from './index.js';

/**
 * Purge pacing: the purge is background work and yields to requests.
 * - Each statement aims at PURGE_TARGET_MS of database work. On SQLite that is time the event
 *   loop is held (better-sqlite3 is synchronous), so it bounds what a purge adds to a request's
 *   latency. The batch size follows the last statement's time (halved at most, doubled at most,
 *   within PURGE_BATCH_LIMITS), so a slow disk, a WAL checkpoint inside the commit or a busy
 *   PostgreSQL shrink it.
 * - Between statements the purge pauses so that it takes a share of the time (its duty) that
 *   falls as the process gets busy: PURGE_DUTY.idle while the event loop is otherwise idle, down
 *   to PURGE_DUTY.busy when requests keep it busy. A deleted row costs as much again later (index
 *   pages, the WAL checkpoint that copies them back), so a full-speed purge of a large backlog
 *   would take a third of the throughput of a saturated server (measured on SQLite); at the busy
 *   duty its cost is within the benchmark's noise, and it still deletes hundreds of rows per
 *   second (about 1,000 on SQLite, 200 on PostgreSQL sharing the machine's two cores).
 */
const PURGE_TARGET_MS = 4;
const PURGE_DUTY = { idle: 0.25, busy: 0.05 };
const PURGE_MIN_PAUSE_MS = 10;
const PURGE_BATCH_LIMITS = { first: 50, min: 10, max: 2000 };

/**
 * The next purge statement's batch size and the pause before it, from the last statement's time
 * and `load`: the share of the time (0..1) the event loop was busy with other work meanwhile.
 */
export function nextPurgeStep(batch: number, elapsedMs: number, load = 0): { batch: number; pauseMs: number } {
  const scale = Math.min(2, Math.max(0.5, PURGE_TARGET_MS / Math.max(elapsedMs, 0.01)));
  // Full duty below a quarter busy, the busy duty above three quarters, linear between.
  const busy = Math.min(1, Math.max(0, (load - 0.25) / 0.5));
  const duty = PURGE_DUTY.idle - busy * (PURGE_DUTY.idle - PURGE_DUTY.busy);
  return {
    batch: Math.min(PURGE_BATCH_LIMITS.max, Math.max(PURGE_BATCH_LIMITS.min, Math.round(batch * scale))),
    pauseMs: Math.max(PURGE_MIN_PAUSE_MS, Math.round((elapsedMs * (1 - duty)) / duty)),
  };
}

/**
 * Deletes expired provider state in paced batches (above): a backlog of a million rows is worked
 * off in the background while requests keep their throughput and latency. `stopped()` ends the
 * run early (shutdown).
 */
export async function purgeExpired(services: Pick<Services, 'state' | 'changes' | 'rateLimits' | 'mailer'>, stopped: () => boolean = () => false): Promise<number> {
  let total = 0;
  let batch = PURGE_BATCH_LIMITS.first;
  // The share of the last pause the event loop spent on other work (requests).
  let load = 0;
  for (;;) {
    const started = performance.now();
    const n = await services.state.purgeExpired(batch);
    total += n;
    if (n < batch || stopped()) break;
    const next = nextPurgeStep(batch, performance.now() - started, load);
    batch = next.batch;
    const pause = performance.eventLoopUtilization();
    await new Promise((r) => setTimeout(r, next.pauseMs));
    load = performance.eventLoopUtilization(pause).utilization;
  }
  await services.changes.prune(new Date(Date.now() - 3600_000).toISOString());
  await services.rateLimits.purgeExpired();
  await services.mailer.prune();
  return total;
}
