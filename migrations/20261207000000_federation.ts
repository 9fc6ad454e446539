import type { Knex } from 'knex';

/**
 * Upstream identity providers (OpenID Connect providers and GitHub) and the identities linked
 * through them. A provider's `name` is its key everywhere (the admin API's id, the callback path),
 * so links reference it directly. Deleting a provider deletes its links (the service does it in
 * one transaction and audits each; the foreign key cascades as a backstop); erasing an account
 * deletes its links through the cascade on account_id.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('identity_providers', (t) => {
    t.string('name', 63).primary().comment('slug ^[a-z0-9][a-z0-9-]{0,62}$: the admin API id and the callback path');
    t.string('display_name', 255).notNullable();
    t.string('kind', 16).notNullable().comment('oidc or github');
    t.string('issuer', 2048).nullable().comment('oidc: the issuer identifier, discovered at first use');
    t.string('client_id', 512).notNullable();
    t.text('client_secret').notNullable().comment('AES-256-GCM under a key derived from LATCH_SECRET, never plaintext');
    t.text('scopes').notNullable().comment('space-separated');
    t.text('allowed_domains').notNullable().defaultTo('').comment('space-separated lower-case email domains; empty = any');
    t.string('link_policy', 8).notNullable().defaultTo('ask').comment('auto, ask or never');
    t.boolean('enabled').notNullable().defaultTo(true);
    t.string('api_url', 2048).nullable().comment('github: REST API base');
    t.string('web_url', 2048).nullable().comment('github: web base (OAuth endpoints)');
    t.string('created_at', 32).notNullable();
    t.string('updated_at', 32).notNullable();
    t.index(['created_at', 'name'], 'identity_providers_created');
  });

  await knex.schema.createTable('federated_identities', (t) => {
    t.string('id', 64).primary();
    t.string('provider', 63).notNullable().references('name').inTable('identity_providers').onDelete('CASCADE');
    t.string('subject', 255).notNullable().comment('the upstream sub (OIDC Core §2: at most 255 ASCII characters), or the GitHub numeric user id');
    t.string('account_id', 64).notNullable().references('id').inTable('accounts').onDelete('CASCADE');
    t.string('email', 320).nullable().comment('the upstream email as of the last sign-in');
    t.string('linked_at', 32).notNullable();
    t.string('last_login_at', 32).nullable();
    t.unique(['provider', 'subject'], { indexName: 'federated_identities_subject' });
    // One link per provider and account: the admin API and the account page name a link by its
    // account and provider. Its leading column serves an account's lists and the erase cascade.
    t.unique(['account_id', 'provider'], { indexName: 'federated_identities_account' });
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('federated_identities');
  await knex.schema.dropTableIfExists('identity_providers');
}
