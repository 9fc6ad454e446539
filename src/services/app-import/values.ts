import { canonicalId } from '../../lib/ids.js';

/** A row as a source gives it: flat columns (SQL) or a document (jsonl). */
export type SourceRow = Record<string, unknown>;

const hexUuid = (hex: string) => `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;

/**
 * MongoDB Extended JSON (canonical and relaxed, as mongoexport writes it) to plain values:
 * `$oid` → its hex, `$date` → an ISO string, `$numberInt/$numberLong/$numberDouble` → a number
 * (a long beyond 2^53 stays its decimal string), `$binary` subtype 4 (and `$uuid`) → a UUID.
 */
export function fromExtendedJson(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(fromExtendedJson);
  if (value === null || typeof value !== 'object' || value instanceof Date || Buffer.isBuffer(value)) return value;
  const o = value as Record<string, unknown>;
  const keys = Object.keys(o);
  if (keys.length === 1) {
    const [key] = keys;
    const v = o[key!];
    switch (key) {
      case '$oid':
        return typeof v === 'string' ? v.toLowerCase() : v;
      case '$date': {
        const inner = fromExtendedJson(v);
        const d = typeof inner === 'number' ? new Date(inner) : typeof inner === 'string' ? new Date(inner) : undefined;
        return d && !Number.isNaN(d.getTime()) ? d.toISOString() : inner;
      }
      case '$numberInt':
      case '$numberDouble':
        return typeof v === 'string' ? Number(v) : v;
      case '$numberLong': {
        if (typeof v !== 'string') return v;
        const n = Number(v);
        return Number.isSafeInteger(n) ? n : v;
      }
      case '$uuid':
        return typeof v === 'string' ? v.toLowerCase() : v;
      case '$binary':
        if (v && typeof v === 'object') {
          const b = v as { base64?: unknown; subType?: unknown };
          return binary(b.base64, b.subType);
        }
        break;
      default:
    }
  }
  // The legacy form: {"$binary": "<base64>", "$type": "04"}.
  if (keys.length === 2 && '$binary' in o && '$type' in o) return binary(o.$binary, o.$type);
  return Object.fromEntries(keys.map((k) => [k, fromExtendedJson(o[k])]));
}

function binary(base64: unknown, subType: unknown): unknown {
  if (typeof base64 !== 'string') return base64;
  const bytes = Buffer.from(base64, 'base64');
  if ((subType === '04' || subType === '4' || subType === 4) && bytes.length === 16) return hexUuid(bytes.toString('hex'));
  return base64;
}

/**
 * A column of a row: the column itself when the row has it, else a dotted path into a document
 * (`_id.$oid`), read before Extended JSON is decoded so that `$`-keys can be named.
 */
export function column(row: SourceRow, name: string | undefined): unknown {
  if (name === undefined) return undefined;
  if (Object.hasOwn(row, name)) return fromExtendedJson(row[name]);
  let at: unknown = row;
  for (const part of name.split('.')) {
    if (at === null || typeof at !== 'object' || !Object.hasOwn(at, part)) return undefined;
    at = (at as Record<string, unknown>)[part];
  }
  return fromExtendedJson(at);
}

/** An id as Latch keeps it (lib/ids.ts), from a string, an integer or 16 UUID bytes; undefined otherwise. */
export function idValue(value: unknown): string | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? String(value) : undefined;
  if (typeof value === 'bigint') return value >= 0n ? value.toString() : undefined;
  if (Buffer.isBuffer(value)) return value.length === 16 ? hexUuid(value.toString('hex')) : undefined;
  if (typeof value === 'string') {
    const s = value.trim();
    // SQLAlchemy's Uuid type on SQLite may store 32 hex digits without dashes.
    if (/^[0-9a-f]{32}$/i.test(s)) return hexUuid(s.toLowerCase());
    return canonicalId(s);
  }
  return undefined;
}

/** A plain-text value (column of text, a number shown as text); undefined when absent or empty. */
export function textValue(value: unknown): string | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value === 'string') return value.trim() === '' ? undefined : value;
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  return undefined;
}

/** A flag: SQL booleans, SQLite's 0/1, and their text forms; `fallback` when absent. Undefined: not a flag. */
export function boolValue(value: unknown, fallback: boolean): boolean | undefined {
  if (value === null || value === undefined) return fallback;
  if (typeof value === 'boolean') return value;
  if (typeof value === 'number' || typeof value === 'bigint') return Number(value) !== 0;
  if (typeof value === 'string') {
    const s = value.trim().toLowerCase();
    if (['1', 'true', 't', 'yes'].includes(s)) return true;
    if (['0', 'false', 'f', 'no'].includes(s)) return false;
  }
  return undefined;
}

/**
 * A point in time as an ISO string: a Date, an ISO or SQL text (without a zone: UTC, as
 * SQLAlchemy writes it), epoch seconds or milliseconds. null when absent, undefined when unreadable.
 */
export function timeValue(value: unknown): string | null | undefined {
  if (value === null || value === undefined || value === '') return null;
  let d: Date | undefined;
  if (value instanceof Date) d = value;
  else if (typeof value === 'number') d = new Date(value < 1e11 ? value * 1000 : value);
  else if (typeof value === 'string') {
    const s = value.trim();
    d = new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(s) || !/\d:\d/.test(s) ? s : `${s.replace(' ', 'T')}Z`);
  }
  return d && !Number.isNaN(d.getTime()) ? d.toISOString() : undefined;
}
