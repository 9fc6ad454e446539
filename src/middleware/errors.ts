import type Koa from 'koa';

import type { Logger } from '../lib/logger.js';
import { loggablePath } from '../lib/route-label.js';
import type { Render } from '../lib/views.js';
import { AppError } from '../errors/index.js';
import type { OutageCheck } from '../db/outage.js';

/** Seconds a client is asked to wait when the database is not serving (RFC 9110 §10.2.3). */
export const OUTAGE_RETRY_AFTER = '5';

/**
 * Last line of defence for Latch's own routes: nothing escapes as a stack trace. Pages get the
 * friendly error page; anything else a small JSON error. (oidc-provider renders its own
 * endpoints' errors as RFC 6749 JSON.)
 */
export function errorHandler(deps: { logger: Logger; render: Render; outage: OutageCheck }): Koa.Middleware {
  return async (ctx, next) => {
    try {
      await next();
    } catch (err) {
      const outage = deps.outage(err);
      if (outage) {
        // The database is down or too slow: a temporary condition, not a bug. 503 with
        // Retry-After, worded as RFC 6749 §4.1.2.1's temporarily_unavailable.
        deps.logger.warn('database unavailable', { method: ctx.method, path: loggablePath(ctx), requestId: ctx.state.requestId as unknown, err: outage.message });
        ctx.status = 503;
        ctx.set('Retry-After', OUTAGE_RETRY_AFTER);
        ctx.set('Cache-Control', 'no-store');
        const description = 'The service is temporarily unavailable. Please try again in a moment.';
        if (ctx.accepts('html', 'json') === 'html') {
          ctx.type = 'html';
          ctx.body = await deps.render('error', { title: 'Temporarily unavailable', error: 'temporarily_unavailable', description });
        } else {
          ctx.body = { error: 'temporarily_unavailable', error_description: description };
        }
        return;
      }
      // Only an AppError below 500 tells the caller what went wrong; anything else is ours to fix.
      const exposed = err instanceof AppError && err.expose ? err : undefined;
      const status = exposed?.status ?? 500;
      if (!exposed) deps.logger.error('request failed', { method: ctx.method, path: loggablePath(ctx), requestId: ctx.state.requestId as unknown, err: String((err as Error)?.stack ?? err) });
      const message = exposed?.message ?? 'The server could not complete this request.';
      ctx.status = status;
      for (const [k, v] of Object.entries(exposed?.headers ?? {})) ctx.set(k, v);
      if (ctx.accepts('html', 'json') === 'html') {
        ctx.type = 'html';
        ctx.body = await deps.render('error', { title: 'Something went wrong', error: exposed ? 'invalid_request' : 'server_error', description: message });
      } else {
        ctx.body = { error: exposed ? 'invalid_request' : 'server_error', error_description: message };
      }
    }
  };
}
