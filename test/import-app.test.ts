/**
 * `latch import app` from a SQLite file shaped like a FastAPI app's (fastapi-users' `user` table,
 * organizations, roles, invitations, API keys, per-site machine credentials), run as the real
 * `latch` process against a running Latch: the dry run changes nothing, the import keeps ids,
 * password hashes and key values, the users sign in through Latch's login page with their old
 * passwords (sub = their old id, hash rewritten as argon2id), an old API key introspects active,
 * a site signs in with its old uuid and token, a second run changes nothing, a broken row is
 * reported while the others import, and the source file is left byte for byte as it was.
 */
import { createHash, pbkdf2Sync, randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

import argon2 from 'argon2';
import bcrypt from 'bcrypt';
import Database from 'better-sqlite3';
import { expect } from 'chai';
import { decodeJwt } from 'jose';

import { codeFlowTokens } from './helpers/agent.js';
import { runToExit } from './helpers/process.js';
import { onPostgres, startTestServer, type TestServer } from './helpers/server.js';

const API = 'https://api.example.test';
const REDIRECT = 'http://127.0.0.1:9/callback';

/** passlib's adapted base64: `.` for `+`, no padding. */
const ab64 = (b: Buffer) => b.toString('base64').replace(/=+$/, '').replace(/\+/g, '.');
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

interface Person {
  id: string;
  email: string;
  password: string;
  hash: string;
}

describe('latch import app: a FastAPI app on SQLite', function () {
  this.timeout(60_000);

  let srv: TestServer;
  let dir: string;
  let sourcePath: string;
  let mapPath: string;
  let web: { client_id: string; client_secret: string };
  let rs: { client_id: string; client_secret: string };
  const people: Record<string, Person> = {};
  const ORG = randomUUID();
  const OTHER_ORG = randomUUID();
  const SITE = { uuid: randomUUID(), token: `sk_live_${randomBytes(16).toString('hex')}` };
  const KEY = `omoi_${randomBytes(24).toString('base64url')}`;
  const EXPIRED_KEY = `omoi_${randomBytes(24).toString('base64url')}`;

  const fileState = () => ({ bytes: readFileSync(sourcePath).toString('base64'), beside: ['-wal', '-shm', '-journal'].filter((s) => existsSync(`${sourcePath}${s}`)) });
  /** The real `latch` process (bin/latch.js over dist/) on the server's database. */
  const latch = (...args: string[]) => runToExit('cli', srv.env, args);
  async function importRun(...extra: string[]) {
    const out = await srv.cli('import', 'app', '--from', `sqlite:${sourcePath}`, '--map', mapPath, ...extra);
    expect(out.code, out.stderr).to.equal(0);
    return out.json;
  }
  const account = (id: string) => srv.running.db('accounts').where({ id }).first();
  const signIn = (p: { email: string; password: string }, params: Record<string, string> = { scope: 'openid' }) => codeFlowTokens(srv.url, web, REDIRECT, p, params);
  async function introspect(token: string): Promise<Record<string, any>> {
    const res = await fetch(`${srv.url}/token/introspection`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${rs.client_id}:${rs.client_secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token }),
    });
    expect(res.status).to.equal(200);
    return (await res.json()) as Record<string, any>;
  }

  before(async () => {
    srv = await startTestServer();
    expect((await srv.cli('resources', 'create', '--identifier', API, '--scope', 'read write')).code).to.equal(0);
    web = (await srv.cli('clients', 'create', '--name', 'App', '--redirect-uri', REDIRECT, '--resource', API)).json;
    rs = (await srv.cli('clients', 'create', '--name', 'App API', '--grant', 'client_credentials', '--resource', API)).json;

    const pw = (name: string) => `${name} keeps the old password`;
    const djangoSalt = randomBytes(9).toString('hex');
    const passlibSalt = randomBytes(16);
    const make = async (name: string, hash: (password: string) => Promise<string> | string) => {
      const password = pw(name);
      people[name] = { id: randomUUID(), email: `${name}@example.test`, password, hash: await hash(password) };
    };
    await make('alice', (p) => bcrypt.hash(p, 4));
    await make('bob', (p) => argon2.hash(p, { type: argon2.argon2id, memoryCost: 65536, timeCost: 3, parallelism: 4 }));
    await make('carol', (p) => `pbkdf2_sha256$1000$${djangoSalt}$${pbkdf2Sync(p, djangoSalt, 1000, 32, 'sha256').toString('base64')}`);
    await make('dave', (p) => `$pbkdf2-sha256$1000$${ab64(passlibSalt)}$${ab64(pbkdf2Sync(p, passlibSalt, 1000, 32, 'sha256'))}`);
    await make('erin', () => 'md5$not-a-usable-hash');
    await make('frank', (p) => bcrypt.hash(p, 4));

    dir = mkdtempSync(join(tmpdir(), 'latch-import-'));
    sourcePath = join(dir, 'app.sqlite');
    const app = new Database(sourcePath);
    app.exec(`
      CREATE TABLE user (id CHAR(36) PRIMARY KEY, email VARCHAR(320) NOT NULL, hashed_password VARCHAR(1024) NOT NULL,
                         is_active BOOLEAN NOT NULL, is_superuser BOOLEAN NOT NULL, is_verified BOOLEAN NOT NULL, full_name TEXT);
      CREATE TABLE user_roles (user_id CHAR(36), role_name TEXT);
      CREATE TABLE organizations (id CHAR(36) PRIMARY KEY, name TEXT, slug TEXT);
      CREATE TABLE organization_members (user_id CHAR(36), organization_id CHAR(36), role TEXT);
      CREATE TABLE invitations (organization_id CHAR(36), email TEXT, role TEXT, expires_at DATETIME);
      CREATE TABLE api_keys (user_id CHAR(36), key_hash TEXT, key_prefix TEXT, name TEXT, org_id CHAR(36), expires_at DATETIME);
      CREATE TABLE sites (uuid CHAR(36), api_token TEXT, name TEXT, organization_id CHAR(36));
    `);
    const user = app.prepare('INSERT INTO user VALUES (?, ?, ?, ?, ?, ?, ?)');
    for (const [name, p] of Object.entries(people)) user.run(p.id, p.email, p.hash, name === 'frank' ? 0 : 1, name === 'alice' ? 1 : 0, 1, name[0]!.toUpperCase() + name.slice(1));
    // The same address as alice's but for its case, under another id: a conflict, never merged.
    user.run('ffffffff-ffff-4fff-bfff-ffffffffffff', 'ALICE@example.test', people.alice!.hash, 1, 0, 1, 'Alice again');
    // A broken row: its id is no id Latch can keep.
    user.run('not-an-id', 'ghost@example.test', people.alice!.hash, 1, 0, 1, null);
    app.prepare('INSERT INTO user_roles VALUES (?, ?)').run(people.bob!.id, 'editor');
    app.prepare('INSERT INTO organizations VALUES (?, ?, ?)').run(ORG, 'Acme Family', 'acme-family');
    app.prepare('INSERT INTO organizations VALUES (?, ?, ?)').run(OTHER_ORG, 'Globex', null);
    const member = app.prepare('INSERT INTO organization_members VALUES (?, ?, ?)');
    member.run(people.alice!.id, ORG, 'boss');
    member.run(people.bob!.id, ORG, 'admin');
    member.run(people.carol!.id, ORG, 'member');
    member.run(people.dave!.id, ORG, 'viewer');
    member.run(people.dave!.id, OTHER_ORG, 'janitor');
    const future = new Date(Date.now() + 86_400_000).toISOString().replace('T', ' ').replace('Z', '');
    const past = '2020-01-01 00:00:00';
    app.prepare('INSERT INTO invitations VALUES (?, ?, ?, ?)').run(ORG, 'grandma@example.test', 'viewer', future);
    app.prepare('INSERT INTO invitations VALUES (?, ?, ?, ?)').run(ORG, 'late@example.test', 'member', past);
    const key = app.prepare('INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?)');
    key.run(people.bob!.id, sha256(KEY), KEY.slice(0, 9), 'agent key', ORG, null);
    key.run(people.bob!.id, sha256(EXPIRED_KEY), EXPIRED_KEY.slice(0, 9), 'old key', null, past);
    key.run(people.bob!.id, 'not-a-sha256', 'omoi_xxxx', 'broken key', null, null);
    app.prepare('INSERT INTO sites VALUES (?, ?, ?, ?)').run(SITE.uuid, SITE.token, 'Drupal site', ORG);
    app.close();

    mapPath = join(dir, 'map.yaml');
    writeFileSync(
      mapPath,
      `users:         { table: user, id: id, email: email, password_hash: hashed_password, name: full_name,
                 active: is_active, superuser: is_superuser, verified: is_verified }
roles:         { table: user_roles, user_id: user_id, role: role_name }
organizations: { table: organizations, id: id, name: name, slug: slug }
memberships:   { table: organization_members, user_id: user_id, organization_id: organization_id,
                 role: role, role_map: { boss: owner, admin: admin, member: member, viewer: viewer } }
invitations:   { table: invitations, organization_id: organization_id, email: email, role: role, expires_at: expires_at }
api_keys:      { table: api_keys, user_id: user_id, hash: key_hash, hash_format: sha256-hex, prefix: key_prefix,
                 name: name, scopes: ["${API}:read"], expires_at: expires_at, organization_id: org_id }
clients:       { table: sites, id: uuid, secret: api_token, name: name, organization_id: organization_id,
                 org_role: member, scopes: ["${API}:write"] }
`,
    );
  });

  after(async () => {
    expect(srv.errors(), JSON.stringify(srv.errors())).to.deep.equal([]);
    await srv.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const EXPECTED = {
    users: { imported: 6, skipped: 2, unchanged: 0 },
    organizations: { imported: 2, skipped: 0, unchanged: 0 },
    memberships: { imported: 4, skipped: 1, unchanged: 0 },
    api_keys: { imported: 2, skipped: 1, unchanged: 0 },
    clients: { imported: 1, skipped: 0, unchanged: 0 },
  };

  it('--dry-run prints the counts and every refused row, and changes nothing', async () => {
    const before = fileState();
    const accounts = (await srv.running.db('accounts').count({ n: '*' }).first())!.n;
    const summary = await importRun('--dry-run');
    expect(summary).to.deep.include(EXPECTED);
    expect(Number((await srv.running.db('accounts').count({ n: '*' }).first())!.n)).to.equal(Number(accounts));
    expect(await account(people.alice!.id)).to.equal(undefined);
    expect(await srv.running.db('clients').where({ id: SITE.uuid }).first()).to.equal(undefined);
    expect(fileState()).to.deep.equal(before);
  });

  it('--dry-run on SQLite writes to a private copy: the server\'s writes never wait for it, and the copy is gone after', async function () {
    if (onPostgres) this.skip();
    // A source big enough for the run to take a while: 3,000 users (one bcrypt hash, copied).
    const bigPath = join(dir, 'big.sqlite');
    const big = new Database(bigPath);
    big.exec('CREATE TABLE user (id CHAR(36) PRIMARY KEY, email VARCHAR(320) NOT NULL, hashed_password VARCHAR(1024) NOT NULL, is_active BOOLEAN NOT NULL)');
    const insert = big.prepare('INSERT INTO user VALUES (?, ?, ?, 1)');
    big.transaction(() => {
      for (let i = 0; i < 3000; i++) insert.run(randomUUID(), `bulk-${i}@example.test`, people.alice!.hash);
    })();
    big.close();
    const bigMap = join(dir, 'big.yaml');
    writeFileSync(bigMap, 'users: { table: user, id: id, email: email, password_hash: hashed_password, active: is_active }\n');

    // Another writer that never waits: BEGIN IMMEDIATE takes the write lock or fails at once with
    // SQLITE_BUSY. The server's own background writes and the CLI's start take the lock for a
    // moment; a dry run in one transaction on this file would hold it for the whole run.
    const dbFile = srv.env.DATABASE_URL!.slice('sqlite:'.length);
    const probe = new Database(dbFile, { timeout: 0 });
    let probes = 0;
    let busySince: number | undefined;
    let longestBusyMs = 0;
    const otherErrors: string[] = [];
    const timer = setInterval(() => {
      const now = performance.now();
      try {
        probe.exec('BEGIN IMMEDIATE');
        probe.exec('ROLLBACK');
        probes++;
        if (busySince !== undefined) longestBusyMs = Math.max(longestBusyMs, now - busySince);
        busySince = undefined;
      } catch (err) {
        if (/database is locked/.test(String(err))) busySince ??= now;
        else otherErrors.push(String(err));
      }
    }, 5);
    let summary;
    const started = performance.now();
    try {
      const out = await latch('import', 'app', '--from', `sqlite:${bigPath}`, '--map', bigMap, '--dry-run');
      expect(out.code, out.stderr).to.equal(0);
      summary = JSON.parse(out.stdout);
    } finally {
      clearInterval(timer);
      probe.close();
    }
    const runMs = performance.now() - started;
    if (busySince !== undefined) longestBusyMs = Math.max(longestBusyMs, performance.now() - busySince);
    expect(summary.users).to.deep.equal({ imported: 3000, skipped: 0, unchanged: 0 });
    expect(otherErrors).to.deep.equal([]);
    expect(probes, 'the probe ran while the dry run did').to.be.greaterThan(10);
    expect(longestBusyMs, `the write lock was taken for ${Math.round(longestBusyMs)} ms at a stretch in a ${Math.round(runMs)} ms dry run`).to.be.below(250);
    expect(Number((await srv.running.db('accounts').where('email', 'like', 'bulk-%').count({ n: '*' }).first())!.n)).to.equal(0);
    expect(readdirSync(dirname(dbFile)).filter((f) => f.startsWith('.latch-snapshot-')), 'the copy is deleted').to.deep.equal([]);
  });

  it('imports through the real latch process: ids kept, problems listed, exit 0, the source untouched', async () => {
    const before = fileState();
    expect(before.beside).to.deep.equal([]);
    const out = await latch('import', 'app', '--from', `sqlite:${sourcePath}`, '--map', mapPath);
    expect(out.code, out.stderr).to.equal(0);
    expect(out.stderr, 'no progress bar when stderr is not a terminal').to.equal('');
    const summary = JSON.parse(out.stdout);
    expect(summary).to.deep.include(EXPECTED);
    const problems = summary.problems as { table: string; id: string | number; reason: string }[];
    const about = (table: string, id: string | number) => problems.filter((p) => p.table === table && p.id === id).map((p) => p.reason).join(' | ');
    expect(about('user', people.erin!.id)).to.match(/imported without a password/);
    expect(about('user', 'not-an-id')).to.match(/id is not a UUID/);
    expect(about('user', 'ffffffff-ffff-4fff-bfff-ffffffffffff'), JSON.stringify(problems)).to.match(/differs only in case/);
    expect(about('organization_members', 5)).to.match(/janitor is not an organization role/);
    expect(about('invitations', 2)).to.match(/expired/);
    expect(about('api_keys', 3)).to.match(/does not fit hash_format sha256-hex/);
    expect(problems).to.have.length(6);
    expect(fileState(), 'byte-identical, no journal or WAL beside it').to.deep.equal(before);

    const alice = await account(people.alice!.id);
    expect(alice).to.include({ email: 'alice@example.test', password_hash: people.alice!.hash, display_name: 'Alice' });
    expect(Boolean(alice.superuser)).to.equal(true);
    expect(Boolean((await account(people.frank!.id)).active), 'an inactive user is imported deactivated').to.equal(false);
    expect((await account(people.erin!.id)).password_hash).to.equal(null);
    const audit = await srv.running.db('audit_events').where({ type: 'import.app' });
    expect(audit).to.have.length(1);
    expect(JSON.parse(audit[0].details)).to.deep.include({ users: EXPECTED.users, roles: { imported: 1, skipped: 0, unchanged: 0 }, invitations: { imported: 1, skipped: 1, unchanged: 0 } });
    expect(audit[0].details).to.not.include(SITE.token).and.not.include(people.alice!.hash);
  });

  it('each password format signs in through the login page, sub is the old id, the hash becomes argon2id', async () => {
    for (const name of ['alice', 'bob', 'carol', 'dave']) {
      const p = people[name]!;
      const tokens = await signIn(p);
      expect(tokens.claims()!.sub, name).to.equal(p.id);
      const rewritten = (await account(p.id)).password_hash as string;
      expect(rewritten, name).to.match(/^\$argon2id\$v=19\$m=19456,/).and.not.equal(p.hash);
    }
    // The inactive user and the one without a usable hash cannot sign in with a password.
    for (const name of ['frank', 'erin']) {
      const outcome = await signIn(people[name]!).then(
        () => 'signed in',
        () => 'refused',
      );
      expect(outcome, name).to.equal('refused');
    }
  });

  it('organization ids, roles and invitations carry over: the org token has org_id and org_role', async () => {
    const tokens = await signIn(people.bob!, { scope: 'openid read', resource: API, organization: ORG });
    const at = decodeJwt(tokens.access_token);
    expect(at).to.include({ sub: people.bob!.id, org_id: ORG, org_role: 'admin' });
    const roles = await srv.running.db('roles as r').join('role_assignments as a', 'a.role_id', 'r.id').where({ 'a.account_id': people.bob!.id }).select('r.name', 'r.kind');
    expect(roles).to.deep.equal([{ name: 'editor', kind: 'global' }]);
    const owner = await srv.running.db('organization_members as m').join('roles as r', 'r.id', 'm.role_id').where({ 'm.account_id': people.alice!.id, 'm.organization_id': ORG }).first('r.name');
    expect(owner.name, 'role_map: boss → owner').to.equal('owner');
    const orgs = await srv.cli('orgs', 'list');
    expect(orgs.json.map((o: { id: string }) => o.id)).to.have.members([ORG, OTHER_ORG]);
    expect(orgs.json.find((o: { id: string }) => o.id === OTHER_ORG).slug).to.equal('globex');
    const invitations = await srv.running.db('organization_invitations').where({ organization_id: ORG });
    expect(invitations.map((i: { email: string; status: string }) => [i.email, i.status])).to.deep.equal([['grandma@example.test', 'pending']]);
  });

  it('an old API key introspects active with its owner, scopes and organization; an expired one does not', async () => {
    const answer = await introspect(KEY);
    expect(answer).to.include({ active: true, sub: people.bob!.id, scope: 'read', org_id: ORG, org_role: 'admin' });
    expect(answer.aud).to.deep.equal([API]);
    expect(await introspect(EXPIRED_KEY)).to.deep.equal({ active: false });
    expect(await introspect(`${KEY}x`)).to.deep.equal({ active: false });
    const row = await srv.running.db('personal_access_tokens').where({ token_hash: sha256(KEY) }).first();
    expect(row).to.include({ account_id: people.bob!.id, token_format: 'sha256', token_prefix: KEY.slice(0, 9), name: 'agent key' });
  });

  it('a site keeps its uuid and token: the client-credentials grant answers with org_id and org_role', async () => {
    const res = await fetch(`${srv.url}/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${encodeURIComponent(SITE.uuid)}:${encodeURIComponent(SITE.token)}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', resource: API, scope: 'write', organization: ORG }),
    });
    const body = (await res.json()) as Record<string, any>;
    expect(res.status, JSON.stringify(body)).to.equal(200);
    expect(decodeJwt(body.access_token)).to.include({ client_id: SITE.uuid, org_id: ORG, org_role: 'member', scope: 'write' });
    const stored = await srv.running.db('clients').where({ id: SITE.uuid }).first();
    expect(stored.secret_hash, 'stored as an HMAC').to.match(/^[0-9a-f]{64}$/);
    expect(stored.secret_hash).to.not.equal(SITE.token);
    const wrong = await fetch(`${srv.url}/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${SITE.uuid}:not-the-token`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', resource: API }),
    });
    expect(wrong.status).to.equal(401);
  });

  it('a second run imports nothing and changes nothing; --update refreshes a changed row but never an upgraded hash', async () => {
    const aliceBefore = await account(people.alice!.id);
    const second = await importRun();
    expect(second).to.deep.include({
      users: { imported: 0, skipped: 2, unchanged: 6 },
      organizations: { imported: 0, skipped: 0, unchanged: 2 },
      memberships: { imported: 0, skipped: 1, unchanged: 4 },
      api_keys: { imported: 0, skipped: 1, unchanged: 2 },
      clients: { imported: 0, skipped: 0, unchanged: 1 },
    });
    expect(await account(people.alice!.id)).to.deep.equal(aliceBefore);

    const app = new Database(sourcePath);
    app.prepare('UPDATE user SET full_name = ? WHERE id = ?').run('Alice Cooper', people.alice!.id);
    app.close();
    const updated = await importRun('--update');
    expect(updated.users).to.deep.equal({ imported: 1, skipped: 2, unchanged: 5 });
    const alice = await account(people.alice!.id);
    expect(alice.display_name).to.equal('Alice Cooper');
    expect(alice.password_hash, 'the argon2id hash Latch wrote at sign-in stays').to.equal(aliceBefore.password_hash).and.match(/^\$argon2id\$/);
    expect((await signIn(people.alice!)).claims()!.sub).to.equal(people.alice!.id);

    // Deactivated in the app: deactivated in Latch, with its sessions and grants ended at once,
    // and the application he signed in to told so (back-channel logout, sent by the server).
    const held = () => srv.running.db('provider_state').where({ account_id: people.bob!.id }).count({ n: '*' }).first();
    expect(Number((await held())!.n), 'bob signed in earlier').to.be.greaterThan(0);
    const told: Record<string, unknown>[] = [];
    const rp = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString('utf8')));
      req.on('end', () => {
        const token = new URLSearchParams(body).get('logout_token');
        if (token) told.push(decodeJwt(token));
        res.end();
      });
    }).listen(0, '127.0.0.1');
    try {
      await once(rp, 'listening');
      const logoutUri = `http://127.0.0.1:${(rp.address() as AddressInfo).port}/logout`;
      expect((await srv.cli('clients', 'update', web.client_id, '--backchannel-logout-uri', logoutUri)).code).to.equal(0);
      const deactivate = new Database(sourcePath);
      deactivate.prepare('UPDATE user SET is_active = 0 WHERE id = ?').run(people.bob!.id);
      deactivate.close();
      expect((await importRun('--update')).users).to.deep.equal({ imported: 1, skipped: 2, unchanged: 5 });
      expect(Boolean((await account(people.bob!.id)).active)).to.equal(false);
      expect(Number((await held())!.n)).to.equal(0);
      expect(await introspect(KEY), 'his API key dies with him').to.deep.equal({ active: false });
      for (let i = 0; i < 100 && !told.some((t) => t.sub === people.bob!.id); i++) await new Promise((r) => setTimeout(r, 100));
      expect(told.find((t) => t.sub === people.bob!.id), 'a logout token for bob').to.include({ aud: web.client_id }).and.have.property('sid');
    } finally {
      rp.close();
    }
  });
});
