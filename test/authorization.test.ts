import { expect } from 'chai';

import { allowedOrgActions, assertCanInOrganization, canInOrganization, ForbiddenError, ORG_ACTIONS, type OrgAction, type OrgActionTarget, type OrgActor } from '../src/services/authorization.js';

/**
 * The documented policy, written out cell by cell (never computed from the implementation):
 * owner everything; admin everything but deleting the organization; member, viewer and any
 * custom organization role read the organization and its members and may leave; a non-member
 * nothing. Targets concerning owners are covered further down.
 */
const Y = true;
const N = false;

type Row = Record<OrgAction, boolean>;

const POLICY: Record<'owner' | 'admin' | 'member' | 'viewer' | 'billing' | 'non-member', Row> = {
  owner: {
    'org.read': Y,
    'org.update': Y,
    'org.delete': Y,
    'org.leave': Y,
    'members.read': Y,
    'members.add': Y,
    'members.update': Y,
    'members.remove': Y,
    'invitations.read': Y,
    'invitations.create': Y,
    'invitations.revoke': Y,
  },
  admin: {
    'org.read': Y,
    'org.update': Y,
    'org.delete': N,
    'org.leave': Y,
    'members.read': Y,
    'members.add': Y,
    'members.update': Y,
    'members.remove': Y,
    'invitations.read': Y,
    'invitations.create': Y,
    'invitations.revoke': Y,
  },
  member: {
    'org.read': Y,
    'org.update': N,
    'org.delete': N,
    'org.leave': Y,
    'members.read': Y,
    'members.add': N,
    'members.update': N,
    'members.remove': N,
    'invitations.read': N,
    'invitations.create': N,
    'invitations.revoke': N,
  },
  viewer: {
    'org.read': Y,
    'org.update': N,
    'org.delete': N,
    'org.leave': Y,
    'members.read': Y,
    'members.add': N,
    'members.update': N,
    'members.remove': N,
    'invitations.read': N,
    'invitations.create': N,
    'invitations.revoke': N,
  },
  /** A custom organization role: it carries API permissions, it manages nothing. */
  billing: {
    'org.read': Y,
    'org.update': N,
    'org.delete': N,
    'org.leave': Y,
    'members.read': Y,
    'members.add': N,
    'members.update': N,
    'members.remove': N,
    'invitations.read': N,
    'invitations.create': N,
    'invitations.revoke': N,
  },
  'non-member': {
    'org.read': N,
    'org.update': N,
    'org.delete': N,
    'org.leave': N,
    'members.read': N,
    'members.add': N,
    'members.update': N,
    'members.remove': N,
    'invitations.read': N,
    'invitations.create': N,
    'invitations.revoke': N,
  },
};

const actorOf = (name: keyof typeof POLICY, superuser = false): OrgActor => ({ superuser, role: name === 'non-member' ? null : name });

describe('authorization: organization roles × actions (the documented policy)', () => {
  it('the table covers every action there is, and nothing else', () => {
    // A new action must be added to the table (and so to the policy) explicitly.
    expect([...ORG_ACTIONS].sort()).to.deep.equal(
      ['invitations.create', 'invitations.read', 'invitations.revoke', 'members.add', 'members.read', 'members.remove', 'members.update', 'org.delete', 'org.leave', 'org.read', 'org.update'],
    );
    for (const row of Object.values(POLICY)) expect(Object.keys(row).sort()).to.deep.equal([...ORG_ACTIONS].sort());
  });

  for (const [name, row] of Object.entries(POLICY) as [keyof typeof POLICY, Row][]) {
    describe(`${name}`, () => {
      for (const action of ORG_ACTIONS) {
        const expected = row[action];
        it(`${expected ? 'may' : 'may not'} ${action}`, () => {
          expect(canInOrganization(actorOf(name), action)).to.equal(expected);
        });
      }
      it('allowedOrgActions lists exactly the allowed cells', () => {
        const allowed = [...allowedOrgActions(actorOf(name))].sort();
        expect(allowed).to.deep.equal(ORG_ACTIONS.filter((a) => row[a]).sort());
      });
    });
  }

  describe('superuser', () => {
    for (const name of Object.keys(POLICY) as (keyof typeof POLICY)[]) {
      for (const action of ORG_ACTIONS) {
        it(`as ${name} may ${action}`, () => {
          expect(canInOrganization(actorOf(name, true), action)).to.equal(true);
        });
      }
    }
    it('may manage owners even as a non-member', () => {
      const su = actorOf('non-member', true);
      expect(canInOrganization(su, 'members.update', { currentRole: 'owner', newRole: 'member' })).to.equal(true);
      expect(canInOrganization(su, 'members.remove', { currentRole: 'owner' })).to.equal(true);
      expect(canInOrganization(su, 'members.add', { newRole: 'owner' })).to.equal(true);
      expect(canInOrganization(su, 'invitations.create', { newRole: 'owner' })).to.equal(true);
      expect([...allowedOrgActions(su)].sort()).to.deep.equal([...ORG_ACTIONS].sort());
    });
  });
});

