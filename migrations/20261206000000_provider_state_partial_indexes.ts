import type { Knex } from 'knex';

/**
 * provider_state's secondary lookups (uid, user_code, grant_id, account_id) concern a few models
 * each: an Interaction or access token has no uid, most rows have no user_code, a Session has no
 * grant_id. Partial indexes (`WHERE column IS NOT NULL`, same syntax on PostgreSQL and SQLite)
 * hold only the rows that have the value, so most inserts update two B-trees fewer. Every query
 * on these columns is an equality or IN, which both engines match to the partial index.
 */
const INDEXES: { name: string; columns: string; where: string }[] = [
  { name: 'provider_state_uid', columns: 'model, uid', where: 'uid' },
  { name: 'provider_state_user_code', columns: 'model, user_code', where: 'user_code' },
  { name: 'provider_state_grant_id', columns: 'grant_id', where: 'grant_id' },
  { name: 'provider_state_account_id', columns: 'account_id', where: 'account_id' },
];

export async function up(knex: Knex): Promise<void> {
  for (const { name, columns, where } of INDEXES) {
    await knex.raw(`DROP INDEX IF EXISTS ${name}`);
    await knex.raw(`CREATE INDEX ${name} ON provider_state (${columns}) WHERE ${where} IS NOT NULL`);
  }
}

export async function down(knex: Knex): Promise<void> {
  for (const { name, columns } of INDEXES) {
    await knex.raw(`DROP INDEX IF EXISTS ${name}`);
    await knex.raw(`CREATE INDEX ${name} ON provider_state (${columns})`);
  }
}
