import Router from '@koa/router';
import type Koa from 'koa';

import { originOf } from '../../lib/request-origin.js';
import { principalOf, requireAccount } from '../../middleware/api-auth.js';
import { checkIfMatch, cursorOf, pageParams, sendResource } from '../../middleware/api-paging.js';
import { invalid, notFound, ProblemError } from '../../middleware/api-problem.js';
import type { AccountRecord } from '../../repositories/accounts.js';
import { ValidationError } from '../../services/errors.js';
import { checkPasswordPolicy } from '../../services/password-policy.js';
import { describePersonalAccessToken } from '../../services/personal-access-tokens.js';
import { reauthenticate } from '../../services/reauthentication.js';
import { byPrincipal, locationOf, type ApiDeps } from './common.js';
import { describeUser, listGrants, listSessions, revokeGrant, revokeSession } from './users.js';

/** The caller's account as the API shows it: the user view plus the organizations it belongs to. */
export async function describeMe(deps: ApiDeps, a: AccountRecord) {
  const memberships = await deps.services.organizations.membershipsOf({ kind: 'account', id: a.id });
  return { ...(await describeUser(deps, a)), organizations: memberships.map((m) => ({ id: m.id, name: m.name, slug: m.slug, role: m.role })) };
}

/** The account of the token (requireAccount ran: a user token, whose account bearerAuth loaded). */
const accountOf = (ctx: Koa.Context): AccountRecord => principalOf(ctx).account!;

/** Control characters have no place in a name (and PostgreSQL text cannot hold U+0000). */
const CONTROL = /\p{Cc}/u;

/**
 * /api/v1/me: the signed-in user's own account (scope `account` on a user token or a personal
 * access token): profile, password, sessions, grants (consents) and personal access tokens.
 */
export function meRoutes(deps: ApiDeps): Router {
  const router = new Router();
  const { services } = deps;
  const own = requireAccount();

  router.get('/me', own, async (ctx) => {
    sendResource(ctx, await describeMe(deps, accountOf(ctx)));
  });

  router.patch('/me', own, async (ctx) => {
    const account = accountOf(ctx);
    const { body, errors } = await deps.bodies.check<{ name?: string | null }>(ctx);
    const { name } = body;
    if (typeof name === 'string' && CONTROL.test(name) && !errors.length) errors.push({ field: 'name', message: 'must not contain control characters' });
    if (errors.length) throw invalid(errors);
    checkIfMatch(ctx, await describeMe(deps, account));
    // The service audits the change (account.update) when something changed.
    const updated = name === undefined ? account : await services.accounts.update(account.id, { name }, { actorId: account.id, origin: originOf(ctx) });
    sendResource(ctx, await describeMe(deps, updated));
  });

  router.post('/me/change-password', own, async (ctx) => {
    const account = accountOf(ctx);
    const { current_password: current, new_password: next } = await deps.bodies.read<{ current_password: string; new_password: string }>(ctx);
    // The account page's policy, checked before the current password (no attempt is spent on it).
    const policy = checkPasswordPolicy(next, { email: account.email, name: account.displayName });
    if (policy) throw invalid([{ field: 'new_password', message: policy }]);
    const check = await reauthenticate({ passwords: services.passwords, mfa: services.mfa, audit: services.audit, loginGuard: services.loginGuard }, account, { password: current }, { ip: ctx.ip, origin: originOf(ctx), clientId: principalOf(ctx).clientId, context: 'api' });
    if (!check.ok && check.reason === 'locked') {
      throw new ProblemError(429, 'too-many-requests', 'too many failed attempts; try again later', { headers: { 'Retry-After': String(check.retryAfterSeconds) } });
    }
    if (!check.ok) throw invalid([{ field: 'current_password', message: 'is not your current password' }]);
    // Ends every session, grant and refresh token of the account (so the access token of this
    // call too, unless it is a personal access token): whoever knew the old password is out.
    await services.accounts.changePassword(account.id, next, byPrincipal(ctx));
    ctx.status = 204;
  });

  router.get('/me/sessions', own, async (ctx) => {
    await listSessions(deps, ctx, accountOf(ctx).id);
  });

  router.delete('/me/sessions/:id', own, async (ctx) => {
    await revokeSession(deps, ctx, accountOf(ctx).id, ctx.params.id!);
    ctx.status = 204;
  });

  router.get('/me/grants', own, async (ctx) => {
    await listGrants(deps, ctx, accountOf(ctx).id);
  });

  router.delete('/me/grants/:id', own, async (ctx) => {
    await revokeGrant(deps, ctx, accountOf(ctx).id, ctx.params.id!);
    ctx.status = 204;
  });

  // ---- Personal access tokens (the account page's rules: services/personal-access-tokens.ts) ----

  /** A live or expired token of the caller; a revoked one is gone (404), as after DELETE. */
  const tokenOr404 = async (ctx: Koa.Context) => {
    const id = ctx.params.id!;
    const token = await services.personalTokens.get(accountOf(ctx).id, id);
    if (!token || token.revokedAt) throw notFound(`token ${id}`);
    return token;
  };

  router.get('/me/tokens', own, async (ctx) => {
    const page = pageParams(ctx);
    const { items, next } = await services.personalTokens.page(accountOf(ctx).id, page);
    ctx.body = { data: items.map(describePersonalAccessToken), next_cursor: next ? cursorOf(next) : null };
  });

  router.post('/me/tokens', own, async (ctx) => {
    const account = accountOf(ctx);
    const { body, errors } = await deps.bodies.check<{ name: string; scopes: string[]; organization_id?: string | null; expires_in_days?: number }>(ctx);
    const { name, scopes, organization_id: organizationId, expires_in_days: days } = body;
    if (typeof organizationId === 'string' && CONTROL.test(organizationId) && !errors.some((e) => e.field === 'organization_id')) errors.push({ field: 'organization_id', message: 'is not an organization you belong to' });
    if (errors.length) throw invalid(errors);
    let created;
    try {
      created = await services.personalTokens.create(account, { name, scopes, organizationId, expiresInDays: days, origin: originOf(ctx) });
    } catch (err) {
      // The live-token limit is a conflict with existing tokens, not a wrong field.
      if (err instanceof ValidationError && err.field === 'tokens') throw new ProblemError(409, 'conflict', err.detail);
      throw err;
    }
    ctx.set('Location', locationOf(deps, `me/tokens/${encodeURIComponent(created.record.id)}`));
    // The token is shown once, here (only its hash is stored).
    sendResource(ctx, { ...describePersonalAccessToken(created.record), token: created.token }, 201);
  });

  router.get('/me/tokens/:id', own, async (ctx) => {
    sendResource(ctx, describePersonalAccessToken(await tokenOr404(ctx)));
  });

  router.delete('/me/tokens/:id', own, async (ctx) => {
    const token = await tokenOr404(ctx);
    // The service audits the revocation (pat.revoke).
    if (!(await services.personalTokens.revoke(accountOf(ctx).id, token.id, originOf(ctx)))) throw notFound(`token ${token.id}`);
    ctx.status = 204;
  });

  return router;
}
