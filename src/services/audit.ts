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
    list: deps.events.list,
  };
}

export type AuditService = ReturnType<typeof createAuditService>;
