import Router from '@koa/router';

import { requireAdmin } from '../../middleware/api-auth.js';
import { queryParam } from '../../middleware/api-input.js';
import { checkIfMatch, cursorOf, pageParams, sendResource } from '../../middleware/api-paging.js';
import { invalid, notFound, ProblemError, type FieldError } from '../../middleware/api-problem.js';
import { describeResource } from '../../services/resources.js';
import { API_RESOURCE_SCOPES, apiAudience } from '../../services/bootstrap.js';
import { byPrincipal, locationOf, type ApiDeps, withApiFields } from './common.js';

/** The resource service names fields as the CLI flags; the API as its representation. */
const FIELD: Record<string, string> = { ttl: 'access_token_ttl', scope: 'scopes' };

/** The settings of a resource body (ResourceCreate / ResourceUpdate of openapi.yaml). */
interface Settings {
  name?: string | null;
  scopes?: string[];
  access_token_ttl?: number | null;
  alg?: string;
  rbac?: boolean;
}

const settingsOf = (b: Settings) => ({ name: b.name, scopes: b.scopes, ttl: b.access_token_ttl, alg: b.alg, rbac: b.rbac });

/** /api/v1/resources: resource servers (RFC 8707 resource indicators = access-token audiences). */
export function resourceRoutes(deps: ApiDeps): Router {
  const router = new Router();
  const { services } = deps;
  const read = requireAdmin('read');
  const write = requireAdmin('write');
  const builtIn = apiAudience(deps.config.issuer);

  const resourceOr404 = async (id: string) => {
    const r = await services.resources.findById(id);
    if (!r) throw notFound(`resource ${id}`);
    return r;
  };

  router.get('/resources', read, async (ctx) => {
    const errors: FieldError[] = [];
    const identifier = queryParam(ctx.query as Record<string, string | string[] | undefined>, 'identifier', errors);
    const page = pageParams(ctx, errors);
    const { items, next } = await services.resources.page({ ...page, filters: { identifier } });
    ctx.body = { data: items.map(describeResource), next_cursor: next ? cursorOf(next) : null };
  });

  router.post('/resources', write, async (ctx) => {
    const body = await deps.bodies.read<Settings & { identifier: string }>(ctx);
    const s = settingsOf(body);
    const created = await withApiFields(FIELD, () => services.resources.create({ identifier: body.identifier, name: s.name ?? undefined, scopes: s.scopes, ttl: s.ttl ?? undefined, alg: s.alg, rbac: s.rbac }, byPrincipal(ctx)));
    const view = describeResource(created);
    ctx.set('Location', locationOf(deps, `resources/${created.id}`));
    sendResource(ctx, view, 201);
  });

  router.get('/resources/:id', read, async (ctx) => {
    sendResource(ctx, describeResource(await resourceOr404(ctx.params.id!)));
  });

  router.patch('/resources/:id', write, async (ctx) => {
    const resource = await resourceOr404(ctx.params.id!);
    // ResourceUpdate has no identifier: it is the audience of every token issued for the
    // resource (RFC 8707 §2), fixed once created.
    const { body, errors } = await deps.bodies.check<Settings>(ctx);
    const s = settingsOf(body);
    if (resource.identifier === builtIn && !errors.length) {
      // The API's own scopes are what its authorization checks rely on.
      const kept = s.scopes?.flatMap((scope) => scope.split(/\s+/));
      const missing = kept && API_RESOURCE_SCOPES.filter((scope) => !kept.includes(scope));
      if (missing?.length) errors.push({ field: 'scopes', message: `must keep ${missing.join(', ')}: the admin API relies on them` });
      if (s.rbac !== undefined && s.rbac !== resource.rbac) errors.push({ field: 'rbac', message: 'cannot be changed on the admin API resource' });
    }
    if (errors.length) throw invalid(errors);
    checkIfMatch(ctx, describeResource(resource));
    const updated = await withApiFields(FIELD, () => services.resources.update(resource.id, s, byPrincipal(ctx)));
    if (!updated) throw notFound(`resource ${resource.id}`);
    sendResource(ctx, describeResource(updated));
  });

  router.delete('/resources/:id', write, async (ctx) => {
    const resource = await resourceOr404(ctx.params.id!);
    if (resource.identifier === builtIn) throw new ProblemError(409, 'conflict', 'the admin API resource is built in and cannot be deleted');
    if (!(await services.resources.delete(resource.id, byPrincipal(ctx)))) throw notFound(`resource ${resource.id}`);
    ctx.status = 204;
  });

  return router;
}
