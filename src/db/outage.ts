import { DatabaseUnavailableError } from './connect.js';

/**
 * Which failures of a query mean "the database is not serving right now" rather than "this query
 * is wrong": the caller gets 503 (try again later) instead of 500, and nothing is retried here.
 * Driver and SQLSTATE knowledge stays in db/; routes, middleware and the provider receive this
 * function as a dependency.
 */

/** Socket-level failures of node-postgres (the server went away or cannot be reached). */
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/**
 * PostgreSQL SQLSTATEs (Appendix A of its manual): class 08 connection exception, 53300
 * too_many_connections, 57P01–57P03 the server shutting down, crashed or starting up, 57014
 * query_canceled (the statement timeout fired) and 55P03 lock_not_available (lock_timeout).
 */
const UNAVAILABLE_SQLSTATE = /^(08...|53300|57P0[123]|57014|55P03)$/;

/** node-postgres reports a connection lost mid-query or unusable by message only. */
const LOST_CONNECTION = /^(Connection terminated|Client has encountered a connection error|Query read timeout|timeout exceeded when trying to connect)/;

function unavailableReason(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const { code, name, message } = err as { code?: unknown; name?: unknown; message?: unknown };
  // Knex: no connection from the pool within acquireConnectionTimeout.
  if (name === 'KnexTimeoutError') return 'no database connection within the timeout';
  if (typeof code === 'string') {
    if (NETWORK_CODES.has(code)) return `database connection failed (${code})`;
    if (UNAVAILABLE_SQLSTATE.test(code)) return code === '57014' ? 'database statement timed out' : `database not serving (SQLSTATE ${code})`;
    // SQLite: another writer held the lock past busy_timeout.
    if (code === 'SQLITE_BUSY') return 'database busy';
  }
  if (typeof message === 'string' && LOST_CONNECTION.test(message)) return 'database connection lost';
  return undefined;
}

/**
 * The error as a DatabaseUnavailableError (503) when it means the database is down, unreachable
 * or too slow; undefined for every other error. Follows `cause` (an error wrapped by a caller).
 */
export function databaseOutage(err: unknown): DatabaseUnavailableError | undefined {
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof DatabaseUnavailableError) return e;
    const reason = unavailableReason(e);
    if (reason) return new DatabaseUnavailableError(reason);
  }
  return undefined;
}

/** Recognises a database outage in any error; injected into the layers that render errors. */
export type OutageCheck = (err: unknown) => DatabaseUnavailableError | undefined;
