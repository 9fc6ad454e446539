import type { Knex } from 'knex';

/**
 * The durable mail queue (services/mail-queue.ts): every mail is written here before it is
 * sent, so an SMTP outage or a restart delays it instead of losing it. The mail itself
 * (recipient, subject, text, html) is one AES-256-GCM ciphertext that is deleted once the mail
 * is sent or given up; the rest of the row is kept for a day as its delivery record.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('mail_queue', (t) => {
    t.string('id', 36).primary();
    t.string('kind', 32).notNullable().comment('verify_email, reset_password, invitation, already_registered, organization_invitation, other');
    t.string('account_id', 64).nullable().references('id').inTable('accounts').onDelete('CASCADE').comment('the account the mail is about, if any');
    t.text('payload').nullable().comment('encrypted JSON {to, subject, text, html}; null once sent or failed');
    t.integer('attempts').notNullable().defaultTo(0);
    t.bigInteger('created_at').notNullable().comment('epoch seconds');
    t.bigInteger('next_attempt_at').notNullable().comment('epoch seconds; while an attempt runs, the end of its lease');
    t.text('last_error').nullable();
    t.bigInteger('sent_at').nullable().comment('epoch seconds');
    t.bigInteger('failed_at').nullable().comment('epoch seconds: retries gave up');
    t.index(['account_id', 'kind'], 'mail_queue_account');
    t.index(['created_at'], 'mail_queue_created_at');
  });
  // Only mails still to send (payload set) are looked up by due time: a day of sent rows is not
  // walked by every sender pass. Same syntax on PostgreSQL and SQLite.
  await knex.raw('CREATE INDEX mail_queue_due ON mail_queue (next_attempt_at) WHERE payload IS NOT NULL');
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('mail_queue');
}
