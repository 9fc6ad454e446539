import type { Knex } from 'knex';

/**
 * Settings that belong to the deployment rather than to one process's environment: the issuer is
 * recorded here by the first server start or CLI command, so a later command without ISSUER
 * acts for the same issuer and one with another ISSUER is refused instead of silently
 * registering a second API resource or mailing links to the wrong host.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('settings', (t) => {
    t.string('key', 64).primary();
    t.text('value').notNullable();
    t.string('updated_at', 32).notNullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('settings');
}
