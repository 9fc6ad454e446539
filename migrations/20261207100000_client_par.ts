import type { Knex } from 'knex';

/** RFC 9126 §6: a client registered with require_pushed_authorization_requests may only use PAR. */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('clients', (t) => {
    t.boolean('require_par').notNullable().defaultTo(false);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('clients', (t) => {
    t.dropColumn('require_par');
  });
}
