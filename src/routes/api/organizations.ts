import Router from '@koa/router';
import type Koa from 'koa';

import { originOf } from '../../lib/request-origin.js';
import { actorOf, insufficientScope, principalOf, requireAdmin } from '../../middleware/api-auth.js';
import { queryParam } from '../../middleware/api-input.js';
import { checkIfMatch, cursorOf, pageParams, sendResource } from '../../middleware/api-paging.js';
import { invalid, notFound, ProblemError, type FieldError } from '../../middleware/api-problem.js';
import type { InvitationRecord, MembershipRecord, OrganizationRecord } from '../../repositories/organizations.js';
import type { Subject } from '../../repositories/roles.js';
import { canInOrganization, managesOrganization, refusal, type OrgAction, type OrgActionTarget } from '../../services/authorization.js';
import { describeInvitation, describeOrganization, isUuid, type ActorId } from '../../services/organizations.js';
import { apiKindOf } from '../../services/roles.js';
import { locationOf, type ApiDeps } from './common.js';
import { readSubject } from './roles.js';

/** A member as the API shows it: `id` is the user id or the client id, `kind` says which. */
export function describeMember(m: MembershipRecord) {
  return { id: m.member.id, kind: apiKindOf(m.member), organization_id: m.organizationId, role: m.role, created_at: m.createdAt, updated_at: m.updatedAt };
}

/** The organization an /organizations/{id}/… request acts on, and who acts there. */
interface OrgContext {
  org: OrganizationRecord;
  who: { subject: Subject; superuser: boolean };
  /** The admin scope that would allow the request (named by its 403s). */
  scope: string;
}

const orgOf = (ctx: Koa.Context) => ctx.state.org as OrgContext;

/** The API's actor for the organization service's audit rows: token subject and client, origin, channel. */
const apiActor = (ctx: Koa.Context): ActorId => ({ ...actorOf(principalOf(ctx)), origin: originOf(ctx), via: 'api' });

/** 403 naming the admin scope that would allow the request (RFC 6750 §3.1). */
const forbidden = (scope: string, detail: string) => new ProblemError(403, 'forbidden', detail, { headers: insufficientScope(scope).headers ?? {} });

/**
 * Access to one organization: an admin token (`admin:read` for GET, `admin:write` otherwise;
 * user tokens of superusers only), acting as the operator; or a user token with the scope
 * `account` whose user is an owner or admin of that organization, acting with that role (a
 * superuser's `account` token has no more rights than their role). Whether the organization
 * exists is told only to callers allowed into it. Every action is then checked by
 * authorization.ts (`authorize` below); its refusals are 403s naming `scope`.
 */
function orgAccess(deps: ApiDeps, need: 'read' | 'write'): Koa.Middleware {
  const scope = `admin:${need}`;
  const admin = requireAdmin(need);
  const { organizations } = deps.services;
  return async (ctx, next) => {
    const p = principalOf(ctx);
    const id = ctx.params.id!;
    const operator = p.superuser && (p.scopes.has('admin:write') || (need === 'read' && p.scopes.has('admin:read')));
    if (p.kind === 'account' && p.scopes.has('account') && !operator) {
      const who = { subject: { kind: 'account' as const, id: p.id }, superuser: false };
      const org = await organizations.find(id);
      if (!org || !managesOrganization(await organizations.actor(org.id, who))) throw forbidden(scope, `this token acts only on organizations its user is an owner or admin of, or needs ${scope}`);
      ctx.state.org = { org, who, scope } satisfies OrgContext;
      return next();
    }
    // requireAdmin answers 403 (insufficient scope, or an admin scope on a non-superuser's token).
    return admin(ctx, async () => {
      ctx.state.org = { org: await organizations.resolve(id), who: { subject: { kind: p.kind, id: p.id }, superuser: true }, scope } satisfies OrgContext;
      await next();
    });
  };
}

const boundedId = (id: string, max: number) => id.length <= max;

