import type { ServerResponse } from 'node:http';

/**
 * Baseline headers for every response. The CSP allows no script at all: no page of Latch needs
 * JavaScript. form-action is not restricted because a login form legitimately ends in a
 * redirect to the client's registered redirect_uri.
 */
const BASELINE: readonly [string, string][] = [
  ['X-Content-Type-Options', 'nosniff'],
  ['Referrer-Policy', 'no-referrer'],
  ['X-Frame-Options', 'DENY'],
  ['Content-Security-Policy', "default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'"],
];

/**
 * Sets the baseline headers on a response that has not started; HSTS (RFC 6797) only over
 * HTTPS (directly, or behind the trusted proxy's X-Forwarded-Proto).
 */
export function setSecurityHeaders(res: ServerResponse, secure: boolean): void {
  for (const [name, value] of BASELINE) res.setHeader(name, value);
  if (secure) res.setHeader('Strict-Transport-Security', 'max-age=31536000; includeSubDomains');
}
