import { createHash, randomBytes } from 'node:crypto';

import { epochSeconds } from '../lib/time.js';
import type { AccountTokenRecord, AccountTokensRepository, TokenPurpose } from '../repositories/account-tokens.js';

/** Lifetimes of mailed links. */
export const TOKEN_TTL: Record<TokenPurpose, number> = {
  verify_email: 24 * 3600,
  reset_password: 3600,
  invitation: 7 * 24 * 3600,
};

const hash = (token: string) => createHash('sha256').update(token).digest('hex');

/**
 * Single-use tokens for mailed links: 256 random bits, only their SHA-256 stored (they are
 * high-entropy, so a fast hash is enough and lookups stay indexed).
 */
export function createMailLinkService(deps: { tokens: AccountTokensRepository }) {
  const { tokens } = deps;
  return {
    async issue(purpose: TokenPurpose, target: { accountId: string | null; email: string | null; data?: Record<string, unknown> }): Promise<string> {
      const token = randomBytes(32).toString('base64url');
      await tokens.insert({ id: hash(token), purpose, accountId: target.accountId, email: target.email, data: target.data ?? null, expiresAt: epochSeconds() + TOKEN_TTL[purpose] });
      return token;
    },
    /** The token's record when it is live, without using it (to show a form). */
    peek: (purpose: TokenPurpose, token: string): Promise<AccountTokenRecord | undefined> => tokens.findLive(hash(token), purpose),
    /** Uses the token: returns its record once, then never again. */
    consume: (purpose: TokenPurpose, token: string): Promise<AccountTokenRecord | undefined> => tokens.consume(hash(token), purpose),
    revokeFor: tokens.revokeFor,
  };
}

export type MailLinkService = ReturnType<typeof createMailLinkService>;
