import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import type Koa from 'koa';
import { parse } from 'yaml';

import type { FieldError } from '../errors/index.js';
import { ROOT } from '../lib/paths.js';
import { invalid, readJson } from './api-problem.js';

/** openapi.yaml at the package root (found from src/ under tsx and from dist/src/ when compiled). */
export const OPENAPI_FILE = join(ROOT, 'openapi.yaml');

/** The contract's bytes (served as they are at /api/openapi.yaml) and its parsed document. */
export function loadOpenApi(): { bytes: Buffer; doc: OpenApiDoc } {
  const bytes = readFileSync(OPENAPI_FILE);
  return { bytes, doc: parse(bytes.toString('utf8')) as OpenApiDoc };
}

export interface OpenApiDoc {
  paths: Record<string, Record<string, { requestBody?: { content?: Record<string, { schema?: unknown }> } }>>;
  components?: unknown;
}

type Schema = Record<string, unknown>;

/** A request body that passed its operation's schema, and the field errors found (empty when valid). */
export interface CheckedBody<T> {
  body: T;
  errors: FieldError[];
}

export interface BodyValidators {
  /**
   * Reads the JSON body of the request and checks it against the request-body schema that
   * openapi.yaml gives the operation this route serves. Answers every field error rather than
   * throwing, so that the route can add the errors only it can find (an unknown user id) to
   * one 422.
   */
  check<T = Record<string, unknown>>(ctx: Koa.Context): Promise<CheckedBody<T>>;
  /** As `check`, throwing the 422 when a field is wrong. */
  read<T = Record<string, unknown>>(ctx: Koa.Context): Promise<T>;
}

