import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import { createApp } from './app.js';
import type { Config } from './config/index.js';
import { connectDatabase } from './db/connect.js';
import { openDatabase, sqliteConnectionOf, type Db } from './db/knex.js';
import { startWalCheckpointer } from './db/checkpointer.js';
import { migrateLatest } from './db/migrate.js';
import { createLogger, type Logger } from './lib/logger.js';
import { createRenderer } from './lib/views.js';
import { logoutTokenSigner } from './oidc/backchannel-logout.js';
import { createOidc, type Oidc } from './oidc/provider.js';
import { loopbackHost } from './routes/account-session.js';
import { createServices, type Services } from './services/index.js';
import { MAIL_QUEUE_POLL_MS } from './services/mail-queue.js';
import { purgeExpired } from './services/purge.js';
import { createMetrics } from './services/metrics.js';

export interface RunningServer {
  config: Config;
  db: Db;
  services: Services;
  oidc: Oidc;
  server: Server;
  /** The port actually bound (PORT=0 picks a free one). */
  port: number;
  logger: Logger;
  /**
   * Graceful stop: /readyz turns 503 and responses close their connections; after `graceMs`
   * (default 0) the listener closes, in-flight requests finish (up to `drainTimeoutMs`, then
   * remaining connections are cut), timers stop, the pool closes.
   */
  close(options?: { graceMs?: number; drainTimeoutMs?: number }): Promise<void>;
}

export interface StartOptions {
  logger?: Logger;
  /** Change-feed poll interval in ms (default 1000). */
  changePollMs?: number;
  /** Host to bind (default all interfaces). */
  host?: string;
  /** Run the expired-state purge timer in this process (default true; one cluster worker does). */
  purge?: boolean;
}

/**
 * What every serving process (and a cluster's primary) does on a migrated database before
 * serving: a server always acts for its own ISSUER (or the default), so it records it on a fresh
 * database and refuses a database recorded for another issuer (IssuerMismatchError); its
 * LATCH_SECRET must open the stored keys; then signing keys, the account page's client and the
 * admin API's resource exist for that issuer.
 */
export async function prepareDatabase(services: Services, config: Config): Promise<void> {
  await services.bootstrap.settleIssuer(config.issuer, config.issuer);
  await services.bootstrap.verifySecret();
  await services.keys.ensureKeys();
  await services.bootstrap.seed(config.issuer);
}

/**
 * Opens the database, migrates, makes sure signing keys (and ADMIN_EMAIL) exist, builds the app
 * and listens. Used by src/index.ts and by the tests, which start real servers on free ports.
 */
