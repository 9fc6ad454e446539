/** Current time as an ISO string: portable to SQLite (which cannot bind Date) and PostgreSQL. */
export function nowIso(): string {
  return new Date().toISOString();
}

/** Current time in whole seconds since the epoch: the unit of oidc-provider's `exp`/`iat`. */
export function epochSeconds(): number {
  return Math.floor(Date.now() / 1000);
}
