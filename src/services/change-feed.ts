import type { ChangeTopic, ChangesRepository } from '../repositories/changes.js';
import type { Logger } from '../lib/logger.js';

type Handler = () => void | Promise<void>;

/** Ids this far below the newest seen are re-read, so a row committed out of id order is not missed. */
const LOOKBACK = 100;

/**
 * Keeps every process's in-memory caches in step: writers `publish(topic)`, every process polls
 * the `changes` table and runs the handlers of the topics that changed. One mechanism for every
 * cache (clients, resources, keys, ...), on SQLite and PostgreSQL alike.
 */
export function createChangeFeed(deps: { changes: ChangesRepository; logger: Logger; intervalMs?: number }) {
  const { changes, logger } = deps;
  const handlers = new Map<ChangeTopic, Handler[]>();
  const seen = new Set<number>();
  let high = 0;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;

  async function dispatch(topics: Iterable<ChangeTopic>): Promise<void> {
    for (const topic of topics) {
      for (const handler of handlers.get(topic) ?? []) {
        try {
          await handler();
        } catch (err) {
          logger.error('change handler failed', { topic, err: String(err) });
        }
      }
    }
  }

  async function poll(): Promise<void> {
    const rows = await changes.since(Math.max(0, high - LOOKBACK));
    const topics = new Set<ChangeTopic>();
    for (const row of rows) {
      if (seen.has(row.id)) continue;
      seen.add(row.id);
      topics.add(row.topic);
      high = Math.max(high, row.id);
    }
    for (const id of seen) if (id <= high - LOOKBACK) seen.delete(id);
    await dispatch(topics);
  }

  return {
    on(topic: ChangeTopic, handler: Handler): void {
      handlers.set(topic, [...(handlers.get(topic) ?? []), handler]);
    },
    /** Records a change for every process, and applies it in this one at once. */
    async publish(topic: ChangeTopic): Promise<void> {
      await changes.record(topic);
      await dispatch([topic]);
    },
    /** Starts polling; changes made before start are considered already applied. */
    async start(): Promise<void> {
      high = await changes.latestId();
      for (const row of await changes.since(Math.max(0, high - LOOKBACK))) seen.add(row.id);
      timer = setInterval(() => {
        if (running) return;
        running = poll()
          .catch((err: unknown) => logger.warn('change feed poll failed', { err: String(err) }))
          .finally(() => {
            running = undefined;
          });
      }, deps.intervalMs ?? 1000);
      timer.unref();
    },
    async stop(): Promise<void> {
      if (timer) clearInterval(timer);
      timer = undefined;
      await running;
    },
    /** For tests and the CLI: poll once now. */
    pollNow: poll,
  };
}

export type ChangeFeed = ReturnType<typeof createChangeFeed>;