export async function startServer(config: Config, options: StartOptions = {}): Promise<RunningServer> {
  const logger = options.logger ?? createLogger(config.logLevel);
  const db = openDatabase(config.database);
  try {
    await connectDatabase(db, config.database);
    const applied = await migrateLatest(db);
    if (applied.length) logger.info('migrations applied', { migrations: applied });
    const services = createServices({ db, config, logger, ...(options.changePollMs ? { changePollMs: options.changePollMs } : {}) });
    await prepareDatabase(services, config);
    const admin = await services.accounts.ensureAdmin(config.admin);
    if (admin) logger.info('administrator account created', { email: admin.email });

    const render = createRenderer();
    const metrics = createMetrics({ db });
    services.rateLimits.onRejection((limiter) => metrics.rateLimitRejections.inc({ limiter }));
    services.rateLimits.onStoreError(() => metrics.rateLimitStoreErrors.inc());
    metrics.sources.rateLimitStoreDegraded = () => services.rateLimits.degraded();
    services.mailer.onEvent((event) => metrics.mails.inc({ event }));
    metrics.sources.mailPending = () => services.mailer.pending();
    const oidc = await createOidc({ config, logger, render, secrets: services.secrets, state: services.state, clients: services.clients, resources: services.resources, accounts: services.accounts, keys: services.keys, feed: services.feed, metrics, audit: services.audit, access: services.access, organizations: services.organizations, personalTokens: services.personalTokens, federation: services.federation, rateLimits: services.rateLimits, backchannelLogout: services.backchannelLogout });
    services.feed.on('keys', async () => {
      await oidc.reloadKeys();
    });
    await services.feed.start();
    // Every process delivers the back-channel logout queue (claims keep instances apart).
    const logouts = services.backchannelLogout.start({ sign: logoutTokenSigner(oidc, services.clients), record: (result) => metrics.backchannelLogouts.inc({ result }) });

    const lifecycle = { draining: false };
    let purging: Promise<void> | undefined;
    const purgeTimer = setInterval(() => {
      // One purge at a time: a long backlog is not started again on top of itself.
      if (options.purge === false || purging) return;
      purging = purgeExpired(services, () => lifecycle.draining)
        .then((n) => void (n && logger.debug('expired provider state purged', { rows: n })))
        .catch((err: unknown) => logger.warn('purge failed', { err: String(err) }))
        .finally(() => {
          purging = undefined;
        });
    }, config.purgeIntervalSeconds * 1000);
    purgeTimer.unref();

    // Every process sends the queued mails that are due (retries, and mails whose first attempt
    // was cut short by a crash); claims keep two processes from sending the same one.
    let mailing: Promise<void> | undefined;
    const mailTimer = setInterval(() => {
      if (mailing) return;
      mailing = services.mailer
        .sendDue(() => lifecycle.draining)
        .then(() => undefined)
        .catch((err: unknown) => logger.warn('mail queue pass failed', { err: String(err) }))
        .finally(() => {
          mailing = undefined;
        });
    }, MAIL_QUEUE_POLL_MS);
    mailTimer.unref();

    // The account page redeems its codes at this process's own token endpoint, over loopback.
    const loopback = { host: loopbackHost(options.host), port: undefined as number | undefined };
    const app = createApp({ config, db, logger, render, services, oidc, metrics, lifecycle, loopback });
    const server = app.listen(config.port, options.host);
    await once(server, 'listening');
    // Slow clients may not hold sockets forever; keep-alive a bit longer than common proxies.
    server.headersTimeout = 20_000;
    server.requestTimeout = 30_000;
    server.keepAliveTimeout = 65_000;
    const port = (server.address() as AddressInfo).port;
    loopback.port = port;
    // SQLite file: WAL checkpoints run in a worker thread, not inside a request
    // (db/checkpointer.ts). Started once listening: readiness does not wait for the thread.
    const checkpointer =
      config.database.client === 'sqlite' && config.database.filename !== ':memory:'
        ? startWalCheckpointer(config.database.filename, { connection: sqliteConnectionOf(db), onWarning: (message) => logger.warn('wal checkpoint failing', { err: message }) })
        : undefined;

    let closing: Promise<void> | undefined;
    const close = ({ graceMs = 0, drainTimeoutMs = 10_000 } = {}) => {
      closing ??= (async () => {
        lifecycle.draining = true;
        clearInterval(purgeTimer);
        clearInterval(mailTimer);
        // Connections the kernel has queued but Node has not accepted yet would be reset by
        // closing the listener; the grace period serves them (and lets load balancers see 503).
        if (graceMs > 0) await new Promise((r) => setTimeout(r, graceMs));
        const cut = setTimeout(() => server.closeAllConnections(), drainTimeoutMs);
        // server.close() also drops "idle" connections, which includes one accepted a moment
        // ago whose request bytes are still arriving: that client would see a reset. Stop
        // listening first, then close idle keep-alive connections a little later, repeatedly.
        const closeIdle = server.closeIdleConnections.bind(server);
        server.closeIdleConnections = () => undefined;
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections = closeIdle;
        const idle = setInterval(closeIdle, 250);
        await closed;
        clearInterval(idle);
        clearTimeout(cut);
        await services.feed.stop();
        await logouts.stop();
        await purging;
        await mailing;
        await services.rateLimits.close();
        // Pending last-use times of personal access tokens, written before the pool closes.
        await services.personalTokens.close();
        await checkpointer?.stop();
        await db.destroy();
      })();
      return closing;
    };
    return { config, db, services, oidc, server, port, logger, close };
  } catch (err) {
    await db.destroy();
    throw err;
  }
}

