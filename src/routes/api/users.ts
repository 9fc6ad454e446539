import { randomBytes } from 'node:crypto';

import Router from '@koa/router';
import type Koa from 'koa';

import { requireAdmin } from '../../middleware/api-auth.js';
import { queryParam } from '../../middleware/api-input.js';
import { checkIfMatch, cursorOf, paginate, pageParams, sendResource } from '../../middleware/api-paging.js';
import { invalid, notFound, type FieldError } from '../../middleware/api-problem.js';
import type { AccountRecord } from '../../repositories/accounts.js';
import { describeGrant, describeSession } from '../../services/sessions.js';
import { byPrincipal, locationOf, type ApiDeps } from './common.js';

/** The API shape of a user: the account (never its hash) and its global roles. */
export const describeUser = (deps: ApiDeps, a: AccountRecord) => deps.services.accounts.adminView(a);

async function userOr404(deps: ApiDeps, id: string): Promise<AccountRecord> {
  const account = id.length <= 64 ? await deps.services.accounts.findById(id) : undefined;
  if (!account) throw notFound(`user ${id}`);
  return account;
}

/** Global role names → role records (422 naming the unknown ones). */
async function globalRoles(deps: ApiDeps, names: string[]) {
  const roles = [];
  const errors: FieldError[] = [];
  for (const name of new Set(names)) {
    const role = await deps.services.roles.find('global', name);
    if (role) roles.push(role);
    else errors.push({ field: 'roles', message: `"${name}" is not a global role` });
  }
  if (errors.length) throw invalid(errors);
  return roles;
}

const boolParam = (v: string | undefined, field: string, errors: FieldError[]) => {
  if (v === undefined) return undefined;
  if (v === 'true' || v === 'false') return v === 'true';
  errors.push({ field, message: 'must be true or false' });
  return undefined;
};

