import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import Router from '@koa/router';

import { VIEWS_DIR } from '../lib/paths.js';

/** The one stylesheet, read once and served with a long cache lifetime. */
export function staticRoutes(): Router {
  const css = readFileSync(join(VIEWS_DIR, 'static', 'latch.css'));
  const router = new Router();
  router.get('/static/latch.css', (ctx) => {
    ctx.type = 'text/css; charset=utf-8';
    ctx.set('Cache-Control', 'public, max-age=3600');
    ctx.body = css;
  });
  return router;
}
