import type { Db } from '../db/knex.js';
import { createStatements } from '../db/statements.js';
import { toIso } from '../db/knex.js';
import { nowIso } from '../lib/time.js';
import { snakeCaseKeys } from '../lib/snake-case.js';
import type { Transaction } from './transaction.js';

export interface AuditEvent {
  id: number;
  at: string;
  type: string;
  actorId: string | null;
  subjectId: string | null;
  ip: string | null;
  userAgent: string | null;
  clientId: string | null;
  details: Record<string, unknown> | null;
}

export type NewAuditEvent = Omit<AuditEvent, 'id' | 'at' | 'details'> & { details?: Record<string, unknown> | null };

interface Row {
  id: number | string;
  at: string;
  type: string;
  actor_id: string | null;
  subject_id: string | null;
  ip: string | null;
  user_agent: string | null;
  client_id: string | null;
  details: string | null;
}

const cut = (v: string | null, n: number) => (v && v.length > n ? v.slice(0, n) : v);

const fromRow = (r: Row): AuditEvent => ({
  id: Number(r.id),
  at: toIso(r.at) ?? r.at,
  type: r.type,
  actorId: r.actor_id,
  subjectId: r.subject_id,
  ip: r.ip,
  userAgent: r.user_agent,
  clientId: r.client_id,
  // Rows written before details were stored in snake_case read as if they had been.
  details: r.details ? snakeCaseKeys(JSON.parse(r.details) as Record<string, unknown>) : null,
});

const INSERT = 'insert into audit_events (at, type, actor_id, subject_id, ip, user_agent, client_id, details) values (?, ?, ?, ?, ?, ?, ?, ?)';

export function createAuditEventsRepository(db: Db) {
  // Each sign-in writes two events (login.success, session.start): straight to the driver.
  const direct = createStatements(db);
  return {
    async insert(e: NewAuditEvent): Promise<void> {
      await direct.run(INSERT, [nowIso(), e.type, cut(e.actorId, 128), cut(e.subjectId, 128), cut(e.ip, 64), cut(e.userAgent, 512), cut(e.clientId, 128), e.details ? JSON.stringify(e.details) : null]);
    },
    /**
     * Newest first; `before` is an id cursor. `since` (inclusive) and `until` (exclusive) are
     * ISO times (stored times are ISO strings of one length, so they compare as strings).
     */
    async list(filter: { actorId?: string; subjectId?: string; type?: string; since?: string; until?: string; before?: number; limit?: number } = {}): Promise<AuditEvent[]> {
      const q = db('audit_events').select<Row[]>('*').orderBy('id', 'desc').limit(Math.min(filter.limit ?? 100, 1000));
      if (filter.actorId) void q.where('actor_id', filter.actorId);
      if (filter.subjectId) void q.where('subject_id', filter.subjectId);
      if (filter.type) void q.where('type', filter.type);
      if (filter.since) void q.where('at', '>=', filter.since);
      if (filter.until) void q.where('at', '<', filter.until);
      if (filter.before) void q.where('id', '<', filter.before);
      return (await q).map(fromRow);
    },

    /** One event by its id (a positive safe integer; the caller checks the shape). */
    async get(id: number): Promise<AuditEvent | undefined> {
      const row = await db('audit_events').where('id', id).first<Row | undefined>();
      return row ? fromRow(row) : undefined;
    },

    /**
     * GDPR erasure: rows about or by `accountId` keep their facts under `pseudonym`, lose the IP
     * and user agent, and every occurrence of the `scrub` strings (the email) in details is replaced.
     */
    async pseudonymise(accountId: string, pseudonym: string, scrub: string[], outer?: Transaction): Promise<void> {
      const run = async (trx: Transaction) => {
        await trx('audit_events').where('actor_id', accountId).update({ actor_id: pseudonym, ip: null, user_agent: null });
        await trx('audit_events').where('subject_id', accountId).update({ subject_id: pseudonym, ip: null, user_agent: null });
        const words = [accountId, ...scrub].filter((w) => w.length >= 3);
        for (const word of words) {
          const rows = await trx('audit_events').select<{ id: number | string; details: string }[]>('id', 'details').whereRaw('lower(details) like ?', [`%${word.toLowerCase().replace(/[%_\\]/g, '_')}%`]);
          for (const r of rows) {
            const pattern = new RegExp(word.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'gi');
            const details = r.details.replace(pattern, word === accountId ? pseudonym : '[erased]');
            if (details !== r.details) await trx('audit_events').where('id', r.id).update({ details });
          }
        }
      };
      await (outer ? run(outer) : db.transaction(run));
    },
  };
}

export type AuditEventsRepository = ReturnType<typeof createAuditEventsRepository>;
