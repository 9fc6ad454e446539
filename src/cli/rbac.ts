import type { Subject } from '../repositories/roles.js';
import { CLI_ACTOR } from '../services/audit.js';
import { NotFoundError } from '../services/errors.js';
import type { Services } from '../services/index.js';
import { describeInvitation, describeMembership, describeOrganization } from '../services/organizations.js';
import { describeRole } from '../services/roles.js';
import { list, parse, required, UsageError, type Command } from './args.js';

/** The CLI acts as the operator: a superuser in every organization, recorded as "cli". */
const CLI = CLI_ACTOR.actorId;

const roleKind = (org: boolean | undefined) => (org ? 'organization' : 'global') as 'organization' | 'global';

/** `--user EMAIL` or `--client CLIENT_ID`: exactly one. */
async function subjectOf(services: Services, values: { user?: string | undefined; client?: string | undefined }, usage: string): Promise<Subject> {
  if ((values.user === undefined) === (values.client === undefined)) throw new UsageError(`give exactly one of --user EMAIL or --client CLIENT_ID (usage: latch ${usage})`);
  if (values.user !== undefined) {
    const account = await services.accounts.findByEmail(values.user);
    if (!account) throw new NotFoundError(`account ${values.user}`);
    return { kind: 'account', id: account.id };
  }
  const client = await services.clients.findById(values.client!);
  if (!client) throw new NotFoundError(`client ${values.client}`);
  return { kind: 'client', id: client.id };
}

const subjectFlags = { user: { type: 'string' }, client: { type: 'string' } } as const;

async function changePermissions(services: Services, args: string[], usage: string, how: 'grant' | 'revoke') {
  const { values } = parse(args, { role: { type: 'string' }, org: { type: 'boolean' }, permission: { type: 'string', multiple: true } }, usage);
  const role = await services.roles.get(roleKind(values.org), required(values.role, 'role', usage));
  const perms = list(values.permission);
  if (perms.length === 0) throw new UsageError(`--permission is required (usage: latch ${usage})`);
  return describeRole(await services.roles[how](role, perms, CLI_ACTOR));
}

async function changeAssignment(services: Services, args: string[], usage: string, how: 'assign' | 'unassign') {
  const { values } = parse(args, { role: { type: 'string' }, ...subjectFlags }, usage);
  const name = required(values.role, 'role', usage);
  const role = (await services.roles.find('global', name)) ?? (await services.roles.find('organization', name));
  if (!role) throw new NotFoundError(`role ${name}`);
  const subject = await subjectOf(services, values, usage);
  const changed = await services.roles[how](role, subject, CLI_ACTOR);
  return { role: role.name, [subject.kind === 'account' ? 'account_id' : 'client_id']: subject.id, [how === 'assign' ? 'assigned' : 'unassigned']: changed };
}

export const ROLE_COMMANDS: Record<string, Command> = {
  'roles create': {
    usage: 'roles create --name R [--org] [--description D] [--permission URI:SCOPE]...',
    async run({ args, services }) {
      const u = this.usage;
      const { values } = parse(args, { name: { type: 'string' }, org: { type: 'boolean' }, description: { type: 'string' }, permission: { type: 'string', multiple: true } }, u);
      const role = await services.roles.create({ name: required(values.name, 'name', u), kind: roleKind(values.org), description: values.description, permissions: list(values.permission) }, CLI_ACTOR);
      return describeRole(role);
    },
  },
  'roles list': {
    usage: 'roles list [--org]',
    async run({ args, services }) {
      const { values } = parse(args, { org: { type: 'boolean' } }, this.usage);
      return (await services.roles.list(values.org === undefined ? undefined : roleKind(values.org))).map(describeRole);
    },
  },
  'roles grant': {
    usage: 'roles grant --role R [--org] --permission URI:SCOPE...',
    run({ args, services }) {
      return changePermissions(services, args, this.usage, 'grant');
    },
  },
  'roles revoke': {
    usage: 'roles revoke --role R [--org] --permission URI:SCOPE...',
    run({ args, services }) {
      return changePermissions(services, args, this.usage, 'revoke');
    },
  },
  'roles assign': {
    usage: 'roles assign --role R (--user EMAIL | --client CLIENT_ID)',
    run({ args, services }) {
      return changeAssignment(services, args, this.usage, 'assign');
    },
  },
  'roles unassign': {
    usage: 'roles unassign --role R (--user EMAIL | --client CLIENT_ID)',
    run({ args, services }) {
      return changeAssignment(services, args, this.usage, 'unassign');
    },
  },
};

