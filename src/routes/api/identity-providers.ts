import Router from '@koa/router';

import { requireAdmin } from '../../middleware/api-auth.js';
import { checkIfMatch, cursorOf, paginate, pageParams, sendResource } from '../../middleware/api-paging.js';
import { notFound } from '../../middleware/api-problem.js';
import { describeLinkedIdentity } from '../../services/federated-identities.js';
import { byPrincipal, locationOf, type ApiDeps, withApiFields } from './common.js';

/** The service names fields as the CLI flags; the API as its representation. */
const FIELD: Record<string, string> = { 'client-id': 'client_id', 'client-secret': 'client_secret', 'display-name': 'display_name', scope: 'scopes', 'allowed-domain': 'allowed_domains', 'api-url': 'api_url', 'web-url': 'web_url' };

/** The settings of a provider body (IdentityProviderCreate / IdentityProviderUpdate of openapi.yaml). */
interface Settings {
  kind?: string;
  display_name?: string;
  issuer?: string | null;
  client_id?: string;
  client_secret?: string;
  scopes?: string[];
  allowed_domains?: string[];
  link?: string;
  enabled?: boolean;
  api_url?: string | null;
  web_url?: string | null;
}

const settingsOf = (b: Settings) => ({
  kind: b.kind,
  displayName: b.display_name,
  issuer: b.issuer,
  clientId: b.client_id,
  clientSecret: b.client_secret,
  scopes: b.scopes,
  allowedDomains: b.allowed_domains,
  link: b.link,
  enabled: b.enabled,
  apiUrl: b.api_url,
  webUrl: b.web_url,
});

/**
 * /api/v1/identity-providers: upstream identity providers (the client secret is write-only), and
 * /api/v1/users/{id}/identities: the identities linked to a user.
 */
export function identityProviderRoutes(deps: ApiDeps): Router {
  const router = new Router();
  const { services } = deps;
  const idps = services.identityProviders;
  const read = requireAdmin('read');
  const write = requireAdmin('write');

  const providerOr404 = async (name: string) => {
    const p = await idps.get(name);
    if (!p) throw notFound(`identity provider ${name}`);
    return p;
  };

  router.get('/identity-providers', read, async (ctx) => {
    const { items, next } = await idps.page(pageParams(ctx));
    ctx.body = { data: items.map(idps.describe), next_cursor: next ? cursorOf(next) : null };
  });

  router.post('/identity-providers', write, async (ctx) => {
    const body = await deps.bodies.read<Settings & { name: string; kind: string; client_id: string; client_secret: string }>(ctx);
    // Nothing is fetched from the issuer: discovery happens at the first sign-in.
    const created = await withApiFields(FIELD, () => idps.create({ ...settingsOf(body), name: body.name, kind: body.kind, clientId: body.client_id, clientSecret: body.client_secret }, byPrincipal(ctx)));
    ctx.set('Location', locationOf(deps, `identity-providers/${created.name}`));
    sendResource(ctx, idps.describe(created), 201);
  });

  router.get('/identity-providers/:name', read, async (ctx) => {
    sendResource(ctx, idps.describe(await providerOr404(ctx.params.name!)));
  });

  router.patch('/identity-providers/:name', write, async (ctx) => {
    const provider = await providerOr404(ctx.params.name!);
    const body = await deps.bodies.read<Settings>(ctx);
    checkIfMatch(ctx, idps.describe(provider));
    const updated = await withApiFields(FIELD, () => idps.update(provider.name, settingsOf(body), byPrincipal(ctx)));
    sendResource(ctx, idps.describe(updated));
  });

  router.delete('/identity-providers/:name', write, async (ctx) => {
    const provider = await providerOr404(ctx.params.name!);
    await idps.delete(provider.name, byPrincipal(ctx));
    ctx.status = 204;
  });

  const userOr404 = async (id: string) => {
    const account = id.length <= 64 ? await services.accounts.findById(id) : undefined;
    if (!account) throw notFound(`user ${id}`);
    return account;
  };

  router.get('/users/:id/identities', read, async (ctx) => {
    const account = await userOr404(ctx.params.id!);
    const page = pageParams(ctx);
    // At most one link per provider: a short list, paged like an account's sessions.
    const links = (await services.federatedIdentities.listForAccount(account.id)).map(describeLinkedIdentity);
    const { items, next_cursor } = paginate(links, (l) => ({ at: l.linked_at, id: l.provider }), page);
    ctx.body = { data: items, next_cursor };
  });

  router.delete('/users/:id/identities/:name', write, async (ctx) => {
    const account = await userOr404(ctx.params.id!);
    // 404 when not linked; 409 when it is the account's last way to sign in.
    await services.federatedIdentities.unlink(account.id, ctx.params.name!, byPrincipal(ctx));
    ctx.status = 204;
  });

  return router;
}
