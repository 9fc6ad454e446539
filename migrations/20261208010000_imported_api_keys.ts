import type { Knex } from 'knex';

/**
 * API keys imported from an app (`latch import app`) become personal access tokens that keep
 * their old value, which has no `lat_` prefix. `token_format` says how `token_hash` was made:
 * null for Latch's own tokens; `sha256` for an imported key stored as the SHA-256 hex of its
 * value; `bcrypt` for one whose app kept a bcrypt hash, found through `token_prefix` (the key's
 * first characters, as the app stored them) and moved to `sha256` at its first use.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('personal_access_tokens', (t) => {
    t.string('token_format', 16).nullable();
    t.string('token_prefix', 64).nullable();
    t.index(['token_prefix'], 'personal_access_tokens_prefix');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('personal_access_tokens', (t) => {
    t.dropIndex(['token_prefix'], 'personal_access_tokens_prefix');
  });
  await knex.schema.alterTable('personal_access_tokens', (t) => {
    t.dropColumn('token_prefix');
    t.dropColumn('token_format');
  });
}
