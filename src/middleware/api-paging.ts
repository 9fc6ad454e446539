import { createHash } from 'node:crypto';

import type Koa from 'koa';

import { invalid, ProblemError, type FieldError } from './api-problem.js';
import { queryParam } from './api-input.js';

export const DEFAULT_LIMIT = 50;
export const MAX_LIMIT = 200;

/** A list response (every list of the API has this shape). */
export interface Page<T> {
  data: T[];
  next_cursor: string | null;
}

/** Where a page starts: after the item with this sort key (newest first). */
export interface Cursor {
  at: string;
  id: string;
}

const encode = (c: Cursor) => Buffer.from(JSON.stringify([c.at, c.id])).toString('base64url');

function decode(raw: string): Cursor | undefined {
  try {
    const v = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as unknown;
    // The key is compared in SQL: no NUL (PostgreSQL text cannot hold one) and no more than a key can be.
    const fits = (s: unknown, max: number): s is string => typeof s === 'string' && s.length <= max && !s.includes('\u0000');
    if (Array.isArray(v) && v.length === 2 && fits(v[0], 64) && fits(v[1], 512)) return { at: v[0], id: v[1] };
  } catch {
    // fall through
  }
  return undefined;
}

/** `limit` and `cursor` of a list request (422 when malformed). `extra` collects the caller's own parameter errors. */
export function pageParams(ctx: Koa.Context, extra: FieldError[] = []): { limit: number; cursor: Cursor | undefined } {
  const query = ctx.query as Record<string, string | string[] | undefined>;
  const errors = extra;
  const rawLimit = queryParam(query, 'limit', errors);
  let limit = DEFAULT_LIMIT;
  if (rawLimit !== undefined) {
    limit = /^\d{1,4}$/.test(rawLimit) ? Number(rawLimit) : NaN;
    if (!(limit >= 1 && limit <= MAX_LIMIT)) errors.push({ field: 'limit', message: `must be a whole number between 1 and ${MAX_LIMIT}` });
  }
  const rawCursor = queryParam(query, 'cursor', errors);
  const cursor = rawCursor === undefined ? undefined : decode(rawCursor);
  if (rawCursor !== undefined && !cursor) errors.push({ field: 'cursor', message: 'is not a cursor this API returned' });
  if (errors.length) throw invalid(errors);
  return { limit, cursor };
}

/**
 * One page of items, newest first (by `at`, then `id`, both descending). The cursor names the
 * last item returned, so items created meanwhile never shift later pages.
 */
export function paginate<T>(items: T[], key: (item: T) => Cursor, params: { limit: number; cursor: Cursor | undefined }): { items: T[]; next_cursor: string | null } {
  const cmp = (a: Cursor, b: Cursor) => (a.at === b.at ? (a.id < b.id ? 1 : a.id > b.id ? -1 : 0) : a.at < b.at ? 1 : -1);
  const sorted = [...items].sort((a, b) => cmp(key(a), key(b)));
  const { cursor } = params;
  const rest = cursor ? sorted.filter((i) => cmp(key(i), cursor) > 0) : sorted;
  const page = rest.slice(0, params.limit);
  return { items: page, next_cursor: rest.length > page.length ? encode(key(page[page.length - 1]!)) : null };
}

export const cursorOf = (c: Cursor) => encode(c);

/** A strong ETag of a representation (RFC 9110 §8.8.3). */
export function etagOf(representation: unknown): string {
  return `"${createHash('sha256').update(JSON.stringify(representation)).digest('base64url').slice(0, 27)}"`;
}

/** Answers a single resource with its ETag. */
export function sendResource(ctx: Koa.Context, representation: object, status = 200): void {
  ctx.status = status;
  ctx.set('ETag', etagOf(representation));
  ctx.set('Cache-Control', 'no-store');
  ctx.body = representation;
}

/**
 * RFC 9110 §13.1.1: an update carrying If-Match applies only while the resource still has one of
 * the listed ETags (or any, for `*`); otherwise 412. Without If-Match the update applies.
 */
export function checkIfMatch(ctx: Koa.Context, current: object): void {
  const header = ctx.get('If-Match');
  if (!header) return;
  if (header.trim() === '*') return;
  const tags = header.split(',').map((t) => t.trim());
  if (!tags.includes(etagOf(current))) throw new ProblemError(412, 'precondition-failed', 'the resource has changed since it was read (If-Match does not match its ETag)');
}
