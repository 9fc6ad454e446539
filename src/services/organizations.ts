import { createHash, randomBytes, randomUUID } from 'node:crypto';

import type { HeldMembership, InvitationRecord, MembershipRecord, OrganizationQueries, OrganizationRecord, OrganizationsRepository } from '../repositories/organizations.js';
import type { RoleRecord, Subject } from '../repositories/roles.js';
import { composeMail } from './account-mail.js';
import { checkEmail } from './accounts.js';
import type { AuditService, RequestOrigin } from './audit.js';
import { assertCanInOrganization, type OrgAction, type OrgActionTarget, type OrgActor } from './authorization.js';
import type { ChangeFeed } from './change-feed.js';
import { ConflictError, NotFoundError, ValidationError } from './errors.js';
import type { Mailer } from './mail.js';
import type { RoleService } from './roles.js';
import type { PageRequest } from '../repositories/keyset.js';
import { canonicalId, isEntityId, isUuid } from '../lib/ids.js';

const SLUG = /^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/;

/** An invitation link is valid this long (seconds). */
export const INVITATION_TTL = 7 * 24 * 3600;

export { isUuid };

const hashToken = (token: string) => createHash('sha256').update(token).digest('hex');

export function checkSlug(raw: string): string {
  const slug = raw?.trim() ?? '';
  if (!SLUG.test(slug)) throw new ValidationError('slug', 'must be 1-64 lowercase letters, digits or "-", not starting or ending with "-"');
  // An organization is found by id or slug: a slug shaped like an id (lib/ids.ts) would be ambiguous.
  if (isEntityId(slug)) throw new ValidationError('slug', 'must not look like an organization id');
  return slug;
}

function checkOrgName(raw: string): string {
  const name = raw?.trim() ?? '';
  if (!name) throw new ValidationError('name', 'is required');
  if (name.length > 255) throw new ValidationError('name', 'must be at most 255 characters');
  return name;
}

export function describeOrganization(o: OrganizationRecord) {
  return { id: o.id, name: o.name, slug: o.slug, created_by: o.createdBy, created_at: o.createdAt, updated_at: o.updatedAt };
}

export function describeMembership(m: MembershipRecord) {
  return { organization_id: m.organizationId, ...(m.member.kind === 'account' ? { account_id: m.member.id } : { client_id: m.member.id }), role: m.role, created_at: m.createdAt, updated_at: m.updatedAt };
}

export function describeInvitation(i: InvitationRecord, now = Date.now()) {
  const status = i.status === 'pending' && Date.parse(i.expiresAt) <= now ? 'expired' : i.status;
  return { id: i.id, organization_id: i.organizationId, email: i.email, role: i.role, status, invited_by: i.invitedBy, created_at: i.createdAt, expires_at: i.expiresAt };
}

/**
 * Who acts (for audit rows): an account id, a client id or "cli"; or, from the admin API, that id
 * with the token's client, the request's origin and `via`.
 */
export type ActorId = string | { actorId: string; clientId?: string | undefined; origin?: RequestOrigin | undefined; via?: string | undefined };

/** The id an actor is stored as (organizations.created_by, invitations.invited_by). */
export const actorIdOf = (actor: ActorId) => (typeof actor === 'string' ? actor : actor.actorId);

/**
 * Organizations (tenants): memberships with an organization role, the last-owner rule and
 * e-mailed invitations. Permission checks are the caller's (see authorization.ts, `authorize`);
 * the invariants (roles of the right kind, last owner, single-use invitations) are enforced here.
 */
