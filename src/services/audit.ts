import type { Logger } from '../lib/logger.js';
import { snakeCaseKeys } from '../lib/snake-case.js';
import type { AuditEventsRepository, NewAuditEvent } from '../repositories/audit-events.js';

/** Where a request came from, for audit rows. */
export interface RequestOrigin {
  ip: string | null;
  userAgent: string | null;
}

export type AuditInput = Partial<Omit<NewAuditEvent, 'type'>> & { type: string; origin?: RequestOrigin };

/**
 * Who makes a change, as the service that makes it records it: the actor, the client it came
 * through, the request's origin, and `via` (`api`) added to the details when the admin API did.
 */
export interface AuditActor {
  actorId: string;
  clientId?: string | null | undefined;
  origin?: RequestOrigin | undefined;
  via?: string | undefined;
}

/** Changes Latch makes itself (the built-in registrations at start-up), not on anyone's behalf. */
export const SYSTEM_ACTOR: AuditActor = { actorId: 'system', via: 'bootstrap' };

/** Changes made with the `latch` command line (run by whoever operates the server). */
export const CLI_ACTOR: AuditActor = { actorId: 'cli', via: 'cli' };

/** `before`/`after` of the fields that changed (non-secret fields only), leaving out `skip`. */
export function diff(before: Record<string, unknown>, after: Record<string, unknown>, skip: readonly string[] = []): { before: Record<string, unknown>; after: Record<string, unknown> } {
  const b: Record<string, unknown> = {};
  const a: Record<string, unknown> = {};
  for (const k of Object.keys(after)) {
    if (!skip.includes(k) && JSON.stringify(before[k]) !== JSON.stringify(after[k])) {
      b[k] = before[k];
      a[k] = after[k];
    }
  }
  return { before: b, after: a };
}

/**
 * The audit trail: who did what, when, from where. Writing it must never break the action it
 * records, so a failed write is logged, not thrown. Details hold non-secret facts only.
 */
export function createAuditService(deps: { events: AuditEventsRepository; logger: Logger }) {
  return {
    async record(input: AuditInput): Promise<void> {
      const { origin, ...rest } = input;
      try {
        await deps.events.insert({
          type: rest.type,
          actorId: rest.actorId ?? null,
          subjectId: rest.subjectId ?? null,
          ip: rest.ip ?? origin?.ip ?? null,
          userAgent: rest.userAgent ?? origin?.userAgent ?? null,
          clientId: rest.clientId ?? null,
          // Keys in snake_case, as every API body shows them (details are built from code field names).
          details: rest.details ? snakeCaseKeys(rest.details) : null,
        });
      } catch (err) {
        deps.logger.error('audit write failed', { type: input.type, err: String(err) });
      }
    },
    /** Records `type` about `subjectId` (null when it concerns no single record) by `by`: the event of a service that changed something. */
    async recordBy(type: string, subjectId: string | null, by: AuditActor, details: Record<string, unknown> = {}): Promise<void> {
      const all = by.via ? { ...details, via: by.via } : details;
      await this.record({ type, subjectId, actorId: by.actorId, clientId: by.clientId ?? null, origin: by.origin, details: Object.keys(all).length ? all : null });
    },
    /** Records `type` when `changes` (a diff) holds any field: a change that changed nothing is no event. */
    async recordChanges(type: string, subjectId: string, by: AuditActor, changes: { before: Record<string, unknown>; after: Record<string, unknown> }, extra: Record<string, unknown> = {}): Promise<void> {
      if (Object.keys(changes.after).length) await this.recordBy(type, subjectId, by, { ...extra, ...changes });
    },
    list: deps.events.list,
    get: deps.events.get,
    pseudonymise: deps.events.pseudonymise,
  };
}

export type AuditService = ReturnType<typeof createAuditService>;
