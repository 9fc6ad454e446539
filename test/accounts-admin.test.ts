import { expect } from 'chai';

import { startApiHarness, type ApiHarness } from './helpers/api.js';

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
      const results = await Promise.allSettled([h.srv.running.services.accounts.update(h.root.id, { superuser: false }), h.srv.running.services.accounts.update(other.id, { superuser: false })]);
      expect(results.map((r) => r.status).sort()).to.deep.equal(['fulfilled', 'rejected']);
      expect(((results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason as Error).message).to.contain('last active superuser');
      expect(await h.srv.running.db('accounts').where({ superuser: true, active: true }).select('id')).to.have.length(1);
    });
  });
});
