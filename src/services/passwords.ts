import argon2 from 'argon2';

/** OWASP Password Storage Cheat Sheet: argon2id, m = 19 MiB, t = 2, p = 1. */
export const DEFAULT_ARGON2 = { memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;

/** Longest password accepted: bounds the hashing work one request can cause. */
export const MAX_PASSWORD_LENGTH = 1024;

export interface PasswordHasher {
  hash(password: string): Promise<string>;
  /** Verifies `password` against a PHC hash; false (never throws) on a malformed hash. */
  verify(hash: string, password: string): Promise<boolean>;
  /** Spends the same time as a verify against a real hash: for unknown accounts (no enumeration). */
  verifyDummy(password: string): Promise<void>;
}

/**
 * argon2 runs on libuv's thread pool, never on the event loop. The dummy hash is made once, with
 * the same parameters, so a login for an unknown email costs what a wrong password costs.
 */
export function createPasswordHasher(params: { memoryCost: number; timeCost: number; parallelism: number } = DEFAULT_ARGON2): PasswordHasher {
  const options = { type: argon2.argon2id as 2, ...params };
  let dummy: Promise<string> | undefined;
  const verify = async (hash: string, password: string) => {
    if (password.length > MAX_PASSWORD_LENGTH) return false;
    try {
      return await argon2.verify(hash, password);
    } catch {
      return false;
    }
  };
  return {
    hash: (password) => argon2.hash(password, options),
    verify,
    async verifyDummy(password) {
      dummy ??= argon2.hash('latch-timing-equaliser', options);
      await verify(await dummy, password.slice(0, MAX_PASSWORD_LENGTH));
    },
  };
}
