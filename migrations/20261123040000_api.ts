import type { Knex } from 'knex';

/**
 * Admin API: client-secret rotation with an overlap. After `POST /api/v1/clients/{id}/rotate-secret`
 * with `overlap_seconds`, the previous secret's HMAC is kept and still accepted until the stored
 * time, so deployments can switch to the new secret without downtime.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('clients', (t) => {
    t.string('previous_secret_hash', 255).nullable().comment('HMAC of the secret before the last rotation, accepted until previous_secret_expires_at');
    t.string('previous_secret_expires_at', 32).nullable().comment('ISO time until which previous_secret_hash is accepted');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('clients', (t) => {
    t.dropColumn('previous_secret_hash');
    t.dropColumn('previous_secret_expires_at');
  });
}