export function createOrganizationService(deps: { orgs: OrganizationsRepository; roles: RoleService; issuer: string; mailer: Mailer; audit: AuditService; feed?: ChangeFeed; productName?: string }) {
  const { orgs, roles, audit } = deps;
  const product = deps.productName ?? 'Latch';
  const changed = () => deps.feed?.publish('rbac');

  /** An audit row with the actor's client, origin and channel when known. */
  const record = (type: string, actor: ActorId, subjectId: string, details: Record<string, unknown>) => {
    if (typeof actor === 'string') return audit.record({ type, actorId: actor, subjectId, details });
    const { actorId, clientId, origin, via } = actor;
    return audit.record({ type, actorId, clientId, origin, subjectId, details: { ...details, ...(via ? { via } : {}) } });
  };

  /** An organization role by name; undefined when there is none (a global role's name: ValidationError). */
  async function findOrgRole(name: string): Promise<RoleRecord | undefined> {
    const role = await roles.find('organization', name);
    if (role) return role;
    if (await roles.find('global', name)) throw new ValidationError('role', `${name} is a global role: a membership holds an organization role (owner, admin, member, viewer or one created with --org)`);
    return undefined;
  }

  async function orgRole(name: string): Promise<RoleRecord> {
    const role = await findOrgRole(name);
    if (!role) throw new NotFoundError(`organization role ${name}`);
    return role;
  }

  async function ownerRoleId(): Promise<string> {
    return (await orgRole('owner')).id;
  }

  /** The last-owner rule: an organization that has owners keeps at least one. */
  async function assertNotLastOwner(repo: OrganizationQueries, organizationId: string, membership: MembershipRecord | undefined): Promise<void> {
    if (membership?.role !== 'owner') return;
    if ((await repo.countWithRole(organizationId, membership.roleId)) <= 1) throw new ConflictError('the last owner of an organization cannot leave or be demoted');
  }

  /**
   * An organization by id or slug; undefined when there is none. An id of any shape Latch keeps
   * (lib/ids.ts); a slug made before slugs shaped like an integer were refused is still found.
   */
  async function find(slugOrId: string): Promise<OrganizationRecord | undefined> {
    const key = slugOrId?.trim() ?? '';
    const id = canonicalId(key);
    const byId = id ? await orgs.findById(id) : undefined;
    return byId ?? (SLUG.test(key) ? await orgs.findBySlug(key) : undefined);
  }

  async function resolve(slugOrId: string): Promise<OrganizationRecord> {
    const org = await find(slugOrId);
    if (!org) throw new NotFoundError(`organization ${slugOrId?.trim() ?? ''}`);
    return org;
  }

  return {
    find,
    resolve,
    findOrgRole,
    orgRole,
    findById: (id: string) => {
      const key = canonicalId(id);
      return key ? orgs.findById(key) : Promise.resolve(undefined);
    },
    list: () => orgs.list(),
    page: (request: PageRequest & { filters?: { name?: string | undefined; slug?: string | undefined } }) => orgs.page(request),

    /** The actor's standing in an organization, for authorization.ts. */
    async actor(organizationId: string, who: { subject: Subject; superuser: boolean }): Promise<OrgActor> {
      const m = await orgs.membership(organizationId, who.subject);
      return { superuser: who.superuser, role: m?.role ?? null };
    },

    /** Looks up the actor's role and throws ForbiddenError unless authorization.ts allows the action. */
    async authorize(organizationId: string, who: { subject: Subject; superuser: boolean }, action: OrgAction, target: OrgActionTarget = {}): Promise<OrgActor> {
      const m = await orgs.membership(organizationId, who.subject);
      const actor = { superuser: who.superuser, role: m?.role ?? null };
      assertCanInOrganization(actor, action, target);
      return actor;
    },

    async create(input: { name: string; slug: string; owner?: Subject | undefined; createdBy: ActorId }): Promise<OrganizationRecord> {
      const name = checkOrgName(input.name);
      const slug = checkSlug(input.slug);
      if (await orgs.findBySlug(slug)) throw new ConflictError(`an organization with slug ${slug} already exists`);
      const ownerId = input.owner ? await ownerRoleId() : undefined;
      const org = await orgs.transaction(async (repo) => {
        const created = await repo.insert({ id: randomUUID(), name, slug, createdBy: actorIdOf(input.createdBy) });
        if (input.owner && ownerId) await repo.addMember(created.id, input.owner, ownerId);
        return created;
      }).catch(async (err: unknown) => {
        // Checked above; a concurrent create with the same slug loses on the unique index.
        if (await orgs.findBySlug(slug)) throw new ConflictError(`an organization with slug ${slug} already exists`);
        throw err;
      });
      await changed();
      await record('organization.create', input.createdBy, org.id, { after: { name, slug, owner: input.owner?.id ?? null } });
      return org;
    },

    async update(org: OrganizationRecord, patch: { name?: string | undefined; slug?: string | undefined }, actorId: ActorId): Promise<OrganizationRecord> {
      const next: { name?: string; slug?: string } = {};
      if (patch.name !== undefined) next.name = checkOrgName(patch.name);
      if (patch.slug !== undefined) {
        next.slug = checkSlug(patch.slug);
        const clash = await orgs.findBySlug(next.slug);
        if (clash && clash.id !== org.id) throw new ConflictError(`an organization with slug ${next.slug} already exists`);
      }
      await orgs.update(org.id, next).catch(async (err: unknown) => {
        const clash = next.slug ? await orgs.findBySlug(next.slug) : undefined;
        if (clash && clash.id !== org.id) throw new ConflictError(`an organization with slug ${next.slug} already exists`);
        throw err;
      });
      await changed();
      await record('organization.update', actorId, org.id, { before: { name: org.name, slug: org.slug }, after: next });
      return (await orgs.findById(org.id))!;
    },

    async delete(org: OrganizationRecord, actorId: ActorId): Promise<void> {
      await orgs.delete(org.id);
      await changed();
      await record('organization.delete', actorId, org.id, { before: { name: org.name, slug: org.slug } });
    },

    members: (organizationId: string) => orgs.members(organizationId),
    membersPage: (organizationId: string, request: PageRequest) => orgs.membersPage(organizationId, request),
    membership: (organizationId: string, subject: Subject) => orgs.membership(organizationId, subject),
    membershipsOf: (subject: Subject): Promise<HeldMembership[]> => orgs.membershipsOf(subject),

    async addMember(org: OrganizationRecord, subject: Subject, roleName: string, actorId: ActorId): Promise<MembershipRecord> {
      const role = await orgRole(roleName);
      if (await orgs.membership(org.id, subject)) throw new ConflictError(`${subject.kind} ${subject.id} is already a member of ${org.slug}`);
      await orgs.addMember(org.id, subject, role.id).catch(async (err: unknown) => {
        if (await orgs.membership(org.id, subject)) throw new ConflictError(`${subject.kind} ${subject.id} is already a member of ${org.slug}`);
        throw err;
      });
      await changed();
      await record('organization.member.add', actorId, subject.id, { organization: org.id, after: { role: role.name } });
      return (await orgs.membership(org.id, subject))!;
    },

    async updateMember(org: OrganizationRecord, subject: Subject, roleName: string, actorId: ActorId): Promise<MembershipRecord> {
      const role = await orgRole(roleName);
      const before = await orgs.transaction(async (repo) => {
        await repo.lock(org.id);
        const current = await repo.membership(org.id, subject);
        if (!current) throw new NotFoundError(`${subject.kind} ${subject.id} in organization ${org.slug}`);
        if (current.roleId !== role.id) await assertNotLastOwner(repo, org.id, current);
        await repo.setMemberRole(org.id, subject, role.id);
        return current;
      });
      await changed();
      await record('organization.member.update', actorId, subject.id, { organization: org.id, before: { role: before.role }, after: { role: role.name } });
      return (await orgs.membership(org.id, subject))!;
    },

    async removeMember(org: OrganizationRecord, subject: Subject, actorId: ActorId): Promise<void> {
      const before = await orgs.transaction(async (repo) => {
        await repo.lock(org.id);
        const current = await repo.membership(org.id, subject);
        if (!current) throw new NotFoundError(`${subject.kind} ${subject.id} in organization ${org.slug}`);
        await assertNotLastOwner(repo, org.id, current);
        await repo.removeMember(org.id, subject);
        return current;
      });
      await changed();
      await record('organization.member.remove', actorId, subject.id, { organization: org.id, before: { role: before.role } });
    },

    /**
     * Invites `email` to the organization with a role: mails a single-use link valid 7 days and
     * returns it. Only the token's hash is stored.
     */
    async invite(org: OrganizationRecord, input: { email: string; role?: string | undefined; invitedBy: ActorId }): Promise<{ invitation: InvitationRecord; url: string }> {
      const email = checkEmail(input.email);
      const role = await orgRole(input.role ?? 'member');
      const token = randomBytes(32).toString('base64url');
      const id = randomUUID();
      const expiresAt = new Date(Date.now() + INVITATION_TTL * 1000).toISOString();
      await orgs.insertInvitation({ id, organizationId: org.id, email, roleId: role.id, tokenHash: hashToken(token), invitedBy: actorIdOf(input.invitedBy), expiresAt });
      const url = `${deps.issuer}/invitation?${new URLSearchParams({ token }).toString()}`;
      const { text, html } = composeMail([
        `You are invited to join the organization "${org.name}" on ${product} as ${role.name}. To accept, open this link:`,
        { link: url, label: `Join ${org.name}` },
        `The invitation is valid until ${expiresAt.replace(/\.\d{3}Z$/, 'Z')} and can be used once. If you did not expect it, ignore this mail.`,
      ]);
      await deps.mailer.send({ to: email, subject: `You are invited to join ${org.name} on ${product}`, text, html }, { kind: 'organization_invitation' });
      await record('organization.invitation.create', input.invitedBy, org.id, { organization: org.id, invitation: id, after: { role: role.name } });
      return { invitation: (await orgs.invitationById(id))!, url };
    },

    invitations: (organizationId: string) => orgs.invitationsOf(organizationId),
    invitationsPage: (organizationId: string, request: PageRequest) => orgs.invitationsPage(organizationId, request),
    invitationById: (id: string) => orgs.invitationById(id),
    pendingInvitationsFor: (email: string) => orgs.pendingFor(email, new Date().toISOString()),

    /** The invitation behind a link whatever its state (pending, used, expired, ...), or undefined. Never uses it up. */
    async inspectInvitation(token: string): Promise<InvitationRecord | undefined> {
      if (typeof token !== 'string' || token.length < 20 || token.length > 100) return undefined;
      return orgs.invitationByHash(hashToken(token));
    },

    /** The invitation behind a link, if it is still usable (pending, not expired). Never uses it up. */
    async peekInvitation(token: string): Promise<InvitationRecord | undefined> {
      if (typeof token !== 'string' || token.length < 20 || token.length > 100) return undefined;
      const inv = await orgs.invitationByHash(hashToken(token));
      if (!inv || inv.status !== 'pending' || Date.parse(inv.expiresAt) <= Date.now()) return undefined;
      return inv;
    },

    /**
     * Accepts an invitation for an account whose email is the invited address: the membership is
     * created and the invitation used up, once. An existing membership keeps its role.
     */
    async acceptInvitation(inv: InvitationRecord, account: { id: string; email: string }): Promise<MembershipRecord> {
      if (inv.email.toLowerCase() !== account.email.toLowerCase()) throw new ValidationError('invitation', 'was sent to another email address');
      if (Date.parse(inv.expiresAt) <= Date.now()) throw new ConflictError('the invitation has expired');
      const subject: Subject = { kind: 'account', id: account.id };
      await orgs.transaction(async (repo) => {
        if (!(await repo.settleInvitation(inv.id, 'accepted'))) throw new ConflictError('the invitation has already been used');
        if (!(await repo.membership(inv.organizationId, subject))) await repo.addMember(inv.organizationId, subject, inv.roleId);
      });
      await changed();
      await audit.record({ type: 'organization.invitation.accept', actorId: account.id, subjectId: account.id, details: { organization: inv.organizationId, invitation: inv.id, after: { role: inv.role } } });
      return (await orgs.membership(inv.organizationId, subject))!;
    },

    async declineInvitation(inv: InvitationRecord, account: { id: string; email: string }): Promise<void> {
      if (inv.email.toLowerCase() !== account.email.toLowerCase()) throw new ValidationError('invitation', 'was sent to another email address');
      if (!(await orgs.settleInvitation(inv.id, 'declined'))) throw new ConflictError('the invitation is no longer pending');
      await audit.record({ type: 'organization.invitation.decline', actorId: account.id, subjectId: account.id, details: { organization: inv.organizationId, invitation: inv.id } });
    },

    async revokeInvitation(inv: InvitationRecord, actorId: ActorId): Promise<void> {
      if (!(await orgs.settleInvitation(inv.id, 'revoked'))) throw new ConflictError('the invitation is no longer pending');
      await record('organization.invitation.revoke', actorId, inv.organizationId, { organization: inv.organizationId, invitation: inv.id });
    },
  };
}

export type OrganizationService = ReturnType<typeof createOrganizationService>;
