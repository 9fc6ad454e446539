import { randomBytes } from 'node:crypto';

import type Koa from 'koa';

import type { Secrets } from '../services/secrets.js';

const COOKIE = 'latch.csrf';

/**
 * CSRF protection for every form: a random per-browser-session cookie (HttpOnly, SameSite=Lax)
 * and, in each form, an HMAC of it under a LATCH_SECRET-derived key. A cross-site page can make
 * the browser send the cookie but cannot read it, so it cannot produce the form field. Stateless,
 * so it works across processes.
 */
export function createCsrf(secrets: Secrets) {
  const cookieOptions = (ctx: Koa.Context) => ({ httpOnly: true, sameSite: 'lax' as const, secure: ctx.secure, path: '/', overwrite: true, signed: false });

  return {
    /** The token to embed in a form, setting the cookie if the browser has none. */
    token(ctx: Koa.Context): string {
      let binding = ctx.cookies.get(COOKIE);
      if (!binding || !/^[A-Za-z0-9_-]{43}$/.test(binding)) {
        binding = randomBytes(32).toString('base64url');
        ctx.cookies.set(COOKIE, binding, cookieOptions(ctx));
      }
      return secrets.csrfToken(binding);
    },
    /** True when the submitted field matches this browser's cookie (constant-time). */
    verify(ctx: Koa.Context, submitted: string | undefined): boolean {
      const binding = ctx.cookies.get(COOKIE);
      if (!binding || typeof submitted !== 'string' || !submitted) return false;
      return secrets.equal(secrets.csrfToken(binding), submitted);
    },
  };
}

export type Csrf = ReturnType<typeof createCsrf>;
