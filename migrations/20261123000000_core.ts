import type { Knex } from 'knex';

/**
 * Core schema: provider state, clients, resource servers, accounts, signing keys and the change
 * feed that keeps every process's caches in step. Timestamps are ISO strings written by the
 * application (portable across SQLite and PostgreSQL); expiry columns are epoch seconds.
 */
export async function up(knex: Knex): Promise<void> {
  // One generic table for oidc-provider's short-lived models (sessions, codes, tokens, grants, ...).
  await knex.schema.createTable('provider_state', (t) => {
    t.string('model', 64).notNullable().comment('oidc-provider model name (Session, AuthorizationCode, RefreshToken, Grant, ...)');
    t.string('id', 255).notNullable().comment('model id (jti, uid of an interaction, grant id, ...)');
    t.text('payload').notNullable().comment('JSON payload as oidc-provider gave it');
    t.string('grant_id', 255).nullable().comment('grant the artifact belongs to, for revokeByGrantId');
    t.string('user_code', 255).nullable().comment('device flow user code');
    t.string('uid', 255).nullable().comment('session uid');
    t.bigInteger('expires_at').nullable().comment('epoch seconds after which the row is dead and purged');
    t.bigInteger('consumed_at').nullable().comment('epoch seconds of single-use consumption (codes, refresh tokens)');
    t.primary(['model', 'id']);
    t.index(['grant_id'], 'provider_state_grant_id');
    t.index(['model', 'uid'], 'provider_state_uid');
    t.index(['model', 'user_code'], 'provider_state_user_code');
    t.index(['expires_at'], 'provider_state_expires_at');
  });

  await knex.schema.createTable('resource_servers', (t) => {
    t.string('id', 64).primary().comment('internal id');
    t.string('identifier', 2048).notNullable().unique().comment('RFC 8707 resource indicator = access-token audience');
    t.string('name', 255).nullable();
    t.text('scopes').notNullable().defaultTo('').comment('space-separated scopes this API defines');
    t.integer('access_token_ttl').nullable().comment('seconds; null = ACCESS_TOKEN_TTL');
    t.string('signing_alg', 16).notNullable().defaultTo('RS256').comment('JWS alg of its access tokens');
    t.string('created_at', 32).notNullable();
    t.string('updated_at', 32).notNullable();
  });

  await knex.schema.createTable('clients', (t) => {
    t.string('id', 128).primary().comment('client_id');
    t.string('name', 255).notNullable();
    t.string('secret_hash', 128).nullable().comment('HMAC-SHA-256(LATCH_SECRET-derived key, secret); never the secret');
    t.text('grant_types').notNullable().comment('JSON array');
    t.text('redirect_uris').notNullable().defaultTo('[]').comment('JSON array, matched exactly');
    t.text('post_logout_redirect_uris').notNullable().defaultTo('[]').comment('JSON array');
    t.text('scopes').notNullable().defaultTo('').comment('space-separated scopes the client may be granted');
    t.text('resources').notNullable().defaultTo('[]').comment('JSON array of resource identifiers it may get tokens for');
    t.text('web_origins').notNullable().defaultTo('[]').comment('JSON array of CORS origins');
    t.string('token_endpoint_auth_method', 32).notNullable();
    t.string('jwks_uri', 2048).nullable();
    t.boolean('is_public').notNullable().defaultTo(false);
    t.boolean('first_party').notNullable().defaultTo(false).comment('skips the consent page');
    t.boolean('enabled').notNullable().defaultTo(true);
    t.string('created_at', 32).notNullable();
    t.string('updated_at', 32).notNullable();
  });

  await knex.schema.createTable('accounts', (t) => {
    t.string('id', 64).primary().comment('subject identifier (sub)');
    t.string('email', 320).notNullable().comment('unique case-insensitively (index on lower(email))');
    t.text('password_hash').nullable().comment('argon2id PHC string');
    t.string('display_name', 255).nullable();
    t.boolean('email_verified').notNullable().defaultTo(false);
    t.boolean('active').notNullable().defaultTo(true);
    t.boolean('superuser').notNullable().defaultTo(false);
    t.string('created_at', 32).notNullable();
    t.string('updated_at', 32).notNullable();
    t.string('last_login_at', 32).nullable();
  });
  // Expression index: same syntax on SQLite and PostgreSQL.
  await knex.raw('CREATE UNIQUE INDEX accounts_email_lower ON accounts (lower(email))');

  await knex.schema.createTable('signing_keys', (t) => {
    t.string('kid', 128).primary();
    t.string('alg', 16).notNullable().comment('RS256, ES256 or EdDSA');
    t.text('public_jwk').notNullable().comment('JSON public JWK');
    t.text('private_jwk').notNullable().comment('private JWK encrypted with AES-256-GCM under LATCH_SECRET');
    t.string('status', 16).notNullable().defaultTo('active').comment('active (published; newest per alg signs) or retired');
    t.string('created_at', 32).notNullable();
    t.string('retired_at', 32).nullable();
  });

  // Change feed: every write to a cached table appends a row; every process polls for new ids.
  await knex.schema.createTable('changes', (t) => {
    t.bigIncrements('id').primary();
    t.string('topic', 64).notNullable().comment('clients, resources, keys, ...');
    t.string('created_at', 32).notNullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  for (const table of ['changes', 'signing_keys', 'accounts', 'clients', 'resource_servers', 'provider_state']) {
    await knex.schema.dropTableIfExists(table);
  }
}
