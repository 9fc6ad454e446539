import { errors, type Adapter, type AdapterPayload } from 'oidc-provider';

import type { ProviderStateRepository } from '../repositories/provider-state.js';
import type { ClientService } from '../services/clients.js';

/**
 * oidc-provider's storage contract over Knex: every model lives in the generic provider_state
 * table, except Client, which comes from the clients table through the cached client service.
 */
export function createAdapterClass(deps: { state: ProviderStateRepository; clients: ClientService }) {
  const { state, clients } = deps;

  return class KnexAdapter implements Adapter {
    constructor(readonly model: string) {}

    async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
      if (this.model === 'Client') throw new Error('clients are managed through Latch, not dynamic registration');
      await state.upsert(this.model, id, payload as Record<string, unknown>, expiresIn);
    }

    async find(id: string): Promise<AdapterPayload | undefined> {
      if (this.model === 'Client') return (await clients.findMetadata(id)) as AdapterPayload | undefined;
      return (await state.find(this.model, id)) as AdapterPayload | undefined;
    }

    async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
      return (await state.findBy(this.model, 'user_code', userCode)) as AdapterPayload | undefined;
    }

    async findByUid(uid: string): Promise<AdapterPayload | undefined> {
      return (await state.findBy(this.model, 'uid', uid)) as AdapterPayload | undefined;
    }

    /**
     * One conditional UPDATE decides the winner of concurrent redemptions. The loser has just
     * presented an already-used code or refresh token: that is reuse, so the whole grant is
     * revoked (RFC 6749 §4.1.2, RFC 9700 §4.14.2) and the request fails with invalid_grant.
     */
    async consume(id: string): Promise<void> {
      const result = await state.consume(this.model, id);
      if (result.consumed) return;
      if (result.grantId) await state.revokeByGrantId(result.grantId);
      // The description stays oidc-provider's generic one; the detail goes to its logs only.
      throw new errors.InvalidGrant(`${this.model} already consumed`);
    }

    async destroy(id: string): Promise<void> {
      await state.destroy(this.model, id);
    }

    async revokeByGrantId(grantId: string): Promise<void> {
      await state.revokeByGrantId(grantId);
    }
  };
}
