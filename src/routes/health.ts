import Router from '@koa/router';

import type { Db } from '../db/knex.js';

/** Liveness (`/healthz`: the process serves) and readiness (`/readyz`: the database answers and we are not draining). */
export function healthRoutes(deps: { db: Db; lifecycle: { readonly draining: boolean } }): Router {
  const router = new Router();
  router.get('/healthz', (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { status: 'ok' };
  });
  router.get('/readyz', async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    if (deps.lifecycle.draining) {
      // Load balancers stop sending new work while in-flight requests finish.
      ctx.status = 503;
      ctx.body = { status: 'unavailable', reason: 'shutting down' };
      return;
    }
    try {
      await deps.db.raw('select 1');
      ctx.body = { status: 'ready' };
    } catch {
      ctx.status = 503;
      ctx.body = { status: 'unavailable', reason: 'database not answering' };
    }
  });
  return router;
}
