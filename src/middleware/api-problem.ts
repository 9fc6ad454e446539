import type Koa from 'koa';

import type { Logger } from '../lib/logger.js';
import { loggablePath } from '../lib/route-label.js';
import { OUTAGE_RETRY_AFTER } from '../lib/unavailable.js';
import { AppError, BodyError, type FieldError } from '../errors/index.js';
import { readBodyText } from './body.js';
import type { OutageCheck } from '../db/outage.js';

/** Every problem `type` of the admin API is this base plus a slug (listed in openapi.yaml). */
export const PROBLEM_BASE = 'https://latch.dev/problems/';

/** Slug → title. The closed list of problem types (RFC 9457 §3.1.1: stable URIs). */
export const PROBLEM_TYPES = {
  'malformed-request': 'Malformed request',
  validation: 'Validation failed',
  unauthorized: 'Authentication required',
  forbidden: 'Forbidden',
  'insufficient-scope': 'Insufficient scope',
  'not-found': 'Not found',
  'method-not-allowed': 'Method not allowed',
  conflict: 'Conflict',
  'precondition-failed': 'Precondition failed',
  'payload-too-large': 'Payload too large',
  'unsupported-media-type': 'Unsupported media type',
  'too-many-requests': 'Too many requests',
  'server-error': 'Internal server error',
  'service-unavailable': 'Service unavailable',
} as const;

export type ProblemType = keyof typeof PROBLEM_TYPES;

export type { FieldError };

/** An error only the admin API throws, named by its problem type (every AppError renders as a problem). */
export class ProblemError extends AppError {
  constructor(status: number, type: ProblemType, detail: string, extra: { errors?: FieldError[]; headers?: Record<string, string> } = {}) {
    super(status, type, detail, extra);
  }
}

/** 422 with every offending field. */
export const invalid = (errors: FieldError[]) => new ProblemError(422, 'validation', errors.map((e) => `${e.field} ${e.message}`).join('; '), { errors });
export const notFound = (what: string) => new ProblemError(404, 'not-found', `${what} not found`);

/** The slug of a status whose error carries a code that is not a problem type of ours. */
const BY_STATUS: Record<number, ProblemType> = { 400: 'malformed-request', 401: 'unauthorized', 403: 'forbidden', 404: 'not-found', 405: 'method-not-allowed', 409: 'conflict', 412: 'precondition-failed', 413: 'payload-too-large', 415: 'unsupported-media-type', 422: 'validation', 429: 'too-many-requests' };

const isProblemType = (code: string): code is ProblemType => Object.hasOwn(PROBLEM_TYPES, code);

/** The problem document of an exposed AppError (RFC 9457 §3): its code is the type's slug. */
export interface Problem {
  status: number;
  type: ProblemType;
  detail: string;
  errors: FieldError[] | undefined;
  headers: Record<string, string> | undefined;
}

/** Sends a problem document (RFC 9457 §3). */
export function sendProblem(ctx: Koa.Context, p: Problem): void {
  ctx.status = p.status;
  for (const [k, v] of Object.entries(p.headers ?? {})) ctx.set(k, v);
  ctx.set('Cache-Control', 'no-store');
  ctx.type = 'application/problem+json';
  ctx.body = { type: `${PROBLEM_BASE}${p.type}`, title: PROBLEM_TYPES[p.type], status: p.status, detail: p.detail, ...(p.errors ? { errors: p.errors } : {}) };
}

/**
 * Any exposed AppError as a problem; undefined for everything else (a bug or a server error:
 * a 500 without details).
 */
export function toProblem(err: unknown): Problem | undefined {
  if (!(err instanceof AppError) || !err.expose) return undefined;
  const type = isProblemType(err.code) ? err.code : (BY_STATUS[err.status] ?? 'malformed-request');
  return { status: err.status, type, detail: err.message, errors: err.errors, headers: err.headers };
}

/**
 * The admin API's error channel: every error under /api becomes application/problem+json.
 * Unknown failures are logged and answered with a 500 that carries no detail.
 */
export function problems(deps: { logger: Logger; outage: OutageCheck }): Koa.Middleware {
  return async (ctx, next) => {
    try {
      await next();
    } catch (err) {
      const outage = deps.outage(err);
      if (outage) {
        // A temporary condition (the database is down or too slow): 503 with Retry-After
        // (RFC 9110 §15.6.4), never a 500.
        deps.logger.warn('database unavailable', { method: ctx.method, path: loggablePath(ctx), requestId: ctx.state.requestId as unknown, err: outage.message });
        return sendProblem(ctx, { status: 503, type: 'service-unavailable', detail: 'The service is temporarily unavailable; try again in a moment.', errors: undefined, headers: { 'Retry-After': OUTAGE_RETRY_AFTER } });
      }
      const p = toProblem(err);
      if (p) return sendProblem(ctx, p);
      deps.logger.error('request failed', { method: ctx.method, path: loggablePath(ctx), requestId: ctx.state.requestId as unknown, err: String((err as Error)?.stack ?? err) });
      sendProblem(ctx, { status: 500, type: 'server-error', detail: 'The server could not complete this request.', errors: undefined, headers: undefined });
    }
  };
}

/** Largest JSON body accepted by the admin API. */
export const JSON_LIMIT = 64 * 1024;

/** Reads a bounded application/json body into a JSON object (400 unparseable, 413 too large, 415 not JSON). */
export async function readJson(ctx: Koa.Context): Promise<Record<string, unknown>> {
  const length = Number(ctx.get('content-length') || 0);
  if (length > JSON_LIMIT) throw new BodyError(413, `the body must be at most ${JSON_LIMIT} bytes`);
  const hasBody = length > 0 || Boolean(ctx.get('transfer-encoding'));
  if (!hasBody) return {};
  if (!ctx.is('application/json', '+json')) throw new BodyError(415, 'the body must be application/json');
  const text = await readBodyText(ctx, JSON_LIMIT, { tooLarge: `the body must be at most ${JSON_LIMIT} bytes`, incomplete: 'incomplete body' });
  if (!text.trim()) return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new BodyError(400, 'the body is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid([{ field: 'body', message: 'must be a JSON object' }]);
  return value as Record<string, unknown>;
}
