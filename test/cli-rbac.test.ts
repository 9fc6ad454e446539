import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { expect } from 'chai';
import { simpleParser } from 'mailparser';

import { freshDatabase, runCliWith, TEST_SECRET, type TestDatabase } from './helpers/server.js';

const ISSUER = 'http://localhost:4599';
const API = 'https://api.example.test';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('latch roles / orgs commands (in-process CLI)', () => {
  let database: TestDatabase;
  let dataDir: string;
  let env: Record<string, string>;
  let clientId: string;
  let orgId: string;

  const cli = (...args: string[]) => runCliWith(env, args);
  /** Runs a command that must succeed and returns its JSON. */
  const ok = async (...args: string[]) => {
    const r = await cli(...args);
    expect(r.code, `${args.join(' ')}: ${r.stderr}`).to.equal(0);
    expect(r.stderr, args.join(' ')).to.equal('');
    return r.json;
  };
  /** Runs a command that must fail with `code` and one `latch:` line on stderr; returns that line. */
  const fails = async (code: number, ...args: string[]) => {
    const r = await cli(...args);
    expect(r.code, `${args.join(' ')}: ${r.stderr}`).to.equal(code);
    expect(r.stdout, args.join(' ')).to.equal('');
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines, args.join(' ')).to.have.length(1);
    expect(lines[0], args.join(' ')).to.match(/^latch: \S/);
    expect(r.stderr, args.join(' ')).to.not.match(/\n\s+at /);
    return lines[0]!;
  };

  before(async () => {
    database = await freshDatabase();
    dataDir = mkdtempSync(join(tmpdir(), 'latch-cli-rbac-'));
    env = { DATABASE_URL: database.url, LATCH_SECRET: TEST_SECRET, DATA_DIR: dataDir, ISSUER };
    await ok('users', 'create', '--email', 'owner@example.test', '--password', 'a long enough password');
    await ok('users', 'create', '--email', 'second@example.test', '--password', 'a long enough password');
    await ok('users', 'create', '--email', 'third@example.test', '--password', 'a long enough password');
    clientId = (await ok('clients', 'create', '--name', 'Robot', '--grant', 'client_credentials')).client_id as string;
  });
  after(async () => {
    await database.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('resources create --rbac marks the resource for RBAC (and only then)', async () => {
    const r = await ok('resources', 'create', '--identifier', API, '--scope', 'read', '--scope', 'write', '--scope', 'invoices', '--rbac');
    expect(r).to.include({ identifier: API, rbac: true });
    expect(r.scopes).to.deep.equal(['read', 'write', 'invoices']);
    const plain = await ok('resources', 'create', '--identifier', 'urn:plain:api', '--scope', 'x');
    expect(plain.rbac).to.equal(false);
    // Besides Latch's own API (registered by the first command), without RBAC.
    const list = ((await ok('resources', 'list')) as { identifier: string; rbac: boolean }[]).filter((x) => !x.identifier.endsWith('/api'));
    expect(list.map((x) => [x.identifier, x.rbac]).sort()).to.deep.equal([[API, true], ['urn:plain:api', false]].sort());
  });

  it('roles create: global and --org, with repeated --permission and a description', async () => {
    const g = await ok('roles', 'create', '--name', 'editor', '--description', 'Edits things', '--permission', `${API}:read`, '--permission', `${API}:write`);
    expect(g).to.include({ name: 'editor', kind: 'global', description: 'Edits things', builtin: false });
    expect(g.id).to.match(UUID);
    expect(g.permissions).to.deep.equal([
      { resource: API, scope: 'read' },
      { resource: API, scope: 'write' },
    ]);
    const o = await ok('roles', 'create', '--org', '--name', 'billing', '--permission', `${API}:invoices`);
    expect(o).to.include({ name: 'billing', kind: 'organization', description: null });
    expect(o.permissions).to.deep.equal([{ resource: API, scope: 'invoices' }]);
    // The same name in the other kind is another role; twice in a kind is refused.
    expect((await ok('roles', 'create', '--name', 'reviewer')).kind).to.equal('global');
    expect((await ok('roles', 'create', '--org', '--name', 'reviewer')).kind).to.equal('organization');
    expect(await fails(1, 'roles', 'create', '--name', 'editor')).to.contain('already exists');
    expect(await fails(1, 'roles', 'create', '--org', '--name', 'reviewer')).to.contain('already exists');
    expect(await fails(1, 'roles', 'create', '--org', '--name', 'owner')).to.contain('already exists');
    const orgRoles = (await ok('roles', 'list', '--org')) as { name: string }[];
    expect(orgRoles.map((r) => r.name)).to.deep.equal(['admin', 'billing', 'member', 'owner', 'reviewer', 'viewer']);
    const all = (await ok('roles', 'list')) as { name: string; kind: string }[];
    expect(all.filter((r) => r.kind === 'global').map((r) => r.name)).to.deep.equal(['editor', 'reviewer']);
  });

  it('roles grant / revoke change a role\'s permissions (--org for an organization role)', async () => {
    const revoked = await ok('roles', 'revoke', '--role', 'editor', '--permission', `${API}:write`);
    expect(revoked.permissions).to.deep.equal([{ resource: API, scope: 'read' }]);
    const granted = await ok('roles', 'grant', '--role', 'editor', '--permission', `${API}:write`, '--permission', `${API}:invoices`);
    expect(granted.permissions.map((p: { scope: string }) => p.scope)).to.deep.equal(['invoices', 'read', 'write']);
    const org = await ok('roles', 'grant', '--org', '--role', 'member', '--permission', `${API}:read`);
    expect(org).to.include({ name: 'member', kind: 'organization', builtin: true });
    expect(org.permissions).to.deep.equal([{ resource: API, scope: 'read' }]);
    expect((await ok('roles', 'revoke', '--org', '--role', 'member', '--permission', `${API}:read`)).permissions).to.deep.equal([]);
    // Without --org, "billing" (an organization role only) is not found.
    expect(await fails(1, 'roles', 'grant', '--role', 'billing', '--permission', `${API}:read`)).to.contain('billing');
  });

  it('roles assign / unassign --user or --client', async () => {
    const a = await ok('roles', 'assign', '--role', 'editor', '--user', 'second@example.test');
    expect(a).to.include({ role: 'editor', assigned: true });
    expect(a.account_id).to.match(UUID);
    expect((await ok('roles', 'assign', '--role', 'editor', '--user', 'second@example.test')).assigned).to.equal(false);
    expect(await ok('roles', 'assign', '--role', 'editor', '--client', clientId)).to.deep.equal({ role: 'editor', client_id: clientId, assigned: true });
    expect(await ok('roles', 'unassign', '--role', 'editor', '--client', clientId)).to.deep.equal({ role: 'editor', client_id: clientId, unassigned: true });
    expect((await ok('roles', 'unassign', '--role', 'editor', '--client', clientId)).unassigned).to.equal(false);
    expect((await ok('roles', 'unassign', '--role', 'editor', '--user', 'second@example.test')).unassigned).to.equal(true);
    // An organization role is held through a membership, never assigned.
    expect(await fails(1, 'roles', 'assign', '--role', 'owner', '--user', 'second@example.test')).to.match(/^latch: --role owner is an organization role/);
    expect(await fails(1, 'roles', 'assign', '--role', 'billing', '--client', clientId)).to.contain('organization role');
  });

  it('orgs create returns the organization with a UUID id, its slug and its owner; a duplicate slug is refused', async () => {
    const o = await ok('orgs', 'create', '--name', 'Acme Inc', '--slug', 'acme', '--owner', 'owner@example.test');
    expect(o.id).to.match(UUID);
    expect(o).to.include({ slug: 'acme', name: 'Acme Inc', created_by: 'cli' });
    expect(o.members).to.have.length(1);
    expect(o.members[0]).to.include({ organization_id: o.id, role: 'owner' });
    orgId = o.id as string;
    const bare = await ok('orgs', 'create', '--name', 'Bare', '--slug', 'bare');
    expect(bare.members).to.deep.equal([]);
    expect(bare.id).to.not.equal(orgId);
    expect(await fails(1, 'orgs', 'create', '--name', 'Other', '--slug', 'acme')).to.contain('acme');
    const orgs = (await ok('orgs', 'list')) as { slug: string }[];
    expect(orgs.map((x) => x.slug)).to.deep.equal(['acme', 'bare']);
  });

  it('orgs members add / update / remove, naming the organization by slug or id', async () => {
    const added = await ok('orgs', 'members', 'add', '--org', 'acme', '--user', 'second@example.test');
    expect(added).to.include({ organization_id: orgId, role: 'member' });
    expect(added.account_id).to.match(UUID);
    const robot = await ok('orgs', 'members', 'add', '--org', orgId, '--client', clientId, '--role', 'billing');
    expect(robot).to.include({ organization_id: orgId, client_id: clientId, role: 'billing' });
    expect(await ok('orgs', 'members', 'update', '--org', orgId.toUpperCase(), '--user', 'second@example.test', '--role', 'admin')).to.include({ role: 'admin' });
    expect(await ok('orgs', 'members', 'update', '--org', 'acme', '--client', clientId, '--role', 'viewer')).to.include({ client_id: clientId, role: 'viewer' });
    const members = (await ok('orgs', 'members', 'list', '--org', 'acme')) as { role: string; client_id?: string }[];
    expect(members.map((m) => m.role)).to.deep.equal(['owner', 'admin', 'viewer']);
    expect(await ok('orgs', 'members', 'remove', '--org', 'acme', '--client', clientId)).to.deep.equal({ organization_id: orgId, client_id: clientId, removed: true });
    expect(await fails(1, 'orgs', 'members', 'remove', '--org', 'acme', '--client', clientId)).to.contain('not found');
    await fails(1, 'orgs', 'members', 'add', '--org', 'acme', '--user', 'second@example.test');
    // The last owner stays.
    expect(await fails(1, 'orgs', 'members', 'remove', '--org', 'acme', '--user', 'owner@example.test')).to.contain('last owner');
    expect(await fails(1, 'orgs', 'members', 'update', '--org', 'acme', '--user', 'owner@example.test', '--role', 'admin')).to.contain('last owner');
    // A global role cannot be held through a membership.
    expect(await fails(1, 'orgs', 'members', 'update', '--org', 'acme', '--user', 'second@example.test', '--role', 'editor')).to.match(/^latch: --role /);
    expect(((await ok('orgs', 'members', 'list', '--org', orgId)) as { role: string }[]).map((m) => m.role)).to.deep.equal(['owner', 'admin']);
  });

  it('orgs invite mails an absolute invitation link under the issuer', async () => {
    const inv = await ok('orgs', 'invite', '--org', 'acme', '--email', 'newcomer@example.test', '--role', 'admin');
    expect(inv).to.include({ organization_id: orgId, email: 'newcomer@example.test', role: 'admin', status: 'pending', invited_by: 'cli' });
    expect(inv.id).to.match(UUID);
    const url = new URL(inv.invitation_url as string);
    expect(`${url.origin}${url.pathname}`).to.equal(`${ISSUER}/invitation`);
    const token = url.searchParams.get('token')!;
    expect(token).to.match(/^[A-Za-z0-9_-]{40,}$/);
    // Without SMTP_URL, the mail is in DATA_DIR/outbox: it carries the same link.
    const files = readdirSync(join(dataDir, 'outbox'));
    const mails = await Promise.all(files.map(async (f) => simpleParser(readFileSync(join(dataDir, 'outbox', f)))));
    const mail = mails.find((m) => (m.text ?? '').includes(token));
    expect(mail, 'a mail with the link').to.not.equal(undefined);
    expect(mail!.text).to.contain(inv.invitation_url);
    expect(JSON.stringify(mail!.to)).to.contain('newcomer@example.test');

    const byId = await ok('orgs', 'invite', '--org', orgId, '--email', 'other@example.test');
    expect(byId.role).to.equal('member');
    expect(byId.invitation_url).to.not.equal(inv.invitation_url);
    expect(await fails(1, 'orgs', 'invite', '--org', 'acme', '--email', 'not-an-email')).to.match(/^latch: --email /);
    expect(await fails(1, 'orgs', 'invite', '--org', 'acme', '--email', 'x@example.test', '--role', 'editor')).to.match(/^latch: --role /);
  });

  describe('bad input: one line on stderr, a non-zero exit, nothing changed', () => {
    const USAGE: string[][] = [
      ['roles', 'create'],
      ['roles', 'create', '--description', 'no name'],
      ['roles', 'grant', '--role', 'editor'],
      ['roles', 'revoke', '--permission', `${API}:read`],
      ['roles', 'assign', '--role', 'editor'],
      ['roles', 'assign', '--user', 'second@example.test'],
      ['roles', 'assign', '--role', 'editor', '--user', 'second@example.test', '--client', 'x'],
      ['roles', 'create', '--name', 'x', '--bogus'],
      ['orgs', 'create', '--name', 'No slug'],
      ['orgs', 'create', '--slug', 'no-name'],
      ['orgs', 'members', 'add', '--user', 'second@example.test'],
      ['orgs', 'members', 'add', '--org', 'acme'],
      ['orgs', 'members', 'add', '--org', 'acme', '--user', 'third@example.test', '--client', 'x'],
      ['orgs', 'members', 'remove', '--org', 'acme', '--user', 'third@example.test', '--client', 'x'],
      ['orgs', 'members', 'update', '--org', 'acme', '--user', 'second@example.test'],
      ['orgs', 'invite', '--org', 'acme'],
      ['orgs', 'invite', '--email', 'x@example.test'],
    ];
    for (const args of USAGE) {
      it(`exit 2: latch ${args.join(' ')}`, async () => {
        const line = await fails(2, ...args);
        expect(line).to.contain('usage: latch');
      });
    }

    const REFUSED: [string[], RegExp][] = [
      [['orgs', 'members', 'add', '--org', 'no-such-org', '--user', 'third@example.test'], /organization no-such-org not found/],
      [['orgs', 'members', 'add', '--org', '00000000-0000-4000-8000-000000000000', '--user', 'third@example.test'], /not found/],
      [['orgs', 'members', 'add', '--org', 'acme', '--user', 'nobody@example.test'], /account nobody@example.test not found/],
      [['orgs', 'members', 'add', '--org', 'acme', '--client', 'no-such-client'], /client no-such-client not found/],
      [['orgs', 'members', 'add', '--org', 'acme', '--user', 'third@example.test', '--role', 'no-such-role'], /no-such-role not found/],
      [['orgs', 'invite', '--org', 'no-such-org', '--email', 'x@example.test'], /not found/],
      [['orgs', 'create', '--name', 'X', '--slug', 'Bad Slug'], /^latch: --slug /],
      [['orgs', 'create', '--name', 'X', '--slug=-x'], /^latch: --slug /],
      [['orgs', 'create', '--name', 'X', '--slug', 'fresh', '--owner', 'nobody@example.test'], /account nobody@example.test not found/],
      [['roles', 'assign', '--role', 'no-such-role', '--user', 'third@example.test'], /role no-such-role not found/],
      [['roles', 'assign', '--role', 'editor', '--user', 'nobody@example.test'], /account nobody@example.test not found/],
      [['roles', 'assign', '--role', 'editor', '--client', 'no-such-client'], /client no-such-client not found/],
      [['roles', 'grant', '--role', 'no-such-role', '--permission', `${API}:read`], /no-such-role not found/],
      [['roles', 'create', '--name', 'x', '--permission', 'no-colon'], /^latch: --permission /],
      [['roles', 'create', '--name', 'x', '--permission', `${API}:`], /^latch: --permission /],
      [['roles', 'create', '--name', 'x', '--permission', 'https://unknown.example.test:read'], /^latch: --permission .*not registered/],
      [['roles', 'create', '--name', 'x', '--permission', `${API}:delete`], /^latch: --permission .*delete/],
      [['roles', 'grant', '--role', 'editor', '--permission', 'no-colon'], /^latch: --permission /],
      [['roles', 'create', '--name', 'bad name'], /^latch: --name /],
    ];
    for (const [args, message] of REFUSED) {
      it(`exit 1: latch ${args.join(' ')}`, async () => {
        expect(await fails(1, ...args)).to.match(message);
      });
    }

    it('changed nothing', async () => {
      const roles = (await ok('roles', 'list')) as { name: string; kind: string }[];
      expect(roles.filter((r) => r.kind === 'global').map((r) => r.name)).to.deep.equal(['editor', 'reviewer']);
      const orgs = (await ok('orgs', 'list')) as { slug: string }[];
      expect(orgs.map((o) => o.slug)).to.deep.equal(['acme', 'bare']);
      const members = (await ok('orgs', 'members', 'list', '--org', 'acme')) as { role: string }[];
      expect(members.map((m) => m.role)).to.deep.equal(['owner', 'admin']);
      const editor = (await ok('roles', 'list')).find((r: { name: string; kind: string }) => r.name === 'editor' && r.kind === 'global');
      expect(editor.permissions.map((p: { scope: string }) => p.scope)).to.deep.equal(['invoices', 'read', 'write']);
    });
  });

  describe('flag values', () => {
    it('takes a flag value that starts with a dash (a generated client id such as -y9…) as the value', async () => {
      const role = await ok('roles', 'create', '--name', 'dash-test', '--description', '-starts with a dash');
      expect(role.description).to.equal('-starts with a dash');
      // A following known flag is not swallowed as a value.
      expect(await fails(2, 'roles', 'create', '--name', '--description', 'x')).to.match(/^latch: /);
    });
  });
});
