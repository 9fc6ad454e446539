import type { Logger } from '../lib/logger.js';
import type { BackchannelLogoutEntry, BackchannelLogoutRow, BackchannelLogoutsRepository } from '../repositories/backchannel-logouts.js';
import type { Payload } from '../repositories/provider-state.js';
import type { Transaction } from '../repositories/transaction.js';

/**
 * When each attempt of a back-channel logout is made, in milliseconds after the logout: at once,
 * then for at least ten minutes, so a relying party restarting or deploying still hears of it.
 * Each attempt signs a fresh logout token, so the last one is as valid as the first.
 */
export const BACKCHANNEL_LOGOUT_SCHEDULE_MS: readonly number[] = [0, 10_000, 30_000, 60_000, 120_000, 300_000, 600_000];
/** One POST, connection to answer (OIDC Back-Channel Logout 1.0 §2.5 leaves the timeout to the OP). */
export const BACKCHANNEL_LOGOUT_TIMEOUT_MS = 5_000;
/**
 * How long a claimed row belongs to the instance that claimed it: longer than an attempt can
 * take (timeout plus signing), after which another instance takes it up (the first one died).
 */
const CLAIM_LEASE_MS = 60_000;
/** How often each process looks for due deliveries. */
const POLL_MS = 1_000;
/** Deliveries in flight per process, halved while requests keep the event loop busy. */
const BATCH = { max: 16, min: 1 };

export type BackchannelLogoutResult = 'delivered' | 'retry' | 'failed';

/** A signed logout token and where it goes; undefined when the client is gone or no longer registered for it. */
export type LogoutTokenSigner = (row: Pick<BackchannelLogoutRow, 'clientId' | 'sub' | 'sid'>) => Promise<{ uri: string; token: string } | undefined>;

type Authorizations = Record<string, { sid?: unknown }>;

/** What ending these sessions must tell: one entry per application signed in through each (its per-client `sid`). */
export function logoutEntriesOf(sessions: readonly Payload[]): BackchannelLogoutEntry[] {
  const entries: BackchannelLogoutEntry[] = [];
  for (const s of sessions) {
    if (typeof s.accountId !== 'string') continue;
    const authorizations = s.authorizations && typeof s.authorizations === 'object' ? (s.authorizations as Authorizations) : {};
    for (const [clientId, auth] of Object.entries(authorizations)) {
      entries.push({ clientId, sub: s.accountId, sid: typeof auth?.sid === 'string' ? auth.sid : null });
    }
  }
  return entries;
}

/**
 * §2.8: a 200 (or 204) is success. Network errors, timeouts, 408, 429 and 5xx may pass: retried.
 * Any other answer is the relying party's refusal: retrying would not change it.
 */
export function isRetryable(status: number | undefined): boolean {
  return status === undefined || status === 408 || status === 429 || status >= 500;
}

/**
 * The durable back-channel logout queue: `enqueue` in the transaction that ends the sessions,
 * and the delivery worker every process runs (`start`). Deliveries survive restarts (they are
 * rows) and are shared by every instance on one database.
 */
