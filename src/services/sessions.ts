import { grantScopes, type Payload, type ProviderStateRepository } from '../repositories/provider-state.js';
import type { Transact, Transaction } from '../repositories/transaction.js';
import type { AuditActor, AuditService } from './audit.js';
import type { BackchannelLogout } from './backchannel-logout.js';

export type { Payload };

type Authorizations = Record<string, { sid?: string; grantId?: string; persistsLogout?: boolean }>;

/** The applications signed in through a session (client ids), from its `authorizations`. */
export const authorizationsOf = (session: Payload): Authorizations => (session.authorizations && typeof session.authorizations === 'object' ? (session.authorizations as Authorizations) : {});

const isoOfEpoch = (v: unknown): string | null => (typeof v === 'number' && Number.isFinite(v) ? new Date(v * 1000).toISOString() : null);

/** The API shape of a session. */
export function describeSession(s: Payload) {
  return {
    id: String(s.uid),
    created_at: isoOfEpoch(s.loginTs ?? s.iat),
    expires_at: isoOfEpoch(s.exp),
    client_ids: Object.keys(authorizationsOf(s)).sort(),
  };
}

/** The API shape of a grant (a consent): its client, scopes and resources. */
export function describeGrant(g: Payload) {
  const resources = Object.keys((g.resources as Record<string, string> | undefined) ?? {}).sort();
  return { id: String(g.jti), client_id: String(g.clientId), scopes: grantScopes(g), resources, created_at: isoOfEpoch(g.iat), expires_at: isoOfEpoch(g.exp) };
}

/** An application the account has authorized: every scope of its grants, since the oldest. */
export interface AuthorizedApplication {
  clientId: string;
  scopes: string[];
  /** Epoch seconds of its oldest grant. */
  since: number;
}

const numberOr0 = (v: unknown): number => (typeof v === 'number' ? v : 0);

/**
 * Ends every session and refresh token of the account in `trx` (but the session `exceptSessionUid`)
 * and queues, in the same transaction, the back-channel logouts of the sessions that end: a
 * session cannot end without its applications being told. The one way an account's sessions end
 * at once (deactivation, password change or reset, erasure, "sign out everywhere", an import).
 */
export async function endAccountSessions(
  deps: { state: Pick<ProviderStateRepository, 'listByAccount' | 'revokeByAccountId'>; enqueueForSessions: (sessions: readonly Payload[], trx: Transaction) => Promise<unknown> },
  accountId: string,
  trx: Transaction,
  options: { exceptSessionUid?: string | undefined } = {},
): Promise<void> {
  const ending = (await deps.state.listByAccount('Session', accountId, trx)).filter((s) => s.uid !== options.exceptSessionUid);
  await deps.state.revokeByAccountId(accountId, options, trx);
  await deps.enqueueForSessions(ending, trx);
}

/**
 * An account's Latch sessions and grants (consents): listing them, ending a session as logout
 * does, revoking a grant or every grant of one application. Each change is one transaction and
 * records its audit event here, whoever asked (account page, admin API, self-service API).
 */
export function createSessionService(deps: { state: ProviderStateRepository; audit: AuditService; transact: Transact; backchannelLogout: Pick<BackchannelLogout, 'enqueueForSessions'> }) {
  const { state, audit, transact } = deps;

  return {
    /** Every live session of the account. */
    sessionsOf: (accountId: string): Promise<Payload[]> => state.listByAccount('Session', accountId),

    /**
     * The device of each session: its `session.start` audit event (oidc/provider.ts) tells IP
     * and browser. Keyed by session uid.
     */
    async devicesOf(accountId: string): Promise<Map<string, { ip: string | null; userAgent: string | null }>> {
      const events = await audit.list({ subjectId: accountId, type: 'session.start', limit: 500 });
      const bySession = new Map<string, { ip: string | null; userAgent: string | null }>();
      for (const e of events) {
        // Newest first: a session signed in again shows its latest device.
        const uid = e.details?.session;
        if (typeof uid === 'string' && !bySession.has(uid)) bySession.set(uid, { ip: e.ip, userAgent: e.userAgent });
      }
      return bySession;
    },

    /** Every live grant of the account. */
    grantsOf: (accountId: string): Promise<Payload[]> => state.listByAccount('Grant', accountId),

    /** The applications the account has granted access to, except `exceptClientId` (the account page). */
    async applicationsOf(accountId: string, exceptClientId?: string): Promise<AuthorizedApplication[]> {
      const byClient = new Map<string, { scopes: Set<string>; since: number }>();
      for (const g of await state.listByAccount('Grant', accountId)) {
        const clientId = typeof g.clientId === 'string' ? g.clientId : undefined;
        if (!clientId || clientId === exceptClientId) continue;
        const entry = byClient.get(clientId) ?? { scopes: new Set<string>(), since: numberOr0(g.iat) };
        for (const s of grantScopes(g)) entry.scopes.add(s);
        entry.since = Math.min(entry.since, numberOr0(g.iat));
        byClient.set(clientId, entry);
      }
      return [...byClient].map(([clientId, e]) => ({ clientId, scopes: [...e.scopes], since: e.since }));
    },

    /**
     * Ends one of the account's sessions as logout does (the session and the grants signed in
     * through it, and the back-channel logouts of its applications queued, in one transaction)
     * and records `type`. False when the account has no such session.
     */
    async end(accountId: string, uid: string, by: AuditActor & { type: 'session.end' | 'session.revoke' }): Promise<boolean> {
      if (uid.length > 128) return false;
      const ended = await transact(async (trx) => {
        const session = await state.endSession(accountId, uid, trx);
        if (session) await deps.backchannelLogout.enqueueForSessions([session], trx);
        return Boolean(session);
      });
      if (ended) await audit.recordBy(by.type, accountId, by, { session: uid });
      return ended;
    },

    /** Revokes one of the account's grants with every token issued under it; false when it has no such grant. */
    async revokeGrant(accountId: string, grantId: string, by: AuditActor): Promise<boolean> {
      const grant = grantId.length <= 128 ? await state.find('Grant', grantId) : undefined;
      if (!grant || grant.accountId !== accountId) return false;
      // The grant row and everything issued under it (JWT access tokens then fail verification).
      await state.revokeByGrantId(grantId);
      await audit.recordBy('grant.revoke', accountId, by, { grant: grantId, client_id: grant.clientId });
      return true;
    },

    /** Revokes every grant of the account to one application (it must ask again); how many there were. */
    async revokeApplication(accountId: string, clientId: string, by: AuditActor): Promise<number> {
      const grants = (await state.listByAccount('Grant', accountId)).filter((g) => g.clientId === clientId && typeof g.jti === 'string');
      await transact(async (trx) => {
        for (const g of grants) await state.revokeByGrantId(g.jti as string, trx);
      });
      if (grants.length) await audit.record({ type: 'grant.revoke', actorId: by.actorId, subjectId: accountId, clientId, origin: by.origin, details: { grants: grants.length } });
      return grants.length;
    },
  };
}

export type SessionService = ReturnType<typeof createSessionService>;
