import { createHash } from 'node:crypto';

import type { Knex } from 'knex';

/**
 * Codes, refresh tokens and opaque access tokens were stored under their own value as the
 * primary key of provider_state (and again as `jti` in the payload): a dump held live tokens.
 * They move to the key repositories/provider-state.ts now writes, `h.` + base64url(SHA-256(id)),
 * without the `jti` copy, so every token a client holds keeps working. Device codes (ten minutes
 * at most) are dropped instead: their new form also carries the id sealed under LATCH_SECRET,
 * which a migration does not hold; a device in the middle of signing in starts again.
 */
const MODELS = ['AuthorizationCode', 'RefreshToken', 'AccessToken', 'ClientCredentials', 'BackchannelAuthenticationRequest'];
const BATCH = 500;

export async function up(knex: Knex): Promise<void> {
  await knex('provider_state').where({ model: 'DeviceCode' }).whereNot('id', 'like', 'h.%').delete();
  for (;;) {
    const rows = (await knex('provider_state').select('model', 'id', 'payload').whereIn('model', MODELS).whereNot('id', 'like', 'h.%').limit(BATCH)) as { model: string; id: string; payload: string }[];
    if (!rows.length) return;
    await knex.transaction(async (trx) => {
      for (const row of rows) {
        const { jti: _jti, ...payload } = JSON.parse(row.payload) as Record<string, unknown>;
        const id = `h.${createHash('sha256').update(row.id).digest('base64url')}`;
        await trx('provider_state').where({ model: row.model, id: row.id }).update({ id, payload: JSON.stringify(payload) });
      }
    });
  }
}

/** The hashed rows cannot be turned back into tokens: going down ends them (clients sign in again). */
export async function down(knex: Knex): Promise<void> {
  await knex('provider_state').whereIn('model', [...MODELS, 'DeviceCode']).where('id', 'like', 'h.%').delete();
}
