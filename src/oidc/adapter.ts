import Provider, { errors, type Adapter, type AdapterPayload, type KoaContextWithOIDC } from 'oidc-provider';

import type { ConsumeResult, FoundWithGrant, Payload, ProviderStateRepository, StateKey, StateWrite } from '../repositories/provider-state.js';
import type { ClientService } from '../services/clients.js';
import type { RefreshReuse } from './refresh-reuse.js';

/**
 * What one request to oidc-provider has read ahead and has yet to write.
 *
 * - Reads: a token is looked up together with its grant (one statement), because every use of a
 *   token (token endpoint, introspection, userinfo) looks up its grant next; introspection's
 *   lookups of one value as each kind of token are one statement too. Each is served once, and
 *   dropped when the request writes what it read.
 * - Writes: everything the request writes (at the token endpoint the code or refresh token it
 *   redeems and the tokens it issues; at the authorization endpoint the session, grant and code)
 *   is written together, as ONE atomic write, once oidc-provider has answered and before the
 *   response leaves (`finishProviderRequest`): one commit instead of one per write. A read of
 *   something pending, or a write that cannot wait (revoking a grant), writes it first, so the
 *   database always sees oidc-provider's order.
 */
interface RequestWork {
  /** The response is being sent: a later call (a straggler the request did not await) goes straight to the database. */
  done: boolean;
  /** Token lookups in flight or done, by id: each model found is served once. */
  readonly lookups: Map<string, { found: Promise<FoundWithGrant[]>; unserved: Set<string> }>;
  readonly grants: Map<string, Payload | undefined>;
  consume: StateKey | undefined;
  /** Pending upserts (a write) and deletes (no write), by model and id: the last one counts. */
  readonly writes: Map<string, { key: StateKey; write?: StateWrite }>;
}

/**
 * A request's work lives on its context under this symbol. Not a WeakMap keyed by the context:
 * a WeakMap entry per request is an ephemeron the garbage collector processes on every
 * scavenge while the context is young, which measurably slowed every token request.
 */
const WORK = Symbol('latch provider-request work');
type WithWork = { [WORK]?: RequestWork };
const workOf = (ctx: object): RequestWork | undefined => (ctx as WithWork)[WORK];
const setWork = (ctx: object, work: RequestWork): void => {
  (ctx as WithWork)[WORK] = work;
};
/** The work of a request that is done and had none. */
const DONE: RequestWork = { done: true, lookups: new Map(), grants: new Map(), consume: undefined, writes: new Map() };

/**
 * Opaque token values: introspection and revocation look a value up as each of these at once
 * (oidc-provider's findToken), which is one statement here.
 */
const OPAQUE = ['AccessToken', 'ClientCredentials', 'RefreshToken'];
/** Tokens whose uses look up their grant next. */
const WITH_GRANT = new Set([...OPAQUE, 'AuthorizationCode', 'DeviceCode', 'BackchannelAuthenticationRequest']);

/** The work of the oidc-provider request this call runs in (oidc-provider's own AsyncLocalStorage), if any. */
function currentWork(): RequestWork | undefined {
  const ctx = Provider.ctx;
  if (!ctx) return undefined;
  let work = workOf(ctx);
  if (!work) {
    work = { done: false, lookups: new Map(), grants: new Map(), consume: undefined, writes: new Map() };
    setWork(ctx, work);
  }
  return work.done ? undefined : work;
}

/**
 * Device codes (RFC 8628): the row outlives the code by `retainSeconds`, so that a poll after its
 * expiry finds it and answers expired_token (§3.5) rather than invalid_grant; `onPoll` runs when
 * the token endpoint looks a device code up (the polling interval, device-flow.ts), and may throw.
 */
export interface DeviceCodeStorage {
  retainSeconds: number;
  onPoll: ((id: string) => Promise<void>) | undefined;
}

