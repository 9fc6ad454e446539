import Provider, { errors, type Adapter, type AdapterPayload, type KoaContextWithOIDC } from 'oidc-provider';

import type { FoundWithGrant, Payload, ProviderStateRepository, StateKey, StateWrite } from '../repositories/provider-state.js';
import type { ClientService } from '../services/clients.js';

/**
 * What one request to oidc-provider has read ahead and has yet to write.
 *
 * - `grants`: a token is looked up together with its grant (one statement), because every use of
 *   a token (token endpoint, introspection, userinfo) looks up its grant next. Served once, and
 *   dropped when the request writes that grant.
 * - `consume` and `upserts`: at the token endpoint, the code or refresh token being redeemed and
 *   the tokens being issued are written together, as ONE atomic write (one commit instead of
 *   three), when oidc-provider has finished the request and before the response leaves
 *   (`finishProviderRequest`). Any other adapter call of the request writes them first, so the
 *   order of writes as the database sees it is oidc-provider's.
 */
interface RequestWork {
  readonly atTokenEndpoint: boolean;
  /** Token lookups in flight or done, by id: each model found is served once. */
  readonly lookups: Map<string, { found: Promise<FoundWithGrant[]>; unserved: Set<string> }>;
  readonly grants: Map<string, Payload | undefined>;
  consume: StateKey | undefined;
  readonly upserts: Map<string, StateWrite>;
}

const works = new WeakMap<object, RequestWork>();

/**
 * Opaque token values: introspection and revocation look a value up as each of these at once
 * (oidc-provider's findToken), which is one statement here.
 */
const OPAQUE = ['AccessToken', 'ClientCredentials', 'RefreshToken'];
/** Tokens whose uses look up their grant next. */
const WITH_GRANT = new Set([...OPAQUE, 'AuthorizationCode', 'DeviceCode', 'BackchannelAuthenticationRequest']);
/** What the token endpoint issues: written with the redemption. */
const ISSUED = new Set(['AccessToken', 'RefreshToken', 'ClientCredentials']);

/** The work of the oidc-provider request this call runs in (oidc-provider's own AsyncLocalStorage), if any. */
function currentWork(): RequestWork | undefined {
  const ctx = Provider.ctx;
  if (!ctx) return undefined;
  let work = works.get(ctx);
  if (!work) {
    work = { atTokenEndpoint: ctx.oidc?.route === 'token', lookups: new Map(), grants: new Map(), consume: undefined, upserts: new Map() };
    works.set(ctx, work);
  }
  return work;
}

const keyOf = (model: string, id: string) => `${model}\u0000${id}`;

/**
 * oidc-provider's storage contract over Knex: every model lives in the generic provider_state
 * table, except Client, which comes from the clients table through the cached client service.
 */
