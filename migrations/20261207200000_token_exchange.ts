import type { Knex } from 'knex';

/**
 * Token exchange (RFC 8693): the resources whose access tokens a client registered for the
 * token-exchange grant may present as `subject_token` (a JSON array of resource identifiers;
 * empty for every other client).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('clients', (t) => {
    t.text('exchange_subject_audiences').notNullable().defaultTo('[]');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('clients', (t) => {
    t.dropColumn('exchange_subject_audiences');
  });
}
