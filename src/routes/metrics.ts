import { createHash, timingSafeEqual } from 'node:crypto';

import Router from '@koa/router';

import type { Metrics } from '../services/metrics.js';

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/**
 * `GET /metrics`: Prometheus text exposition. With METRICS_TOKEN set it requires
 * `Authorization: Bearer <METRICS_TOKEN>` (RFC 6750), compared in constant time; unset, it is open.
 */
export function metricsRoutes(deps: { metrics: Pick<Metrics, 'render' | 'contentType'>; token: string | undefined }): Router {
  const router = new Router();
  const expected = deps.token === undefined ? undefined : digest(deps.token);

  const authorized = (header: string): boolean => {
    if (!expected) return true;
    const presented = /^Bearer +(\S+) *$/i.exec(header)?.[1];
    // Equal-length SHA-256 digests: timingSafeEqual leaks neither the token nor its length.
    const ok = timingSafeEqual(digest(presented ?? ''), expected);
    return ok && presented !== undefined;
  };

  router.get('/metrics', async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    if (!authorized(ctx.get('Authorization'))) {
      ctx.status = 401;
      ctx.set('WWW-Authenticate', 'Bearer');
      ctx.body = { error: 'unauthorized', error_description: 'a valid metrics bearer token is required' };
      return;
    }
    ctx.type = deps.metrics.contentType;
    ctx.body = await deps.metrics.render();
  });
  return router;
}
