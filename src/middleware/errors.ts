import type Koa from 'koa';

import type { Logger } from '../lib/logger.js';
import { loggablePath } from '../lib/route-label.js';
import { answerUnavailable } from '../lib/unavailable.js';
import type { Render } from '../lib/views.js';
import { AppError } from '../errors/index.js';
import type { OutageCheck } from '../db/outage.js';

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
        deps.logger.warn('database unavailable', { method: ctx.method, path: loggablePath(ctx), requestId: ctx.state.requestId as unknown, err: outage.message });
        await answerUnavailable(ctx, deps.render, ctx.accepts('html', 'json') === 'html' ? 'html' : 'json');
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
