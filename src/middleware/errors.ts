import type Koa from 'koa';

import type { Logger } from '../lib/logger.js';
import { loggablePath } from '../lib/route-label.js';
import type { Render } from '../lib/views.js';
import { BodyError } from './body.js';

/**
 * Last line of defence for Latch's own routes: nothing escapes as a stack trace. Pages get the
 * friendly error page; anything else a small JSON error. (oidc-provider renders its own
 * endpoints' errors as RFC 6749 JSON.)
 */
export function errorHandler(deps: { logger: Logger; render: Render }): Koa.Middleware {
  return async (ctx, next) => {
    try {
      await next();
    } catch (err) {
      const status = err instanceof BodyError ? err.status : 500;
      if (status >= 500) deps.logger.error('request failed', { method: ctx.method, path: loggablePath(ctx), requestId: ctx.state.requestId as unknown, err: String((err as Error)?.stack ?? err) });
      const message = err instanceof BodyError ? err.message : 'The server could not complete this request.';
      ctx.status = status;
      if (ctx.accepts('html', 'json') === 'html') {
        ctx.type = 'html';
        ctx.body = await deps.render('error', { title: 'Something went wrong', error: status >= 500 ? 'server_error' : 'invalid_request', description: message });
      } else {
        ctx.body = { error: status >= 500 ? 'server_error' : 'invalid_request', error_description: message };
      }
    }
  };
}
