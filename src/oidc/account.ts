import type { FindAccount, KoaContextWithOIDC } from 'oidc-provider';

import type { AccessService } from '../services/access.js';
import type { AccountService } from '../services/accounts.js';
import type { FederationService } from '../services/federation.js';
import { subjectClaims, type RbacIntegration } from './rbac.js';

const epoch = (iso: string) => Math.floor(new Date(iso).getTime() / 1000);

/**
 * oidc-provider's account lookup. An inactive or deleted account is "not found", which makes
 * oidc-provider refuse its refresh tokens and sessions at once.
 *
 * At the token endpoint it also settles the organization of the tokens being issued (before a
 * refresh token is rotated): a subject no longer a member of it gets invalid_grant.
 */
export function findAccountFor(accounts: AccountService, access: AccessService, rbac: RbacIntegration, federation?: Pick<FederationService, 'idpOf'>): FindAccount {
  return async (ctx: KoaContextWithOIDC, sub, token) => {
    const account = await accounts.findForTokens(sub);
    if (!account?.active) return undefined;
    const subject = { kind: 'account' as const, id: account.id };
    const kind = (token as { kind?: string } | undefined)?.kind;
    const atTokenEndpoint = ctx?.oidc?.route === 'token' && (kind === 'AuthorizationCode' || kind === 'RefreshToken');
    if (atTokenEndpoint) await rbac.organizationFor(ctx, subject, (token as { grantId?: string }).grantId);
    return {
      accountId: account.id,
      // OIDC Core §5.1 standard claims, plus Latch's roles and organizations; the scope → claims
      // mapping lives in provider.ts (oidc-provider releases only what the scopes allow).
      claims: async (use, scope) => {
        const scopes = new Set(scope.split(' '));
        const claims: Record<string, unknown> = {
          sub: account.id,
          email: account.email,
          email_verified: account.emailVerified,
          ...(account.displayName ? { name: account.displayName } : {}),
          updated_at: epoch(account.updatedAt),
        };
        if (scopes.has('roles') || scopes.has('organizations')) Object.assign(claims, subjectClaims(await access.of(subject), scopes));
        // Only superusers carry it: its absence means "not a superuser".
        if (scopes.has('roles') && account.superuser) claims.is_superuser = true;
        // `idp` only for a sign-in through an upstream (RFC 8176 amr `fed`): the code or refresh
        // token carries the sign-in's amr and auth_time, which name the remembered provider.
        const signIn = token as { amr?: string[]; authTime?: number } | undefined;
        if (use === 'id_token' && atTokenEndpoint && federation && signIn?.amr?.includes('fed') && typeof signIn.authTime === 'number') {
          const idp = await federation.idpOf(account.id, signIn.authTime);
          if (idp) claims.idp = idp;
        }
        if (use === 'id_token' && atTokenEndpoint) {
          const org = await rbac.organizationFor(ctx, subject, (token as { grantId?: string }).grantId);
          if (org) Object.assign(claims, { org_id: org.id, org_role: org.role });
        }
        return claims as { sub: string };
      },
    };
  };
}
