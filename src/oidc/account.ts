import type { FindAccount } from 'oidc-provider';

import type { AccountService } from '../services/accounts.js';

const epoch = (iso: string) => Math.floor(new Date(iso).getTime() / 1000);

/**
 * oidc-provider's account lookup. An inactive or deleted account is "not found", which makes
 * oidc-provider refuse its refresh tokens and sessions at once.
 */
export function findAccountFor(accounts: AccountService): FindAccount {
  return async (_ctx, sub) => {
    const account = await accounts.findById(sub);
    if (!account?.active) return undefined;
    return {
      accountId: account.id,
      // OIDC Core §5.1 standard claims; the scope → claims mapping lives in provider.ts.
      claims: () => ({
        sub: account.id,
        email: account.email,
        email_verified: account.emailVerified,
        ...(account.displayName ? { name: account.displayName } : {}),
        updated_at: epoch(account.updatedAt),
      }),
    };
  };
}
