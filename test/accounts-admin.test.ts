import { randomUUID } from 'node:crypto';

import { expect } from 'chai';

import type { AuditActor } from '../src/services/audit.js';
import { startApiHarness, type ApiHarness } from './helpers/api.js';

/** The actor of changes a test makes through the services directly. */
const BY: AuditActor = { actorId: 'test' };

/** Fails unless the CLI refused with exactly one `latch: …` line on stderr and nothing on stdout. */
async function oneLineFailure(h: ApiHarness, ...args: string[]): Promise<string> {
  const r = await h.srv.cli(...args);
  expect(r.code, `${args.join(' ')}: ${r.stdout}`).to.not.equal(0);
  expect(r.stdout).to.equal('');
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  expect(lines, r.stderr).to.have.length(1);
  expect(lines[0]).to.match(/^latch: \S/);
  return lines[0]!;
}

describe('accounts administered through the CLI and the admin API', function () {
  this.timeout(60_000);
  let h: ApiHarness;

  before(async () => {
    h = await startApiHarness();
  });
  after(async () => {
    await h?.close();
  });

  describe('one password policy (registration, CLI, admin API)', () => {
    // Long enough, but a repetition zxcvbn guesses at once.
    const GUESSABLE = 'passwordpassword';

    it('users create refuses a short or guessable password in one line; --allow-weak-password skips strength, never below 8', async () => {
      expect(await oneLineFailure(h, 'users', 'create', '--email', 'short-cli@example.test', '--password', 'nine char'.slice(0, 9))).to.contain('--password').and.contain('at least 10 characters');
      expect(await oneLineFailure(h, 'users', 'create', '--email', 'weak-cli@example.test', '--password', GUESSABLE)).to.contain('--password').and.contain('harder to guess');
      // The account's own name and email count as guessable words.
      expect(await oneLineFailure(h, 'users', 'create', '--email', 'marguerite.yourcenar@example.test', '--name', 'Marguerite Yourcenar', '--password', 'marguerite yourcenar')).to.contain('--password');
      expect(await oneLineFailure(h, 'users', 'create', '--email', 'seven-cli@example.test', '--password', 'seven77', '--allow-weak-password')).to.contain('at least 8 characters');
      expect(await h.srv.running.services.accounts.findByEmail('weak-cli@example.test')).to.equal(undefined);

      const weak = await h.srv.cli('users', 'create', '--email', 'weak-cli@example.test', '--password', GUESSABLE, '--allow-weak-password');
      expect(weak.code, weak.stderr).to.equal(0);
      expect(weak.json.email).to.equal('weak-cli@example.test');
      const eight = await h.srv.cli('users', 'create', '--email', 'eight-cli@example.test', '--password', '12345678', '--allow-weak-password');
      expect(eight.code, eight.stderr).to.equal(0);
      // The weak password is the account's password (the exception is deliberate, not ignored).
      expect((await h.srv.running.services.accounts.authenticate('weak-cli@example.test', GUESSABLE)).ok).to.equal(true);
      const strong = await h.srv.cli('users', 'create', '--email', 'strong-cli@example.test', '--password', 'quartz lantern over the fjord');
      expect(strong.code, strong.stderr).to.equal(0);
    });

    it('POST /users: a weak password is a 422 validation problem on `password`; allow_weak_password skips strength, never below 8', async () => {
      for (const password of ['nine char'.slice(0, 9), GUESSABLE]) {
        const r = await h.call('POST', '/api/v1/users', { token: h.admin, body: { email: 'weak-api@example.test', password } });
        expect(r.status, password).to.equal(422);
        expect(r.json.type).to.equal('https://latch.dev/problems/validation');
        expect(r.json.errors.map((e: { field: string }) => e.field)).to.deep.equal(['password']);
      }
      const seven = await h.call('POST', '/api/v1/users', { token: h.admin, body: { email: 'weak-api@example.test', password: 'seven77', allow_weak_password: true } });
      expect(seven.status).to.equal(422);
      expect(seven.json.errors.map((e: { field: string }) => e.field)).to.deep.equal(['password']);
      const off = await h.call('POST', '/api/v1/users', { token: h.admin, body: { email: 'weak-api@example.test', password: GUESSABLE, allow_weak_password: false } });
      expect(off.status).to.equal(422);
      const bad = await h.call('POST', '/api/v1/users', { token: h.admin, body: { email: 'weak-api@example.test', password: GUESSABLE, allow_weak_password: 'yes' } });
      expect(bad.status).to.equal(422);
      expect(bad.json.errors.map((e: { field: string }) => e.field)).to.deep.equal(['allow_weak_password']);
      expect(await h.srv.running.services.accounts.findByEmail('weak-api@example.test')).to.equal(undefined);

      const ok = await h.call('POST', '/api/v1/users', { token: h.admin, body: { email: 'weak-api@example.test', password: GUESSABLE, allow_weak_password: true } });
      expect(ok.status, JSON.stringify(ok.json)).to.equal(201);
      expect(ok.json).to.not.have.property('allow_weak_password');
      expect((await h.srv.running.services.accounts.authenticate('weak-api@example.test', GUESSABLE)).ok).to.equal(true);
    });
  });

  describe('the last active superuser', () => {
    const CONFLICT = 'https://latch.dev/problems/conflict';

    it('cannot be deleted, deactivated or demoted through the API (409) or the CLI (one line); another superuser lifts the rule', async () => {
      const root = h.root;
      for (const body of [{ active: false }, { superuser: false }, { superuser: false, active: false }]) {
        const r = await h.call('PATCH', `/api/v1/users/${root.id}`, { token: h.admin, body });
        expect(r.status, JSON.stringify(body)).to.equal(409);
        expect(r.json.type).to.equal(CONFLICT);
        expect(r.json.detail).to.contain('last active superuser');
      }
      const del = await h.call('DELETE', `/api/v1/users/${root.id}`, { token: h.admin });
      expect(del.status).to.equal(409);
      expect(del.json.type).to.equal(CONFLICT);
      expect(await oneLineFailure(h, 'users', 'update', '--email', root.email, '--active', 'false')).to.contain('last active superuser');
      expect(await oneLineFailure(h, 'users', 'update', '--email', root.email, '--superuser', 'false')).to.contain('last active superuser');
      // Nothing changed, and changes that keep the superuser are allowed.
      const kept = await h.call('PATCH', `/api/v1/users/${root.id}`, { token: h.admin, body: { name: 'Root', superuser: true, active: true } });
      expect(kept.status).to.equal(200);
      expect(kept.json).to.include({ superuser: true, active: true, name: 'Root' });
      expect((await h.call('GET', '/api/v1/users', { token: h.superToken })).status).to.equal(200);

      // An inactive superuser does not count: it cannot sign in.
      const dormant = await h.cli('users', 'create', '--email', 'dormant-root@example.test', '--password', 'a dormant superuser passphrase', '--superuser');
      await h.cli('users', 'update', '--email', 'dormant-root@example.test', '--active', 'false');
      expect((await h.call('PATCH', `/api/v1/users/${root.id}`, { token: h.admin, body: { superuser: false } })).status).to.equal(409);

      // With a second active superuser, root may be demoted; then the second one is the last.
      await h.cli('users', 'update', '--email', 'dormant-root@example.test', '--active', 'true');
      expect((await h.call('PATCH', `/api/v1/users/${root.id}`, { token: h.admin, body: { superuser: false } })).status).to.equal(200);
      expect((await h.call('DELETE', `/api/v1/users/${dormant.id}`, { token: h.admin })).status).to.equal(409);
      expect(await oneLineFailure(h, 'users', 'update', '--email', 'dormant-root@example.test', '--superuser', 'false')).to.contain('last active superuser');
      expect((await h.call('PATCH', `/api/v1/users/${root.id}`, { token: h.admin, body: { superuser: true } })).status).to.equal(200);
      expect((await h.call('DELETE', `/api/v1/users/${dormant.id}`, { token: h.admin })).status).to.equal(204);
      expect((await h.call('GET', `/api/v1/users/${root.id}`, { token: h.admin })).json).to.include({ superuser: true, active: true });
    });

    it('two concurrent demotions of the last two superusers: exactly one passes', async () => {
      for (let round = 0; round < 5; round++) {
        const other = await h.cli('users', 'create', '--email', `race-${round}@example.test`, '--password', 'a racing superuser passphrase', '--superuser');
        const ids = [h.root.id, other.id];
        const answers = await Promise.all(ids.map((id, i) => h.call('PATCH', `/api/v1/users/${id}`, { token: h.admin, body: i === 0 ? { superuser: false } : { active: false } })));
        expect(answers.map((a) => a.status).sort(), `round ${round}`).to.deep.equal([200, 409]);
        const left = await h.srv.running.db('accounts').where({ superuser: true, active: true }).select('id');
        expect(left, `round ${round}`).to.have.length(1);
        // Back to one superuser, root, for the next round.
        if (answers[0]!.status === 200) {
          expect((await h.call('PATCH', `/api/v1/users/${h.root.id}`, { token: h.admin, body: { superuser: true } })).status).to.equal(200);
          expect((await h.call('DELETE', `/api/v1/users/${other.id}`, { token: h.admin })).status).to.equal(204);
        } else {
          expect((await h.call('DELETE', `/api/v1/users/${other.id}`, { token: h.admin })).status).to.equal(204);
        }
      }
      // The same race inside one process, through the service, where PostgreSQL's row lock decides.
      const other = await h.cli('users', 'create', '--email', 'race-service@example.test', '--password', 'a racing superuser passphrase', '--superuser');
      const results = await Promise.allSettled([h.srv.running.services.accounts.update(h.root.id, { superuser: false }, BY), h.srv.running.services.accounts.update(other.id, { superuser: false }, BY)]);
      expect(results.map((r) => r.status).sort()).to.deep.equal(['fulfilled', 'rejected']);
      expect(((results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason as Error).message).to.contain('last active superuser');
      expect(await h.srv.running.db('accounts').where({ superuser: true, active: true }).select('id')).to.have.length(1);
    });
  });

  describe('lists filtered and paged in SQL', () => {
    interface Listed {
      id: string;
      email: string;
      active: boolean;
      created_at: string;
    }
    /** Every page of `path` (limit `limit`): each page at most `limit` long, the cursor followed to the end. */
    async function walk(path: string, limit: number): Promise<Listed[]> {
      const seen: Listed[] = [];
      let cursor: string | null = null;
      for (let pages = 0; pages < 100; pages++) {
        const sep = path.includes('?') ? '&' : '?';
        const r = await h.call('GET', `${path}${sep}limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`, { token: h.admin });
        expect(r.status, JSON.stringify(r.json)).to.equal(200);
        expect(r.json.data.length).to.be.at.most(limit);
        seen.push(...(r.json.data as Listed[]));
        cursor = r.json.next_cursor as string | null;
        if (!cursor) return seen;
        expect(r.json.data).to.have.length(limit);
      }
      throw new Error(`${path} did not end`);
    }
    const newestFirst = (a: { created_at: string; id: string }, b: { created_at: string; id: string }) => (a.created_at === b.created_at ? (a.id < b.id ? 1 : -1) : a.created_at < b.created_at ? 1 : -1);

    it('GET /users pages through more than a page with filters: newest first, no duplicates, no gaps', async () => {
      // Seeded in bulk: 40 accounts over 10 instants, four sharing each one, so that the id decides within an instant.
      const rows = Array.from({ length: 40 }, (_, i) => {
        const at = new Date(Date.UTC(2026, 0, 1, 0, 0, Math.floor(i / 4))).toISOString();
        const email = i % 3 === 0 ? `other${i}@example.test` : `Pager_${i}@Example.test`;
        return { id: randomUUID(), email, password_hash: null, display_name: null, email_verified: false, active: i % 5 !== 0, superuser: false, created_at: at, updated_at: at };
      });
      await h.srv.running.db('accounts').insert(rows);
      const role = await h.cli('roles', 'create', '--name', 'pager-role');
      const holders = rows.filter((_, i) => i % 2 === 0);
      for (const r of holders) await h.srv.running.services.roles.assign((await h.srv.running.services.roles.find('global', 'pager-role'))!, { kind: 'account', id: r.id }, BY);
      expect(role.name).to.equal('pager-role');

      const expected = (keep: (r: (typeof rows)[number]) => boolean) => rows.filter(keep).sort(newestFirst).map((r) => r.id);
      const ids = (listed: Listed[]) => listed.map((u) => u.id);
      // email (case-insensitive substring) and active, together and apart.
      const both = await walk('/api/v1/users?email=PAGER_&active=true', 3);
      expect(ids(both)).to.deep.equal(expected((r) => r.email.toLowerCase().includes('pager_') && r.active));
      expect(new Set(ids(both)).size).to.equal(both.length);
      expect(both.length).to.be.greaterThan(3 * 4);
      expect(ids(await walk('/api/v1/users?email=pager', 7))).to.deep.equal(expected((r) => r.email.toLowerCase().includes('pager')));
      expect(ids(await walk('/api/v1/users?active=false', 2)).filter((id) => rows.some((r) => r.id === id))).to.deep.equal(expected((r) => !r.active));
      expect(ids(await walk('/api/v1/users?role=pager-role&active=true', 4))).to.deep.equal(expected((r) => holders.includes(r) && r.active));
      // LIKE's wildcards are literal: no email holds a percent sign, and `_` matches only an underscore.
      expect(await walk('/api/v1/users?email=%25', 5)).to.deep.equal([]);
      expect(ids(await walk('/api/v1/users?email=r_1', 5))).to.deep.equal(expected((r) => r.email.toLowerCase().includes('r_1')));
      expect(await walk('/api/v1/users?role=no-such-role', 5)).to.deep.equal([]);
      expect(await walk('/api/v1/users?org=no-such-org', 5)).to.deep.equal([]);

      // Unfiltered: every account of the database exactly once, newest first.
      const all = await walk('/api/v1/users', 6);
      const inDb = (await h.srv.running.db('accounts').select('id', 'created_at')) as { id: string; created_at: string }[];
      expect(ids(all)).to.deep.equal(inDb.sort(newestFirst).map((r) => r.id));
      // A cursor is compared in SQL: one that cannot be a key is a 422, one that can is just a position.
      const cursorOf = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
      for (const bad of [['\u0000', 'x'], ['2026-01-01T00:00:00.000Z', 'a\u0000b'], ['x'.repeat(65), 'x'], ['2026', 1]]) {
        const r = await h.call('GET', `/api/v1/users?cursor=${cursorOf(bad)}`, { token: h.admin });
        expect(r.status, JSON.stringify(bad)).to.equal(422);
        expect(r.json.errors.map((e: { field: string }) => e.field)).to.deep.equal(['cursor']);
      }
      const beyond = await h.call('GET', `/api/v1/users?cursor=${cursorOf(['0000', ''])}`, { token: h.admin });
      expect(beyond.status).to.equal(200);
      expect(beyond.json).to.deep.equal({ data: [], next_cursor: null });
      const before = await h.call('GET', `/api/v1/users?limit=2&cursor=${cursorOf(['9999', "' or 1=1 --"])}`, { token: h.admin });
      expect(before.json.data.map((u: Listed) => u.id)).to.deep.equal(ids(all).slice(0, 2));
      // Each listed item is in the order of the keys it shows.
      for (let i = 1; i < all.length; i++) expect(newestFirst(all[i - 1]!, all[i]!), `${i}`).to.equal(-1);
    });

    it('members and role holders (accounts and clients) page on their `kind:id` key across equal times', async () => {
      const { db, services } = h.srv.running;
      const org = await services.organizations.create({ name: 'Paging Guild', slug: 'paging-guild', createdBy: 'test' });
      const memberRole = (await services.roles.find('organization', 'member'))!;
      const holderRole = await services.roles.create({ name: 'paging-holder', kind: 'global' }, BY);
      const accounts = Array.from({ length: 6 }, () => ({ id: randomUUID(), email: `${randomUUID()}@members.example.test` }));
      await db('accounts').insert(accounts.map((a) => ({ ...a, password_hash: null, display_name: null, email_verified: false, active: true, superuser: false, created_at: '2026-02-01T00:00:00.000Z', updated_at: '2026-02-01T00:00:00.000Z' })));
      const clients: string[] = [];
      for (let i = 0; i < 3; i++) clients.push((await services.clients.create({ name: `pager ${i}`, grants: ['client_credentials'] }, BY)).client_id);
      // Three instants, three subjects each: accounts and clients mixed within an instant.
      const subjects = [...accounts.map((a) => ({ kind: 'account' as const, id: a.id })), ...clients.map((id) => ({ kind: 'client' as const, id }))];
      const at = (i: number) => new Date(Date.UTC(2026, 1, 1, 0, 0, i % 3)).toISOString();
      const column = (s: (typeof subjects)[number]) => (s.kind === 'account' ? 'account_id' : 'client_id');
      await db('organization_members').insert(subjects.map((s, i) => ({ organization_id: org.id, [column(s)]: s.id, role_id: memberRole.id, created_at: at(i), updated_at: at(i) })));
      await db('role_assignments').insert(subjects.map((s, i) => ({ role_id: holderRole.id, [column(s)]: s.id, created_at: at(i) })));
      const expected = (prefix: (s: (typeof subjects)[number]) => string) =>
        subjects
          .map((s, i) => ({ created_at: at(i), id: `${prefix(s)}:${s.id}` }))
          .sort(newestFirst)
          .map((k) => k.id);

      const members = (await walk(`/api/v1/organizations/${org.id}/members`, 2)) as unknown as { id: string; kind: string; created_at: string }[];
      expect(members.map((m) => `${m.kind === 'user' ? 'account' : 'client'}:${m.id}`)).to.deep.equal(expected((s) => s.kind));
      const holders = (await walk(`/api/v1/roles/${holderRole.id}/holders`, 2)) as unknown as { id: string; kind: string }[];
      expect(holders.map((x) => `${x.kind}:${x.id}`)).to.deep.equal(expected((s) => (s.kind === 'account' ? 'user' : 'client')));
    });
  });
});
