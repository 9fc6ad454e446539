import type { KoaContextWithOIDC } from 'oidc-provider';

import { epochSeconds } from '../lib/time.js';
import type { Payload, ProviderStateRepository, StateKey, StateWrite } from '../repositories/provider-state.js';
import type { Secrets } from '../services/secrets.js';

/**
 * REFRESH_REUSE_WINDOW: a rotation that committed but whose response never reached the client
 * (a dropped connection, a proxy timeout, a crashed process) leaves the client holding the
 * refresh token it just rotated. Presenting it again is reuse, which revokes the grant (RFC 9700
 * §4.14.2), so one lost response would sign the user out. Within the window, the same client
 * presenting the refresh token it rotated gets the SAME successor back, with a fresh access
 * token, as long as that successor was never used; Auth0's "reuse interval" and Okta's "grace
 * period" do the same.
 *
 * Nothing about the successor is stored on the rotated token: the successor's id is derived from
 * the rotated token's value under a key derived from LATCH_SECRET (HMAC-SHA-256, as long and as
 * unpredictable as oidc-provider's random ids). Only a client that holds the rotated token can
 * ask for its successor, and only Latch can compute it; a copy of the database gives nothing
 * that the rows themselves did not already hold. When the rotation happened is the rotated row's
 * consumed_at.
 */
export interface RefreshReuse {
  /** The id of the refresh token that succeeds the refresh token `rotatedId` when it is rotated. */
  successorOf(rotatedId: string): string;
  /**
   * A consumed refresh token was found, in a request that presents it for a refresh: true when
   * it may be rotated again, which then issues its (existing) successor once more.
   */
  mayPresentAgain(ctx: KoaContextWithOIDC | undefined, id: string, found: Payload): Promise<boolean>;
  /**
   * A request's consume lost (the token was rotated already, by it or a concurrent request): the
   * writes to commit instead when this is a retry within the window (without the successor,
   * which is stored already), or undefined (reuse).
   */
  retryWrites(consume: StateKey, consumedAt: number | null, upserts: readonly StateWrite[]): Promise<StateWrite[] | undefined>;
}

export function createRefreshReuse(deps: { windowSeconds: number; secrets: Pick<Secrets, 'mac'>; state: Pick<ProviderStateRepository, 'find'> }): RefreshReuse | undefined {
  const { windowSeconds, secrets, state } = deps;
  if (windowSeconds <= 0) return undefined;
  const successorOf = (rotatedId: string) => secrets.mac('refresh-successor', rotatedId);
  const recent = (consumedAt: unknown) => typeof consumedAt === 'number' && epochSeconds() - consumedAt < windowSeconds;
  /** The successor is there, unexpired and never used: once it was used, the old token is reuse. */
  const successorUnused = async (id: string, grantId: unknown) => {
    const successor = await state.find('RefreshToken', successorOf(id));
    return successor !== undefined && successor.consumed === undefined && successor.grantId === grantId;
  };
  return {
    successorOf,
    async mayPresentAgain(ctx, id, found) {
      const params = ctx?.oidc?.params as { grant_type?: unknown; refresh_token?: unknown } | undefined;
      if (ctx?.oidc?.route !== 'token' || params?.grant_type !== 'refresh_token' || params.refresh_token !== id) return false;
      // oidc-provider compares the token's client with the authenticated one next (a mismatch
      // is invalid_grant before anything is written): the same client only.
      return recent(found.consumed) && (await successorUnused(id, found.grantId));
    },
    async retryWrites(consume, consumedAt, upserts) {
      if (consume.model !== 'RefreshToken' || !recent(consumedAt)) return undefined;
      const successor = successorOf(consume.id);
      const issued = upserts.find((w) => w.model === 'RefreshToken' && w.id === successor);
      if (!issued || !(await successorUnused(consume.id, issued.payload.grantId))) return undefined;
      return upserts.filter((w) => w !== issued);
    },
  };
}
