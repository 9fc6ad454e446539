import { pbkdf2Sync, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import argon2 from 'argon2';
import bcrypt from 'bcrypt';
import { expect } from 'chai';
import * as oidc from 'openid-client';

import { Agent, authorize } from './helpers/agent.js';
import { startTestServer, type TestServer } from './helpers/server.js';

const REDIRECT = 'http://127.0.0.1:9/cb';

/** Django's PBKDF2PasswordHasher format, computed with Node's PBKDF2. */
function djangoPbkdf2(password: string, iterations = 100_000): string {
  const salt = randomBytes(9).toString('base64url');
  return `pbkdf2_sha256$${iterations}$${salt}$${pbkdf2Sync(password, salt, iterations, 32, 'sha256').toString('base64')}`;
}

describe('accounts: import from existing apps, rehash at login, update and deactivation', () => {
  let srv: TestServer;
  let config: oidc.Configuration;
  const rowOf = async (email: string) => (await srv.running.db('accounts').whereRaw('lower(email) = ?', [email.toLowerCase()]).first()) as { id: string; password_hash: string };
  const hashOf = async (email: string) => (await rowOf(email)).password_hash;

  async function signIn(email: string, password: string, scope = 'openid email offline_access') {
    const verifier = oidc.randomPKCECodeVerifier();
    const url = oidc.buildAuthorizationUrl(config, { redirect_uri: REDIRECT, scope, prompt: 'consent', code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256' });
    const agent = new Agent();
    const { callback } = await authorize(agent, url.toString(), REDIRECT, { email, password });
    return oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier });
  }

  async function loginPage(email: string, password: string) {
    const verifier = oidc.randomPKCECodeVerifier();
    const url = oidc.buildAuthorizationUrl(config, { redirect_uri: REDIRECT, scope: 'openid', code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256' });
    const agent = new Agent();
    const page = await agent.follow(url.toString(), {}, REDIRECT);
    return agent.submit(page, 0, { email, password }, REDIRECT);
  }

  before(async () => {
    srv = await startTestServer();
    const c = await srv.cli('clients', 'create', '--name', 'App', '--redirect-uri', REDIRECT, '--first-party');
    config = await oidc.discovery(new URL(srv.url), c.json.client_id, c.json.client_secret, undefined, { execute: [oidc.allowInsecureRequests] });
  });
  after(async () => {
    expect(srv.errors()).to.deep.equal([]);
    await srv.close();
  });

  it('imports bcrypt ($2a$/$2b$/$2y$), argon2 and PBKDF2 users; reports skipped lines; they log in and get argon2id', async () => {
    const b2b = await bcrypt.hash('bcrypt-b password', 10);
    const b2a = (await bcrypt.hash('bcrypt-a password', 10)).replace(/^\$2b\$/, '$2a$');
    const b2y = (await bcrypt.hash('bcrypt-y password', 10)).replace(/^\$2b\$/, '$2y$');
    const oldArgon = await argon2.hash('old argon password', { type: argon2.argon2id, memoryCost: 8192, timeCost: 3, parallelism: 1 });
    const lines = [
      { email: 'b2b@example.test', password_hash: b2b, name: 'B Two B', email_verified: true, superuser: false, roles: [] },
      { email: 'b2a@example.test', password_hash: b2a },
      { email: 'b2y@example.test', password_hash: b2y, roles: ['editor'] },
      { email: 'django@example.test', password_hash: djangoPbkdf2('django password') },
      { email: 'argon@example.test', password_hash: oldArgon, superuser: true },
      { email: 'B2B@example.test', password_hash: b2b },
      { email: 'nohash@example.test' },
      { email: 'md5@example.test', password_hash: '5f4dcc3b5aa765d61d8327deb882cf99' },
    ].map((l) => JSON.stringify(l));
    lines.splice(5, 0, '{not json');
    lines.push('');
    const file = join(tmpdir(), `latch-import-${Date.now()}.jsonl`);
    writeFileSync(file, lines.join('\n'));
    const r = await srv.cli('users', 'import', file);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.json.imported).to.equal(5);
    expect(r.json.skipped).to.equal(4);
    const byLine = Object.fromEntries((r.json.errors as { line: number; reason: string }[]).map((e) => [e.line, e.reason]));
    expect(byLine[3]).to.contain('unknown role "editor"');
    expect(byLine[6]).to.contain('JSON');
    expect(byLine[7]).to.contain('already exists');
    expect(byLine[8]).to.contain('password_hash');
    expect(byLine[9]).to.contain('password_hash');

    for (const [email, password] of [
      ['b2b@example.test', 'bcrypt-b password'],
      ['b2a@example.test', 'bcrypt-a password'],
      ['b2y@example.test', 'bcrypt-y password'],
      ['django@example.test', 'django password'],
      ['argon@example.test', 'old argon password'],
    ] as const) {
      const before = await hashOf(email);
      expect((await loginPage(email, 'not the password')).body, `${email} wrong password`).to.contain('Invalid email or password.');
      expect(await hashOf(email), 'a failed login changes nothing').to.equal(before);
      const tokens = await signIn(email, password);
      expect(tokens.claims()!.sub).to.equal((await rowOf(email)).id);
      const after = await hashOf(email);
      expect(after, email).to.not.equal(before);
      expect(after).to.match(/^\$argon2id\$v=19\$m=19456,p=1,t=2\$/);
      // The new hash works too.
      expect((await signIn(email, password)).claims()!.sub).to.equal((await rowOf(email)).id);
    }
    const listed = await srv.cli('users', 'list');
    expect(listed.json.map((u: { email: string }) => u.email)).to.include.members(['b2b@example.test', 'django@example.test']);
    expect(JSON.stringify(listed.json)).to.not.contain('$argon2').and.not.contain('$2b$').and.not.contain('password');
    expect(listed.json.find((u: { email: string }) => u.email === 'argon@example.test').superuser).to.equal(true);
  });

  it('assigns the global roles a line names; unknown ones are one error for that line, clean lines none', async () => {
    expect((await srv.cli('roles', 'create', '--name', 'librarian')).code).to.equal(0);
    expect((await srv.cli('roles', 'create', '--name', 'archivist')).code).to.equal(0);
    // An organization role is not a global role: an account cannot hold it directly.
    const hash = await bcrypt.hash('an imported reading room password', 10);
    const lines = [
      { email: 'reader1@example.test', password_hash: hash, roles: ['librarian', 'archivist'] },
      { email: 'reader2@example.test', password_hash: hash, roles: ['librarian', 'ghost', 'owner', 'ghost'] },
      { email: 'reader3@example.test', password_hash: hash },
    ].map((l) => JSON.stringify(l));
    const file = join(tmpdir(), `latch-import-roles-${Date.now()}.jsonl`);
    writeFileSync(file, lines.join('\n'));
    const r = await srv.cli('users', 'import', file);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.json).to.deep.equal({ imported: 3, skipped: 0, errors: [{ line: 2, reason: 'unknown roles "ghost", "owner" (imported without them)' }] });

    const held = async (email: string) => (await srv.running.services.roles.rolesOf({ kind: 'account', id: (await rowOf(email)).id })).map((role) => role.name).sort();
    expect(await held('reader1@example.test')).to.deep.equal(['archivist', 'librarian']);
    expect(await held('reader2@example.test')).to.deep.equal(['librarian']);
    expect(await held('reader3@example.test')).to.deep.equal([]);
    // What a relying party sees: the roles claim of the ID token.
    const tokens = await signIn('reader1@example.test', 'an imported reading room password', 'openid roles');
    expect(tokens.claims()!.roles).to.deep.equal(['archivist', 'librarian']);
  });

  it('users update changes fields; deactivation ends sessions and refresh tokens at once', async () => {
    const created = await srv.cli('users', 'create', '--email', 'dora@example.test', '--password', 'dora the explorer');
    expect(created.json.email_verified).to.equal(false);
    const tokens = await signIn('dora@example.test', 'dora the explorer');
    expect(tokens.refresh_token).to.be.a('string');
    const u = await srv.cli('users', 'update', '--email', 'DORA@example.test', '--name', 'Dora', '--email-verified', 'true');
    expect(u.code, u.stderr).to.equal(0);
    expect(u.json).to.include({ name: 'Dora', email_verified: true, active: true });
    const off = await srv.cli('users', 'update', '--email', 'dora@example.test', '--active', 'false');
    expect(off.json.active).to.equal(false);
    const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token!).then(
      () => null,
      (e: unknown) => e as oidc.ResponseBodyError,
    );
    expect(refreshed?.error).to.equal('invalid_grant');
    expect((await oidc.tokenIntrospection(config, tokens.access_token)).active).to.equal(false);
    expect((await loginPage('dora@example.test', 'dora the explorer')).body).to.contain('This account is disabled');
    const audit = (await srv.running.db('audit_events').where({ subject_id: created.json.id }).select('type')) as { type: string }[];
    expect(audit.map((a) => a.type)).to.include.members(['account.create', 'login.success', 'account.update', 'account.deactivate']);
    const bad = await srv.cli('users', 'update', '--email', 'dora@example.test', '--active', 'maybe');
    expect(bad.code).to.not.equal(0);
    expect(bad.stderr).to.match(/^latch: --active must be true or false/);
    expect((await srv.cli('users', 'update', '--email', 'nobody@example.test', '--active', 'true')).code).to.not.equal(0);
  });

  it('writes login failures and successes to the audit trail with IP and user agent', async () => {
    await srv.cli('users', 'create', '--email', 'eve@example.test', '--password', 'eve eve eve eve', '--allow-weak-password');
    await loginPage('eve@example.test', 'wrong wrong');
    await signIn('eve@example.test', 'eve eve eve eve');
    const rows = (await srv.running.db('audit_events').whereIn('type', ['login.failure', 'login.success']).orderBy('id')) as Record<string, string>[];
    const eve = rows.filter((r) => r.details?.includes('invalid_credentials') || r.type === 'login.success');
    expect(eve.some((r) => r.type === 'login.failure' && r.ip && r.client_id === config.clientMetadata().client_id)).to.equal(true);
    expect(rows.every((r) => !JSON.stringify(r).includes('eve eve eve eve'))).to.equal(true);
  });
});