export function createBackchannelLogout(deps: { queue: BackchannelLogoutsRepository; logger: Logger }) {
  const { queue, logger } = deps;
  let wake: (() => void) | undefined;

  return {
    /** Queues a delivery for each entry whose client has a backchannel_logout_uri (in `trx` when given). */
    async enqueue(entries: readonly BackchannelLogoutEntry[], trx?: Transaction): Promise<void> {
      if (!entries.length) return;
      const queued = await queue.enqueue(entries, trx);
      // The first attempt is due now: this process's worker need not wait for its next poll.
      if (queued) setImmediate(() => wake?.());
    },

    /** Queues what ending `sessions` must tell (their payloads as stored). */
    enqueueForSessions(sessions: readonly Payload[], trx?: Transaction): Promise<void> {
      return this.enqueue(logoutEntriesOf(sessions), trx);
    },

    list: () => queue.list(),

    /**
     * Delivers due rows until stopped: polls every POLL_MS, claims a batch, POSTs each
     * (form-encoded `logout_token`, §2.5) with a fresh token, and deletes it on success or
     * reschedules it by BACKCHANNEL_LOGOUT_SCHEDULE_MS. Yields to requests: the batch shrinks
     * while the event loop is busy. `stop()` waits for deliveries in flight.
     */
    start(options: { sign: LogoutTokenSigner; record: (result: BackchannelLogoutResult) => void; pollMs?: number }): { stop(): Promise<void> } {
      const { sign, record } = options;
      let stopped = false;
      let running: Promise<void> | undefined;
      let batch = BATCH.max;
      let lastElu = performance.eventLoopUtilization();

      async function attempt(row: BackchannelLogoutRow): Promise<void> {
        const where = { client_id: row.clientId, attempt: row.attempts };
        let signed: Awaited<ReturnType<LogoutTokenSigner>>;
        try {
          signed = await sign(row);
        } catch (err) {
          // A signing failure is ours (keys reloading, a database hiccup): try again later.
          return retry(row, `signing failed: ${String((err as Error)?.message ?? err)}`);
        }
        if (!signed) {
          await queue.remove(row.id);
          record('failed');
          logger.warn('back-channel logout dropped: the client no longer has a backchannel_logout_uri', where);
          return;
        }
        let status: number | undefined;
        let error: string;
        try {
          const res = await fetch(signed.uri, {
            method: 'POST',
            headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
            body: new URLSearchParams({ logout_token: signed.token }).toString(),
            redirect: 'manual',
            signal: AbortSignal.timeout(BACKCHANNEL_LOGOUT_TIMEOUT_MS),
          });
          status = res.status;
          // The body is not needed; reading it frees the connection.
          await res.arrayBuffer().catch(() => undefined);
          if (status === 200 || status === 204) {
            await queue.remove(row.id);
            record('delivered');
            return;
          }
          error = `HTTP ${status}`;
        } catch (err) {
          const e = err as Error & { cause?: { code?: string } };
          error = e?.name === 'TimeoutError' ? `timed out after ${BACKCHANNEL_LOGOUT_TIMEOUT_MS} ms` : `${e?.cause?.code ?? e?.name ?? 'error'}: ${e?.message ?? String(err)}`;
        }
        if (!isRetryable(status)) {
          await queue.remove(row.id);
          record('failed');
          logger.warn('back-channel logout refused by the client', { ...where, error });
          return;
        }
        return retry(row, error);
      }

      async function retry(row: BackchannelLogoutRow, error: string): Promise<void> {
        const offset = BACKCHANNEL_LOGOUT_SCHEDULE_MS[row.attempts];
        if (offset === undefined) {
          await queue.remove(row.id);
          record('failed');
          logger.warn('back-channel logout abandoned after its last attempt', { client_id: row.clientId, attempts: row.attempts, error });
          return;
        }
        // Counted from the logout, not from this attempt: a slow attempt does not push the others back.
        await queue.reschedule(row.id, Math.max(row.createdAt + offset, Date.now()), error);
        record('retry');
        logger.warn('back-channel logout attempt failed; retrying', { client_id: row.clientId, attempt: row.attempts, error, next_in_ms: Math.max(0, row.createdAt + offset - Date.now()) });
      }

      async function runOnce(): Promise<void> {
        for (;;) {
          if (stopped) return;
          const load = performance.eventLoopUtilization(lastElu).utilization;
          lastElu = performance.eventLoopUtilization();
          batch = load > 0.5 ? Math.max(BATCH.min, batch >> 1) : Math.min(BATCH.max, batch * 2);
          const rows = await queue.claimDue(batch, CLAIM_LEASE_MS);
          if (!rows.length) return;
          await Promise.all(rows.map((row) => attempt(row).catch((err: unknown) => logger.warn('back-channel logout attempt could not be recorded', { client_id: row.clientId, err: String(err) }))));
          if (rows.length < batch) return;
        }
      }

      const tick = () => {
        if (stopped || running) return;
        running = runOnce()
          .catch((err: unknown) => logger.warn('back-channel logout queue unavailable', { err: String(err) }))
          .finally(() => {
            running = undefined;
          });
      };
      const timer = setInterval(tick, options.pollMs ?? POLL_MS);
      timer.unref();
      wake = tick;
      tick();
      return {
        async stop() {
          stopped = true;
          clearInterval(timer);
          if (wake === tick) wake = undefined;
          await running;
        },
      };
    },
  };
}

export type BackchannelLogout = ReturnType<typeof createBackchannelLogout>;
