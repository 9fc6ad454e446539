import Router from '@koa/router';

import { requireAdmin } from '../../middleware/api-auth.js';
import { queryParam } from '../../middleware/api-input.js';
import { cursorOf, pageParams, sendResource } from '../../middleware/api-paging.js';
import { invalid, notFound, type FieldError } from '../../middleware/api-problem.js';
import type { AuditEvent } from '../../repositories/audit-events.js';
import type { ApiDeps } from './common.js';

/** The API shape of an audit event (its numeric id as a string). */
export const describeAuditEvent = (e: AuditEvent) => ({
  id: String(e.id),
  type: e.type,
  at: e.at,
  actor_id: e.actorId,
  client_id: e.clientId,
  subject_id: e.subjectId,
  ip: e.ip,
  user_agent: e.userAgent,
  details: e.details,
});

const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

/**
 * An RFC 3339 §5.6 date-time as the stored form of `audit_events.at`: an ISO string in UTC with
 * milliseconds (text on both engines, compared as text). Fractions finer than a millisecond are
 * rounded up, which keeps `>= since` and `< until` exact against millisecond times. A space
 * where the offset's sign belongs is read as `+` (an unencoded `+` in a query string arrives as
 * a space). Undefined when the value is not a valid date-time from year 0000 to 9999.
 */
export function storedTimeOf(raw: string): string | undefined {
  const m = DATE_TIME.exec(raw.replace(/ (\d{2}:\d{2})$/, '+$1'));
  if (!m) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1] ?? 0;
  if (month < 1 || month > 12 || day < 1 || day > days || hour > 23 || minute > 59 || second > 60) return undefined;
  if (m[9] && (Number(m[10]) > 23 || Number(m[11]) > 59)) return undefined;
  const offsetMinutes = m[9] ? (m[9] === '-' ? -1 : 1) * (Number(m[10]) * 60 + Number(m[11])) : 0;
  // Milliseconds, rounded up when finer digits follow (decimal digits, no floating point).
  const digits = (m[7] ?? '.').slice(1).padEnd(9, '0');
  const ms = Number(digits.slice(0, 3)) + (/[1-9]/.test(digits.slice(3)) ? 1 : 0);
  const base = new Date(0);
  // setUTCFullYear keeps years 0-99 as they are (Date.UTC would read them as 19xx); a leap second rolls over.
  base.setUTCFullYear(year, month - 1, day);
  base.setUTCHours(hour, minute, second, ms);
  const at = new Date(base.getTime() - offsetMinutes * 60_000);
  const y = at.getUTCFullYear();
  return y >= 0 && y <= 9999 ? at.toISOString() : undefined;
}

/** Event ids are positive integers (bigIncrements); anything else names no event. */
const eventId = (raw: string): number | undefined => (/^[1-9]\d{0,14}$/.test(raw) ? Number(raw) : undefined);

/** Filters that name a column value: longer than the column or with control characters they match nothing that can exist. */
const FILTERS = [
  ['actor', 'actorId', 128],
  ['subject', 'subjectId', 128],
  ['type', 'type', 64],
] as const;

/** /api/v1/audit-events: the audit trail, newest first, paged on the event id in the database. */
export function auditEventRoutes(deps: ApiDeps): Router {
  const router = new Router();
  const read = requireAdmin('read');

  router.get('/audit-events', read, async (ctx) => {
    const q = ctx.query as Record<string, string | string[] | undefined>;
    const errors: FieldError[] = [];
    const filter: { actorId?: string; subjectId?: string; type?: string; since?: string; until?: string; before?: number; limit?: number } = {};
    for (const [param, key, max] of FILTERS) {
      const v = queryParam(q, param, errors);
      if (v === undefined || v === '') continue;
      if (v.length > max) errors.push({ field: param, message: `must be at most ${max} characters` });
      else if (/\p{Cc}/u.test(v)) errors.push({ field: param, message: 'must not contain control characters' });
      else filter[key] = v;
    }
    for (const param of ['since', 'until'] as const) {
      const v = queryParam(q, param, errors);
      if (v === undefined) continue;
      const at = storedTimeOf(v);
      if (at) filter[param] = at;
      else errors.push({ field: param, message: 'must be an RFC 3339 date-time such as 2026-11-23T10:00:00Z' });
    }
    if (filter.since && filter.until && filter.since >= filter.until) errors.push({ field: 'until', message: 'must be later than since' });
    const page = pageParams(ctx, errors);
    if (page.cursor) {
      const before = eventId(page.cursor.id);
      if (!before) throw invalid([{ field: 'cursor', message: 'is not a cursor this API returned' }]);
      filter.before = before;
    }
    // One more than a page tells whether another page follows.
    const events = await deps.auditEvents.list({ ...filter, limit: page.limit + 1 });
    const items = events.slice(0, page.limit);
    const last = items[items.length - 1];
    ctx.body = { data: items.map(describeAuditEvent), next_cursor: events.length > items.length && last ? cursorOf({ at: last.at, id: String(last.id) }) : null };
  });

  router.get('/audit-events/:id', read, async (ctx) => {
    const id = eventId(ctx.params.id!);
    const event = id === undefined ? undefined : await deps.auditEvents.get(id);
    if (!event) throw notFound(`audit event ${ctx.params.id}`);
    sendResource(ctx, describeAuditEvent(event));
  });

  return router;
}
