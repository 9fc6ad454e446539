import type { DatabaseConfig } from '../config/schema.js';
import { AppError } from '../errors/index.js';
import type { Db } from './knex.js';

/**
 * The database cannot be reached or refuses the login. The message names where Latch tried to
 * connect (host, port, database — never the password) and why, in one line.
 */
export class DatabaseUnavailableError extends AppError {
  constructor(message: string) {
    super(503, 'database_unavailable', message);
  }
}

const NETWORK_REASONS: Record<string, string> = {
  ECONNREFUSED: 'connection refused (nothing listens on that port)',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
  ETIMEDOUT: 'connection timed out',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ECONNRESET: 'connection reset by the server',
};

/** PostgreSQL SQLSTATEs of a refused login (class 28) or a missing database (3D000). */
const LOGIN_REFUSED = /^(28|3D)/;

/** Where a postgres:// URL points: host, port and database, as libpq resolves their defaults. */
export function postgresTarget(connectionString: string): { host: string; port: string; database: string } {
  const url = new URL(connectionString);
  const user = decodeURIComponent(url.username) || 'postgres';
  return {
    host: url.searchParams.get('host') ?? (url.hostname || 'localhost'),
    port: url.searchParams.get('port') ?? (url.port || '5432'),
    database: decodeURIComponent(url.pathname.slice(1)) || user,
  };
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]!;
}

/** Translates a failed first connection into DatabaseUnavailableError; other errors pass through. */
export function explainConnectionError(err: unknown, database: DatabaseConfig): unknown {
  const code = (err as { code?: unknown }).code;
  if (database.client === 'pg') {
    const { host, port, database: name } = postgresTarget(database.connectionString);
    const where = `host ${host}, port ${port}, database "${name}"`;
    if (typeof code === 'string' && LOGIN_REFUSED.test(code)) {
      return new DatabaseUnavailableError(`PostgreSQL at ${where} refused the connection: ${firstLine(err)}`);
    }
    const reason = typeof code === 'string' ? NETWORK_REASONS[code] : undefined;
    const timedOut = (err as Error).name === 'KnexTimeoutError';
    if (reason || timedOut) return new DatabaseUnavailableError(`cannot connect to PostgreSQL at ${where}: ${reason ?? 'no connection within the timeout'}${reason ? ` (${String(code)})` : ''}`);
    return err;
  }
  if (typeof code === 'string' && code.startsWith('SQLITE_')) {
    return new DatabaseUnavailableError(`cannot open the SQLite database ${database.filename}: ${firstLine(err)} (${code})`);
  }
  return err;
}

/**
 * Opens the first connection before anything else runs, so an unreachable database stops the
 * process with one line naming the cause rather than a driver's stack trace.
 */
export async function connectDatabase(db: Db, database: DatabaseConfig): Promise<void> {
  try {
    await db.raw('select 1');
  } catch (err) {
    throw explainConnectionError(err, database);
  }
}
