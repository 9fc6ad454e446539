import { randomUUID } from 'node:crypto';

import type { Db } from '../db/knex.js';
import type { Transaction } from './transaction.js';

/** One back-channel logout still to be delivered. */
export interface BackchannelLogoutRow {
  id: string;
  clientId: string;
  sub: string;
  sid: string | null;
  /** Attempts made so far, the one just claimed included. */
  attempts: number;
  /** Epoch milliseconds of the logout: the retry schedule counts from it. */
  createdAt: number;
}

/** A session's end, as one client is to hear of it. */
export interface BackchannelLogoutEntry {
  clientId: string;
  sub: string;
  sid: string | null;
}

interface Row {
  id: string;
  client_id: string;
  sub: string;
  sid: string | null;
  attempts: number | string;
  next_attempt_at: number | string;
  created_at: number | string;
}

/** The delivery queue of back-channel logouts (table backchannel_logouts). */
export function createBackchannelLogoutsRepository(db: Db) {
  const table = (trx?: Transaction) => (trx ?? db)('backchannel_logouts');

  return {
    /**
     * Queues one delivery per entry whose client is enabled and registered a
     * backchannel_logout_uri (read in `trx`, so the caller's transaction needs no other
     * connection); the others are skipped. How many were queued.
     */
    async enqueue(entries: readonly BackchannelLogoutEntry[], trx?: Transaction): Promise<number> {
      const q = trx ?? db;
      const now = Date.now();
      let queued = 0;
      for (const e of entries) {
        const registered = await q('clients').select('id').where({ id: e.clientId, enabled: true }).whereNotNull('backchannel_logout_uri').first<{ id: string } | undefined>();
        if (!registered) continue;
        await q('backchannel_logouts').insert({ id: randomUUID(), client_id: e.clientId, sub: e.sub, sid: e.sid, attempts: 0, next_attempt_at: now, created_at: now });
        queued++;
      }
      return queued;
    },

    /**
     * Claims up to `limit` due rows for `leaseMs`: each claim is a conditional UPDATE on the
     * row's `next_attempt_at` as read, so of several instances sharing the database exactly one
     * wins a row; the lease makes it due again if that instance dies mid-delivery. The attempt
     * is counted when claimed.
     */
    async claimDue(limit: number, leaseMs: number): Promise<BackchannelLogoutRow[]> {
      const now = Date.now();
      const due = (await table().select('id', 'client_id', 'sub', 'sid', 'attempts', 'next_attempt_at', 'created_at').where('next_attempt_at', '<=', now).orderBy('next_attempt_at').limit(limit)) as Row[];
      const claimed: BackchannelLogoutRow[] = [];
      for (const r of due) {
        const changed = await table()
          .where({ id: r.id, next_attempt_at: r.next_attempt_at })
          .update({ next_attempt_at: now + leaseMs, attempts: Number(r.attempts) + 1 });
        if (changed === 1) claimed.push({ id: r.id, clientId: r.client_id, sub: r.sub, sid: r.sid, attempts: Number(r.attempts) + 1, createdAt: Number(r.created_at) });
      }
      return claimed;
    },

    /** The next attempt of a claimed row, at `at` (epoch ms), with why the last one failed. */
    async reschedule(id: string, at: number, lastError: string): Promise<void> {
      await table().where({ id }).update({ next_attempt_at: at, last_error: lastError.slice(0, 1000) });
    },

    /** Delivered, or given up. */
    async remove(id: string): Promise<void> {
      await table().where({ id }).delete();
    },

    /** What is queued (operations and tests). */
    async list(): Promise<(BackchannelLogoutEntry & { id: string; attempts: number; nextAttemptAt: number; lastError: string | null })[]> {
      const rows = (await table().select('*').orderBy('next_attempt_at')) as (Row & { last_error: string | null })[];
      return rows.map((r) => ({ id: r.id, clientId: r.client_id, sub: r.sub, sid: r.sid, attempts: Number(r.attempts), nextAttemptAt: Number(r.next_attempt_at), lastError: r.last_error }));
    },
  };
}

export type BackchannelLogoutsRepository = ReturnType<typeof createBackchannelLogoutsRepository>;
