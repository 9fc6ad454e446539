import type { Db } from '../db/knex.js';
import { nowIso, toIso } from '../db/knex.js';

export type SigningAlg = 'RS256' | 'ES256' | 'EdDSA';

export interface ResourceRecord {
  id: string;
  identifier: string;
  name: string | null;
  scopes: string[];
  accessTokenTtl: number | null;
  signingAlg: SigningAlg;
  /** Scopes are granted only when the subject's roles permit them. */
  rbac: boolean;
  createdAt: string;
  updatedAt: string;
}

interface Row {
  id: string;
  identifier: string;
  name: string | null;
  scopes: string;
  access_token_ttl: number | null;
  signing_alg: SigningAlg;
  rbac: boolean | number;
  created_at: string;
  updated_at: string;
}

function fromRow(r: Row): ResourceRecord {
  return {
    id: r.id,
    identifier: r.identifier,
    name: r.name,
    scopes: r.scopes.split(' ').filter(Boolean),
    accessTokenTtl: r.access_token_ttl === null ? null : Number(r.access_token_ttl),
    signingAlg: r.signing_alg,
    rbac: Boolean(r.rbac),
    createdAt: toIso(r.created_at) ?? r.created_at,
    updatedAt: toIso(r.updated_at) ?? r.updated_at,
  };
}

export function createResourcesRepository(db: Db) {
  return {
    async insert(r: Omit<ResourceRecord, 'createdAt' | 'updatedAt'>): Promise<ResourceRecord> {
      const now = nowIso();
      await db('resource_servers').insert({
        id: r.id,
        identifier: r.identifier,
        name: r.name,
        scopes: r.scopes.join(' '),
        access_token_ttl: r.accessTokenTtl,
        signing_alg: r.signingAlg,
        rbac: r.rbac,
        created_at: now,
        updated_at: now,
      });
      return { ...r, createdAt: now, updatedAt: now };
    },
    async findByIdentifier(identifier: string): Promise<ResourceRecord | undefined> {
      const row = await db('resource_servers').where({ identifier }).first<Row | undefined>();
      return row ? fromRow(row) : undefined;
    },
    async list(): Promise<ResourceRecord[]> {
      return (await db('resource_servers').select<Row[]>('*').orderBy('identifier')).map(fromRow);
    },
  };
}

export type ResourcesRepository = ReturnType<typeof createResourcesRepository>;
