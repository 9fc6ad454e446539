import type Koa from 'koa';

import type { Render } from './views.js';

/** Seconds a client is asked to wait while the database is not serving (RFC 9110 §10.2.3). */
export const OUTAGE_RETRY_AFTER = '5';
export const OUTAGE_DESCRIPTION = 'The service is temporarily unavailable. Please try again in a moment.';

/**
 * The answer while the database is down or too slow: a temporary condition, not a bug, so 503
 * with Retry-After, worded as RFC 6749 §4.1.2.1's `temporarily_unavailable` ("unable to handle
 * the request due to a temporary overloading or maintenance of the server"): the error page for
 * a browser, RFC 6749 JSON for a program. Never cached.
 */
export async function answerUnavailable(ctx: Koa.Context, render: Render, as: 'html' | 'json'): Promise<void> {
  ctx.status = 503;
  ctx.set('Retry-After', OUTAGE_RETRY_AFTER);
  ctx.set('Cache-Control', 'no-store');
  if (as === 'html') {
    ctx.type = 'html';
    ctx.body = await render('error', { title: 'Temporarily unavailable', error: 'temporarily_unavailable', description: OUTAGE_DESCRIPTION });
  } else {
    ctx.body = { error: 'temporarily_unavailable', error_description: OUTAGE_DESCRIPTION };
  }
}
