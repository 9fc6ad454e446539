import type { Db } from '../db/knex.js';
import { nowIso, toIso } from '../db/knex.js';

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

export function createAuditEventsRepository(db: Db) {
  return {
    async insert(e: NewAuditEvent): Promise<void> {
      await db('audit_events').insert({
        at: nowIso(),
        type: e.type,
        actor_id: cut(e.actorId, 128),
        subject_id: cut(e.subjectId, 128),
        ip: cut(e.ip, 64),
        user_agent: cut(e.userAgent, 512),
        client_id: cut(e.clientId, 128),
        details: e.details ? JSON.stringify(e.details) : null,
      });
    },
    /** Newest first; `before` is an id cursor. */
    async list(filter: { subjectId?: string; type?: string; before?: number; limit?: number } = {}): Promise<AuditEvent[]> {
      const q = db('audit_events').select<Row[]>('*').orderBy('id', 'desc').limit(Math.min(filter.limit ?? 100, 1000));
      if (filter.subjectId) void q.where('subject_id', filter.subjectId);
      if (filter.type) void q.where('type', filter.type);
      if (filter.before) void q.where('id', '<', filter.before);
      return (await q).map((r) => ({
        id: Number(r.id),
        at: toIso(r.at) ?? r.at,
        type: r.type,
        actorId: r.actor_id,
        subjectId: r.subject_id,
        ip: r.ip,
        userAgent: r.user_agent,
        clientId: r.client_id,
        details: r.details ? (JSON.parse(r.details) as Record<string, unknown>) : null,
      }));
    },
  };
}

export type AuditEventsRepository = ReturnType<typeof createAuditEventsRepository>;
