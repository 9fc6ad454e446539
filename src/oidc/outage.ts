import type Koa from 'koa';
import type { KoaContextWithOIDC } from 'oidc-provider';

import { databaseOutage } from '../db/outage.js';
import type { Logger } from '../lib/logger.js';
import { answerUnavailable } from '../lib/unavailable.js';
import type { Render } from '../lib/views.js';
import { answersJson } from './json-routes.js';

/**
 * oidc-provider's endpoints when the database is down or too slow. Its error handlers answer
 * any failure of ours as 500 server_error; a database outage is temporary, so the answer is
 * lib/unavailable's 503 `temporarily_unavailable`: RFC 6749 JSON for programs (token, userinfo,
 * introspection, ...), the error page for browsers (the authorization endpoint renders it rather
 * than redirecting, as for every server error).
 */

const MARK = Symbol('database outage');

/** True (and remembered on the context) when `err` is a database outage. */
export function noteOutage(ctx: Koa.Context, err: unknown): boolean {
  if (!databaseOutage(err)) return false;
  (ctx.state as Record<symbol, unknown>)[MARK] = true;
  return true;
}

/** renderError for an outage: the error page with 503. False when `err` is something else. */
export async function renderOutagePage(ctx: Koa.Context, err: unknown, render: Render): Promise<boolean> {
  if (!noteOutage(ctx, err)) return false;
  await answerUnavailable(ctx, render, 'html');
  return true;
}

/**
 * After oidc-provider answered: a server_error caused by an outage (noted by the server_error
 * listener or renderError), or a response whose writes failed with one (`err`), becomes 503
 * temporarily_unavailable. No redirect, no cookie: nothing the request meant to store was stored.
 * Returns a promise only when it answered (a page to render).
 */
export async function answerOutage(ctx: KoaContextWithOIDC, deps: { logger: Logger; render: Render }, err?: unknown): Promise<boolean> {
  if (err !== undefined) noteOutage(ctx, err);
  if (!(ctx.state as Record<symbol, unknown>)[MARK]) return false;
  deps.logger.warn('database unavailable', { route: ctx.oidc?.route, status: ctx.status });
  ctx.remove('Location');
  ctx.remove('Set-Cookie');
  await answerUnavailable(ctx, deps.render, !answersJson(ctx) && ctx.accepts('json', 'html') === 'html' ? 'html' : 'json');
  return true;
}



