import Router from '@koa/router';

import { requireAdmin } from '../../middleware/api-auth.js';
import { checkIfMatch, cursorOf, pageParams, sendResource } from '../../middleware/api-paging.js';
import { notFound, ProblemError } from '../../middleware/api-problem.js';
import { describeApiClient } from '../../services/clients.js';
import { ACCOUNT_CLIENT_ID } from '../account-session.js';
import { byPrincipal, locationOf, type ApiDeps, withApiFields } from './common.js';

/** The client service names fields as the CLI flags; the API as RFC 7591 metadata. */
const FIELD = { 'redirect-uri': 'redirect_uris', 'post-logout-redirect-uri': 'post_logout_redirect_uris', grant: 'grant_types', 'auth-method': 'token_endpoint_auth_method', 'jwks-uri': 'jwks_uri', 'web-origin': 'web_origins', resource: 'resources', scope: 'scope', name: 'name', 'exchange-subject-audience': 'exchange_subject_audiences', 'backchannel-logout-uri': 'backchannel_logout_uri' } as Record<string, string>;

/** A registration body (ClientCreate / ClientUpdate of openapi.yaml) as the client service takes it. */
interface Registration {
  name?: string;
  grant_types?: string[];
  redirect_uris?: string[];
  post_logout_redirect_uris?: string[];
  scope?: string;
  resources?: string[];
  web_origins?: string[];
  jwks_uri?: string | null;
  first_party?: boolean;
  exchange_subject_audiences?: string[];
  require_pushed_authorization_requests?: boolean;
  dpop_bound_access_tokens?: boolean;
  backchannel_logout_uri?: string | null;
  backchannel_logout_session_required?: boolean;
}

const registrationOf = (b: Registration) => ({
  name: b.name,
  grants: b.grant_types,
  redirectUris: b.redirect_uris,
  postLogoutRedirectUris: b.post_logout_redirect_uris,
  scopes: b.scope?.split(' ').filter(Boolean),
  resources: b.resources,
  webOrigins: b.web_origins,
  jwksUri: b.jwks_uri,
  firstParty: b.first_party,
  exchangeSubjectAudiences: b.exchange_subject_audiences,
  requirePar: b.require_pushed_authorization_requests,
  requireDpop: b.dpop_bound_access_tokens,
  backchannelLogoutUri: b.backchannel_logout_uri,
  backchannelLogoutSessionRequired: b.backchannel_logout_session_required,
});

/** /api/v1/clients: registration, secret rotation, enable/disable. */
export function clientRoutes(deps: ApiDeps): Router {
  const router = new Router();
  const { services } = deps;
  const read = requireAdmin('read');
  const write = requireAdmin('write');

  const clientOr404 = async (id: string) => {
    const c = await services.clients.findById(id);
    if (!c) throw notFound(`client ${id}`);
    return c;
  };

  router.get('/clients', read, async (ctx) => {
    const page = pageParams(ctx);
    const { items, next } = await services.clients.page(page);
    ctx.body = { data: items.map(describeApiClient), next_cursor: next ? cursorOf(next) : null };
  });

  router.post('/clients', write, async (ctx) => {
    const body = await deps.bodies.read<Registration & { name: string; public?: boolean; token_endpoint_auth_method?: string }>(ctx);
    const reg = registrationOf(body);
    const created = await withApiFields(FIELD, () => services.clients.create({ ...reg, name: body.name, jwksUri: reg.jwksUri ?? undefined, isPublic: body.public, authMethod: body.token_endpoint_auth_method }, byPrincipal(ctx)));
    const view = describeApiClient(created.client);
    ctx.set('Location', locationOf(deps, `clients/${encodeURIComponent(created.client_id)}`));
    // The secret is shown once, here (only its HMAC is stored).
    sendResource(ctx, { ...view, ...(created.client_secret ? { client_secret: created.client_secret } : {}) }, 201);
  });

  router.get('/clients/:id', read, async (ctx) => {
    sendResource(ctx, describeApiClient(await clientOr404(ctx.params.id!)));
  });

  router.patch('/clients/:id', write, async (ctx) => {
    const client = await clientOr404(ctx.params.id!);
    const reg = registrationOf(await deps.bodies.read<Registration>(ctx));
    const before = describeApiClient(client);
    checkIfMatch(ctx, before);
    const updated = await withApiFields(FIELD, () => services.clients.update(client.id, reg, byPrincipal(ctx)));
    if (!updated) throw notFound(`client ${client.id}`);
    sendResource(ctx, describeApiClient(updated));
  });

  router.delete('/clients/:id', write, async (ctx) => {
    const client = await clientOr404(ctx.params.id!);
    if (client.id === ACCOUNT_CLIENT_ID) throw new ProblemError(409, 'conflict', 'the account page client is built in and cannot be deleted');
    if (!(await services.clients.delete(client.id, byPrincipal(ctx)))) throw notFound(`client ${client.id}`);
    ctx.status = 204;
  });

  router.post('/clients/:id/rotate-secret', write, async (ctx) => {
    const client = await clientOr404(ctx.params.id!);
    const overlap = (await deps.bodies.read<{ overlap_seconds?: number }>(ctx)).overlap_seconds ?? 0;
    const rotated = await withApiFields(FIELD, () => services.clients.rotateSecret(client.id, overlap, byPrincipal(ctx)));
    if (!rotated) throw notFound(`client ${client.id}`);
    sendResource(ctx, { ...describeApiClient(rotated.client), client_secret: rotated.secret });
  });

  for (const action of ['enable', 'disable'] as const) {
    router.post(`/clients/:id/${action}`, write, async (ctx) => {
      const client = await clientOr404(ctx.params.id!);
      if (!(await services.clients.setEnabled(client.id, action === 'enable', byPrincipal(ctx)))) throw notFound(`client ${client.id}`);
      sendResource(ctx, describeApiClient((await services.clients.findById(client.id))!));
    });
  }

  return router;
}
