import { originOf } from '../lib/request-origin.js';
import { ConflictError } from '../services/errors.js';
import type { FederatedIdentityService } from '../services/federated-identities.js';
import type { FederationService } from '../services/federation.js';
import type { IdentityProviderService } from '../services/identity-providers.js';
import type { AccountExtension } from './account-kit.js';
import type { SignInMethods } from './account-overview.js';
import type { FederationRoutes } from './federation.js';
import { queryValue } from './self-service.js';

/** The account page's "Sign-in methods": linked providers, and every enabled one not linked yet (`never` ones included). */
export function signInMethods(deps: { identities: FederatedIdentityService; providers: Pick<IdentityProviderService, 'enabled'> }): SignInMethods {
  return {
    async list(accountId) {
      const linked = await deps.identities.listForAccount(accountId);
      const linkable = (await deps.providers.enabled()).filter((p) => !linked.some((l) => l.provider === p.name));
      return {
        linked: linked.map((l) => ({ name: l.provider, displayName: l.displayName, email: l.email, linkedAt: l.linkedAt, lastLoginAt: l.lastLoginAt })),
        linkable: linkable.map((p) => ({ name: p.name, displayName: p.displayName })),
      };
    },
    unlink: (accountId, provider, by) => deps.identities.unlink(accountId, provider, by),
  };
}

/**
 * Linking a provider from the account page: GET /account/federation/{name}/link runs the upstream
 * flow bound to the signed-in account; the callback (which cannot see the account cookie, scoped
 * to /account) hands the identity over to /account/federation/{name}/linked, where the session
 * is checked again and must be the account that started.
 */
export function accountFederationPages(deps: { federation: Pick<FederationService, 'takeHandOff' | 'linkFromAccountPage'>; flow: Pick<FederationRoutes, 'startUpstream' | 'usableProvider'> }): AccountExtension {
  return ({ router, guarded, page, done }) => {
    const problem = (ctx: Parameters<typeof page>[0], status: number, title: string, description: string, error: string) => page(ctx, 'account-problem', { title, description, error }, status);

    router.get(
      '/account/federation/:name/link',
      guarded(async (ctx, signed) => {
        const provider = await deps.flow.usableProvider(ctx, ctx.params.name!, undefined, { accountId: signed.account.id });
        if (!provider) return;
        await deps.flow.startUpstream(ctx, provider, { purpose: 'link', accountId: signed.account.id });
      }),
    );

    router.get(
      '/account/federation/:name/linked',
      guarded(async (ctx, signed) => {
        const handOff = await deps.federation.takeHandOff(queryValue(ctx, 'handoff') ?? '');
        if (!handOff || handOff.accountId !== signed.account.id || handOff.provider !== ctx.params.name) {
          await problem(ctx, 400, 'Link expired', 'That link attempt has expired or was started by another account. Start it again from your account page.', 'federation_link_expired');
          return;
        }
        try {
          await deps.federation.linkFromAccountPage(signed.account.id, handOff.provider, handOff.identity, originOf(ctx));
        } catch (err) {
          if (!(err instanceof ConflictError)) throw err;
          await problem(ctx, 409, 'Not linked', 'That sign-in is linked to another account already, or this account has one from this provider: nothing was linked.', 'federation_link_conflict');
          return;
        }
        done(ctx, '/account', 'linked');
      }),
    );
  };
}
