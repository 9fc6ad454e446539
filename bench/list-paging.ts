/**
 * What one page of an admin list costs with 10 accounts and with 100,000, on SQLite and, when
 * DATABASE_URL names a PostgreSQL server, on PostgreSQL too (a scratch database is created and
 * dropped). A program, not a test: it prints a table of median milliseconds per page, read
 * through the accounts service exactly as GET /api/v1/users reads it.
 *
 *   npx tsx bench/list-paging.ts
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npx tsx bench/list-paging.ts
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { Knex } from 'knex';
import pg from 'pg';

import { loadConfig } from '../src/config/index.js';
import { openDatabase, type Db } from '../src/db/knex.js';
import { migrateLatest } from '../src/db/migrate.js';
import { createLogger } from '../src/lib/logger.js';
import { createServices } from '../src/services/index.js';

const LARGE = 100_000;
const SMALL = 10;
const RUNS = 200;
const LIMIT = 50;

interface Scratch {
  label: string;
  url: string;
  drop(): Promise<void>;
}

async function scratchDatabases(): Promise<Scratch[]> {
  const dir = mkdtempSync(join(tmpdir(), 'latch-list-bench-'));
  const out: Scratch[] = [{ label: 'SQLite', url: `sqlite:${join(dir, 'latch.sqlite')}`, drop: async () => rmSync(dir, { recursive: true, force: true }) }];
  const base = process.env.DATABASE_URL;
  if (base && /^postgres(ql)?:\/\//.test(base)) {
    const name = `latch_list_bench_${randomBytes(4).toString('hex')}`;
    const admin = new pg.Client({ connectionString: base });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    const url = new URL(base);
    url.pathname = `/${name}`;
    out.push({
      label: 'PostgreSQL',
      url: url.toString(),
      async drop() {
        const c = new pg.Client({ connectionString: base });
        await c.connect();
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        await c.end();
      },
    });
  }
  return out;
}

/**
 * Accounts created one second apart (newest last), every seventh inactive, with a placeholder
 * hash: the list never verifies a password, so no argon2 per row. One multi-row INSERT per batch.
 */
async function seed(db: Db, from: number, to: number): Promise<void> {
  const columns = ['id', 'email', 'password_hash', 'display_name', 'email_verified', 'active', 'superuser', 'created_at', 'updated_at'];
  const start = Date.UTC(2025, 0, 1);
  await db.transaction(async (trx) => {
    for (let i = from; i < to; i += 2000) {
      const rows = Array.from({ length: Math.min(2000, to - i) }, (_, k) => {
        const n = i + k;
        const at = new Date(start + n * 1000).toISOString();
        return [randomUUID(), `seeded.${n}@list.bench.example`, '$argon2id$placeholder', `Seeded ${n}`, false, n % 7 !== 0, false, at, at];
      });
      const tuple = `(${columns.map(() => '?').join(', ')})`;
      await trx.raw(`insert into accounts (${columns.join(', ')}) values ${rows.map(() => tuple).join(', ')}`, rows.flat() as Knex.Value[]);
    }
  });
}

async function median(work: () => Promise<unknown>, runs = RUNS): Promise<number> {
  for (let i = 0; i < Math.min(20, runs); i++) await work();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await work();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

type Services = ReturnType<typeof createServices>;

/** The pages measured: the first, one deep in the table (from a cursor), and filtered ones. */
async function measure(services: Services, total: number): Promise<Record<string, number>> {
  const middle = await services.accounts.page({ limit: Math.max(1, Math.floor(total / 2)) });
  const cursor = middle.next ?? undefined;
  return {
    'first page': await median(() => services.accounts.page({ limit: LIMIT })),
    'page from a cursor halfway': await median(() => services.accounts.page({ limit: LIMIT, cursor })),
    'active=true': await median(() => services.accounts.page({ limit: LIMIT, filters: { active: true } })),
    'email substring, common ("list.bench")': await median(() => services.accounts.page({ limit: LIMIT, filters: { email: 'list.bench' } })),
    'email substring, one match ("seeded.3@")': await median(() => services.accounts.page({ limit: LIMIT, filters: { email: 'seeded.3@' } })),
    // For comparison: what every list cost before, the whole table read to cut one page from it.
    'whole table read (the former in-memory paging)': await median(() => services.accounts.list(), 10),
  };
}

async function main(): Promise<void> {
  const lines: string[] = [];
  for (const scratch of await scratchDatabases()) {
    const config = loadConfig({ DATABASE_URL: scratch.url, LATCH_SECRET: 'list-bench-secret-0123456789-abcdefghijklmnop', DATA_DIR: mkdtempSync(join(tmpdir(), 'latch-list-bench-data-')) });
    const db = openDatabase(config.database);
    try {
      await migrateLatest(db);
      const services = createServices({ db, config, logger: createLogger('error') });
      await seed(db, 0, SMALL);
      const small = await measure(services, SMALL);
      await seed(db, SMALL, LARGE);
      if (db.client.config.client === 'pg') await db.raw('analyze accounts');
      const large = await measure(services, LARGE);
      await services.feed.stop();
      await services.rateLimits.close();
      for (const name of Object.keys(small)) lines.push(`| ${scratch.label} | ${name} | ${small[name]!.toFixed(3)} | ${large[name]!.toFixed(3)} |`);
    } finally {
      await db.destroy();
      await scratch.drop();
    }
  }
  console.log(`Median ms per page of ${LIMIT} (${RUNS} runs), read through services.accounts.page:\n`);
  console.log(`| engine | page | ${SMALL} accounts | ${LARGE.toLocaleString('en')} accounts |`);
  console.log('|---|---|---:|---:|');
  for (const l of lines) console.log(l);
}

await main();
