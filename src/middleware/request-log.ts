import { randomUUID } from 'node:crypto';

import type Koa from 'koa';

import type { Logger } from '../lib/logger.js';
import { loggablePath, routeLabel } from '../lib/route-label.js';

/** An incoming X-Request-Id is kept only when it is a plain token. */
const SANE_REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;

export interface RequestObservation {
  method: string;
  route: string;
  status: number;
  seconds: number;
}

/**
 * One log line per request, written when the response is done: method, route (bounded), path
 * without the query string (the route pattern when it has parameters), status, duration, request id and remote address. Never the query,
 * headers, cookies or body: they carry codes, tokens, secrets and passwords.
 *
 * Status and duration come from the Node response when it closes (sent, or the client went
 * away), so what was really sent is logged, whoever answered. `observe` (metrics) is fed the
 * same numbers.
 */
export function requestLog(deps: { logger: Logger; observe?: (o: RequestObservation) => void }): Koa.Middleware {
  const { logger, observe } = deps;
  return (ctx, next) => {
    const start = process.hrtime.bigint();
    const incoming = ctx.get('X-Request-Id');
    const requestId = SANE_REQUEST_ID.test(incoming) ? incoming : randomUUID();
    ctx.state.requestId = requestId;
    ctx.set('X-Request-Id', requestId);
    const { method } = ctx;
    const remoteAddress = ctx.ip;

    const res = ctx.res;
    // 'close' comes once per response: after 'finish' when it was sent, alone when the client
    // went away first (writableFinished tells which). One listener, none to remove.
    res.once('close', () => {
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      const route = routeLabel(ctx);
      const status = res.statusCode;
      observe?.({ method, route, status, seconds });
      logger.info('request', {
        method,
        route,
        path: loggablePath(ctx),
        status,
        durationMs: Math.round(seconds * 1e6) / 1e3,
        requestId,
        remoteAddress,
        ...(res.writableFinished ? {} : { aborted: true }),
      });
    });
    return next();
  };
}