export function createAdapterClass(deps: { state: ProviderStateRepository; clients: ClientService }) {
  const { state, clients } = deps;

  /**
   * Writes what a request has pending. The redemption and the issued tokens commit together or
   * not at all. When the code or refresh token turns out to be consumed already (a concurrent
   * redemption won), that is reuse: the whole grant is revoked (RFC 6749 §4.1.2, RFC 9700
   * §4.14.2) and InvalidGrant is thrown.
   */
  async function flush(work: RequestWork | undefined): Promise<void> {
    if (!work || (!work.consume && !work.upserts.size)) return;
    const { consume } = work;
    const upserts = [...work.upserts.values()];
    work.consume = undefined;
    work.upserts.clear();
    const result = await state.commit(consume, upserts);
    if (result.consumed || !consume) return;
    if (result.grantId) await state.revokeByGrantId(result.grantId);
    // The description stays oidc-provider's generic one; the detail goes to its logs only.
    throw new errors.InvalidGrant(`${consume.model} already consumed`);
  }

  /** The work of the current request, if it has writes pending: they go first. */
  const pendingWork = () => {
    const work = Provider.ctx ? works.get(Provider.ctx) : undefined;
    return work && (work.consume || work.upserts.size) ? work : undefined;
  };

  /** The request writes (model, id): what it read ahead of that is stale. */
  function written(work: RequestWork | undefined, model: string, id: string): void {
    work?.lookups.get(id)?.unserved.delete(model);
    if (model === 'Grant') work?.grants.delete(id);
  }

  class KnexAdapter implements Adapter {
    constructor(readonly model: string) {}

    async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
      if (this.model === 'Client') throw new Error('clients are managed through Latch, not dynamic registration');
      const work = currentWork();
      written(work, this.model, id);
      if (work?.atTokenEndpoint && ISSUED.has(this.model)) {
        work.upserts.set(keyOf(this.model, id), { model: this.model, id, payload: payload as Payload, expiresIn });
        return;
      }
      await flush(work);
      await state.upsert(this.model, id, payload as Payload, expiresIn);
    }

    async find(id: string): Promise<AdapterPayload | undefined> {
      if (this.model === 'Client') return (await clients.findMetadata(id)) as AdapterPayload | undefined;
      const work = currentWork();
      if (!work) return (await state.find(this.model, id)) as AdapterPayload | undefined;
      if (work.upserts.has(keyOf(this.model, id)) || (work.consume?.model === this.model && work.consume.id === id)) await flush(work);
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
      return (await lookup.found).find((row) => row.model === this.model)?.payload as AdapterPayload | undefined;
    }

    async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
      await flush(pendingWork());
      return (await state.findBy(this.model, 'user_code', userCode)) as AdapterPayload | undefined;
    }

    async findByUid(uid: string): Promise<AdapterPayload | undefined> {
      await flush(pendingWork());
      return (await state.findBy(this.model, 'uid', uid)) as AdapterPayload | undefined;
    }

    /**
     * One conditional UPDATE decides the winner of concurrent redemptions (repositories/
     * provider-state.ts). The loser has just presented an already-used code or refresh token:
     * that is reuse, so the whole grant is revoked (RFC 6749 §4.1.2, RFC 9700 §4.14.2) and the
     * request fails with invalid_grant. At the token endpoint the UPDATE is deferred to commit
     * with the tokens the redemption issues (see RequestWork), with the same outcome.
     */
    async consume(id: string): Promise<void> {
      const work = currentWork();
      written(work, this.model, id);
      if (work?.atTokenEndpoint) {
        if (work.consume) await flush(work);
        work.consume = { model: this.model, id };
        return;
      }
      await flush(work);
      const result = await state.consume(this.model, id);
      if (result.consumed) return;
      if (result.grantId) await state.revokeByGrantId(result.grantId);
      throw new errors.InvalidGrant(`${this.model} already consumed`);
    }

    async destroy(id: string): Promise<void> {
      const work = pendingWork();
      await flush(work);
      written(Provider.ctx ? works.get(Provider.ctx) : undefined, this.model, id);
      await state.destroy(this.model, id);
    }

    async revokeByGrantId(grantId: string): Promise<void> {
      const work = Provider.ctx ? works.get(Provider.ctx) : undefined;
      await flush(pendingWork());
      // Every token of the grant goes: nothing read ahead in this request still holds.
      work?.lookups.clear();
      work?.grants.delete(grantId);
      await state.revokeByGrantId(grantId);
    }
  }

  /**
   * Called once oidc-provider has answered a request, before the response leaves: writes what the
   * token endpoint deferred. A redemption that lost to a concurrent one turns a success into
   * invalid_grant (nothing it issued is stored); a failed write into server_error. Undefined (no
   * promise) when there is nothing to write.
   */
  function finishProviderRequest(ctx: KoaContextWithOIDC, onError: (err: unknown) => void): Promise<void> | undefined {
    const work = works.get(ctx);
    if (!work || (!work.consume && !work.upserts.size)) return undefined;
    return flush(work).catch((err: unknown) => {
      const invalidGrant = err instanceof errors.InvalidGrant;
      if (!invalidGrant) onError(err);
      // An error response stays as oidc-provider made it.
      if (ctx.status >= 400) return;
      ctx.status = invalidGrant ? 400 : 500;
      ctx.body = invalidGrant ? { error: err.error, error_description: err.error_description } : { error: 'server_error', error_description: 'oops! something went wrong' };
    });
  }

  return { Adapter: KnexAdapter, finishProviderRequest };
}
