import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';

import { AppError } from '../errors/index.js';
import type { SigningKeysRepository } from '../repositories/signing-keys.js';
import type { AuditActor, AuditService } from './audit.js';
import type { ChangeFeed } from './change-feed.js';
import type { Secrets } from './secrets.js';
import { ConflictError, NotFoundError } from './errors.js';

/** Algorithms Latch keeps a current key for. RS256 signs ID tokens by default (OIDC Core §15.1). */
export const KEY_ALGS = ['RS256', 'ES256', 'EdDSA'] as const;
export type KeyAlg = (typeof KEY_ALGS)[number];

export interface KeyInfo {
  kid: string;
  alg: string;
  status: 'active' | 'retired';
  /** True for the newest active key of its algorithm: the one that signs new tokens. */
  current: boolean;
  created_at: string;
  retired_at: string | null;
}

export interface KeyRing {
  /** Private JWKs for oidc-provider, the current key of each alg first. */
  privateJwks: JWK[];
  /** Public JWKs of every active key (what the JWKS endpoint publishes). */
  publicJwks: JWK[];
  /** Identifies this set, to tell whether a reload changed anything. */
  fingerprint: string;
}

/**
 * The stored signing keys do not open with this LATCH_SECRET (AES-GCM authentication fails):
 * the process was started with another secret than the one that encrypted them.
 */
export class SecretMismatchError extends AppError {
  constructor() {
    super(500, 'secret_mismatch', 'LATCH_SECRET cannot decrypt the signing keys stored in the database: it is not the secret they were encrypted with (start with the LATCH_SECRET used when they were created)');
  }
}

async function generate(alg: KeyAlg) {
  const { privateKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'RS256' ? { modulusLength: 2048 } : {}), ...(alg === 'EdDSA' ? { crv: 'Ed25519' } : {}) });
  const priv = await exportJWK(privateKey);
  const kid = await calculateJwkThumbprint(priv);
  const pub: JWK = { kty: priv.kty, kid, alg, use: 'sig' };
  for (const k of ['n', 'e', 'crv', 'x', 'y'] as const) if (priv[k] !== undefined) pub[k] = priv[k];
  return { kid, alg, publicJwk: pub as Record<string, unknown>, privateJwk: { ...priv, kid, alg, use: 'sig' } };
}

/**
 * Signing keys: generated on first start, stored encrypted with LATCH_SECRET, rotated by adding a
 * new current key per algorithm. Older keys stay published until retired, so tokens signed before
 * a rotation still verify.
 */
export function createKeyService(deps: { keys: SigningKeysRepository; secrets: Secrets; audit: AuditService; feed?: ChangeFeed }) {
  const { keys, secrets } = deps;

  function decryptKey(ciphertext: string): JWK {
    try {
      return JSON.parse(secrets.decrypt(ciphertext)) as JWK;
    } catch {
      throw new SecretMismatchError();
    }
  }

  async function addGeneration(): Promise<{ kid: string; alg: string }[]> {
    const made = await Promise.all(KEY_ALGS.map(generate));
    await keys.insertMany(made.map((k) => ({ kid: k.kid, alg: k.alg, publicJwk: k.publicJwk, privateJwkEncrypted: secrets.encrypt(JSON.stringify(k.privateJwk)) })));
    await deps.feed?.publish('keys');
    return made.map(({ kid, alg }) => ({ kid, alg }));
  }

  /** Every key, newest first, each with whether it is the current one of its algorithm. */
  async function described(): Promise<(KeyInfo & { publicJwk: Record<string, unknown> })[]> {
    const rows = await keys.list();
    const seen = new Set<string>();
    return rows.map((r) => {
      const current = r.status === 'active' && !seen.has(r.alg);
      if (current) seen.add(r.alg);
      return { kid: r.kid, alg: r.alg, status: r.status, current, created_at: r.createdAt, retired_at: r.retiredAt, publicJwk: r.publicJwk };
    });
  }

  const list = async (): Promise<KeyInfo[]> => (await described()).map(({ publicJwk: _, ...info }) => info);

  return {
    list,

    /** One key with its public JWK (never the private parts); undefined when unknown. */
    async get(kid: string): Promise<(KeyInfo & { public_jwk: Record<string, unknown> }) | undefined> {
      const found = (await described()).find((k) => k.kid === kid);
      if (!found) return undefined;
      const { publicJwk, ...info } = found;
      return { ...info, public_jwk: publicJwk };
    },

    /** Generates the first keys when the database has none (or lacks an algorithm). */
    async ensureKeys(): Promise<void> {
      const active = (await keys.list()).filter((k) => k.status === 'active');
      if (KEY_ALGS.every((alg) => active.some((k) => k.alg === alg))) return;
      // The first keys are part of setting up, not a rotation anyone asked for: not audited.
      await addGeneration();
    },

    /** Throws SecretMismatchError when LATCH_SECRET cannot decrypt the newest stored key. */
    async verifySecret(): Promise<void> {
      const newest = (await keys.list()).find((k) => k.status === 'active');
      if (newest) decryptKey(newest.privateJwkEncrypted);
    },

    /** Adds a new current key for every algorithm (a `key.rotate` event for each); returns the new kids. */
    async rotate(by: AuditActor): Promise<string[]> {
      const made = await addGeneration();
      const rotated = made.map((k) => k.kid);
      for (const k of made) await deps.audit.recordBy('key.rotate', k.kid, by, { alg: k.alg, rotated });
      return rotated;
    },

    /**
     * Adds a new current key of `kid`'s algorithm; returns its kid, undefined when `kid` is
     * unknown. The earlier keys stay published until retired, so tokens they signed verify.
     */
    async rotateLike(kid: string, by: AuditActor): Promise<string | undefined> {
      const like = (await keys.list()).find((k) => k.kid === kid);
      if (!like) return undefined;
      const made = await generate(like.alg as KeyAlg);
      await keys.insertMany([{ kid: made.kid, alg: made.alg, publicJwk: made.publicJwk, privateJwkEncrypted: secrets.encrypt(JSON.stringify(made.privateJwk)) }]);
      await deps.feed?.publish('keys');
      await deps.audit.recordBy('key.rotate', made.kid, by, { alg: made.alg, rotated: [made.kid], replaces: kid });
      return made.kid;
    },

    /** Removes a non-current key from JWKS: tokens it signed stop verifying. */
    async retire(kid: string, by: AuditActor): Promise<void> {
      const info = (await list()).find((k) => k.kid === kid);
      if (!info || info.status !== 'active') throw new NotFoundError(`active key ${kid}`);
      if (info.current) throw new ConflictError(`key ${kid} is the current ${info.alg} key (it signs new tokens): rotate first, then retire it`);
      await keys.retire(kid);
      await deps.feed?.publish('keys');
      await deps.audit.recordBy('key.retire', kid, by, { alg: info.alg });
    },

    /** Decrypts the active keys into the shape oidc-provider and the JWKS need. */
    async loadKeyRing(): Promise<KeyRing> {
      const active = (await keys.list()).filter((k) => k.status === 'active');
      const privateJwks = active.map((k) => decryptKey(k.privateJwkEncrypted));
      return {
        privateJwks,
        publicJwks: active.map((k) => k.publicJwk as JWK),
        fingerprint: active.map((k) => k.kid).join(','),
      };
    },
  };
}

export type KeyService = ReturnType<typeof createKeyService>;