/** /api/v1/organizations: organizations, their members and invitations. */
export function organizationRoutes(deps: ApiDeps): Router {
  const router = new Router();
  const { services } = deps;
  const { organizations } = services;
  const read = orgAccess(deps, 'read');
  const write = orgAccess(deps, 'write');

  /** authorization.ts decides; a refusal is a 403 naming the admin scope that would allow it. */
  const authorize = async (ctx: Koa.Context, action: OrgAction, target: OrgActionTarget = {}) => {
    const { org, who, scope } = orgOf(ctx);
    if (!canInOrganization(await organizations.actor(org.id, who), action, target)) throw forbidden(scope, refusal(action));
  };

  /** An organization role by name, else 422 (a global role cannot be held through a membership). */
  const orgRoleName = async (field: string, name: string): Promise<string> => {
    const role = await organizations.findOrgRole(name);
    if (!role) throw invalid([{ field, message: `"${name}" is not an organization role` }]);
    return role.name;
  };

  const memberOr404 = async (ctx: Koa.Context): Promise<MembershipRecord> => {
    const { org } = orgOf(ctx);
    const id = ctx.params.member_id!;
    const m = boundedId(id, 128) ? ((await organizations.membership(org.id, { kind: 'account', id })) ?? (await organizations.membership(org.id, { kind: 'client', id }))) : undefined;
    if (!m) throw notFound(`member ${id}`);
    return m;
  };

  const invitationOr404 = async (ctx: Koa.Context): Promise<InvitationRecord> => {
    const id = ctx.params.invitation_id!;
    const inv = isUuid(id) ? await organizations.invitationById(id.toLowerCase()) : undefined;
    if (!inv || inv.organizationId !== orgOf(ctx).org.id) throw notFound(`invitation ${id}`);
    return inv;
  };

  const sameSubject = (a: Subject, b: Subject) => a.kind === b.kind && a.id === b.id;

  router.get('/organizations', requireAdmin('read'), async (ctx) => {
    const q = ctx.query as Record<string, string | string[] | undefined>;
    const errors: FieldError[] = [];
    const name = queryParam(q, 'name', errors);
    const slug = queryParam(q, 'slug', errors);
    const page = pageParams(ctx, errors);
    const { items, next } = await organizations.page({ ...page, filters: { name: name || undefined, slug } });
    ctx.body = { data: items.map(describeOrganization), next_cursor: next ? cursorOf(next) : null };
  });

  router.post('/organizations', requireAdmin('write'), async (ctx) => {
    const { body, errors } = await deps.bodies.check<{ name: string; slug: string; owner_id?: string }>(ctx);
    const { name, slug, owner_id: ownerId } = body;
    if (typeof ownerId === 'string' && !errors.some((e) => e.field === 'owner_id') && !(await services.accounts.findById(ownerId))) errors.push({ field: 'owner_id', message: 'is not a user' });
    if (errors.length) throw invalid(errors);
    const org = await organizations.create({ name, slug, owner: ownerId === undefined ? undefined : { kind: 'account', id: ownerId }, createdBy: apiActor(ctx) });
    ctx.set('Location', locationOf(deps, `organizations/${org.id}`));
    sendResource(ctx, describeOrganization(org), 201);
  });

  router.get('/organizations/:id', read, async (ctx) => {
    await authorize(ctx, 'org.read');
    sendResource(ctx, describeOrganization(orgOf(ctx).org));
  });

  router.patch('/organizations/:id', write, async (ctx) => {
    const { org } = orgOf(ctx);
    const { name, slug } = await deps.bodies.read<{ name?: string; slug?: string }>(ctx);
    await authorize(ctx, 'org.update');
    checkIfMatch(ctx, describeOrganization(org));
    // The service records the change (organization.update) with the API's actor.
    const changed = (name !== undefined && name !== org.name) || (slug !== undefined && slug !== org.slug);
    const updated = changed ? await organizations.update(org, { name, slug }, apiActor(ctx)) : org;
    sendResource(ctx, describeOrganization(updated));
  });

  router.delete('/organizations/:id', write, async (ctx) => {
    await authorize(ctx, 'org.delete');
    await organizations.delete(orgOf(ctx).org, apiActor(ctx));
    ctx.status = 204;
  });

  router.get('/organizations/:id/members', read, async (ctx) => {
    await authorize(ctx, 'members.read');
    const page = pageParams(ctx);
    const { items, next } = await organizations.membersPage(orgOf(ctx).org.id, page);
    ctx.body = { data: items.map(describeMember), next_cursor: next ? cursorOf(next) : null };
  });

  router.post('/organizations/:id/members', write, async (ctx) => {
    const { org } = orgOf(ctx);
    const { body, errors } = await deps.bodies.check<{ user_id?: string; client_id?: string; role?: string }>(ctx);
    const subject = await readSubject(deps, body, errors);
    if (errors.length || !subject) throw invalid(errors);
    const role = await orgRoleName('role', body.role ?? 'member');
    await authorize(ctx, 'members.add', { newRole: role });
    const m = await organizations.addMember(org, subject, role, apiActor(ctx));
    ctx.set('Location', locationOf(deps, `organizations/${org.id}/members/${encodeURIComponent(m.member.id)}`));
    sendResource(ctx, describeMember(m), 201);
  });

  router.get('/organizations/:id/members/:member_id', read, async (ctx) => {
    await authorize(ctx, 'members.read');
    sendResource(ctx, describeMember(await memberOr404(ctx)));
  });

  router.patch('/organizations/:id/members/:member_id', write, async (ctx) => {
    const { org, who } = orgOf(ctx);
    const { role: roleName } = await deps.bodies.read<{ role: string }>(ctx);
    // The right to change roles at all comes first: whom the organization has is told only then.
    await authorize(ctx, 'members.update');
    const m = await memberOr404(ctx);
    checkIfMatch(ctx, describeMember(m));
    const role = await orgRoleName('role', roleName);
    await authorize(ctx, 'members.update', { currentRole: m.role, newRole: role, self: sameSubject(m.member, who.subject) });
    const updated = m.role === role ? m : await organizations.updateMember(org, m.member, role, apiActor(ctx));
    sendResource(ctx, describeMember(updated));
  });

  router.delete('/organizations/:id/members/:member_id', write, async (ctx) => {
    const { org, who } = orgOf(ctx);
    await authorize(ctx, 'members.remove');
    const m = await memberOr404(ctx);
    await authorize(ctx, 'members.remove', { currentRole: m.role, self: sameSubject(m.member, who.subject) });
    // The last-owner rule is the service's (409).
    await organizations.removeMember(org, m.member, apiActor(ctx));
    ctx.status = 204;
  });

  router.get('/organizations/:id/invitations', read, async (ctx) => {
    await authorize(ctx, 'invitations.read');
    const page = pageParams(ctx);
    const { items, next } = await organizations.invitationsPage(orgOf(ctx).org.id, page);
    ctx.body = { data: items.map((i) => describeInvitation(i)), next_cursor: next ? cursorOf(next) : null };
  });

  router.post('/organizations/:id/invitations', write, async (ctx) => {
    const { org } = orgOf(ctx);
    const { email, role: roleName = 'member' } = await deps.bodies.read<{ email: string; role?: string }>(ctx);
    const role = await orgRoleName('role', roleName);
    await authorize(ctx, 'invitations.create', { newRole: role });
    // The service mails the single-use link; the link's token is never answered.
    const { invitation } = await organizations.invite(org, { email, role, invitedBy: apiActor(ctx) });
    ctx.set('Location', locationOf(deps, `organizations/${org.id}/invitations/${invitation.id}`));
    sendResource(ctx, describeInvitation(invitation), 201);
  });

  router.get('/organizations/:id/invitations/:invitation_id', read, async (ctx) => {
    await authorize(ctx, 'invitations.read');
    sendResource(ctx, describeInvitation(await invitationOr404(ctx)));
  });

  router.delete('/organizations/:id/invitations/:invitation_id', write, async (ctx) => {
    await authorize(ctx, 'invitations.revoke');
    const inv = await invitationOr404(ctx);
    // An invitation no longer pending (accepted, declined, revoked) is a 409 of the service.
    await organizations.revokeInvitation(inv, apiActor(ctx));
    ctx.status = 204;
  });

  return router;
}
