import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { isLoopbackHost } from '../lib/loopback.js';
import { ConfigError } from './errors.js';

/**
 * Value parsers for the declarations in schema.ts. Each receives the variable's name and its
 * trimmed value (the declared default when unset, for a literal default) and throws ConfigError
 * — one line naming the variable — on anything it cannot accept.
 */

export function integer(name: string, raw: string, min: number, max: number): number {
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, `must be a whole number (got "${raw}")`);
  const n = Number(raw);
  if (n < min || n > max) throw new ConfigError(name, `must be between ${min} and ${max} (got ${n})`);
  return n;
}

export function boolean(name: string, raw: string): boolean {
  const v = raw.toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw new ConfigError(name, `must be true or false (got "${v}")`);
}

export function oneOf<T extends string>(name: string, raw: string, allowed: readonly T[]): T {
  const v = raw.toLowerCase();
  if (!(allowed as readonly string[]).includes(v)) throw new ConfigError(name, `must be one of ${allowed.join(', ')} (got "${v}")`);
  return v as T;
}

export function issuer(raw: string, production: boolean): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError('ISSUER', `is not an absolute URL (got "${raw}")`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new ConfigError('ISSUER', 'must be an http: or https: URL');
  }
  if (url.search || url.hash) throw new ConfigError('ISSUER', 'must not have a query or fragment');
  // OpenID Connect Discovery §3 / RFC 8414 §2: the issuer is https, except for local development.
  if (production && url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
    throw new ConfigError('ISSUER', 'must be https in production (http is allowed only for localhost)');
  }
  return raw.replace(/\/+$/, '');
}

/** Reads or creates the development secret in the data folder. */
export function generatedSecret(dataDir: string): string {
  const file = join(dataDir, 'latch-secret');
  try {
    const existing = readFileSync(file, 'utf8').trim();
    if (existing.length >= 32) return existing;
  } catch {
    // not there yet: created below
  }
  mkdirSync(dataDir, { recursive: true });
  const secret = randomBytes(32).toString('base64url');
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  return secret;
}
