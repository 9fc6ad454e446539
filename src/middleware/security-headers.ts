import type Koa from 'koa';

/**
 * Baseline headers for every response. The CSP allows no script at all: no page of Latch needs
 * JavaScript. form-action is not restricted because a login form legitimately ends in a
 * redirect to the client's registered redirect_uri.
 */
export function securityHeaders(): Koa.Middleware {
  return (ctx, next) => {
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('Referrer-Policy', 'no-referrer');
    ctx.set('X-Frame-Options', 'DENY');
    ctx.set('Content-Security-Policy', "default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'");
    if (ctx.secure) ctx.set('Strict-Transport-Security', 'max-age=31536000; includeSubDomains');
    return next();
  };
}
