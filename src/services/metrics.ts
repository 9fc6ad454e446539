import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';

import { poolFigures } from '../db/driver.js';
import type { Db } from '../db/knex.js';
import type { RequestObservation } from '../middleware/request.js';
import type { BackchannelLogoutResult } from './backchannel-logout.js';
import { createCounterSeries, createHttpSeries } from './metric-series.js';

export type LoginResult = 'success' | 'invalid_credentials' | 'inactive' | 'unverified';

/**
 * Prometheus metrics of one server, on its own Registry (never prom-client's global one, so
 * several servers in one process do not clash). Every series is prefixed `latch_`; label values
 * come from bounded sets (route names, status codes, grant types, registered client ids).
 */
export function createMetrics(deps: { db: Db }) {
  const registry = new Registry();
  const registers = [registry];

  // Process metrics, heap, GC and event-loop lag (latch_nodejs_eventloop_lag_seconds, …).
  collectDefaultMetrics({ register: registry, prefix: 'latch_' });

  // latch_http_requests_total and latch_http_request_duration_seconds (metric-series.ts).
  const http = createHttpSeries(registry);
  // Counted on every token response: a plain series too (metric-series.ts).
  const tokensIssued = createCounterSeries(registry, {
    name: 'latch_tokens_issued_total',
    help: 'Successful token endpoint responses by grant type and client.',
    labelNames: ['grant_type', 'client_id'] as const,
  });
  const logins = new Counter({
    name: 'latch_logins_total',
    help: 'Password logins on the login page by result.',
    labelNames: ['result'] as const,
    registers,
  });
  for (const result of ['success', 'invalid_credentials', 'inactive', 'unverified'] satisfies LoginResult[]) logins.inc({ result }, 0);
  // Incremented by the rate limiters (services/rate-limits.ts, login-guard.ts) for each refused
  // request; a limiter's series appears with its first refusal.
  const rateLimitRejections = new Counter({
    name: 'latch_rate_limit_rejections_total',
    help: 'Requests rejected by a rate limiter, by limiter.',
    labelNames: ['limiter'] as const,
    registers,
  });

  // The mail queue (services/mail-queue.ts): mails queued, sent, retried (an attempt failed and
  // another is scheduled) and failed (given up after retrying an hour).
  const mails = new Counter({
    name: 'latch_mails_total',
    help: 'Mails by queue event: queued, sent, retried (an attempt failed), failed (given up).',
    labelNames: ['event'] as const,
    registers,
  });
  for (const event of ['queued', 'sent', 'retried', 'failed']) mails.inc({ event }, 0);
  const sources = { mailPending: undefined as (() => Promise<number>) | undefined, rateLimitStoreDegraded: () => false };
  new Gauge({
    name: 'latch_mail_queue_pending',
    help: 'Mails in the queue not yet sent (shared by every process on the database).',
    registers,
    async collect() {
      this.set(sources.mailPending ? await sources.mailPending().catch(() => 0) : 0);
    },
  });
  // Rate limits on a shared store (Redis, the database) fail open to per-process counters.
  const rateLimitStoreErrors = new Counter({
    name: 'latch_rate_limit_store_errors_total',
    help: 'Rate-limit operations that failed on the shared store and were counted in this process instead.',
    registers,
  });
  new Gauge({
    name: 'latch_rate_limit_store_degraded',
    help: '1 while the shared rate-limit store fails and limits are per process (fail open), else 0.',
    registers,
    collect() {
      this.set(sources.rateLimitStoreDegraded() ? 1 : 0);
    },
  });
  // One per back-channel logout attempt (services/backchannel-logout.ts): delivered, retry (a
  // failure to be tried again), failed (refused by the client, or its last attempt failed).
  const backchannelLogouts = new Counter({
    name: 'latch_backchannel_logout_total',
    help: 'Back-channel logout delivery attempts by result.',
    labelNames: ['result'] as const,
    registers,
  });
  for (const result of ['delivered', 'retry', 'failed'] satisfies BackchannelLogoutResult[]) backchannelLogouts.inc({ result }, 0);

  const pool = () => poolFigures(deps.db);
  new Gauge({
    name: 'latch_db_pool_used_connections',
    help: 'Database connections in use (knex pool).',
    registers,
    collect() {
      this.set(pool()?.numUsed() ?? 0);
    },
  });
  new Gauge({
    name: 'latch_db_pool_free_connections',
    help: 'Idle database connections (knex pool).',
    registers,
    collect() {
      this.set(pool()?.numFree() ?? 0);
    },
  });
  new Gauge({
    name: 'latch_db_pool_pending_acquires',
    help: 'Queries waiting for a database connection (knex pool).',
    registers,
    collect() {
      this.set(pool()?.numPendingAcquires() ?? 0);
    },
  });

  return {
    registry,
    contentType: registry.contentType,
    /** The exposition text for GET /metrics. */
    render: () => registry.metrics(),
    /** Fed by the first middleware (middleware/request.ts) once per response. */
    observeRequest(o: RequestObservation) {
      http.observe(o.method, o.route, o.status, o.seconds);
    },
    recordLogin(result: LoginResult) {
      logins.inc({ result });
    },
    /**
     * One successful token endpoint response (counted once its tokens are stored: a redemption
     * that loses to a concurrent one at the final write is not an issuance).
     */
    recordTokenIssued(grantType: unknown, clientId: string | undefined) {
      tokensIssued.inc(typeof grantType === 'string' ? grantType : 'unknown', clientId ?? 'unknown');
    },
    /** Fed by services.rateLimits.onRejection (wired in server.ts). */
    rateLimitRejections,
    /** Fed by services.rateLimits.onStoreError (wired in server.ts). */
    rateLimitStoreErrors,
    /** Fed by services.mailer.onEvent (wired in server.ts). */
    mails,
    /** Where the gauges read the queue length and the store's state (set in server.ts). */
    sources,
    /** Fed by the back-channel logout worker (wired in server.ts). */
    backchannelLogouts,
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
