import { randomUUID } from 'node:crypto';

import type Koa from 'koa';

import type { Logger } from '../lib/logger.js';
import { loggablePath, routeLabel } from '../lib/route-label.js';
import { discardUnreadBody } from './body.js';
import { setSecurityHeaders } from './security-headers.js';

/** An incoming X-Request-Id is kept only when it is a plain token. */
const SANE_REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;

export interface RequestObservation {
  method: string;
  route: string;
  status: number;
  seconds: number;
}

/**
 * The first middleware, what every request gets whoever answers it (Latch's routes or
 * oidc-provider). One middleware rather than one per concern: each Koa layer costs a closure,
 * a promise and a dispatch on every request, the token endpoint's included.
 *
 * - A request id: the incoming X-Request-Id when it is a plain token, else a new UUID; echoed
 *   in the response and in `ctx.state.requestId`.
 * - The baseline security headers (security-headers.ts).
 * - While draining (graceful shutdown), `Connection: close`, so clients reconnect elsewhere.
 * - When the response closes (sent, or the client went away first):
 *   - one log line: method, route (bounded), path without the query string (the route pattern
 *     when it has parameters), status, duration, request id and remote address. Never the
 *     query, headers, cookies or body: they carry codes, tokens, secrets and passwords. Status
 *     and duration are the Node response's, so what was really sent is logged;
 *   - `observe` (metrics) is fed the same numbers;
 *   - a request body left partly read is discarded (body.ts: discardUnreadBody), so the next
 *     request of a keep-alive connection is parsed.
 */
export function everyRequest(deps: { logger: Logger; observe?: (o: RequestObservation) => void; lifecycle: { draining: boolean } }): Koa.Middleware {
  const { logger, observe, lifecycle } = deps;
  const logLine = logger.request?.bind(logger) ?? ((fields: Record<string, unknown>) => logger.info('request', fields));
  return (ctx, next) => {
    const start = performance.now();
    const { req, res } = ctx;
    const incoming = req.headers['x-request-id'];
    const requestId = typeof incoming === 'string' && SANE_REQUEST_ID.test(incoming) ? incoming : randomUUID();
    ctx.state.requestId = requestId;
    res.setHeader('X-Request-Id', requestId);
    setSecurityHeaders(res, ctx.secure);
    if (lifecycle.draining) res.setHeader('Connection', 'close');
    const { method } = ctx;
    const remoteAddress = ctx.ip;

    // 'close' comes once per response: after 'finish' when it was sent, alone when the client
    // went away first (writableFinished tells which). One listener, never removed: the response
    // object is not reused (`on`, not `once`: no wrapper to build and unhook on every request).
    res.on('close', () => {
      discardUnreadBody(req);
      const seconds = (performance.now() - start) / 1e3;
      const route = routeLabel(ctx);
      const status = res.statusCode;
      observe?.({ method, route, status, seconds });
      const line: Record<string, unknown> = { method, route, path: loggablePath(ctx), status, durationMs: Math.round(seconds * 1e6) / 1e3, requestId, remoteAddress };
      if (!res.writableFinished) line.aborted = true;
      logLine(line);
    });
    return next();
  };
}
