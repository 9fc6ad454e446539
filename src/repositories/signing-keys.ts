import type { Db } from '../db/knex.js';
import { toIso } from '../db/knex.js';
import { nowIso } from '../lib/time.js';

export interface SigningKeyRecord {
  kid: string;
  alg: string;
  publicJwk: Record<string, unknown>;
  /** Encrypted private JWK (see services/secrets.ts). */
  privateJwkEncrypted: string;
  status: 'active' | 'retired';
  createdAt: string;
  retiredAt: string | null;
}

interface Row {
  kid: string;
  alg: string;
  public_jwk: string;
  private_jwk: string;
  status: 'active' | 'retired';
  created_at: string;
  retired_at: string | null;
}

function fromRow(r: Row): SigningKeyRecord {
  return {
    kid: r.kid,
    alg: r.alg,
    publicJwk: JSON.parse(r.public_jwk) as Record<string, unknown>,
    privateJwkEncrypted: r.private_jwk,
    status: r.status,
    createdAt: toIso(r.created_at) ?? r.created_at,
    retiredAt: toIso(r.retired_at),
  };
}

export function createSigningKeysRepository(db: Db) {
  return {
    async insertMany(keys: { kid: string; alg: string; publicJwk: Record<string, unknown>; privateJwkEncrypted: string; createdAt?: string }[]): Promise<void> {
      if (keys.length === 0) return;
      const now = nowIso();
      await db('signing_keys').insert(
        keys.map((k) => ({
          kid: k.kid,
          alg: k.alg,
          public_jwk: JSON.stringify(k.publicJwk),
          private_jwk: k.privateJwkEncrypted,
          status: 'active',
          created_at: k.createdAt ?? now,
        })),
      );
    },
    /** Every key, newest first. */
    async list(): Promise<SigningKeyRecord[]> {
      return (await db('signing_keys').select<Row[]>('*').orderBy([{ column: 'created_at', order: 'desc' }, { column: 'kid', order: 'asc' }])).map(fromRow);
    },
    async retire(kid: string): Promise<boolean> {
      return (await db('signing_keys').where({ kid, status: 'active' }).update({ status: 'retired', retired_at: nowIso() })) > 0;
    },
  };
}

export type SigningKeysRepository = ReturnType<typeof createSigningKeysRepository>;
