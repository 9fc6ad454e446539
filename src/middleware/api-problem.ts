import type Koa from 'koa';

import type { Logger } from '../lib/logger.js';
import { loggablePath } from '../lib/route-label.js';
import { DuplicateEmailError } from '../repositories/accounts.js';
import { ForbiddenError } from '../services/authorization.js';
import { ConflictError, NotFoundError, ValidationError } from '../services/errors.js';
import { BodyError, readBodyText } from './body.js';

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
} as const;

export type ProblemType = keyof typeof PROBLEM_TYPES;

export interface FieldError {
  field: string;
  message: string;
}

/** An RFC 9457 problem: thrown anywhere under /api and rendered as application/problem+json. */
export class ProblemError extends Error {
  constructor(
    readonly status: number,
    readonly type: ProblemType,
    readonly detail: string,
    readonly extra: { errors?: FieldError[]; headers?: Record<string, string> } = {},
  ) {
    super(detail);
    this.name = 'ProblemError';
  }
}

/** 422 with every offending field. */
export const invalid = (errors: FieldError[]) => new ProblemError(422, 'validation', errors.map((e) => `${e.field} ${e.message}`).join('; '), { errors });
export const notFound = (what: string) => new ProblemError(404, 'not-found', `${what} not found`);

/** Sends a problem document (RFC 9457 §3). */
export function sendProblem(ctx: Koa.Context, p: ProblemError): void {
  ctx.status = p.status;
  for (const [k, v] of Object.entries(p.extra.headers ?? {})) ctx.set(k, v);
  ctx.set('Cache-Control', 'no-store');
  ctx.type = 'application/problem+json';
  ctx.body = { type: `${PROBLEM_BASE}${p.type}`, title: PROBLEM_TYPES[p.type], status: p.status, detail: p.detail, ...(p.extra.errors ? { errors: p.extra.errors } : {}) };
}

/** Maps the services' errors (and body errors) to problems; anything else is a 500 without details. */
export function toProblem(err: unknown): ProblemError | undefined {
  if (err instanceof ProblemError) return err;
  if (err instanceof ValidationError) return invalid([{ field: err.field, message: err.detail }]);
  if (err instanceof NotFoundError) return new ProblemError(404, 'not-found', err.message);
  if (err instanceof ConflictError) return new ProblemError(409, 'conflict', err.message);
  if (err instanceof DuplicateEmailError) return new ProblemError(409, 'conflict', err.message);
  if (err instanceof ForbiddenError) return new ProblemError(403, 'forbidden', err.message);
  if (err instanceof BodyError) {
    const type: ProblemType = err.status === 413 ? 'payload-too-large' : err.status === 415 ? 'unsupported-media-type' : 'malformed-request';
    return new ProblemError(err.status, type, err.message);
  }
  return undefined;
}

/**
 * The admin API's error channel: every error under /api becomes application/problem+json.
 * Unknown failures are logged and answered with a 500 that carries no detail.
 */
export function problems(deps: { logger: Logger }): Koa.Middleware {
  return async (ctx, next) => {
    try {
      await next();
    } catch (err) {
      const p = toProblem(err);
      if (p) return sendProblem(ctx, p);
      deps.logger.error('request failed', { method: ctx.method, path: loggablePath(ctx), requestId: ctx.state.requestId as unknown, err: String((err as Error)?.stack ?? err) });
      sendProblem(ctx, new ProblemError(500, 'server-error', 'The server could not complete this request.'));
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
