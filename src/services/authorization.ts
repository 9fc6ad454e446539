/**
 * Who may do what inside Latch. Every management check (organization pages, the CLI acting as
 * an operator, the admin API) asks this module; routes never re-implement a rule.
 *
 * Organization roles: owner (everything, including deleting the organization and managing
 * owners), admin (members, invitations and settings, but not owners), member (use), viewer
 * (read-only). A custom organization role manages nothing (it carries API permissions), but its
 * holder is a member: like every member, they see the organization and its members, and may leave.
 * Superusers may do everything, in every organization (an organization without owner is
 * managed by them).
 */

import { ForbiddenError } from '../errors/index.js';

export const ORG_ACTIONS = [
  'org.read',
  'org.update',
  'org.delete',
  'org.leave',
  'members.read',
  'members.add',
  'members.update',
  'members.remove',
  'invitations.read',
  'invitations.create',
  'invitations.revoke',
] as const;

export type OrgAction = (typeof ORG_ACTIONS)[number];

/** The one acting: whether they are a superuser, and their role in the organization (null: not a member). */
export interface OrgActor {
  superuser: boolean;
  role: string | null;
}

/**
 * The roles concerned by a membership action: the target's current role (update, remove) and
 * the role given (add, update, invitations.create). Touching an owner, or making one, is owner
 * business.
 */
export interface OrgActionTarget {
  currentRole?: string | null | undefined;
  newRole?: string | null | undefined;
  /** The target is the actor (leaving is allowed to any member). */
  self?: boolean | undefined;
}

const MANAGERS = new Set(['owner', 'admin']);
/** Every member, whatever their role (built-in or custom), reads the organization and its members. */
const anyMember = () => true;

const RULES: Record<OrgAction, (role: string) => boolean> = {
  'org.read': anyMember,
  'org.update': (role) => MANAGERS.has(role),
  'org.delete': (role) => role === 'owner',
  'org.leave': () => true,
  'members.read': anyMember,
  'members.add': (role) => MANAGERS.has(role),
  'members.update': (role) => MANAGERS.has(role),
  'members.remove': (role) => MANAGERS.has(role),
  'invitations.read': (role) => MANAGERS.has(role),
  'invitations.create': (role) => MANAGERS.has(role),
  'invitations.revoke': (role) => MANAGERS.has(role),
};

const touchesOwner = (target: OrgActionTarget) => target.currentRole === 'owner' || target.newRole === 'owner';

/** May `actor` do `action` in an organization? */
export function canInOrganization(actor: OrgActor, action: OrgAction, target: OrgActionTarget = {}): boolean {
  if (actor.superuser) return true;
  const { role } = actor;
  if (!role) return false;
  if (action === 'org.leave' || (action === 'members.remove' && target.self)) return true;
  if (!RULES[action](role)) return false;
  // Only owners manage owners: an admin neither promotes to, demotes from, removes nor invites an owner.
  if (touchesOwner(target) && role !== 'owner') return false;
  return true;
}

/**
 * Whether the actor manages the organization (an owner or an admin, or a superuser): the admin
 * API lets such an account act on that organization with a token scoped `account`.
 */
export function managesOrganization(actor: OrgActor): boolean {
  return actor.superuser || (actor.role !== null && MANAGERS.has(actor.role));
}

/** The actions an actor may take, for pages that show only the forms one may use. */
export function allowedOrgActions(actor: OrgActor): Set<OrgAction> {
  return new Set(ORG_ACTIONS.filter((a) => canInOrganization(actor, a)));
}


/** Thrown when the one acting may not do what they asked. */
export { ForbiddenError };

/** Why an action was refused (the 403's detail, the page's message). */
export const refusal = (action: OrgAction) => `your role in this organization does not allow ${action}`;

export function assertCanInOrganization(actor: OrgActor, action: OrgAction, target: OrgActionTarget = {}): void {
  if (!canInOrganization(actor, action, target)) throw new ForbiddenError(refusal(action));
}
