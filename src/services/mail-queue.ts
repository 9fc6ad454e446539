import { randomUUID } from 'node:crypto';

import type { Logger } from '../lib/logger.js';
import { epochSeconds } from '../lib/time.js';
import type { MailDelivery, MailKind, MailQueueRepository, QueuedMail } from '../repositories/mail-queue.js';
import type { Mail, MailAbout, Mailer, MailTransport } from './mail.js';
import type { Secrets } from './secrets.js';

/**
 * Seconds between a failed attempt and the next one; after the last, every 15 minutes until
 * the mail is RETRY_FOR_SECONDS old. Short at first, because most outages are a relay restart.
 */
export const RETRY_DELAYS = [10, 30, 60, 120, 300, 600, 900];
/** How long a mail is retried before it is given up: at least an hour of SMTP outage. */
export const RETRY_FOR_SECONDS = 3600;
/**
 * How long an attempt holds its mail. A process that dies while sending leaves the mail to be
 * taken again when the lease ends; an attempt is bounded well within it (mail.ts timeouts).
 */
const LEASE_SECONDS = 120;
/** The delivery record (no content) of a sent or failed mail: as long as a verification link lives. */
const RECORD_SECONDS = 24 * 3600;
/** How often each server process looks for due mails: a retry is at most this much later than planned. */
export const MAIL_QUEUE_POLL_MS = 5000;
/** Mails taken per look-up by the sender loop. */
const BATCH = 20;

export type MailEvent = 'queued' | 'sent' | 'retried' | 'failed';

/** The seconds to wait after the `attempts`th failed attempt. */
export function retryDelay(attempts: number): number {
  return RETRY_DELAYS[Math.min(Math.max(attempts, 1), RETRY_DELAYS.length) - 1]!;
}

/**
 * An SMTP failure as stored (`last_error`) and logged: servers quote the recipient (`550 … <bob@x>`),
 * and the address is kept only inside the sealed payload.
 */