const esc = (s: string) => s.replace(/~/g, '~0').replace(/\//g, '~1');

/** `/api/v1/users/:id` (the router's pattern) → `/api/v1/users/{id}` (openapi.yaml's template). */
const templateOf = (pattern: string) => pattern.replace(/:([A-Za-z_]+)/g, '{$1}');

const listed = (values: unknown[]) => {
  const words = values.map(String);
  return words.length > 1 ? `${words.slice(0, -1).join(', ')} or ${words[words.length - 1]}` : (words[0] ?? '');
};

/** What a JSON type is called in a message. */
const TYPE_WORDS: Record<string, string> = { string: 'a string', boolean: 'true or false', integer: 'a whole number', number: 'a number', array: 'an array of strings', object: 'an object' };

/** One Ajv error as the 422 names it: the top-level field, and what is wrong with it. */
function fieldErrorOf(e: ErrorObject): FieldError | undefined {
  // The branches of a oneOf fail as a matter of course; the oneOf error itself says what is wrong.
  if (e.schemaPath.includes('/oneOf/')) return undefined;
  const [top, ...rest] = e.instancePath.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  const inItem = rest.length > 0;
  const params = e.params as Record<string, unknown>;
  const parent = (e.parentSchema ?? {}) as Schema;
  switch (e.keyword) {
    case 'required':
      return { field: String(params.missingProperty), message: 'is required' };
    case 'additionalProperties':
      return { field: String(params.additionalProperty), message: 'is not a known field' };
    case 'type': {
      if (!top) return { field: 'body', message: 'must be a JSON object' };
      // An item of the wrong type: the field is not the array of strings it must be.
      if (inItem) return { field: top, message: 'must be an array of strings' };
      const types = (Array.isArray(params.type) ? params.type : String(params.type).split(',')).filter((t) => t !== 'null');
      return { field: top, message: `must be ${types.map((t) => TYPE_WORDS[t] ?? t).join(' or ')}` };
    }
    case 'maxLength':
      return { field: top!, message: `${inItem ? 'items' : ''}${inItem ? ' ' : ''}must be at most ${String(params.limit)} characters` };
    case 'minLength':
      return { field: top!, message: `${inItem ? 'items' : ''}${inItem ? ' ' : ''}must be at least ${String(params.limit)} characters` };
    case 'maxItems':
      return { field: top!, message: `must have at most ${String(params.limit)} items` };
    case 'minItems':
      return { field: top!, message: `must have at least ${String(params.limit)} item${params.limit === 1 ? '' : 's'}` };
    case 'minimum':
    case 'maximum':
      return { field: top!, message: parent.minimum !== undefined && parent.maximum !== undefined ? `must be between ${String(parent.minimum)} and ${String(parent.maximum)}` : `must be ${e.keyword === 'minimum' ? 'at least' : 'at most'} ${String(params.limit)}` };
    case 'enum':
      return { field: top!, message: `${inItem ? 'items must' : 'must'} be ${listed(params.allowedValues as unknown[])}` };
    case 'oneOf': {
      // "Exactly one of": the alternatives are the `required` lists of the branches.
      const names = ((parent.oneOf ?? []) as Schema[]).flatMap((b) => (Array.isArray(b.required) ? (b.required as string[]) : []));
      return { field: names[0] ?? top ?? 'body', message: `give exactly one of ${listed(names)}` };
    }
    case 'pattern':
      // A value's format is the service's to judge (it names what is wrong; the CLI relies on
      // the same check), so a pattern of the contract adds no message of its own.
      return undefined;
    default:
      return { field: top ?? 'body', message: e.message ?? 'is not valid' };
  }
}

/** Rules no schema states: PostgreSQL text cannot hold NUL, and a required string is not blank. */
function contentErrors(body: Record<string, unknown>, schema: Schema | undefined): FieldError[] {
  const errors: FieldError[] = [];
  const required = new Set(Array.isArray(schema?.required) ? (schema.required as string[]) : []);
  for (const [field, v] of Object.entries(body)) {
    if (typeof v === 'string' && v.includes('\u0000')) errors.push({ field, message: 'must not contain NUL characters' });
    else if (typeof v === 'string' && required.has(field) && !v.trim()) errors.push({ field, message: 'must not be empty' });
    else if (Array.isArray(v) && v.some((s) => typeof s === 'string' && s.includes('\u0000'))) errors.push({ field, message: 'items must not contain NUL characters' });
  }
  return errors;
}

/** Every string and array of a request schema is bounded: a body can never reach the database unchecked. */
function assertBounded(node: unknown, where: string, resolve: (ref: string) => unknown): void {
  if (!node || typeof node !== 'object') return;
  const s = node as Schema;
  if (typeof s.$ref === 'string') return assertBounded(resolve(s.$ref), `${where} → ${s.$ref}`, resolve);
  const types = Array.isArray(s.type) ? (s.type as string[]) : [s.type];
  if (types.includes('string') && s.maxLength === undefined && s.enum === undefined) throw new Error(`openapi.yaml: ${where} is a string without maxLength`);
  if (types.includes('array') && s.maxItems === undefined) throw new Error(`openapi.yaml: ${where} is an array without maxItems`);
  for (const [k, v] of Object.entries((s.properties ?? {}) as Record<string, unknown>)) assertBounded(v, `${where}.${k}`, resolve);
  if (s.items) assertBounded(s.items, `${where}[]`, resolve);
  for (const key of ['allOf', 'anyOf', 'oneOf'] as const) for (const sub of (s[key] ?? []) as unknown[]) assertBounded(sub, where, resolve);
}

/**
 * The admin API's request bodies, validated by the request-body schemas of openapi.yaml (RFC
 * 9457 422 problems with every offending field), compiled once when the server starts: the
 * contract and the code cannot disagree. Formats (patterns, URIs, the password policy) and rules
 * that need the database stay with the services and the routes.
 */
export function createBodyValidators(doc: OpenApiDoc): BodyValidators {
  const ajv = new Ajv2020({ strict: false, allErrors: true, verbose: true });
  (addFormats as unknown as (a: Ajv2020) => void)(ajv);
  ajv.addSchema(doc as object, 'openapi');
  const resolve = (ref: string) => ref.slice(2).split('/').map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~')).reduce<unknown>((n, k) => (n as Record<string, unknown> | undefined)?.[k], doc);

  const validators = new Map<string, { validate: ValidateFunction; schema: Schema | undefined }>();
  for (const [template, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const schema = op?.requestBody?.content?.['application/json']?.schema as Schema | undefined;
      if (!schema) continue;
      const key = `${method.toUpperCase()} ${template}`;
      assertBounded(schema, key, resolve);
      const pointer = `openapi#/paths/${esc(template)}/${method}/requestBody/content/application~1json/schema`;
      const top = (typeof schema.$ref === 'string' ? resolve(schema.$ref) : schema) as Schema | undefined;
      validators.set(key, { validate: ajv.compile({ $ref: pointer }), schema: top });
    }
  }

  async function check<T>(ctx: Koa.Context): Promise<CheckedBody<T>> {
    const pattern = (ctx as Koa.Context & { _matchedRoute?: string | RegExp })._matchedRoute;
    const key = `${ctx.method} ${templateOf(String(pattern))}`;
    const entry = validators.get(key);
    if (!entry) throw new Error(`openapi.yaml has no request body for ${key}`);
    const body = await readJson(ctx);
    const found = entry.validate(body) ? [] : (entry.validate.errors ?? []).map(fieldErrorOf).filter((e): e is FieldError => e !== undefined);
    // One error per field, the first found (a field's type error says everything).
    const errors: FieldError[] = [];
    for (const e of [...found, ...contentErrors(body, entry.schema)]) if (!errors.some((x) => x.field === e.field)) errors.push(e);
    return { body: body as T, errors };
  }

  return {
    check,
    async read<T>(ctx: Koa.Context): Promise<T> {
      const { body, errors } = await check<T>(ctx);
      if (errors.length) throw invalid(errors);
      return body;
    },
  };
}
