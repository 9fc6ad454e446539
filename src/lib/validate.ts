import { ValidationError } from '../services/errors.js';

/** An absolute URI (RFC 3986 §4.3) without a fragment. */
export function absoluteUri(field: string, value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ValidationError(field, `must be an absolute URI (got "${value}")`);
  }
  if (url.hash || value.includes('#')) throw new ValidationError(field, `must not contain a fragment (got "${value}")`);
  return value;
}

/** An http(s) URL. */
export function httpUrl(field: string, value: string): string {
  absoluteUri(field, value);
  const url = new URL(value);
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new ValidationError(field, `must be an http(s) URL (got "${value}")`);
  return value;
}

/** A web origin: scheme://host[:port], nothing else (RFC 6454). */
export function webOrigin(field: string, value: string): string {
  httpUrl(field, value);
  const url = new URL(value);
  if (url.origin !== value.replace(/\/$/, '')) throw new ValidationError(field, `must be an origin like https://app.example.com (got "${value}")`);
  return url.origin;
}

/** A scope token (RFC 6749 §3.3: printable ASCII except space, " and \). */
export function scopeToken(field: string, value: string): string {
  if (!/^[\x21\x23-\x5B\x5D-\x7E]+$/.test(value)) throw new ValidationError(field, `"${value}" is not a valid scope token`);
  return value;
}

export function unique<T>(values: T[]): T[] {
  return [...new Set(values)];
}
