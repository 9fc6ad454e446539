import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import bcrypt from 'bcrypt';
import { expect } from 'chai';

import type { AuditEvent } from '../src/repositories/audit-events.js';
import { startApiHarness, type ApiHarness } from './helpers/api.js';

/**
 * The services that change clients, resources, keys, roles and accounts record their own audit
 * events, so a change is in the trail however it was made: through the admin API (`via: api`,
 * the token's subject as actor) or with the `latch` CLI (`via: cli`, actor `cli`), with the same
 * event types and the same details.
 */
describe('admin changes are audited by the services, whoever calls them (admin API or CLI)', function () {
  this.timeout(120_000);
  let h: ApiHarness;

  before(async () => {
    h = await startApiHarness();
  });
  after(async () => {
    await h?.close();
  });

  const events = (subjectId: string, type?: string): Promise<AuditEvent[]> => h.srv.running.services.audit.list({ subjectId, ...(type ? { type } : {}) });
  /** The one event of `type` about `subjectId` (fails when there is none, or more than one). */
  async function only(subjectId: string, type: string): Promise<AuditEvent> {
    const found = await events(subjectId, type);
    expect(found, `${type} of ${subjectId}`).to.have.length(1);
    return found[0]!;
  }
  /** A CLI event: actor `cli`, no client, and `via: cli` in its details. */
  function byCli(e: AuditEvent): Record<string, unknown> {
    expect(e, e.type).to.deep.include({ actorId: 'cli', clientId: null });
    expect(e.details, e.type).to.deep.include({ via: 'cli' });
    return e.details!;
  }
  /** The detail keys of an event, nested one level (before/after), without `via`. */
  const shape = (d: Record<string, unknown> | null) =>
    Object.entries(d ?? {})
      .filter(([k]) => k !== 'via')
      .map(([k, v]) => (v && typeof v === 'object' && !Array.isArray(v) ? `${k}{${Object.keys(v).sort().join(',')}}` : k))
      .sort();

  it('latch clients create / disable / enable / delete: client.* events with the API view of the client, via cli', async () => {
    const created = await h.cli('clients', 'create', '--name', 'cli audited', '--grant', 'client_credentials', '--resource', h.API, '--scope', 'admin:read');
    const create = byCli(await only(created.client_id, 'client.create'));
    // The same view the admin API answers (and records) for the client: no secret, no HMAC.
    const view = (await h.call('GET', `/api/v1/clients/${created.client_id}`, { token: h.reader })).json;
    expect(create.after).to.deep.equal(view);
    expect(JSON.stringify(create)).to.not.contain(created.client_secret);

    await h.cli('clients', 'disable', created.client_id);
    await h.cli('clients', 'disable', created.client_id);
    expect(byCli(await only(created.client_id, 'client.disable'))).to.deep.equal({ before: { enabled: true }, after: { enabled: false }, via: 'cli' }, 'once: the second disable changed nothing');
    await h.cli('clients', 'enable', created.client_id);
    expect(byCli(await only(created.client_id, 'client.enable'))).to.deep.equal({ before: { enabled: false }, after: { enabled: true }, via: 'cli' });
    await h.cli('clients', 'delete', created.client_id);
    expect(byCli(await only(created.client_id, 'client.delete')).before).to.deep.include({ id: created.client_id, name: 'cli audited', enabled: true });

    // A client made through the API is recorded in the same shape, via api, by the token's client.
    const viaApi = (await h.call('POST', '/api/v1/clients', { token: h.admin, body: { name: 'api audited', grant_types: ['client_credentials'], resources: [h.API], scope: 'admin:read' } })).json;
    const apiCreate = await only(viaApi.id, 'client.create');
    expect(apiCreate.details).to.deep.include({ via: 'api' });
    expect(apiCreate.clientId).to.equal(h.machine.client_id);
    expect(shape(apiCreate.details)).to.deep.equal(shape(create));
  });

  it('latch resources create: resource.create with the resource as the API shows it, via cli', async () => {
    const r = await h.cli('resources', 'create', '--identifier', 'https://cli-audit.example.test', '--scope', 'read', '--ttl', '600');
    expect(byCli(await only(r.id, 'resource.create'))).to.deep.equal({ after: r, via: 'cli' });
  });

  it('latch roles create / grant / revoke / assign / unassign: role.* events in the API shape, via cli', async () => {
    await h.cli('resources', 'create', '--identifier', 'https://roles-audit.example.test', '--scope', 'read', '--scope', 'write', '--rbac');
    const role = await h.cli('roles', 'create', '--name', 'cli-auditor', '--description', 'reads', '--permission', 'https://roles-audit.example.test:read');
    const create = byCli(await only(role.id, 'role.create'));
    // Permissions as the API gives them (`RESOURCE:SCOPE`), as for a role made through the API.
    expect(create.after).to.deep.include({ id: role.id, name: 'cli-auditor', kind: 'global', description: 'reads', permissions: ['https://roles-audit.example.test:read'] });
    expect(create.after).to.deep.equal((await h.call('GET', `/api/v1/roles/${role.id}`, { token: h.reader })).json);

    await h.cli('roles', 'grant', '--role', 'cli-auditor', '--permission', 'https://roles-audit.example.test:write');
    const granted = byCli(await only(role.id, 'role.update'));
    expect(granted).to.deep.include({ before: { permissions: ['https://roles-audit.example.test:read'] } });
    expect((granted.after as { permissions: string[] }).permissions).to.have.members(['https://roles-audit.example.test:read', 'https://roles-audit.example.test:write']);
    await h.cli('roles', 'revoke', '--role', 'cli-auditor', '--permission', 'https://roles-audit.example.test:read');
    expect(await events(role.id, 'role.update')).to.have.length(2);

    await h.cli('roles', 'assign', '--role', 'cli-auditor', '--user', h.root.email);
    await h.cli('roles', 'assign', '--role', 'cli-auditor', '--user', h.root.email);
    await h.cli('roles', 'unassign', '--role', 'cli-auditor', '--user', h.root.email);
    // The holder is the subject; each change once (the second assign changed nothing).
    expect(byCli(await only(h.root.id, 'role.assign'))).to.deep.equal({ role: role.id, role_name: 'cli-auditor', holder_kind: 'user', via: 'cli' });
    expect(byCli(await only(h.root.id, 'role.unassign'))).to.deep.equal({ role: role.id, role_name: 'cli-auditor', holder_kind: 'user', via: 'cli' });
  });

  it('latch keys rotate / retire: key.rotate for every new key and key.retire, via cli', async () => {
    const { rotated } = (await h.cli('keys', 'rotate')) as { rotated: string[] };
    expect(rotated).to.have.length(3);
    const algs = [];
    for (const kid of rotated) {
      const d = byCli(await only(kid, 'key.rotate'));
      expect(d.rotated).to.deep.equal(rotated);
      algs.push(d.alg);
    }
    expect(algs).to.have.members(['RS256', 'ES256', 'EdDSA']);
    // A key that is no longer current (the ES256 key before this rotation) may be retired.
    const old = ((await h.cli('keys', 'list')) as { kid: string; alg: string; current: boolean; status: string }[]).find((k) => k.alg === 'ES256' && !k.current && k.status === 'active')!;
    await h.cli('keys', 'retire', '--', old.kid);
    expect(byCli(await only(old.kid, 'key.retire'))).to.deep.equal({ alg: 'ES256', via: 'cli' });
  });

  it('latch users create / update: account.create (without the email) and account.admin_update, via cli', async () => {
    const user = await h.cli('users', 'create', '--email', 'cli-audit@example.test', '--password', 'a long passphrase for the cli audit');
    const create = byCli(await only(user.id, 'account.create'));
    expect(create).to.deep.include({ invitation_sent: false });
    expect(create.after).to.deep.include({ id: user.id, active: true, superuser: false, roles: [] });
    expect(create.after).to.not.have.property('email');
    expect(JSON.stringify(create)).to.not.contain('cli-audit@example.test');

    await h.cli('users', 'update', '--email', 'cli-audit@example.test', '--name', 'Cli Audit');
    const update = byCli(await only(user.id, 'account.admin_update'));
    // The fields of the administrator's view that changed (as for PATCH /api/v1/users/{id}).
    expect(Object.keys(update.after as object)).to.have.members(['name', 'updated_at']);
    expect(update).to.deep.include({ before: { name: null, updated_at: user.updated_at } });
    expect(update.after).to.deep.include({ name: 'Cli Audit' });
    // The account's own change event is still there, as before.
    expect((await only(user.id, 'account.update')).actorId).to.equal('cli');
  });

  it('latch users import / invite: account.import (counts) with role.assign for each imported holder, account.invite, via cli', async () => {
    await h.cli('roles', 'create', '--name', 'imported-role');
    const dir = mkdtempSync(join(tmpdir(), 'latch-audit-'));
    try {
      const file = join(dir, 'users.jsonl');
      const hash = await bcrypt.hash('an imported passphrase', 10);
      writeFileSync(file, [JSON.stringify({ email: 'imported@example.test', password_hash: hash, roles: ['imported-role'] }), 'not json'].join('\n'));
      expect(await h.cli('users', 'import', file)).to.deep.include({ imported: 1, skipped: 1 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const imports = await h.srv.running.services.audit.list({ type: 'account.import' });
    expect(imports).to.have.length(1);
    expect(byCli(imports[0]!)).to.deep.equal({ imported: 1, skipped: 1, via: 'cli' });
    const imported = (await h.srv.running.services.accounts.findByEmail('imported@example.test'))!;
    expect(byCli(await only(imported.id, 'role.assign'))).to.deep.include({ role_name: 'imported-role', holder_kind: 'user' });

    await h.cli('users', 'invite', '--email', 'invited@example.test');
    const invites = await h.srv.running.services.audit.list({ type: 'account.invite' });
    expect(invites).to.have.length(1);
    expect(byCli(invites[0]!)).to.deep.equal({ email: 'invited@example.test', via: 'cli' });
  });
});
