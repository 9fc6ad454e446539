import type { Db } from '../db/knex.js';
import { createStatements } from '../db/statements.js';
import { toIso } from '../db/knex.js';
import { nowIso } from '../lib/time.js';

/** One account's TOTP factor: pending until the first code confirms it. */
export interface MfaRecord {
  accountId: string;
  /** The base32 secret, encrypted under LATCH_SECRET (services/secrets.ts encrypt). */
  totpSecret: string;
  /** Null while the enrolment is not confirmed. */
  enabledAt: string | null;
  /** Last accepted TOTP time step (RFC 6238 T); null before the first code. */
  lastStep: number | null;
}

interface Row {
  account_id: string;
  totp_secret: string;
  enabled_at: string | null;
  last_step: number | string | null;
}

const fromRow = (r: Row): MfaRecord => ({
  accountId: r.account_id,
  totpSecret: r.totp_secret,
  enabledAt: toIso(r.enabled_at),
  lastStep: r.last_step === null || r.last_step === undefined ? null : Number(r.last_step),
});

function isDuplicateKey(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  return e.code === '23505' || /^SQLITE_CONSTRAINT_(PRIMARYKEY|UNIQUE)$/.test(e.code ?? '') || /UNIQUE constraint failed/.test(e.message ?? '');
}

/** The account_mfa table. Every "accept once" rule is a conditional UPDATE, never read-then-write. */
export function createMfaRepository(db: Db) {
  const table = () => db('account_mfa');
  // Every password sign-in asks whether the account has a factor: straight to the driver.
  const direct = createStatements(db);
  return {
    async find(accountId: string): Promise<MfaRecord | undefined> {
      const [row] = await direct.all<Row>('select * from account_mfa where account_id = ? limit 1', [accountId]);
      return row ? fromRow(row) : undefined;
    },

    /**
     * Stores a new pending (unconfirmed) secret, replacing an older pending one. Never touches a
     * confirmed factor: returns false when the account already has one.
     */
    async savePending(accountId: string, encryptedSecret: string): Promise<boolean> {
      const changed = await table().where({ account_id: accountId }).whereNull('enabled_at').update({ totp_secret: encryptedSecret, last_step: null });
      if (changed === 1) return true;
      try {
        await table().insert({ account_id: accountId, totp_secret: encryptedSecret, enabled_at: null, last_step: null });
        return true;
      } catch (err) {
        // The primary key exists: a confirmed factor, or a concurrent enrolment that won.
        if (isDuplicateKey(err)) return false;
        throw err;
      }
    },

    /** Confirms a pending factor with the step of its first code. False if it was not pending. */
    async enable(accountId: string, step: number): Promise<boolean> {
      const changed = await table().where({ account_id: accountId }).whereNull('enabled_at').update({ enabled_at: nowIso(), last_step: step });
      return changed === 1;
    },

    /**
     * Records `step` as used when it is later than the last accepted one (RFC 6238 §5.2: a code
     * is accepted once). Of two concurrent uses of one code exactly one sees a changed row.
     */
    async acceptStep(accountId: string, step: number): Promise<boolean> {
      const changed = await table()
        .where({ account_id: accountId })
        .whereNotNull('enabled_at')
        .where((w) => void w.whereNull('last_step').orWhere('last_step', '<', step))
        .update({ last_step: step });
      return changed === 1;
    },

    async delete(accountId: string): Promise<boolean> {
      return (await table().where({ account_id: accountId }).delete()) > 0;
    },
  };
}

export type MfaRepository = ReturnType<typeof createMfaRepository>;
