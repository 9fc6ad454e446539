import { parseArgs, type ParseArgsConfig } from 'node:util';

import type { Config } from '../config/index.js';
import type { Db } from '../db/knex.js';
import { UsageError } from '../errors/index.js';
import type { Services } from '../services/index.js';

/** Bad usage: printed as one line, exit code 2. */
export { UsageError };

type Options = NonNullable<ParseArgsConfig['options']>;
/** `note` writes one line to stderr: advice that must not mix into the JSON on stdout. */
export type Handler = (ctx: { args: string[]; services: Services; db: Db; config: Config; env: Record<string, string | undefined>; note: (line: string) => void }) => Promise<unknown>;

export interface Command {
  usage: string;
  /** Runs without migrating first (only `migrate` itself). */
  raw?: boolean;
  /** Sets the recorded issuer itself: runs whatever ISSUER says (only `issuer set`). */
  ownIssuer?: boolean;
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

/** Optimal string alignment distance (Damerau–Levenshtein with adjacent transpositions). */
export function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

/** The known flag closest to `name`, when it is close enough to be a typo (a third of its length, at least 2). */
export function closestFlag(name: string, known: readonly string[]): string | undefined {
  let best: { flag: string; distance: number } | undefined;
  for (const flag of known) {
    const distance = editDistance(name, flag);
    if (!best || distance < best.distance) best = { flag, distance };
  }
  return best && best.distance <= Math.max(2, Math.floor(name.length / 3)) ? best.flag : undefined;
}

/** Marks an argument as positional for parseArgs; removed again from the parsed positionals. */
const POSITIONAL = '\u0000';

/**
 * Every flag of this CLI is long (`--name`), so an argument with a single leading dash is a value:
 * a key id is an RFC 7638 thumbprint and may begin with `-` (`latch keys retire -Xy…`). Such an
 * argument, when no flag takes it as its value, is marked positional. Ids beginning with `--`
 * follow the usual `--` terminator (`latch keys retire -- --Xy…`).
 */
function markDashPositionals(args: string[]): string[] {
  const end = args.indexOf('--');
  return args.map((a, i) => ((end === -1 || i < end) && /^-[^-]/.test(a) ? `${POSITIONAL}${a}` : a));
}

export function parse<O extends Options>(args: string[], options: O, usage: string) {
  try {
    const parsed = parseArgs({ args: markDashPositionals(attachDashValues(args, options)), options, strict: true, allowPositionals: true });
    parsed.positionals = parsed.positionals.map((p) => (p.startsWith(POSITIONAL) ? p.slice(1) : p));
    return parsed;
  } catch (err) {
    const e = err as Error & { code?: string };
    const unknown = e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? /'(-[^'=]*)/.exec(e.message)?.[1] : undefined;
    if (unknown !== undefined) {
      const suggestion = closestFlag(unknown.replace(/^-+/, ''), Object.keys(options));
      throw new UsageError(`unknown flag ${unknown}${suggestion ? `; did you mean --${suggestion}?` : ''} (usage: latch ${usage})`);
    }
    throw new UsageError(`${e.message.split('\n')[0]} (usage: latch ${usage})`);
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
/**
 * On/off flags of commands that change something (`clients update`): `--X` and `--X=true` turn it
 * on, `--no-X` and `--X=false` off; declared as string options and read with `bool`, so a flag
 * not given stays undefined (unchanged). Rewrites `--X` and `--no-X` of the named flags to `--X=…`.
 */
export function expandToggles(args: string[], names: readonly string[]): string[] {
  const end = args.indexOf('--');
  return args.map((a, i) => {
    if (end !== -1 && i > end) return a;
    const name = a.startsWith('--') && !a.includes('=') ? a.slice(2) : undefined;
    if (name && names.includes(name)) return `${a}=true`;
    if (name?.startsWith('no-') && names.includes(name.slice(3))) return `--${name.slice(3)}=false`;
    return a;
  });
}

export const integer = (v: unknown, flag: string): number | undefined => {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !/^\d+$/.test(v)) throw new UsageError(`--${flag} must be a whole number (got "${String(v)}")`);
  return Number(v);
};

