import { invalid, type FieldError } from './api-problem.js';

/** Longest string any field accepts (bigger values are a 422, never a database error). */
export const MAX_STRING = 2048;

type StringRule = { required?: boolean; max?: number; nullable?: boolean };

/**
 * Typed reading of a JSON body: every wrong field is collected, then `done()` throws one 422
 * naming them all. Unknown fields are refused too (a typo must not be silently ignored).
 */
export class Input {
  readonly errors: FieldError[] = [];

  constructor(
    private readonly body: Record<string, unknown>,
    allowed: readonly string[],
  ) {
    for (const k of Object.keys(body)) if (!allowed.includes(k)) this.errors.push({ field: k, message: 'is not a known field' });
  }

  has(name: string): boolean {
    return this.body[name] !== undefined;
  }

  private fail(field: string, message: string): undefined {
    this.errors.push({ field, message });
    return undefined;
  }

  string(name: string, rule: StringRule & { nullable: true }): string | null | undefined;
  string(name: string, rule?: StringRule): string | undefined;
  string(name: string, rule: StringRule = {}): string | null | undefined {
    const v = this.body[name];
    if (v === undefined) return rule.required ? this.fail(name, 'is required') : undefined;
    if (v === null && rule.nullable) return null;
    if (typeof v !== 'string') return this.fail(name, 'must be a string');
    // PostgreSQL text cannot hold NUL; no field of ours means one.
    if (v.includes('\u0000')) return this.fail(name, 'must not contain NUL characters');
    if (rule.required && !v.trim()) return this.fail(name, 'must not be empty');
    if (v.length > (rule.max ?? MAX_STRING)) return this.fail(name, `must be at most ${rule.max ?? MAX_STRING} characters`);
    return v;
  }

  boolean(name: string): boolean | undefined {
    const v = this.body[name];
    if (v === undefined) return undefined;
    if (typeof v !== 'boolean') return this.fail(name, 'must be true or false');
    return v;
  }

  integer(name: string, rule: { min: number; max: number; nullable?: boolean }): number | null | undefined {
    const v = this.body[name];
    if (v === undefined) return undefined;
    if (v === null && rule.nullable) return null;
    if (typeof v !== 'number' || !Number.isInteger(v)) return this.fail(name, 'must be a whole number');
    if (v < rule.min || v > rule.max) return this.fail(name, `must be between ${rule.min} and ${rule.max}`);
    return v;
  }

  strings(name: string, rule: { maxItems?: number; max?: number; required?: boolean } = {}): string[] | undefined {
    const v = this.body[name];
    if (v === undefined) return rule.required ? this.fail(name, 'is required') : undefined;
    if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) return this.fail(name, 'must be an array of strings');
    const items = v as string[];
    if (items.length > (rule.maxItems ?? 100)) return this.fail(name, `must have at most ${rule.maxItems ?? 100} items`);
    if (items.some((s) => s.length > (rule.max ?? MAX_STRING))) return this.fail(name, `items must be at most ${rule.max ?? MAX_STRING} characters`);
    if (items.some((s) => s.includes('\u0000'))) return this.fail(name, 'items must not contain NUL characters');
    return items;
  }

  /** Throws the 422 when any field was wrong. */
  done(): void {
    if (this.errors.length) throw invalid(this.errors);
  }
}

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
