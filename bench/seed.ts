/**
 * --seed-rows: fills Latch's database directly (Knex, large batches) with 1,000,000 expired and
 * 200,000 live provider_state rows and 100,000 accounts, shaped like the rows Latch writes.
 */
import { randomBytes, randomUUID } from 'node:crypto';

import argon2 from 'argon2';
import type { Knex } from 'knex';

import { openDatabase } from '../src/db/knex.js';
import { DEFAULT_ARGON2 } from '../src/services/passwords.js';
import type { Database } from './servers.js';

export const SEED = { expired: 1_000_000, live: 200_000, accounts: 100_000 };

const id = () => randomBytes(32).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);

/** Models in rough proportion to what a busy Latch leaves behind. */
const EXPIRED_MODELS = ['AccessToken', 'AccessToken', 'AccessToken', 'AuthorizationCode', 'AuthorizationCode', 'Interaction', 'Interaction', 'Session', 'RefreshToken', 'Grant'];
const LIVE_MODELS = ['RefreshToken', 'RefreshToken', 'RefreshToken', 'RefreshToken', 'Session', 'Session', 'Grant', 'Grant', 'AccessToken', 'AccessToken'];

function stateRow(i: number, live: boolean) {
  const models = live ? LIVE_MODELS : EXPIRED_MODELS;
  const model = models[i % models.length]!;
  const jti = id();
  const grantId = model === 'Session' || model === 'Interaction' ? null : id();
  const iat = now() - (live ? 60 : 90_000 + (i % 86_400));
  const exp = live ? now() + 3600 + (i % 600_000) : now() - 1 - (i % 86_400);
  const uid = model === 'Session' ? id() : null;
  const payload = {
    iat,
    exp,
    jti,
    kind: model,
    ...(grantId ? { grantId, clientId: 'seeded-client-id-0000000000', accountId: randomUUID(), scope: 'openid offline_access' } : {}),
    ...(uid ? { uid, loginTs: iat, accountId: randomUUID(), authorizations: {} } : {}),
    ...(model === 'AccessToken' ? { gty: 'authorization_code', sessionUid: id(), expiresWithSession: true } : {}),
  };
  return {
    model,
    id: model === 'Grant' && grantId ? grantId : jti,
    payload: JSON.stringify(payload),
    grant_id: model === 'Grant' ? null : grantId,
    user_code: null,
    uid,
    // Newer schemas index the account a row belongs to (filled when the column exists).
    account_id: typeof payload.accountId === 'string' ? payload.accountId : null,
    expires_at: exp,
    consumed_at: null,
  };
}

const STATE_COLUMNS = ['model', 'id', 'payload', 'grant_id', 'user_code', 'uid', 'expires_at', 'consumed_at'] as const;
const ACCOUNT_COLUMNS = ['id', 'email', 'password_hash', 'display_name', 'email_verified', 'active', 'superuser', 'created_at', 'updated_at'] as const;

/**
 * One multi-row INSERT ... VALUES statement. (Knex's SQLite insert compiles many rows to a
 * compound SELECT, which SQLite caps at 500 terms; a VALUES list takes as many rows as bind
 * variables allow.)
 */
async function insertRows(trx: Knex.Transaction, table: string, columns: readonly string[], rows: Record<string, unknown>[]): Promise<void> {
  if (!rows.length) return;
  const tuple = `(${columns.map(() => '?').join(', ')})`;
  const sql = `insert into ${table} (${columns.join(', ')}) values ${rows.map(() => tuple).join(', ')}`;
  await trx.raw(sql, rows.flatMap((r) => columns.map((c) => (r[c] ?? null) as Knex.Value)));
}

/** Inserts the seed rows; `log` gets progress lines. */
export async function seedRows(db: Database, log: (s: string) => void): Promise<{ seconds: number }> {
  const knex = openDatabase(db.kind === 'postgres' ? { client: 'pg', connectionString: db.url } : { client: 'sqlite', filename: db.file! });
  const t0 = performance.now();
  // Bound by SQLite's 32,766 and PostgreSQL's 65,535 bind variables per statement (9 columns).
  const stateBatch = db.kind === 'postgres' ? 5000 : 3500;
  try {
    const stateColumns = [...STATE_COLUMNS, ...('account_id' in (await knex('provider_state').columnInfo()) ? ['account_id'] : [])];
    const plan: [string, number, boolean][] = [
      ['expired provider_state', SEED.expired, false],
      ['live provider_state', SEED.live, true],
    ];
    for (const [label, total, live] of plan) {
      let done = 0;
      while (done < total) {
        // One transaction per 100,000 rows.
        await knex.transaction(async (trx) => {
          const end = Math.min(total, done + 100_000);
          for (let i = done; i < end; i += stateBatch) {
            const rows = Array.from({ length: Math.min(stateBatch, end - i) }, (_, k) => stateRow(i + k, live));
            await insertRows(trx, 'provider_state', stateColumns, rows);
          }
          done = end;
        });
        log(`  seeded ${done.toLocaleString('en')} / ${total.toLocaleString('en')} ${label} rows (${Math.round((performance.now() - t0) / 1000)} s)`);
      }
    }
    // One argon2id hash at Latch's cost, reused for every account.
    const hash = await argon2.hash('seeded account password', { type: argon2.argon2id, ...DEFAULT_ARGON2 });
    const stamp = new Date().toISOString();
    await knex.transaction(async (trx) => {
      for (let i = 0; i < SEED.accounts; i += 3000) {
        const rows = Array.from({ length: Math.min(3000, SEED.accounts - i) }, (_, k) => ({
          id: randomUUID(),
          email: `seeded.${i + k}@seed.bench.example`,
          password_hash: hash,
          display_name: `Seeded ${i + k}`,
          email_verified: false,
          active: true,
          superuser: false,
          created_at: stamp,
          updated_at: stamp,
        }));
        await insertRows(trx, 'accounts', ACCOUNT_COLUMNS, rows);
      }
    });
    log(`  seeded ${SEED.accounts.toLocaleString('en')} accounts (${Math.round((performance.now() - t0) / 1000)} s)`);
  } finally {
    await knex.destroy();
  }
  return { seconds: Math.round((performance.now() - t0) / 100) / 10 };
}

/** Counts expired and live provider_state rows (to tell whether a purge ran during a measurement). */
export async function countState(db: Database): Promise<{ expired: number; live: number }> {
  const knex = openDatabase(db.kind === 'postgres' ? { client: 'pg', connectionString: db.url } : { client: 'sqlite', filename: db.file! });
  try {
    const t = now();
    const [e] = await knex('provider_state').whereNotNull('expires_at').where('expires_at', '<=', t).count({ n: '*' });
    const [a] = await knex('provider_state').where((w) => void w.whereNull('expires_at').orWhere('expires_at', '>', t)).count({ n: '*' });
    return { expired: Number(e?.n ?? 0), live: Number(a?.n ?? 0) };
  } finally {
    await knex.destroy();
  }
}
