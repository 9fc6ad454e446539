import Router from '@koa/router';
import type Koa from 'koa';

import { requireAdmin } from '../../middleware/api-auth.js';
import { queryParam } from '../../middleware/api-input.js';
import { checkIfMatch, cursorOf, pageParams, sendResource } from '../../middleware/api-paging.js';
import { invalid, notFound, type FieldError } from '../../middleware/api-problem.js';
import type { RoleKind, Subject } from '../../repositories/roles.js';
import { isUuid } from '../../services/organizations.js';
import { apiKindOf, describeApiRole } from '../../services/roles.js';
import { byPrincipal, locationOf, type ApiDeps, withApiFields } from './common.js';

/**
 * The user or client a body names (`user_id` or `client_id`: the schema lets exactly one
 * through), when it exists; else an error on that field: who holds a role or a membership.
 */
export async function readSubject(deps: ApiDeps, body: { user_id?: unknown; client_id?: unknown }, errors: FieldError[]): Promise<Subject | undefined> {
  if (errors.some((e) => e.field === 'user_id' || e.field === 'client_id')) return undefined;
  if (typeof body.user_id === 'string') {
    if (await deps.services.accounts.findById(body.user_id)) return { kind: 'account', id: body.user_id };
    errors.push({ field: 'user_id', message: 'is not a user' });
  } else if (typeof body.client_id === 'string') {
    if (await deps.services.clients.findById(body.client_id)) return { kind: 'client', id: body.client_id };
    errors.push({ field: 'client_id', message: 'is not a client' });
  }
  return undefined;
}

/** The role service names the list `permission` (as the CLI flag); the API `permissions`. */
const KINDS: readonly RoleKind[] = ['global', 'organization'];

/** /api/v1/roles: global and organization roles, their permissions, and global role holders. */
export function roleRoutes(deps: ApiDeps): Router {
  const router = new Router();
  const { services } = deps;
  const read = requireAdmin('read');
  const write = requireAdmin('write');

  const roleOr404 = async (id: string) => {
    const role = isUuid(id) ? await services.roles.findById(id.toLowerCase()) : undefined;
    if (!role) throw notFound(`role ${id}`);
    return role;
  };

  router.get('/roles', read, async (ctx) => {
    const q = ctx.query as Record<string, string | string[] | undefined>;
    const errors: FieldError[] = [];
    const kind = queryParam(q, 'kind', errors);
    const name = queryParam(q, 'name', errors);
    if (kind !== undefined && !KINDS.includes(kind as RoleKind)) errors.push({ field: 'kind', message: 'must be global or organization' });
    const page = pageParams(ctx, errors);
    const { items, next } = await services.roles.page({ ...page, filters: { kind: kind as RoleKind | undefined, name } });
    ctx.body = { data: items.map(describeApiRole), next_cursor: next ? cursorOf(next) : null };
  });

  router.post('/roles', write, async (ctx) => {
    const { name, kind = 'global', description, permissions } = await deps.bodies.read<{ name: string; kind?: RoleKind; description?: string | null; permissions?: string[] }>(ctx);
    const role = await withApiFields({ permission: 'permissions' }, () => services.roles.create({ name, kind, description, permissions }, byPrincipal(ctx)));
    const view = describeApiRole(role);
    ctx.set('Location', locationOf(deps, `roles/${role.id}`));
    sendResource(ctx, view, 201);
  });

  router.get('/roles/:id', read, async (ctx) => {
    sendResource(ctx, describeApiRole(await roleOr404(ctx.params.id!)));
  });

  router.patch('/roles/:id', write, async (ctx) => {
    const role = await roleOr404(ctx.params.id!);
    const { name, description, permissions } = await deps.bodies.read<{ name?: string; description?: string | null; permissions?: string[] }>(ctx);
    checkIfMatch(ctx, describeApiRole(role));
    // Built-in roles keep their name (409); their description and permissions may change.
    const updated = await withApiFields({ permission: 'permissions' }, () => services.roles.update(role, { name, description, permissions }, byPrincipal(ctx)));
    sendResource(ctx, describeApiRole(updated));
  });

  router.delete('/roles/:id', write, async (ctx) => {
    const role = await roleOr404(ctx.params.id!);
    await services.roles.delete(role, byPrincipal(ctx));
    ctx.status = 204;
  });

  /** Assigns or unassigns a global role (organization roles are held through memberships: 422). */
  const assignment = (how: 'assign' | 'unassign') => async (ctx: Koa.Context) => {
    const role = await roleOr404(ctx.params.id!);
    const { body, errors } = await deps.bodies.check<{ user_id?: string; client_id?: string }>(ctx);
    const subject = await readSubject(deps, body, errors);
    if (errors.length || !subject) throw invalid(errors);
    await services.roles[how](role, subject, byPrincipal(ctx));
    ctx.status = 204;
  };
  router.post('/roles/:id/assign', write, assignment('assign'));
  router.post('/roles/:id/unassign', write, assignment('unassign'));

  router.get('/roles/:id/holders', read, async (ctx) => {
    const role = await roleOr404(ctx.params.id!);
    const page = pageParams(ctx);
    const { items, next } = await services.roles.holdersPage(role, page);
    ctx.body = { data: items.map((h) => ({ kind: apiKindOf(h), id: h.id, assigned_at: h.assignedAt })), next_cursor: next ? cursorOf(next) : null };
  });

  return router;
}