describe('authorization: actions on a target', () => {
  /** [actor role, action, target, expected] */
  const CELLS: [string | null, OrgAction, OrgActionTarget, boolean][] = [
    // Only owners manage owners.
    ['admin', 'members.update', { currentRole: 'member', newRole: 'owner' }, N],
    ['admin', 'members.update', { currentRole: 'owner', newRole: 'admin' }, N],
    ['admin', 'members.update', { currentRole: 'owner', newRole: 'member' }, N],
    ['admin', 'members.remove', { currentRole: 'owner' }, N],
    ['admin', 'members.add', { newRole: 'owner' }, N],
    ['admin', 'invitations.create', { newRole: 'owner' }, N],
    ['owner', 'members.update', { currentRole: 'member', newRole: 'owner' }, Y],
    ['owner', 'members.update', { currentRole: 'owner', newRole: 'admin' }, Y],
    ['owner', 'members.remove', { currentRole: 'owner' }, Y],
    ['owner', 'members.add', { newRole: 'owner' }, Y],
    ['owner', 'invitations.create', { newRole: 'owner' }, Y],
    // Admins manage everyone else.
    ['admin', 'members.update', { currentRole: 'member', newRole: 'admin' }, Y],
    ['admin', 'members.update', { currentRole: 'admin', newRole: 'viewer' }, Y],
    ['admin', 'members.update', { currentRole: 'viewer', newRole: 'billing' }, Y],
    ['admin', 'members.remove', { currentRole: 'admin' }, Y],
    ['admin', 'members.remove', { currentRole: 'member' }, Y],
    ['admin', 'members.add', { newRole: 'admin' }, Y],
    ['admin', 'invitations.create', { newRole: 'member' }, Y],
    // Anyone who is a member may remove themselves (leave), whatever their role.
    ['owner', 'members.remove', { self: true, currentRole: 'owner' }, Y],
    ['admin', 'members.remove', { self: true, currentRole: 'admin' }, Y],
    ['member', 'members.remove', { self: true, currentRole: 'member' }, Y],
    ['viewer', 'members.remove', { self: true, currentRole: 'viewer' }, Y],
    ['billing', 'members.remove', { self: true, currentRole: 'billing' }, Y],
    // ... but not someone else, and a non-member has nobody to remove.
    ['member', 'members.remove', { currentRole: 'viewer' }, N],
    ['viewer', 'members.remove', { currentRole: 'member' }, N],
    ['billing', 'members.remove', { currentRole: 'member' }, N],
    [null, 'members.remove', { self: true }, N],
    // Members may not hand out roles, even low ones.
    ['member', 'members.update', { currentRole: 'viewer', newRole: 'viewer' }, N],
    ['member', 'members.add', { newRole: 'viewer' }, N],
    ['viewer', 'invitations.create', { newRole: 'viewer' }, N],
    ['billing', 'invitations.create', { newRole: 'member' }, N],
    [null, 'invitations.create', { newRole: 'member' }, N],
  ];

  for (const [role, action, target, expected] of CELLS) {
    it(`${role ?? 'non-member'} ${expected ? 'may' : 'may not'} ${action} ${JSON.stringify(target)}`, () => {
      expect(canInOrganization({ superuser: false, role }, action, target)).to.equal(expected);
    });
  }
});

describe('authorization: assertCanInOrganization', () => {
  it('throws ForbiddenError naming the action when not allowed', () => {
    let caught: unknown;
    try {
      assertCanInOrganization({ superuser: false, role: 'member' }, 'members.add', { newRole: 'viewer' });
    } catch (err) {
      caught = err;
    }
    expect(caught).to.be.instanceOf(ForbiddenError);
    expect((caught as Error).message).to.contain('members.add');
    expect(() => assertCanInOrganization({ superuser: false, role: 'admin' }, 'members.remove', { currentRole: 'owner' })).to.throw(ForbiddenError);
    expect(() => assertCanInOrganization({ superuser: false, role: 'admin' }, 'org.delete')).to.throw(ForbiddenError);
    expect(() => assertCanInOrganization({ superuser: false, role: null }, 'org.read')).to.throw(ForbiddenError);
  });

  it('returns quietly when allowed', () => {
    expect(() => assertCanInOrganization({ superuser: false, role: 'owner' }, 'org.delete')).to.not.throw();
    expect(() => assertCanInOrganization({ superuser: false, role: 'viewer' }, 'members.remove', { self: true })).to.not.throw();
    expect(() => assertCanInOrganization({ superuser: true, role: null }, 'members.remove', { currentRole: 'owner' })).to.not.throw();
  });

  it('agrees with canInOrganization on every cell of the table', () => {
    for (const name of Object.keys(POLICY) as (keyof typeof POLICY)[]) {
      for (const action of ORG_ACTIONS) {
        const actor = actorOf(name);
        let threw = false;
        try {
          assertCanInOrganization(actor, action);
        } catch (err) {
          expect(err).to.be.instanceOf(ForbiddenError);
          threw = true;
        }
        expect(threw, `${name} ${action}`).to.equal(!canInOrganization(actor, action));
      }
    }
  });
});
