/**
 * Secrets at rest (docs/security.md): every secret a test handles — passwords, client secrets,
 * refresh tokens, codes, personal access tokens, TOTP secrets, mailed links — is recorded here by
 * the common helpers (server.ts, agent.ts, mailbox.ts, and the fetch wrapper below). Before a test
 * database is dropped and when a server stops, its full dump and its log are searched for each
 * secret recorded since the database was created, in every encoding a careless write could use;
 * what is found is kept for the root hook (secrets-scan-hooks.ts) to report at the end of the run
 * (mocha runs every file in this one process). Nothing is written to disk: a file of the run's
 * secrets would be secrets at rest of its own.
 */
import { existsSync } from 'node:fs';

import Database from 'better-sqlite3';
import pg from 'pg';

export type SecretKind = 'password' | 'client_secret' | 'refresh_token' | 'code' | 'device_code' | 'personal_access_token' | 'totp_secret' | 'mailed_link' | 'planted';

export interface Finding {
  kind: SecretKind;
  encoding: string;
  where: string;
  /** The secret's first characters, enough to find it in the registry. */
  prefix: string;
}

/** Shorter values (a TOTP code, a user code) would match by chance. */
const MIN_LENGTH = 12;
const recorded: { kind: SecretKind; value: string }[] = [];
const seen = new Set<string>();
/** Values a test also sent where nothing is secret (a form's name field): finding them proves nothing. */
const publicValues = new Set<string>();

/** Notes a value sent in a field that is not secret. */
export function recordPublic(value: unknown): void {
  if (typeof value === 'string' && value.length >= MIN_LENGTH) publicValues.add(value);
}

/** Records a secret the run used (ignored when short or already known). */
export function recordSecret(kind: SecretKind, value: unknown): void {
  if (typeof value !== 'string' || value.length < MIN_LENGTH || seen.has(value)) return;
  seen.add(value);
  recorded.push({ kind, value });
}

/** How many secrets are recorded so far: a database created now is searched for those after it. */
export const secretsMark = (): number => recorded.length;

/** The forms a secret takes when written raw, base64, base64url, URL-encoded or hex. */
export function encodings(value: string): [string, string][] {
  const bytes = Buffer.from(value, 'utf8');
  const forms: [string, string][] = [
    ['raw', value],
    ['base64', bytes.toString('base64')],
    ['base64url', bytes.toString('base64url')],
    ['url-encoded', encodeURIComponent(value)],
    ['form-encoded', new URLSearchParams({ v: value }).toString().slice(2)],
    ['hex', bytes.toString('hex')],
  ];
  // Padding differs with the surrounding bytes; the unpadded body is what shows.
  return forms.map(([name, text]) => [name, name === 'base64' ? text.replace(/=+$/, '') : text]);
}

/** Every recorded secret (from index `since`) found in `text`, in any of its encodings. */
export function findSecrets(text: string, where: string, secrets = recorded.slice(0)): Finding[] {
  const haystack = text.toLowerCase();
  const found: Finding[] = [];
  for (const { kind, value } of secrets) {
    if (publicValues.has(value)) continue;
    for (const [encoding, needle] of encodings(value)) {
      // Hex is case-insensitive; the others are not, but a lower-case match is rare enough to confirm on the original.
      if (haystack.includes(needle.toLowerCase()) && (encoding === 'hex' || text.includes(needle))) {
        found.push({ kind, encoding, where, prefix: value.slice(0, 6) });
        break;
      }
    }
  }
  return found;
}