/** /api/v1/users: accounts, their roles, MFA, password resets, sessions and grants. */
export function userRoutes(deps: ApiDeps): Router {
  const router = new Router();
  const { services } = deps;
  const read = requireAdmin('read');
  const write = requireAdmin('write');

  router.get('/users', read, async (ctx) => {
    const q = ctx.query as Record<string, string | string[] | undefined>;
    const errors: FieldError[] = [];
    const email = queryParam(q, 'email', errors);
    const org = queryParam(q, 'org', errors);
    const role = queryParam(q, 'role', errors);
    const active = boolParam(queryParam(q, 'active', errors), 'active', errors);
    const page = pageParams(ctx, errors);
    // Named organization and role are resolved first; one that does not exist has no members.
    const organization = org ? await services.organizations.resolve(org).catch(() => undefined) : undefined;
    const globalRole = role ? await services.roles.find('global', role) : undefined;
    if ((org && !organization) || (role && !globalRole)) {
      ctx.body = { data: [], next_cursor: null };
      return;
    }
    const { items, next } = await services.accounts.page({ ...page, filters: { email: email || undefined, active, organizationId: organization?.id, roleId: globalRole?.id } });
    ctx.body = { data: await Promise.all(items.map((a) => describeUser(deps, a))), next_cursor: next ? cursorOf(next) : null };
  });

  router.post('/users', write, async (ctx) => {
    const { body, errors } = await deps.bodies.check<{ email: string; password?: string; name?: string | null; superuser?: boolean; email_verified?: boolean; roles?: string[]; send_invitation?: boolean; allow_weak_password?: boolean }>(ctx);
    const { email, password, name, superuser, email_verified: emailVerified, roles: roleNames, send_invitation: invite, allow_weak_password: allowWeakPassword } = body;
    if (password === undefined && invite !== true && !errors.some((e) => e.field === 'password')) errors.push({ field: 'password', message: 'is required unless send_invitation is true' });
    if (errors.length) throw invalid(errors);
    const roles = await globalRoles(deps, roleNames ?? []);
    // Invited without a password: an unusable random one, replaced through the mailed link. The
    // accounts service applies the password policy (allow_weak_password: strength and length
    // exceptions, never below 8 characters).
    const account = await services.accounts.provision({ email, password: password ?? randomBytes(32).toString('base64url'), name: name ?? undefined, superuser: superuser ?? false, emailVerified: emailVerified ?? false, allowWeakPassword, roles, sendInvitation: invite === true }, byPrincipal(ctx));
    const view = await describeUser(deps, account);
    ctx.set('Location', locationOf(deps, `users/${account.id}`));
    sendResource(ctx, view, 201);
  });

  router.get('/users/:id', read, async (ctx) => {
    sendResource(ctx, await describeUser(deps, await userOr404(deps, ctx.params.id!)));
  });

  router.patch('/users/:id', write, async (ctx) => {
    const account = await userOr404(deps, ctx.params.id!);
    const { name, active, superuser, email_verified: emailVerified, roles: roleNames } = await deps.bodies.read<{ name?: string | null; active?: boolean; superuser?: boolean; email_verified?: boolean; roles?: string[] }>(ctx);
    const before = await describeUser(deps, account);
    checkIfMatch(ctx, before);
    // Unknown role names are a 422 before anything changes.
    const wanted = roleNames ? await globalRoles(deps, roleNames) : undefined;
    const updated = await services.accounts.adminUpdate(account.id, { name, active, superuser, emailVerified, roles: wanted }, byPrincipal(ctx));
    sendResource(ctx, await describeUser(deps, updated));
  });

  router.delete('/users/:id', write, async (ctx) => {
    const account = await userOr404(deps, ctx.params.id!);
    await services.accounts.erase(account.id, byPrincipal(ctx));
    ctx.status = 204;
  });

  router.post('/users/:id/reset-mfa', write, async (ctx) => {
    const account = await userOr404(deps, ctx.params.id!);
    await services.mfa.reset(account.id, byPrincipal(ctx));
    ctx.status = 204;
  });

  router.post('/users/:id/send-password-reset', write, async (ctx) => {
    const account = await userOr404(deps, ctx.params.id!);
    await services.accounts.sendPasswordReset(account, byPrincipal(ctx));
    ctx.status = 204;
  });

  // Everything the user holds ends: sessions, grants, codes and refresh tokens (as deactivation).
  router.post('/users/:id/revoke-sessions', write, async (ctx) => {
    const account = await userOr404(deps, ctx.params.id!);
    await services.accounts.revokeSessions(account.id, byPrincipal(ctx));
    ctx.status = 204;
  });

  router.get('/users/:id/sessions', read, async (ctx) => {
    await listSessions(deps, ctx, (await userOr404(deps, ctx.params.id!)).id);
  });

  router.delete('/users/:id/sessions/:sid', write, async (ctx) => {
    await revokeSession(deps, ctx, (await userOr404(deps, ctx.params.id!)).id, ctx.params.sid!);
    ctx.status = 204;
  });

  router.get('/users/:id/grants', read, async (ctx) => {
    await listGrants(deps, ctx, (await userOr404(deps, ctx.params.id!)).id);
  });

  router.delete('/users/:id/grants/:gid', write, async (ctx) => {
    const account = await userOr404(deps, ctx.params.id!);
    await revokeGrant(deps, ctx, account.id, ctx.params.gid!);
    ctx.status = 204;
  });

  return router;
}

/** One page of the account's sessions (the admin's /users/{id}/sessions and the user's /me/sessions). */
export async function listSessions(deps: ApiDeps, ctx: Koa.Context, accountId: string): Promise<void> {
  const page = pageParams(ctx);
  const sessions = (await deps.services.sessions.sessionsOf(accountId)).map(describeSession);
  const { items, next_cursor } = paginate(sessions, (s) => ({ at: s.created_at ?? '', id: s.id }), page);
  ctx.body = { data: items, next_cursor };
}

/** One page of the account's grants. */
export async function listGrants(deps: ApiDeps, ctx: Koa.Context, accountId: string): Promise<void> {
  const page = pageParams(ctx);
  const grants = (await deps.services.sessions.grantsOf(accountId)).map(describeGrant);
  const { items, next_cursor } = paginate(grants, (g) => ({ at: g.created_at ?? '', id: g.id }), page);
  ctx.body = { data: items, next_cursor };
}

/** Ends one of the account's sessions as logout does (404 for any other id). */
export async function revokeSession(deps: ApiDeps, ctx: Koa.Context, accountId: string, sid: string): Promise<void> {
  if (!(await deps.services.sessions.end(accountId, sid, { ...byPrincipal(ctx), type: 'session.revoke' }))) throw notFound(`session ${sid}`);
}

/** Revokes one of the account's grants with every token issued under it. */
export async function revokeGrant(deps: ApiDeps, ctx: Koa.Context, accountId: string, grantId: string): Promise<void> {
  if (!(await deps.services.sessions.revokeGrant(accountId, grantId, byPrincipal(ctx)))) throw notFound(`grant ${grantId}`);
}
