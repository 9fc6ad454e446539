import type { Knex } from 'knex';

/**
 * Rate-limit counters for RATE_LIMIT_STORE=database, shared by every instance on the database.
 * The layout (exactly these three columns, in this order) is the one rate-limiter-flexible's
 * RateLimiterPostgres and RateLimiterSQLite read and write; creating it here rather than letting
 * the library create it at run time keeps the schema under migrations on both engines.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('rate_limits', (t) => {
    t.string('key', 255).primary().comment('limiter name ":" SHA-256 of the counted key (an IP, an address, an account+IP pair)');
    t.integer('points').notNullable().defaultTo(0).comment('events counted in the current window');
    t.bigInteger('expire').nullable().comment('end of the window, epoch milliseconds');
    t.index(['expire'], 'rate_limits_expire');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('rate_limits');
}