const keyOf = (model: string, id: string) => `${model}\u0000${id}`;
const pending = (work: RequestWork | undefined): work is RequestWork => work !== undefined && (work.consume !== undefined || work.writes.size > 0);

/** The request writes (model, id): what it read ahead of that is stale. */
function written(work: RequestWork, model: string, id: string): void {
  work.lookups.get(id)?.unserved.delete(model);
  if (model === 'Grant') work.grants.delete(id);
}

/**
 * oidc-provider's storage contract over Knex: every model lives in the generic provider_state
 * table, except Client, which comes from the clients table through the cached client service.
 * Outside an oidc-provider request (Latch's own routes, the CLI) every call goes straight to the
 * database.
 */
export function createAdapterClass(deps: { state: ProviderStateRepository; clients: ClientService; deviceCodes?: DeviceCodeStorage; reuse?: RefreshReuse | undefined }) {
  const { state, clients, reuse } = deps;
  const deviceCodes = deps.deviceCodes ?? { retainSeconds: 0, onPoll: undefined };

  /**
   * The outcome of a redemption's conditional UPDATE. When the code or refresh token was consumed
   * already (a concurrent redemption won), that is reuse: the whole grant is revoked (RFC 6749
   * §4.1.2, RFC 9700 §4.14.2) and InvalidGrant is thrown.
   */
  async function redeemed(result: ConsumeResult, key: StateKey): Promise<void> {
    if (result.consumed) return;
    if (result.grantId) await state.revokeByGrantId(result.grantId);
    // The description stays oidc-provider's generic one; the detail goes to its logs only.
    throw new errors.InvalidGrant(`${key.model} already consumed`);
  }

  /** Writes what a request has pending, all or nothing (see `redeemed` for a lost redemption). */
  async function flush(work: RequestWork): Promise<void> {
    if (!pending(work)) return;
    const { consume } = work;
    const deletes: StateKey[] = [];
    const upserts: StateWrite[] = [];
    for (const { key, write } of work.writes.values()) {
      if (write) upserts.push(write);
      else deletes.push(key);
    }
    work.consume = undefined;
    work.writes.clear();
    const result = await state.commit(consume, deletes, upserts);
    if (consume && !result.consumed && reuse) {
      // A retry of a rotation within REFRESH_REUSE_WINDOW (refresh-reuse.ts): the successor is
      // stored already; what this request issued besides is written, as a redemption would.
      const retry = await reuse.retryWrites(consume, result.consumedAt ?? null, upserts);
      if (retry) {
        // A JWT access token is not stored: then there is nothing left to write.
        if (deletes.length || retry.length) await state.commit(undefined, deletes, retry);
        return;
      }
    }
    if (consume) await redeemed(result, consume);
  }

  class KnexAdapter implements Adapter {
    constructor(readonly model: string) {}

    async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
      if (this.model === 'Client') throw new Error('clients are managed through Latch, not dynamic registration');
      if (this.model === 'DeviceCode') expiresIn += deviceCodes.retainSeconds;
      const work = currentWork();
      if (!work) return state.upsert(this.model, id, payload as Payload, expiresIn);
      written(work, this.model, id);
      work.writes.set(keyOf(this.model, id), { key: { model: this.model, id }, write: { model: this.model, id, payload: payload as Payload, expiresIn } });
    }

    async find(id: string): Promise<AdapterPayload | undefined> {
      if (this.model === 'Client') return (await clients.findMetadata(id)) as AdapterPayload | undefined;
      if (this.model === 'DeviceCode' && deviceCodes.onPoll && (Provider.ctx as KoaContextWithOIDC | undefined)?.oidc?.route === 'token') await deviceCodes.onPoll(id);
      const work = currentWork();
      if (!work) return (await state.find(this.model, id)) as AdapterPayload | undefined;
      if (work.writes.has(keyOf(this.model, id)) || (work.consume?.model === this.model && work.consume.id === id)) await flush(work);
      if (this.model === 'Grant' && work.grants.has(id)) {
        const grant = work.grants.get(id);
        work.grants.delete(id);
        return grant as AdapterPayload | undefined;
      }
      if (!WITH_GRANT.has(this.model)) return (await state.find(this.model, id)) as AdapterPayload | undefined;
      let lookup = work.lookups.get(id);
      if (!lookup?.unserved.has(this.model)) {
        const models = OPAQUE.includes(this.model) ? OPAQUE : [this.model];
        const found = state.findWithGrant(models, id).then((rows) => {
          for (const row of rows) if (row.grant) work.grants.set(row.grant.id, row.grant.payload);
          return rows;
        });
        lookup = { found, unserved: new Set(models) };
        work.lookups.set(id, lookup);
      }
      lookup.unserved.delete(this.model);
      if (!lookup.unserved.size) work.lookups.delete(id);
      const payload = (await lookup.found).find((row) => row.model === this.model)?.payload;
      if (reuse && this.model === 'RefreshToken' && payload?.consumed !== undefined && (await reuse.mayPresentAgain(Provider.ctx as KoaContextWithOIDC | undefined, id, payload))) {
        // Presented again within REFRESH_REUSE_WINDOW while its successor is unused: rotated
        // as if new, which issues the same successor (its id is derived) and loses the consume
        // at the commit, where `flush` tells the retry from reuse once more.
        const { consumed: _consumed, ...again } = payload;
        return again as AdapterPayload;
      }
      return payload as AdapterPayload | undefined;
    }

    async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
      const work = currentWork();
      if (pending(work)) await flush(work);
      return (await state.findBy(this.model, 'user_code', userCode)) as AdapterPayload | undefined;
    }

    async findByUid(uid: string): Promise<AdapterPayload | undefined> {
      const work = currentWork();
      if (pending(work)) await flush(work);
      return (await state.findBy(this.model, 'uid', uid)) as AdapterPayload | undefined;
    }

    /**
     * One conditional UPDATE decides the winner of concurrent redemptions (repositories/
     * provider-state.ts). The loser has just presented an already-used code or refresh token:
     * that is reuse, so the whole grant is revoked (RFC 6749 §4.1.2, RFC 9700 §4.14.2) and the
     * request fails with invalid_grant. In a request, the UPDATE commits with the request's
     * other writes (see RequestWork), with the same outcome.
     */
    async consume(id: string): Promise<void> {
      const work = currentWork();
      if (work) {
        if (work.consume) await flush(work);
        written(work, this.model, id);
        work.consume = { model: this.model, id };
        return;
      }
      await redeemed(await state.consume(this.model, id), { model: this.model, id });
    }

    async destroy(id: string): Promise<void> {
      const work = currentWork();
      if (!work) return state.destroy(this.model, id);
      written(work, this.model, id);
      work.writes.set(keyOf(this.model, id), { key: { model: this.model, id } });
    }

    async revokeByGrantId(grantId: string): Promise<void> {
      const work = currentWork();
      if (work) {
        if (pending(work)) await flush(work);
        // Every token of the grant goes: nothing read ahead in this request still holds.
        work.lookups.clear();
        work.grants.delete(grantId);
      }
      await state.revokeByGrantId(grantId);
    }
  }

  /**
   * Called once oidc-provider has answered a request, before the response leaves: writes what the
   * request deferred. Undefined (no promise) when there is nothing to write; otherwise resolves to
   * undefined once written, or to why nothing was written: InvalidGrant when a redemption lost to
   * a concurrent one, or the database's error.
   */
  function finishProviderRequest(ctx: KoaContextWithOIDC): Promise<unknown> | undefined {
    const work = workOf(ctx);
    if (!work) {
      setWork(ctx, DONE);
      return undefined;
    }
    work.done = true;
    if (!pending(work)) return undefined;
    return flush(work).then(
      () => undefined,
      (err: unknown) => err ?? new Error('write failed'),
    );
  }

  return { Adapter: KnexAdapter, finishProviderRequest };
}
