import { parseArgs, type ParseArgsConfig } from 'node:util';

import type { Config } from '../config/index.js';
import type { Db } from '../db/knex.js';
import { UsageError } from '../errors/index.js';
import type { Services } from '../services/index.js';

/** Bad usage: printed as one line, exit code 2. */
export { UsageError };

type Options = NonNullable<ParseArgsConfig['options']>;
export type Handler = (ctx: { args: string[]; services: Services; db: Db; config: Config }) => Promise<unknown>;

export interface Command {
  usage: string;
  /** Runs without migrating first (only `migrate` itself). */
  raw?: boolean;
  run: Handler;
}

/**
 * `--flag VALUE` where VALUE starts with a dash (a generated client id such as `-y9…`) becomes
 * `--flag=VALUE`, which parseArgs would otherwise refuse as ambiguous. A following known flag
 * is never taken as a value.
 */
function attachDashValues(args: string[], options: Options): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const next = args[i + 1];
    const name = arg.startsWith('--') && !arg.includes('=') ? arg.slice(2) : undefined;
    const knownFlag = (a: string) => a.startsWith('--') && a.slice(2).split('=')[0]! in options;
    if (name && options[name]?.type === 'string' && next !== undefined && next.startsWith('-') && !knownFlag(next)) {
      out.push(`${arg}=${next}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}

export function parse<O extends Options>(args: string[], options: O, usage: string) {
  try {
    return parseArgs({ args: attachDashValues(args, options), options, strict: true, allowPositionals: true });
  } catch (err) {
    throw new UsageError(`${(err as Error).message.split('\n')[0]} (usage: latch ${usage})`);
  }
}

export const list = (v: unknown): string[] => (Array.isArray(v) ? (v as string[]) : typeof v === 'string' ? [v] : []);
export const required = (v: unknown, flag: string, usage: string): string => {
  if (typeof v !== 'string' || v.trim() === '') throw new UsageError(`--${flag} is required (usage: latch ${usage})`);
  return v;
};
export const bool = (v: unknown, flag: string): boolean | undefined => {
  if (v === undefined) return undefined;
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw new UsageError(`--${flag} must be true or false (got "${String(v)}")`);
};
export const integer = (v: unknown, flag: string): number | undefined => {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !/^\d+$/.test(v)) throw new UsageError(`--${flag} must be a whole number (got "${String(v)}")`);
  return Number(v);
};