async function memberCommand(services: Services, args: string[], usage: string, how: 'add' | 'update' | 'remove') {
  const { values } = parse(args, { org: { type: 'string' }, role: { type: 'string' }, ...subjectFlags }, usage);
  const org = await services.organizations.resolve(required(values.org, 'org', usage));
  const subject = await subjectOf(services, values, usage);
  if (how === 'remove') {
    await services.organizations.removeMember(org, subject, CLI);
    return { organization_id: org.id, [subject.kind === 'account' ? 'account_id' : 'client_id']: subject.id, removed: true };
  }
  if (how === 'add') return describeMembership(await services.organizations.addMember(org, subject, values.role ?? 'member', CLI));
  return describeMembership(await services.organizations.updateMember(org, subject, required(values.role, 'role', usage), CLI));
}

export const ORG_COMMANDS: Record<string, Command> = {
  'orgs create': {
    usage: 'orgs create --name N --slug S [--owner EMAIL]',
    async run({ args, services }) {
      const u = this.usage;
      const { values } = parse(args, { name: { type: 'string' }, slug: { type: 'string' }, owner: { type: 'string' } }, u);
      const name = required(values.name, 'name', u);
      const slug = required(values.slug, 'slug', u);
      const owner = values.owner !== undefined ? await subjectOf(services, { user: values.owner }, u) : undefined;
      const org = await services.organizations.create({ name, slug, owner, createdBy: CLI });
      return { ...describeOrganization(org), members: (await services.organizations.members(org.id)).map(describeMembership) };
    },
  },
  'orgs list': {
    usage: 'orgs list',
    async run({ services }) {
      return (await services.organizations.list()).map(describeOrganization);
    },
  },
  'orgs members list': {
    usage: 'orgs members list --org SLUG_OR_ID',
    async run({ args, services }) {
      const { values } = parse(args, { org: { type: 'string' } }, this.usage);
      const org = await services.organizations.resolve(required(values.org, 'org', this.usage));
      return (await services.organizations.members(org.id)).map(describeMembership);
    },
  },
  'orgs members add': {
    usage: 'orgs members add --org SLUG_OR_ID (--user EMAIL | --client CLIENT_ID) [--role R]',
    run({ args, services }) {
      return memberCommand(services, args, this.usage, 'add');
    },
  },
  'orgs members update': {
    usage: 'orgs members update --org SLUG_OR_ID (--user EMAIL | --client CLIENT_ID) --role R',
    run({ args, services }) {
      return memberCommand(services, args, this.usage, 'update');
    },
  },
  'orgs members remove': {
    usage: 'orgs members remove --org SLUG_OR_ID (--user EMAIL | --client CLIENT_ID)',
    run({ args, services }) {
      return memberCommand(services, args, this.usage, 'remove');
    },
  },
  'orgs invite': {
    usage: 'orgs invite --org SLUG_OR_ID --email E [--role R]',
    async run({ args, services }) {
      const u = this.usage;
      const { values } = parse(args, { org: { type: 'string' }, email: { type: 'string' }, role: { type: 'string' } }, u);
      const org = await services.organizations.resolve(required(values.org, 'org', u));
      const { invitation, url } = await services.organizations.invite(org, { email: required(values.email, 'email', u), role: values.role, invitedBy: CLI });
      return { ...describeInvitation(invitation), invitation_url: url };
    },
  },
};
