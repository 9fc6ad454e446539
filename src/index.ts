import cluster from 'node:cluster';

import { ConfigError, loadConfig, type Config } from './config/index.js';
import { connectDatabase } from './db/connect.js';
import { openDatabase } from './db/knex.js';
import { migrateLatest } from './db/migrate.js';
import { createLogger, type Logger } from './lib/logger.js';
import { prepareDatabase, startServer } from './server.js';
import { createServices } from './services/index.js';

function configOrExit(): Config {
  try {
    return loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`latch: invalid configuration: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
}

/** One serving process: the whole server, or one cluster worker. */
async function serve(config: Config, logger: Logger, worker: number | undefined): Promise<void> {
  const running = await startServer(config, { logger, purge: worker === undefined || worker === 1 });
  if (worker === undefined || worker === 1) {
    logger.info('Latch is serving', { issuer: config.issuer, port: running.port, database: config.database.client, workers: config.webConcurrency, discovery: `${config.issuer}/.well-known/openid-configuration` });
  }
  const shutdown = (signal: string) => {
    logger.info('shutting down', { signal, worker });
    const { graceSeconds, timeoutSeconds } = config.shutdown;
    const force = setTimeout(() => process.exit(1), (graceSeconds + timeoutSeconds + 2) * 1000);
    force.unref();
    running.close({ graceMs: graceSeconds * 1000, drainTimeoutMs: timeoutSeconds * 1000 }).then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error('shutdown failed', { err: String(err) });
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

/**
 * WEB_CONCURRENCY > 1: the primary migrates and creates keys once, then forks workers that share
 * the port (node:cluster). A worker that dies is replaced; SIGTERM is passed to every worker.
 */
async function primary(config: Config, logger: Logger): Promise<void> {
  const db = openDatabase(config.database);
  try {
    // Settled once here: a refused ISSUER or LATCH_SECRET stops the primary with its one line
    // instead of every worker failing and being restarted.
    await connectDatabase(db, config.database);
    await migrateLatest(db);
    const services = createServices({ db, config, logger });
    await prepareDatabase(services, config);
    await services.accounts.ensureAdmin(config.admin);
  } finally {
    await db.destroy();
  }
  let stopping = false;
  const fork = (index: number) => cluster.fork({ LATCH_WORKER_INDEX: String(index) }).on('exit', (code, signal) => {
    if (stopping) return;
    logger.error('worker exited; starting another', { index, code, signal });
    setTimeout(() => fork(index), 500);
  });
  for (let i = 1; i <= config.webConcurrency; i++) fork(i);
  const stop = (signal: NodeJS.Signals) => {
    stopping = true;
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill(signal);
    cluster.on('exit', () => {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
    });
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGTERM'));
}

async function main(): Promise<void> {
  const config = configOrExit();
  const logger = createLogger(config.logLevel);
  if (cluster.isPrimary && config.secretGenerated) {
    logger.warn('LATCH_SECRET is not set: using a generated development secret', { file: `${config.dataDir}/latch-secret` });
  }
  if (config.webConcurrency > 1 && cluster.isPrimary) {
    await primary(config, logger);
    return;
  }
  const worker = cluster.isWorker ? Number(process.env.LATCH_WORKER_INDEX ?? cluster.worker?.id) : undefined;
  await serve(config, logger, worker);
}

main().catch((err: unknown) => {
  process.stderr.write(`latch: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
