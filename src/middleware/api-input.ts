import type { FieldError } from './api-problem.js';

/** Longest query parameter accepted (bigger values are a 422, never a database error). */
export const MAX_STRING = 2048;

/** A query parameter that may appear once. */
export function queryParam(query: Record<string, string | string[] | undefined>, name: string, errors: FieldError[]): string | undefined {
  const v = query[name];
  if (Array.isArray(v)) {
    errors.push({ field: name, message: 'must be given once' });
    return undefined;
  }
  if (v !== undefined && v.length > MAX_STRING) {
    errors.push({ field: name, message: `must be at most ${MAX_STRING} characters` });
    return undefined;
  }
  if (v !== undefined && v.includes('\u0000')) {
    errors.push({ field: name, message: 'must not contain NUL characters' });
    return undefined;
  }
  return v;
}
