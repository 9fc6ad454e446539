import type Koa from 'koa';

import type { RequestOrigin } from '../services/audit.js';

/** Where a request came from, for audit rows (behind TRUST_PROXY, ctx.ip is the proxy's client). */
export const originOf = (ctx: Koa.Context): RequestOrigin => ({ ip: ctx.ip || null, userAgent: ctx.get('user-agent') || null });
