/**
 * `latch import app` from its other sources and shapes: fastapi-users on PostgreSQL (native
 * uuid, `oauth_account` → federated links) read in one READ ONLY transaction, a hand-written
 * schema with integer ids, fastapi-users on MongoDB exported by mongoexport (ObjectIds, Extended
 * JSON), a SQLite file in WAL mode, API keys kept as bcrypt or in plain text, and the one-line
 * errors (exit 1) for a source or a mapping that cannot be read.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import argon2 from 'argon2';
import bcrypt from 'bcrypt';
import Database from 'better-sqlite3';
import { expect } from 'chai';
import { decodeJwt } from 'jose';
import pg from 'pg';

import { codeFlowTokens } from './helpers/agent.js';
import { onPostgres, startTestServer, type TestServer } from './helpers/server.js';

const API = 'https://api.example.test';
const REDIRECT = 'http://127.0.0.1:9/callback';
/** The PostgreSQL server a source database is made on: Latch's own when it runs on one. */
const SOURCE_SERVER = onPostgres ? process.env.DATABASE_URL! : (process.env.IMPORT_SOURCE_POSTGRES ?? 'postgres://postgres@127.0.0.1:5432/postgres');
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

describe('latch import app: PostgreSQL, integer ids, mongoexport, WAL, key formats, errors', function () {
  this.timeout(60_000);

  let srv: TestServer;
  let dir: string;
  let web: { client_id: string; client_secret: string };
  let rs: { client_id: string; client_secret: string };

  async function run(...args: string[]) {
    return srv.cli('import', 'app', ...args);
  }
  async function imported(...args: string[]) {
    const out = await run(...args);
    expect(out.code, out.stderr).to.equal(0);
    return out.json;
  }
  const signIn = (email: string, password: string, params: Record<string, string> = { scope: 'openid' }) => codeFlowTokens(srv.url, web, REDIRECT, { email, password }, params);
  async function introspect(token: string): Promise<Record<string, any>> {
    const res = await fetch(`${srv.url}/token/introspection`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${rs.client_id}:${rs.client_secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token }),
    });
    return (await res.json()) as Record<string, any>;
  }
  const writeMap = (name: string, yaml: string) => {
    const path = join(dir, name);
    writeFileSync(path, yaml);
    return path;
  };

  before(async () => {
    srv = await startTestServer();
    expect((await srv.cli('resources', 'create', '--identifier', API, '--scope', 'read write')).code).to.equal(0);
    web = (await srv.cli('clients', 'create', '--name', 'App', '--redirect-uri', REDIRECT, '--resource', API)).json;
    rs = (await srv.cli('clients', 'create', '--name', 'App API', '--grant', 'client_credentials', '--resource', API)).json;
    expect((await srv.cli('idps', 'create', '--name', 'github', '--kind', 'github', '--client-id', 'a', '--client-secret', 'b')).code).to.equal(0);
    dir = mkdtempSync(join(tmpdir(), 'latch-import-'));
  });

  after(async () => {
    expect(srv.errors(), JSON.stringify(srv.errors())).to.deep.equal([]);
    await srv.close();
    rmSync(dir, { recursive: true, force: true });
  });

  describe('a PostgreSQL source', () => {
    let admin: pg.Client;
    let sourceUrl: string;
    const name = `latch_import_src_${randomBytes(5).toString('hex')}`;
    const ada = { id: randomUUID(), email: 'ada@example.test', password: 'ada remembers the engine' };

    before(async function () {
      admin = new pg.Client({ connectionString: SOURCE_SERVER });
      try {
        await admin.connect();
      } catch {
        this.skip();
      }
      await admin.query(`CREATE DATABASE ${name}`);
      const url = new URL(SOURCE_SERVER);
      url.pathname = `/${name}`;
      sourceUrl = url.toString();
      const app = new pg.Client({ connectionString: sourceUrl });
      await app.connect();
      try {
        await app.query(`
          CREATE TABLE "user" (id uuid PRIMARY KEY, email varchar(320) NOT NULL, hashed_password varchar(1024) NOT NULL,
                               is_active boolean NOT NULL, is_superuser boolean NOT NULL, is_verified boolean NOT NULL);
          CREATE TABLE oauth_account (id uuid PRIMARY KEY, oauth_name varchar(100), access_token varchar(1024), account_id varchar(320),
                                      account_email varchar(320), user_id uuid REFERENCES "user"(id));
          CREATE TABLE legacy_users (id serial PRIMARY KEY, email text, pw text, created timestamp, deleted_at timestamp);
          CREATE TABLE teams (id bigint PRIMARY KEY, title text);
          CREATE TABLE team_members (user_id int, team_id bigint, role text);
          CREATE SEQUENCE side_effect;
        `);
        const hash = await argon2.hash(ada.password, { type: argon2.argon2id, memoryCost: 65536, timeCost: 3, parallelism: 4 });
        await app.query('INSERT INTO "user" VALUES ($1, $2, $3, true, false, true)', [ada.id.toUpperCase(), ada.email, hash]);
        await app.query("INSERT INTO oauth_account VALUES ($1, 'github', 'gho_x', '4242', 'ada@users.github.test', $2), ($3, 'google', 'ya29', '99', 'ada@gmail.test', $2)", [randomUUID(), ada.id, randomUUID()]);
        const legacy = await bcrypt.hash('grace finds the bug', 4);
        await app.query("INSERT INTO legacy_users (id, email, pw, created, deleted_at) VALUES (42, 'grace@example.test', $1, '2021-03-04 05:06:07', NULL), (43, 'gone@example.test', $1, '2021-03-04 05:06:07', '2022-01-01')", [legacy]);
        await app.query("INSERT INTO teams VALUES (7, 'Navy')");
        await app.query("INSERT INTO team_members VALUES (42, 7, 'admin')");
      } finally {
        await app.end();
      }
    });

    after(async () => {
      if (!sourceUrl) return;
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    });

    it('--preset fastapi-users: native uuid ids (canonical lower case), oauth_account links to an existing provider', async () => {
      const summary = await imported('--from', sourceUrl, '--preset', 'fastapi-users');
      expect(summary.users).to.deep.equal({ imported: 1, skipped: 0, unchanged: 0 });
      for (const section of ['organizations', 'memberships', 'api_keys', 'clients']) expect(summary[section], section).to.deep.equal({ imported: 0, skipped: 0, unchanged: 0 });
      expect(summary.problems).to.have.length(1);
      expect(summary.problems[0]).to.include({ table: 'oauth_account' }).and.have.property('reason').that.matches(/no identity provider named google/);
      const link = await srv.running.db('federated_identities').where({ account_id: ada.id }).first();
      expect(link).to.include({ provider: 'github', subject: '4242', email: 'ada@users.github.test' });
      const tokens = await signIn(ada.email, ada.password);
      expect(tokens.claims()!.sub).to.equal(ada.id);
      expect((await imported('--from', sourceUrl, '--preset', 'fastapi-users')).users).to.deep.equal({ imported: 0, skipped: 0, unchanged: 1 });
    });

    it('--map with integer ids, a where clause and created_at; the organization id is the app\'s integer', async () => {
      const map = writeMap(
        'legacy.yaml',
        `users: { table: legacy_users, id: id, email: email, password_hash: pw, created_at: created, where: "deleted_at IS NULL" }
organizations: { table: teams, id: id, name: title }
memberships: { table: team_members, user_id: user_id, organization_id: team_id, role: role }
`,
      );
      const summary = await imported('--from', sourceUrl, '--map', map);
      expect(summary).to.deep.include({ users: { imported: 1, skipped: 0, unchanged: 0 }, organizations: { imported: 1, skipped: 0, unchanged: 0 }, memberships: { imported: 1, skipped: 0, unchanged: 0 } });
      const grace = await srv.running.db('accounts').where({ id: '42' }).first();
      expect(grace.email).to.equal('grace@example.test');
      expect(new Date(grace.created_at).toISOString()).to.equal('2021-03-04T05:06:07.000Z');
      expect(await srv.running.db('accounts').where({ email: 'gone@example.test' }).first()).to.equal(undefined);
      const tokens = await signIn('grace@example.test', 'grace finds the bug', { scope: 'openid read', resource: API, organization: '7' });
      expect(tokens.claims()!.sub).to.equal('42');
      expect(decodeJwt(tokens.access_token)).to.include({ sub: '42', org_id: '7', org_role: 'admin' });
      // The organization is found by its integer id wherever one is named.
      const members = await srv.cli('orgs', 'members', 'list', '--org', '7');
      expect(members.code, members.stderr).to.equal(0);
      expect(members.json).to.have.length(1);
      expect(members.json[0]).to.include({ organization_id: '7', account_id: '42', role: 'admin' });
    });

    it('reads in a READ ONLY transaction: a where clause that would write fails the run with one line', async () => {
      const map = writeMap('writes.yaml', 'users: { table: legacy_users, id: id, email: email, password_hash: pw, where: "nextval(\'side_effect\') > 0" }\n');
      const out = await run('--from', sourceUrl, '--map', map);
      expect(out.code).to.equal(1);
      expect(out.stderr).to.match(/^latch: cannot read table legacy_users: .*read-only transaction\n$/);
    });
  });

  it('--preset fastapi-users-beanie: mongoexport Extended JSON, ObjectId ids, display_name; a broken line is a problem', async () => {
    const jsonl = join(dir, 'mongo');
    rmSync(jsonl, { recursive: true, force: true });
    const { mkdirSync } = await import('node:fs');
    mkdirSync(jsonl);
    const oid = '65a1b2c3d4e5f60718293a4b';
    const binaryUuid = randomUUID();
    const hash = await bcrypt.hash('linus types fast', 4);
    const lines = [
      // Relaxed form, as mongoexport writes by default.
      JSON.stringify({ _id: { $oid: oid.toUpperCase() }, email: 'linus@example.test', hashed_password: hash, is_active: true, is_superuser: true, is_verified: true, display_name: 'Linus', registered_clients: {}, created: { $date: '2024-01-02T03:04:05.000Z' } }),
      '{not json',
      // Canonical form: a UUID stored as BSON binary subtype 4.
      JSON.stringify({ _id: { $binary: { base64: Buffer.from(binaryUuid.replace(/-/g, ''), 'hex').toString('base64'), subType: '04' } }, email: 'uma@example.test', hashed_password: hash, is_active: { $numberInt: '1' }, is_superuser: false, is_verified: false, created: { $date: { $numberLong: '1704164645000' } } }),
    ];
    writeFileSync(join(jsonl, 'User.jsonl'), `${lines.join('\n')}\n`);
    const summary = await imported('--from', `jsonl:${jsonl}`, '--preset', 'fastapi-users-beanie');
    expect(summary.users).to.deep.equal({ imported: 2, skipped: 1, unchanged: 0 });
    expect(summary.problems).to.deep.equal([{ table: 'User', id: 2, reason: 'not a JSON object' }]);
    const linus = await srv.running.db('accounts').where({ id: oid }).first();
    expect(linus).to.include({ email: 'linus@example.test', display_name: 'Linus' });
    expect(await srv.running.db('accounts').where({ id: binaryUuid }).first()).to.include({ email: 'uma@example.test' });
    expect((await signIn('linus@example.test', 'linus types fast')).claims()!.sub).to.equal(oid);

    // A dotted path names a $-key; `where:` is SQL, which a jsonl source cannot run.
    const dotted = writeMap('mongo.yaml', 'users: { table: User, id: _id.$oid, email: email, password_hash: hashed_password, created_at: created.$date }\n');
    expect((await imported('--from', `jsonl:${jsonl}`, '--map', dotted)).users).to.deep.equal({ imported: 0, skipped: 2, unchanged: 1 });
    const withWhere = writeMap('mongo-where.yaml', 'users: { table: User, id: _id, email: email, password_hash: hashed_password, where: "is_active" }\n');
    const refused = await run('--from', `jsonl:${jsonl}`, '--map', withWhere);
    expect(refused.code).to.equal(1);
    expect(refused.stderr).to.equal(`latch: mapping ${withWhere}: users.where: where is for SQL sources only (sqlite:, postgres://), not jsonl\n`);
  });

  describe('a SQLite source with API keys in bcrypt and in plain text, in WAL mode', () => {
    let path: string;
    const owner = { id: randomUUID(), email: 'kim@example.test' };
    const BCRYPT_KEY = `ak_live_${randomBytes(20).toString('hex')}`;
    const PLAIN_KEY = `ak_test_${randomBytes(20).toString('hex')}`;

    before(async () => {
      path = join(dir, 'keys.sqlite');
      const app = new Database(path);
      app.pragma('journal_mode = WAL');
      app.exec(`CREATE TABLE users (id TEXT, email TEXT, hashed_password TEXT);
                CREATE TABLE agent_keys (id INTEGER PRIMARY KEY, owner TEXT, key_hash TEXT, key_prefix TEXT, label TEXT);
                CREATE TABLE plain_keys (owner TEXT, token TEXT);`);
      app.prepare('INSERT INTO users VALUES (?, ?, ?)').run(owner.id, owner.email, await bcrypt.hash('kim', 4));
      app.prepare('INSERT INTO agent_keys VALUES (1, ?, ?, ?, ?)').run(owner.id, await bcrypt.hash(BCRYPT_KEY, 4), BCRYPT_KEY.slice(0, 12), 'agent');
      app.prepare('INSERT INTO agent_keys VALUES (2, ?, ?, ?, ?)').run(owner.id, 'plain-text-is-not-bcrypt', 'ak_live_xxxx', 'broken');
      app.prepare('INSERT INTO plain_keys VALUES (?, ?)').run(owner.id, PLAIN_KEY);
      app.close();
      expect(readdirSync(dir).filter((f) => f.startsWith('keys.sqlite'))).to.deep.equal(['keys.sqlite']);
    });

    it('a bcrypt key is found by its prefix, verified, and moved to SHA-256 at its first use; a plain key is hashed on import', async () => {
      const before = readFileSync(path);
      const users = 'users: { table: users, id: id, email: email, password_hash: hashed_password }\n';
      const bcryptMap = writeMap('bcrypt.yaml', `${users}api_keys: { table: agent_keys, id: id, user_id: owner, hash: key_hash, hash_format: bcrypt, prefix: key_prefix, name: label, scopes: ["${API}:read"] }\n`);
      const first = await imported('--from', `sqlite:${path}`, '--map', bcryptMap);
      expect(first.api_keys).to.deep.equal({ imported: 1, skipped: 1, unchanged: 0 });
      expect(first.problems).to.deep.equal([{ table: 'agent_keys', id: '2', reason: 'the key hash does not fit hash_format bcrypt' }]);
      expect(readFileSync(path).equals(before), 'byte-identical').to.equal(true);
      expect(readdirSync(dir).filter((f) => f.startsWith('keys.sqlite')), 'no -wal or -shm beside a WAL-mode file').to.deep.equal(['keys.sqlite']);

      const row = () => srv.running.db('personal_access_tokens').where({ account_id: owner.id, name: 'agent' }).first();
      expect(await row()).to.include({ token_format: 'bcrypt', token_prefix: BCRYPT_KEY.slice(0, 12) });
      expect(await introspect(BCRYPT_KEY)).to.include({ active: true, sub: owner.id, scope: 'read' });
      expect(await row()).to.include({ token_format: 'sha256', token_hash: sha256(BCRYPT_KEY) });
      expect(await introspect(BCRYPT_KEY)).to.include({ active: true, sub: owner.id });
      expect(await introspect(`${BCRYPT_KEY.slice(0, 12)}wrong-rest-of-the-key`)).to.deep.equal({ active: false });
      // The same key on a re-run: found by its id, not imported again beside the upgraded one.
      expect((await imported('--from', `sqlite:${path}`, '--map', bcryptMap)).api_keys).to.deep.equal({ imported: 0, skipped: 1, unchanged: 1 });

      const plainMap = writeMap('plain.yaml', `${users}api_keys: { table: plain_keys, user_id: owner, hash: token, hash_format: plain, scopes: ["${API}:write"] }\n`);
      expect((await imported('--from', `sqlite:${path}`, '--map', plainMap)).api_keys).to.deep.equal({ imported: 1, skipped: 0, unchanged: 0 });
      expect(JSON.stringify(await srv.running.db('personal_access_tokens').select('*'))).to.not.include(PLAIN_KEY);
      expect(await introspect(PLAIN_KEY)).to.include({ active: true, sub: owner.id, scope: 'write' });

      const unknownMap = writeMap('unknown.yaml', `${users}api_keys: { table: plain_keys, user_id: owner, hash: token, hash_format: argon2, scopes: ["${API}:write"] }\n`);
      const unknown = await imported('--from', `sqlite:${path}`, '--map', unknownMap);
      expect(unknown.api_keys).to.deep.equal({ imported: 0, skipped: 1, unchanged: 0 });
      expect(unknown.problems[0]).to.deep.equal({ table: 'plain_keys', id: 1, reason: 'hash_format argon2 is not supported (sha256-hex, bcrypt, plain): not imported' });
    });
  });

  it('shows a progress line on stderr when stderr is a terminal', async function () {
    if (!existsSync('/usr/bin/script')) this.skip();
    const path = join(dir, 'tty.sqlite');
    new Database(path).exec("CREATE TABLE user (id TEXT, email TEXT, hashed_password TEXT, is_active INT, is_superuser INT, is_verified INT); INSERT INTO user VALUES ('1', 'tty@example.test', 'x', 1, 0, 1)").close();
    const bin = join(process.cwd(), 'bin', 'latch.js');
    // script(1) gives the command a pseudo-terminal: stdout and stderr both arrive on it.
    const child = spawn('/usr/bin/script', ['-qec', `${process.execPath} ${bin} import app --from sqlite:${path} --preset fastapi-users --dry-run`, '/dev/null'], { env: { ...process.env, ...srv.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
    expect(code, out).to.equal(0);
    expect(out).to.match(/latch: importing user: 1 rows read/);
  });

  it('a source or a mapping that cannot be read: exit 1 with one line naming it; nothing is created', async () => {
    const missing = join(dir, 'missing.sqlite');
    const users = 'users: { table: users, id: id, email: email, password_hash: hashed_password }\n';
    const cases: [string[], RegExp][] = [
      [['--from', `sqlite:${missing}`, '--preset', 'fastapi-users'], /^latch: cannot read the SQLite source .*missing\.sqlite: no such file\n$/],
      [['--from', `jsonl:${join(dir, 'nowhere')}`, '--preset', 'fastapi-users-beanie'], /^latch: cannot read the jsonl source .*nowhere: ENOENT\n$/],
      [['--from', 'mysql://x', '--preset', 'fastapi-users'], /^latch: --from must be sqlite:PATH, postgres:\/\/… or jsonl:DIR/],
      [['--from', `sqlite:${missing}`, '--map', join(dir, 'no-map.yaml')], /^latch: cannot read the mapping .*no-map\.yaml \(ENOENT\)\n$/],
      [['--from', `sqlite:${missing}`, '--map', writeMap('bad1.yaml', 'users: { table: u, id: id, email: email }\n')], /^latch: mapping .*bad1\.yaml: users\.password_hash is required\n$/],
      [['--from', `sqlite:${missing}`, '--map', writeMap('bad2.yaml', `${users}organizations: { table: o, id: id, owner: x }\n`)], /^latch: mapping .*bad2\.yaml: organizations\.owner is not a known key/],
      [['--from', `sqlite:${missing}`, '--map', writeMap('bad3.yaml', `${users}teams: { table: t }\n`)], /^latch: mapping .*bad3\.yaml: teams is not a section of the mapping/],
      [['--from', `sqlite:${missing}`, '--map', writeMap('bad4.yaml', `${users}memberships: { table: m, user_id: u, organization_id: o, role_map: { boss: [owner] } }\n`)], /^latch: mapping .*bad4\.yaml: memberships\.role_map must map/],
      [['--from', `sqlite:${missing}`, '--map', writeMap('bad5.yaml', `${users}api_keys: { table: k, user_id: u, hash: h, hash_format: bcrypt, scopes: ["${API}:read"] }\n`)], /^latch: mapping .*bad5\.yaml: api_keys\.prefix is required with hash_format bcrypt/],
      [['--from', `sqlite:${missing}`, '--map', writeMap('bad6.yaml', 'users: [1, 2]\n: :\n')], /^latch: mapping .*bad6\.yaml: the mapping is not YAML/],
    ];
    for (const [args, message] of cases) {
      const out = await run(...args);
      expect(out.code, `${args.join(' ')}: ${out.stderr}`).to.equal(1);
      expect(out.stderr).to.match(message);
      expect(out.stderr.split('\n').filter(Boolean), 'one line').to.have.length(1);
    }
    expect(existsSync(missing), 'a missing SQLite source is never created').to.equal(false);
    // Scopes and roles the mapping names must exist in Latch before anything is written.
    const source = join(dir, 'empty.sqlite');
    new Database(source).exec('CREATE TABLE users (id TEXT, email TEXT, hashed_password TEXT); CREATE TABLE k (u TEXT, h TEXT)').close();
    const noScope = await run('--from', `sqlite:${source}`, '--map', writeMap('bad7.yaml', `${users}api_keys: { table: k, user_id: u, hash: h, hash_format: plain, scopes: ["https://nowhere.test:read"] }\n`));
    expect(noScope.code).to.equal(1);
    expect(noScope.stderr).to.equal('latch: api_keys.scopes: "https://nowhere.test:read" is not a scope of a registered resource (latch resources create)\n');
    const noTable = await run('--from', `sqlite:${source}`, '--map', writeMap('bad8.yaml', `${users}organizations: { table: orgs, id: id }\n`));
    expect(noTable.code).to.equal(1);
    expect(noTable.stderr).to.match(/^latch: cannot read organizations\.table orgs: no such table in sqlite:/);
    // Usage mistakes are exit 2, as for every command.
    expect((await run('--from', `sqlite:${source}`)).code).to.equal(2);
    expect((await run('--from', `sqlite:${source}`, '--preset', 'django')).code).to.equal(2);
  });
});
