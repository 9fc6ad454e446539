import type { Knex } from 'knex';

/** RFC 9449 §5.2: a client registered with dpop_bound_access_tokens must send a DPoP proof with every token request. */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('clients', (t) => {
    t.boolean('require_dpop').notNullable().defaultTo(false);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('clients', (t) => {
    t.dropColumn('require_dpop');
  });
}
