import Router from '@koa/router';

import type { Db } from '../db/knex.js';

/** Liveness (`/healthz`: the process serves) and readiness (`/readyz`: the database answers). */
export function healthRoutes(deps: { db: Db }): Router {
  const router = new Router();
  router.get('/healthz', (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { status: 'ok' };
  });
  router.get('/readyz', async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
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
