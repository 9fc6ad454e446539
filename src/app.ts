import Koa from 'koa';

import type { Config } from './config/index.js';
import type { Db } from './db/knex.js';
import type { Logger } from './lib/logger.js';
import type { Render } from './lib/views.js';
import { createCsrf } from './middleware/csrf.js';
import { errorHandler } from './middleware/errors.js';
import { securityHeaders } from './middleware/security-headers.js';
import type { Oidc } from './oidc/provider.js';
import { healthRoutes } from './routes/health.js';
import { interactionRoutes } from './routes/interactions.js';
import { staticRoutes } from './routes/static.js';
import type { Services } from './services/index.js';

/**
 * The Koa application: Latch's own routes first, then oidc-provider for everything else
 * (discovery, authorization, token, userinfo, JWKS, introspection, revocation, logout).
 */
export function createApp(deps: { config: Config; db: Db; logger: Logger; render: Render; services: Services; oidc: Oidc; lifecycle?: { draining: boolean } }): Koa {
  const { config, logger, render, services, oidc } = deps;
  const app = new Koa({ proxy: config.trustProxy });
  app.keys = services.secrets.cookieKeys;
  app.silent = true;

  const csrf = createCsrf(services.secrets);
  const routers = [
    healthRoutes({ db: deps.db, lifecycle: deps.lifecycle ?? { draining: false } }),
    staticRoutes(),
    interactionRoutes({ oidc, accounts: services.accounts, csrf, render, logger }),
  ];

  app.use(securityHeaders());
  app.use(errorHandler({ logger, render }));
  for (const router of routers) {
    app.use(router.routes());
    app.use(router.allowedMethods());
  }
  app.use(oidc.middleware);
  return app;
}