const describe = (err: unknown) =>
  (err instanceof Error ? err.message : String(err))
    .replace(/\s+/g, ' ')
    .replace(/[^\s<>"']+@[^\s<>"']+/g, '<address>')
    .slice(0, 300);

/**
 * Every mail goes through a durable queue in the database: written first (the mail encrypted
 * under a key derived for this purpose, bound to its row), then sent at once; a mail that could
 * not be sent is retried with back-off by the sender loop of any process on the database, across
 * restarts, for RETRY_FOR_SECONDS, then given up (logged and counted). The content is deleted
 * as soon as the mail is sent or given up: the one-time links in it never outlive their use.
 * Delivery is at least once: a process killed between the SMTP answer and the row update leaves
 * the mail to be sent again when its lease ends.
 */
export function createMailQueue(deps: { repo: MailQueueRepository; transport: MailTransport; secrets: Secrets; logger: Logger }) {
  const { repo, transport, secrets, logger } = deps;
  const listeners: ((event: MailEvent) => void)[] = [];
  const emit = (event: MailEvent) => {
    for (const l of listeners) l(event);
  };

  /** The mail of a claimed row, or undefined (given up) when it cannot be decrypted. */
  async function opened(m: Pick<QueuedMail, 'id' | 'kind' | 'payload'>): Promise<Mail | undefined> {
    try {
      return JSON.parse(secrets.open('mail-queue', m.payload, m.id)) as Mail;
    } catch {
      // Sealed under another LATCH_SECRET: nothing can ever send it.
      await repo.markFailed(m.id, epochSeconds(), 'cannot be decrypted with this LATCH_SECRET');
      logger.error('queued mail given up: it cannot be decrypted with this LATCH_SECRET', { mail: m.id, kind: m.kind });
      emit('failed');
      return undefined;
    }
  }

  /** One attempt at a mail this process holds (inserted or claimed). True when it was sent. */
  async function attempt(m: Pick<QueuedMail, 'id' | 'kind' | 'attempts' | 'createdAt'>, mail: Mail): Promise<boolean> {
    try {
      await transport.send(mail);
    } catch (err) {
      const error = describe(err);
      const now = epochSeconds();
      if (now - m.createdAt >= RETRY_FOR_SECONDS) {
        await repo.markFailed(m.id, now, error);
        logger.error('mail given up after retrying', { mail: m.id, kind: m.kind, attempts: m.attempts, err: error });
        emit('failed');
      } else {
        const delay = retryDelay(m.attempts);
        await repo.reschedule(m.id, now + delay, error);
        logger.warn('mail not sent; it stays queued and is retried', { mail: m.id, kind: m.kind, attempts: m.attempts, retryInSeconds: delay, err: error });
        emit('retried');
      }
      return false;
    }
    await repo.markSent(m.id, epochSeconds());
    emit('sent');
    return true;
  }

  const queue = {
    /**
     * Queues the mail and makes the first attempt (bounded by the SMTP timeouts). Resolves after
     * that attempt whether or not it reached the server; rejects only when the database cannot
     * store the mail. Awaited so that a short-lived process (the CLI) sends before it exits.
     */
    async send(mail: Mail, about: MailAbout = { kind: 'other' }): Promise<void> {
      const id = randomUUID();
      const now = epochSeconds();
      const payload = secrets.seal('mail-queue', JSON.stringify({ to: mail.to, subject: mail.subject, text: mail.text, ...(mail.html ? { html: mail.html } : {}) }), id);
      // Inserted already held by this process (attempt 1, leased): no sender loop takes it meanwhile.
      await repo.insert({ id, kind: about.kind, accountId: about.accountId ?? null, payload, attempts: 1, createdAt: now, nextAttemptAt: now + LEASE_SECONDS });
      emit('queued');
      try {
        await attempt({ id, kind: about.kind, attempts: 1, createdAt: now }, mail);
      } catch (err) {
        // The row could not be updated after the attempt: the lease ends and the loop retries.
        logger.warn('mail queue update failed; the mail is retried when its lease ends', { mail: id, err: describe(err) });
      }
    },

    /**
     * Sends the mails that are due, one at a time, each claimed first (several processes run
     * this on one database). Background work: between mails it pauses longer while the event
     * loop is busy with requests. `stopped()` ends the pass early (shutdown). Returns how many
     * mails it attempted.
     */
    async sendDue(stopped: () => boolean = () => false): Promise<number> {
      let attempted = 0;
      for (;;) {
        const rows = await repo.due(epochSeconds(), BATCH);
        for (const row of rows) {
          if (stopped()) return attempted;
          if (!(await repo.claim(row.id, row.nextAttemptAt, epochSeconds() + LEASE_SECONDS))) continue;
          const started = performance.eventLoopUtilization();
          const mail = await opened(row);
          if (mail) await attempt({ ...row, attempts: row.attempts + 1 }, mail);
          attempted++;
          const load = performance.eventLoopUtilization(started).utilization;
          await new Promise((r) => setTimeout(r, load > 0.5 ? 250 : 10));
        }
        if (rows.length < BATCH || stopped()) return attempted;
      }
    },

    /** The delivery state of the newest mail of `kind` about the account. */
    delivery(accountId: string, kind: MailKind): Promise<MailDelivery | undefined> {
      return repo.latestFor(accountId, kind);
    },

    pending: () => repo.pendingCount(),

    /** Deletes delivery records older than a day (the purge). */
    prune: () => repo.prune(epochSeconds() - RECORD_SECONDS),

    /** Called for each mail queued, sent, retried (an attempt failed) or failed (given up). */
    onEvent(listener: (event: MailEvent) => void): void {
      listeners.push(listener);
    },
  } satisfies Mailer & Record<string, unknown>;
  return queue;
}

export type MailQueue = ReturnType<typeof createMailQueue>;
