import type { Db } from '../db/knex.js';

export type MailKind = 'verify_email' | 'reset_password' | 'invitation' | 'already_registered' | 'organization_invitation' | 'other';

/** A queued mail still to send: its payload is the ciphertext of the mail. */
export interface QueuedMail {
  id: string;
  kind: MailKind;
  payload: string;
  attempts: number;
  createdAt: number;
  nextAttemptAt: number;
}

/** What the account page shows of a mail: its delivery state, never its content. */
export interface MailDelivery {
  state: 'pending' | 'sent' | 'failed';
  createdAt: number;
  sentAt: number | null;
  attempts: number;
}

interface Row {
  id: string;
  kind: MailKind;
  payload: string | null;
  attempts: number | string;
  created_at: number | string;
  next_attempt_at: number | string;
  sent_at: number | string | null;
  failed_at: number | string | null;
}

const n = (v: number | string | null) => (v === null ? null : Number(v));

/**
 * The mail queue (times in epoch seconds). A row is pending while its payload is set; an
 * attempt claims a row by moving its next_attempt_at to the end of a lease with a conditional
 * UPDATE, so of several processes sharing the database exactly one sends it.
 */
export function createMailQueueRepository(db: Db) {
  return {
    async insert(m: { id: string; kind: MailKind; accountId: string | null; payload: string; attempts: number; createdAt: number; nextAttemptAt: number }): Promise<void> {
      await db('mail_queue').insert({ id: m.id, kind: m.kind, account_id: m.accountId, payload: m.payload, attempts: m.attempts, created_at: m.createdAt, next_attempt_at: m.nextAttemptAt });
    },

    /** Pending mails due at `now`, the longest-waiting first. */
    async due(now: number, limit: number): Promise<QueuedMail[]> {
      const rows = (await db('mail_queue').select('id', 'kind', 'payload', 'attempts', 'created_at', 'next_attempt_at').whereNotNull('payload').where('next_attempt_at', '<=', now).orderBy('next_attempt_at').limit(limit)) as Row[];
      return rows.map((r) => ({ id: r.id, kind: r.kind, payload: r.payload!, attempts: Number(r.attempts), createdAt: Number(r.created_at), nextAttemptAt: Number(r.next_attempt_at) }));
    },

    /**
     * Takes the mail for one attempt until `leaseUntil`, if nobody took it since it was read
     * (its next_attempt_at is still `seen`). True when this caller holds it.
     */
    async claim(id: string, seen: number, leaseUntil: number): Promise<boolean> {
      const changed = await db('mail_queue').where({ id, next_attempt_at: seen }).whereNotNull('payload').update({ next_attempt_at: leaseUntil, attempts: db.raw('attempts + 1') });
      return changed === 1;
    },

    /** Sent: the mail itself is deleted, its delivery record kept. */
    async markSent(id: string, now: number): Promise<void> {
      await db('mail_queue').where({ id }).update({ payload: null, sent_at: now, last_error: null });
    },

    async reschedule(id: string, nextAttemptAt: number, error: string): Promise<void> {
      await db('mail_queue').where({ id }).whereNotNull('payload').update({ next_attempt_at: nextAttemptAt, last_error: error });
    },

    /** Given up: the mail itself is deleted, the record says why. */
    async markFailed(id: string, now: number, error: string): Promise<void> {
      await db('mail_queue').where({ id }).update({ payload: null, failed_at: now, last_error: error });
    },

    /** The newest mail of `kind` about the account. */
    async latestFor(accountId: string, kind: MailKind): Promise<MailDelivery | undefined> {
      const row = await db('mail_queue').select('payload', 'attempts', 'created_at', 'sent_at', 'failed_at').where({ account_id: accountId, kind }).orderBy('created_at', 'desc').first<Row | undefined>();
      if (!row) return undefined;
      const state = row.sent_at !== null ? 'sent' : row.failed_at !== null || row.payload === null ? 'failed' : 'pending';
      return { state, createdAt: Number(row.created_at), sentAt: n(row.sent_at), attempts: Number(row.attempts) };
    },

    /** How many mails wait to be sent. */
    async pendingCount(): Promise<number> {
      const row = await db('mail_queue').whereNotNull('payload').count<{ n: number | string }[]>({ n: '*' }).first();
      return Number(row?.n ?? 0);
    },

    /** Deletes the records of mails sent or given up before `before`. */
    async prune(before: number): Promise<number> {
      return db('mail_queue').whereNull('payload').where('created_at', '<', before).delete();
    },
  };
}

export type MailQueueRepository = ReturnType<typeof createMailQueueRepository>;