/** Every row of every table of a database, as text by table (binary columns as UTF-8 and as hex). */
export async function dumpDatabase(url: string): Promise<Map<string, string>> {
  const cell = (v: unknown) => (Buffer.isBuffer(v) ? `${v.toString('utf8')} ${v.toString('hex')}` : typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v));
  const dump = new Map<string, string>();
  const add = (table: string, row: Record<string, unknown>) => dump.set(table, `${dump.get(table) ?? ''}${Object.values(row).map(cell).join(' | ')}\n`);
  if (/^postgres(ql)?:\/\//.test(url)) {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const tables = await client.query<{ name: string }>(`select table_schema || '.' || table_name as name from information_schema.tables where table_schema not in ('pg_catalog', 'information_schema') and table_type = 'BASE TABLE'`);
      for (const { name } of tables.rows) {
        const rows = await client.query(`select * from ${name.split('.').map((p) => `"${p}"`).join('.')}`);
        for (const row of rows.rows as Record<string, unknown>[]) add(name.replace(/^public\./, ''), row);
      }
    } finally {
      await client.end();
    }
  } else {
    const file = url.replace(/^sqlite:/, '');
    if (!existsSync(file)) return dump;
    const db = new Database(file, { readonly: true, fileMustExist: true });
    try {
      const tables = db.prepare(`select name from sqlite_master where type = 'table'`).all() as { name: string }[];
      for (const { name } of tables) {
        for (const row of db.prepare(`select * from "${name}"`).all() as Record<string, unknown>[]) add(name, row);
      }
    } finally {
      db.close();
    }
  }
  return dump;
}

const found: Finding[] = [];
function report(findings: Finding[]): void {
  found.push(...findings);
}

/** Searches a database about to be dropped for the secrets recorded since `mark`. */
export async function scanDatabase(url: string, mark: number, label = url.replace(/\/\/[^@]*@/, '//')): Promise<Finding[]> {
  const secrets = recorded.slice(mark);
  const found = [...(await dumpDatabase(url))].flatMap(([table, text]) => findSecrets(text, `table ${table} of database ${label}`, secrets));
  report(found);
  return found;
}

/** Searches a server's log for the secrets recorded since `mark`. */
export function scanLog(text: string, mark: number, label: string): Finding[] {
  const found = findSecrets(text, `log of ${label}`, recorded.slice(mark));
  report(found);
  return found;
}

/** What the scans of the run found so far. */
export function findings(): Finding[] {
  return [...found];
}

/** Secrets that show in a response a test reads: tokens from JSON, codes from redirects, PATs and TOTP secrets from pages. */
export function recordFromResponse(url: string, location: string | null, body: string | undefined): void {
  if (location) {
    try {
      const at = new URL(location, url);
      recordSecret('code', at.searchParams.get('code'));
      recordSecret('mailed_link', at.searchParams.get('token') ? at.toString() : undefined);
    } catch {
      // Not a URL: nothing to record.
    }
  }
  if (!body) return;
  if (body.startsWith('{')) {
    try {
      const json = JSON.parse(body) as Record<string, unknown>;
      recordSecret('refresh_token', json.refresh_token);
      recordSecret('device_code', json.device_code);
      recordSecret('client_secret', json.client_secret);
      const data = json.data as Record<string, unknown> | undefined;
      recordSecret('client_secret', data?.client_secret);
    } catch {
      // Not JSON after all.
    }
  }
  for (const m of body.matchAll(/\blat_[A-Za-z0-9_-]{20,}/g)) recordSecret('personal_access_token', m[0]);
  for (const m of body.matchAll(/otpauth:\/\/totp\/[^"'\s<]*?[?&;]secret=([A-Z2-7]+)/gi)) recordSecret('totp_secret', m[1]);
  for (const m of body.matchAll(/id="totp-secret">([A-Z2-7]+)</g)) recordSecret('totp_secret', m[1]);
}

const originalFetch = globalThis.fetch;
/** Wraps fetch once for the process, so every response a test reads feeds the registry. */
if (!(originalFetch as { latchRecording?: boolean }).latchRecording) {
  const recording = async (input: Parameters<typeof fetch>[0], init?: Parameters<typeof fetch>[1]): Promise<Response> => {
    const res = await originalFetch(input, init);
    const type = res.headers.get('content-type') ?? '';
    const body = /json|html/.test(type) ? await res.clone().text() : undefined;
    recordFromResponse(res.url || String(input), res.headers.get('location'), body);
    return res;
  };
  globalThis.fetch = Object.assign(recording, { latchRecording: true }) as typeof fetch;
}
