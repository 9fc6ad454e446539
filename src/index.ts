import { ConfigError, loadConfig } from './config/index.js';
import { createLogger } from './lib/logger.js';
import { startServer } from './server.js';

/** Process entry: configuration, start, graceful shutdown on SIGTERM/SIGINT. */
async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`latch: invalid configuration: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  if (config.secretGenerated) {
    logger.warn('LATCH_SECRET is not set: using a generated development secret', { file: `${config.dataDir}/latch-secret` });
  }
  const running = await startServer(config, { logger });
  logger.info('Latch is serving', { issuer: config.issuer, port: running.port, database: config.database.client, discovery: `${config.issuer}/.well-known/openid-configuration` });

  const shutdown = (signal: string) => {
    logger.info('shutting down', { signal });
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    running
      .close()
      .then(() => process.exit(0))
      .catch((err: unknown) => {
        logger.error('shutdown failed', { err: String(err) });
        process.exit(1);
      });
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

main().catch((err: unknown) => {
  process.stderr.write(`latch: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
