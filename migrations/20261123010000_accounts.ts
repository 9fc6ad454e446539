import type { Knex } from 'knex';

/**
 * Account features: the audit trail, single-use mailed tokens (email verification, password
 * reset, invitations), TOTP MFA and recovery codes; and the account owning each piece of
 * provider state, so that a password reset or a deactivation ends an account's sessions and
 * refresh tokens in one statement.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('provider_state', (t) => {
    t.string('account_id', 64).nullable().comment('account the session/token/grant belongs to');
    t.index(['account_id'], 'provider_state_account_id');
  });

  await knex.schema.createTable('audit_events', (t) => {
    t.bigIncrements('id').primary();
    t.string('at', 32).notNullable().comment('ISO time');
    t.string('type', 64).notNullable().comment('login.success, login.failure, logout, password.change, password.reset, mfa.enable, mfa.disable, lockout, ...');
    t.string('actor_id', 128).nullable().comment('who did it: account id, client id, or "cli"');
    t.string('subject_id', 128).nullable().comment('whom it concerns: usually an account id');
    t.string('ip', 64).nullable();
    t.string('user_agent', 512).nullable();
    t.string('client_id', 128).nullable().comment('the OAuth client involved, if any');
    t.text('details').nullable().comment('JSON of non-secret facts');
    t.index(['at'], 'audit_events_at');
    t.index(['subject_id', 'at'], 'audit_events_subject');
    t.index(['type', 'at'], 'audit_events_type');
  });

  await knex.schema.createTable('account_tokens', (t) => {
    t.string('id', 64).primary().comment('SHA-256 (hex) of the token: the token itself is only in the mail');
    t.string('purpose', 32).notNullable().comment('verify_email, reset_password, invitation');
    t.string('account_id', 64).nullable().comment('null for an invitation to a new address');
    t.string('email', 320).nullable().comment('address the token was mailed to');
    t.text('data').nullable().comment('JSON: purpose-specific facts (organization, role, ...)');
    t.bigInteger('expires_at').notNullable().comment('epoch seconds');
    t.bigInteger('used_at').nullable().comment('epoch seconds; set once by a conditional UPDATE');
    t.string('created_at', 32).notNullable();
    t.index(['account_id', 'purpose'], 'account_tokens_account');
    t.index(['expires_at'], 'account_tokens_expires_at');
  });

  await knex.schema.createTable('account_mfa', (t) => {
    t.string('account_id', 64).primary().references('id').inTable('accounts').onDelete('CASCADE');
    t.text('totp_secret').notNullable().comment('base32 TOTP secret, encrypted under LATCH_SECRET');
    t.string('enabled_at', 32).nullable().comment('null while enrolment is not confirmed');
    t.bigInteger('last_step').nullable().comment('last accepted TOTP time step: each code is accepted once');
  });

  await knex.schema.createTable('recovery_codes', (t) => {
    t.bigIncrements('id').primary();
    t.string('account_id', 64).notNullable().references('id').inTable('accounts').onDelete('CASCADE');
    t.string('code_hash', 128).notNullable().comment('HMAC-SHA-256 of the code under a LATCH_SECRET-derived key');
    t.string('used_at', 32).nullable();
    t.index(['account_id'], 'recovery_codes_account');
  });
}

export async function down(knex: Knex): Promise<void> {
  for (const table of ['recovery_codes', 'account_mfa', 'account_tokens', 'audit_events']) await knex.schema.dropTableIfExists(table);
  await knex.schema.alterTable('provider_state', (t) => {
    t.dropIndex(['account_id'], 'provider_state_account_id');
    t.dropColumn('account_id');
  });
}
