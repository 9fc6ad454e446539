import { pbkdf2, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';

import argon2 from 'argon2';
import bcrypt from 'bcrypt';

const pbkdf2Async = promisify(pbkdf2);

/** OWASP Password Storage Cheat Sheet: argon2id, m = 19 MiB, t = 2, p = 1. */
export const DEFAULT_ARGON2 = { memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;

/** Longest password accepted: bounds the hashing work one request can cause. */
export const MAX_PASSWORD_LENGTH = 1024;

export type Argon2Params = { memoryCost: number; timeCost: number; parallelism: number };

/** Hash formats Latch can verify: its own, and those written by the apps users migrate from. */
export type HashFormat = 'argon2' | 'bcrypt' | 'pbkdf2_sha256' | 'passlib_pbkdf2_sha256';

export function hashFormat(hash: string): HashFormat | undefined {
  if (/^\$argon2(id|i|d)\$/.test(hash)) return 'argon2';
  // passlib and FastAPI-Users write $2b$; PHP and older libraries $2y$ / $2a$.
  if (/^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/.test(hash)) return 'bcrypt';
  // Django: pbkdf2_sha256$<iterations>$<salt>$<base64 hash>
  if (/^pbkdf2_sha256\$\d+\$[^$]+\$[A-Za-z0-9+/=]+$/.test(hash)) return 'pbkdf2_sha256';
  // passlib: $pbkdf2-sha256$<rounds>$<ab64 salt>$<ab64 hash>
  if (/^\$pbkdf2-sha256\$\d+\$[A-Za-z0-9./]*\$[A-Za-z0-9./]{43}$/.test(hash)) return 'passlib_pbkdf2_sha256';
  return undefined;
}

export interface PasswordHasher {
  hash(password: string): Promise<string>;
  /** Verifies `password` against a stored hash of any supported format; false (never throws) otherwise. */
  verify(hash: string, password: string): Promise<boolean>;
  /** True when the hash should be rewritten with the current argon2id parameters. */
  needsRehash(hash: string): boolean;
  /** Spends the same time as a verify against a real hash: for unknown accounts (no enumeration). */
  verifyDummy(password: string): Promise<void>;
}

async function verifyDjangoPbkdf2(hash: string, password: string): Promise<boolean> {
  const [, iterations, salt, expected] = hash.split('$');
  const n = Number(iterations);
  if (!Number.isInteger(n) || n < 1 || n > 10_000_000 || !salt || !expected) return false;
  const want = Buffer.from(expected, 'base64');
  const got = await pbkdf2Async(password, salt, n, want.length || 32, 'sha256');
  return want.length === got.length && timingSafeEqual(want, got);
}

/** passlib's "adapted base64": `.` for `+`, no padding (passlib.utils.binary.ab64_decode). */
const ab64Decode = (text: string) => Buffer.from(text.replace(/\./g, '+'), 'base64');

async function verifyPasslibPbkdf2(hash: string, password: string): Promise<boolean> {
  const [, , rounds, salt, expected] = hash.split('$');
  const n = Number(rounds);
  if (!Number.isInteger(n) || n < 1 || n > 10_000_000 || salt === undefined || !expected) return false;
  const want = ab64Decode(expected);
  // Unlike Django's, passlib's salt is raw bytes: the decoded value is what was hashed.
  const got = await pbkdf2Async(password, ab64Decode(salt), n, want.length, 'sha256');
  return want.length === got.length && timingSafeEqual(want, got);
}

/**
 * argon2id hashing and verification, on libuv's thread pool (never the event loop), plus
 * verification of imported bcrypt and PBKDF2-SHA256 (Django's and passlib's) hashes, which are rewritten as argon2id at
 * the next successful login. The dummy hash is made once with the same parameters, so a login
 * for an unknown email costs what a wrong password costs.
 */
export function createPasswordHasher(params: Argon2Params = DEFAULT_ARGON2): PasswordHasher {
  const options = { type: argon2.argon2id as 2, ...params };
  let dummy: Promise<string> | undefined;

  const verify = async (hash: string, password: string) => {
    if (typeof password !== 'string' || password.length > MAX_PASSWORD_LENGTH) return false;
    try {
      switch (hashFormat(hash)) {
        case 'argon2':
          return await argon2.verify(hash, password);
        case 'bcrypt':
          // bcrypt reads at most 72 bytes; the native module runs on the thread pool.
          return await bcrypt.compare(password, hash.replace(/^\$2y\$/, '$2b$'));
        case 'pbkdf2_sha256':
          return await verifyDjangoPbkdf2(hash, password);
        case 'passlib_pbkdf2_sha256':
          return await verifyPasslibPbkdf2(hash, password);
        default:
          return false;
      }
    } catch {
      return false;
    }
  };

  return {
    hash: (password) => argon2.hash(password, options),
    verify,
    needsRehash(hash) {
      if (hashFormat(hash) !== 'argon2' || !hash.startsWith('$argon2id$')) return true;
      try {
        return argon2.needsRehash(hash, options);
      } catch {
        return true;
      }
    },
    async verifyDummy(password) {
      dummy ??= argon2.hash('latch-timing-equaliser', options);
      await verify(await dummy, password.slice(0, MAX_PASSWORD_LENGTH));
    },
  };
}
