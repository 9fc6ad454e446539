import type { Knex } from 'knex';

/**
 * OIDC Back-Channel Logout 1.0: a client's `backchannel_logout_uri` (and whether its logout
 * tokens name the session, §2.2), and the durable queue of deliveries to those URIs: one row per
 * (client, subject, session) still to be told, with its attempts and when the next one is due
 * (epoch milliseconds; also the claim lease of the instance delivering it).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('clients', (t) => {
    t.string('backchannel_logout_uri', 2048).nullable();
    t.boolean('backchannel_logout_session_required').notNullable().defaultTo(true);
  });
  await knex.schema.createTable('backchannel_logouts', (t) => {
    t.string('id', 64).primary();
    t.string('client_id', 128).notNullable().references('id').inTable('clients').onDelete('CASCADE');
    t.string('sub', 255).notNullable();
    t.string('sid', 255).nullable();
    t.integer('attempts').notNullable().defaultTo(0);
    t.bigInteger('next_attempt_at').notNullable();
    t.text('last_error').nullable();
    t.bigInteger('created_at').notNullable();
    t.index(['next_attempt_at'], 'backchannel_logouts_due');
    t.index(['client_id'], 'backchannel_logouts_client');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('backchannel_logouts');
  await knex.schema.alterTable('clients', (t) => {
    t.dropColumn('backchannel_logout_session_required');
    t.dropColumn('backchannel_logout_uri');
  });
}
