import Koa from 'koa';

import type { Config } from './config/index.js';
import type { Db } from './db/knex.js';
import type { Logger } from './lib/logger.js';
import type { Render } from './lib/views.js';
import { drainUnreadBody } from './middleware/body.js';
import { createCsrf } from './middleware/csrf.js';
import { errorHandler } from './middleware/errors.js';
import { requestLog } from './middleware/request-log.js';
import { securityHeaders } from './middleware/security-headers.js';
import type { Oidc } from './oidc/provider.js';
import { healthRoutes } from './routes/health.js';
import { interactionRoutes } from './routes/interactions.js';
import { metricsRoutes } from './routes/metrics.js';
import { staticRoutes } from './routes/static.js';
import type { Services } from './services/index.js';
import { createMetrics, type Metrics } from './services/metrics.js';

/**
 * The Koa application: Latch's own routes first, then oidc-provider for everything else
 * (discovery, authorization, token, userinfo, JWKS, introspection, revocation, logout).
 */
export function createApp(deps: { config: Config; db: Db; logger: Logger; render: Render; services: Services; oidc: Oidc; metrics?: Metrics; lifecycle?: { draining: boolean } }): Koa {
  const { config, logger, render, services, oidc } = deps;
  const app = new Koa({ proxy: config.trustProxy });
  app.keys = services.secrets.cookieKeys;
  app.silent = true;

  const lifecycle = deps.lifecycle ?? { draining: false };
  const csrf = createCsrf(services.secrets);
  const metrics = deps.metrics ?? createMetrics({ db: deps.db });
  const routers = [
    healthRoutes({ db: deps.db, lifecycle }),
    staticRoutes(),
    interactionRoutes({ oidc, accounts: services.accounts, csrf, render, logger, metrics, audit: services.audit }),
    metricsRoutes({ metrics, token: config.metricsToken }),
  ];

  // First: one log line (and the HTTP metrics) per request, whoever answers it.
  app.use(requestLog({ logger, observe: (o) => metrics.observeRequest(o) }));
  // While draining, every response closes its connection so clients reconnect elsewhere.
  app.use(async (ctx, next) => {
    if (lifecycle.draining) ctx.set('Connection', 'close');
    await next();
  });
  app.use(drainUnreadBody());
  app.use(securityHeaders());
  app.use(errorHandler({ logger, render }));
  for (const router of routers) {
    app.use(router.routes());
    app.use(router.allowedMethods());
  }
  app.use(oidc.middleware);
  return app;
}
