/**
 * Start-up as an operator meets it: one issuer per database, remembered (issue 18 item 9), and
 * start-up errors that name their cause in one line (item 14). Real processes on real databases.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { expect } from 'chai';

import { closestFlag, parse } from '../src/cli/args.js';
import { runToExit } from './helpers/process.js';
import { freePort, freshDatabase, onPostgres, runCliWith, startTestServer, TEST_SECRET, type TestDatabase } from './helpers/server.js';

/** stderr's lines that are not the runtime's own warnings (oidc-provider warns about Node versions). */
const errorLines = (stderr: string) => stderr.split('\n').filter((l) => l && !l.startsWith('oidc-provider WARNING'));

/** The one line a failed start-up ends with, and proof that no stack trace came with it. */
function expectOneLine(stderr: string, pattern: RegExp): string {
  const lines = errorLines(stderr);
  expect(lines, stderr).to.have.length.at.least(1);
  expect(lines.at(-1), stderr).to.match(pattern);
  expect(stderr, 'no stack trace').to.not.match(/^\s+at /m);
  return lines.at(-1)!;
}

describe('one issuer per database', function () {
  this.timeout(60_000);
  let database: TestDatabase;
  let env: Record<string, string>;
  const cli = (...args: string[]) => runCliWith(env, args);
  const apiResources = async () => ((await cli('resources', 'list')).json as { identifier: string }[]).map((r) => r.identifier).filter((i) => i.endsWith('/api'));

  beforeEach(async () => {
    database = await freshDatabase();
    env = { DATABASE_URL: database.url, LATCH_SECRET: TEST_SECRET, DATA_DIR: mkdtempSync(join(tmpdir(), 'latch-issuer-')) };
  });
  afterEach(async () => database.drop());

  it('a first CLI command without ISSUER records the default, http://localhost:$PORT', async () => {
    env.PORT = '4555';
    const shown = await cli('issuer', 'show');
    expect(shown.code, shown.stderr).to.equal(0);
    expect(shown.json).to.deep.equal({ issuer: 'http://localhost:4555', api_resource: 'http://localhost:4555/api' });
    // Recorded, not recomputed: another PORT later does not change it.
    env.PORT = '4556';
    expect((await cli('issuer', 'show')).json.issuer).to.equal('http://localhost:4555');
    expect(await apiResources()).to.deep.equal(['http://localhost:4555/api']);
  });

  it('commands without ISSUER act for the recorded issuer: API resource and invitation links', async () => {
    const first = await runCliWith({ ...env, ISSUER: 'https://auth.example.test' }, ['users', 'list']);
    expect(first.code, first.stderr).to.equal(0);
    // Before, a command without ISSUER registered a stray http://localhost:3000/api.
    expect(await apiResources()).to.deep.equal(['https://auth.example.test/api']);
    const invited = await cli('users', 'invite', '--email', 'newcomer@example.test');
    expect(invited.code, invited.stderr).to.equal(0);
    expect(invited.json.invitation_url).to.match(/^https:\/\/auth\.example\.test\/register\?/);
    // The same issuer with a trailing slash is the same issuer.
    const slash = await runCliWith({ ...env, ISSUER: 'https://auth.example.test/' }, ['users', 'list']);
    expect(slash.code, slash.stderr).to.equal(0);
  });

  it('`ISSUER=… latch migrate` records the issuer, and refuses another one', async () => {
    const migrated = await runCliWith({ ...env, ISSUER: 'https://auth.example.test' }, ['migrate']);
    expect(migrated.code, migrated.stderr).to.equal(0);
    expect((await cli('issuer', 'show')).json.issuer).to.equal('https://auth.example.test');
    const other = await runCliWith({ ...env, ISSUER: 'https://other.example.test' }, ['migrate']);
    expect(other.code).to.equal(1);
    expect(other.stderr).to.match(/^latch: ISSUER is https:\/\/other\.example\.test but this database belongs to issuer https:\/\/auth\.example\.test: /);
  });

  it('a CLI command with another ISSUER refuses with one line naming both', async () => {
    expect((await runCliWith({ ...env, ISSUER: 'https://auth.example.test' }, ['users', 'list'])).code).to.equal(0);
    const other = await runCliWith({ ...env, ISSUER: 'https://other.example.test' }, ['users', 'create', '--email', 'x@example.test', '--password', 'a long enough password']);
    expect(other.code).to.equal(1);
    expect(other.stdout).to.equal('');
    expect(other.stderr.trim().split('\n')).to.have.length(1);
    expect(other.stderr).to.match(/^latch: ISSUER is https:\/\/other\.example\.test but this database belongs to issuer https:\/\/auth\.example\.test: .*latch issuer set/);
    // Nothing was done under the other issuer.
    expect(await apiResources()).to.deep.equal(['https://auth.example.test/api']);
    expect((await cli('users', 'list')).json).to.deep.equal([]);
  });

  it('a server with another ISSUER exits non-zero with one line naming both', async () => {
    expect((await runCliWith({ ...env, ISSUER: 'http://127.0.0.1:4557' }, ['users', 'list'])).code).to.equal(0);
    const r = await runToExit('server', { DATABASE_URL: database.url, ISSUER: 'http://127.0.0.1:4558' });
    expect(r.code).to.equal(1);
    expectOneLine(r.stderr, /^latch: failed to start: ISSUER is http:\/\/127\.0\.0\.1:4558 but this database belongs to issuer http:\/\/127\.0\.0\.1:4557: /);
  });

  it('`latch issuer set` moves the admin API resource with the clients registered for it', async () => {
    const port = await freePort();
    const issuer = `http://127.0.0.1:${port}`;
    expect((await cli('issuer', 'show')).json.issuer).to.equal('http://localhost:3000');
    const made = await cli('clients', 'create', '--name', 'ops', '--grant', 'client_credentials', '--resource', 'http://localhost:3000/api', '--scope', 'admin:read');
    expect(made.code, made.stderr).to.equal(0);

    const bad = await cli('issuer', 'set', 'ftp://auth.example.test');
    expect(bad.code).to.equal(2);
    expect(bad.stderr).to.match(/^latch: ftp:\/\/auth\.example\.test cannot be the issuer: ISSUER must be an http: or https: URL/);

    const moved = await cli('issuer', 'set', `${issuer}/`);
    expect(moved.code, moved.stderr).to.equal(0);
    expect(moved.json).to.deep.equal({ issuer, previous: 'http://localhost:3000', api_resource: `${issuer}/api` });
    expect(await apiResources()).to.deep.equal([`${issuer}/api`]);
    const client = ((await cli('clients', 'list')).json as { client_id: string; resources: string[] }[]).find((c) => c.client_id === made.json.client_id)!;
    expect(client.resources).to.deep.equal([`${issuer}/api`]);

    // A server for the new issuer serves the admin API to that client at once.
    const srv = await startTestServer({ database, env: { PORT: String(port), ISSUER: issuer } });
    try {
      const token = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from(`${made.json.client_id}:${made.json.client_secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'admin:read', resource: `${issuer}/api` }),
      });
      expect(token.status).to.equal(200);
      const { access_token } = (await token.json()) as { access_token: string };
      expect((await fetch(`${issuer}/api/v1/users`, { headers: { authorization: `Bearer ${access_token}` } })).status).to.equal(200);
      expect(srv.errors()).to.deep.equal([]);
    } finally {
      await srv.close();
    }
    // The old issuer is refused now.
    const old = await runCliWith({ ...env, ISSUER: 'http://localhost:3000' }, ['users', 'list']);
    expect(old.code).to.equal(1);
    expect(old.stderr).to.contain(`belongs to issuer ${issuer}`);
  });

  it('`latch issuer set` onto an issuer whose /api is already registered keeps one resource, the clients following', async () => {
    expect((await cli('issuer', 'show')).json.issuer).to.equal('http://localhost:3000');
    const made = await cli('clients', 'create', '--name', 'ops', '--grant', 'client_credentials', '--resource', 'http://localhost:3000/api', '--scope', 'admin:read');
    expect(made.code, made.stderr).to.equal(0);
    // A stray registration of the target's API, as older versions left behind.
    expect((await cli('resources', 'create', '--identifier', 'https://auth.example.test/api', '--scope', 'admin:read')).code).to.equal(0);
    const moved = await cli('issuer', 'set', 'https://auth.example.test');
    expect(moved.code, moved.stderr).to.equal(0);
    expect(await apiResources()).to.deep.equal(['https://auth.example.test/api']);
    // The API's own registration was kept, with all its scopes.
    const api = ((await cli('resources', 'list')).json as { identifier: string; scopes: string[] }[]).find((r) => r.identifier === 'https://auth.example.test/api')!;
    expect(api.scopes).to.have.members(['admin:read', 'admin:write', 'account']);
    const client = ((await cli('clients', 'list')).json as { client_id: string; resources: string[] }[]).find((c) => c.client_id === made.json.client_id)!;
    expect(client.resources).to.deep.equal(['https://auth.example.test/api']);
  });
});

describe('start-up errors name their cause', function () {
  this.timeout(90_000);
  let database: TestDatabase;

  before(async function () {
    database = await freshDatabase();
  });
  after(async () => database.drop());

  it('a LATCH_SECRET that cannot decrypt the stored signing keys stops the server and the CLI', async () => {
    const port = await freePort();
    const issuer = `http://127.0.0.1:${port}`;
    // A server created the signing keys, encrypted with TEST_SECRET.
    const srv = await startTestServer({ database, env: { PORT: String(port), ISSUER: issuer } });
    await srv.close();
    const other = 'another-secret-0123456789-abcdefghijklmnopqrstuvwxyz';

    const server = await runToExit('server', { DATABASE_URL: database.url, ISSUER: issuer, LATCH_SECRET: other });
    expect(server.code).to.equal(1);
    const line = expectOneLine(server.stderr, /^latch: failed to start: LATCH_SECRET cannot decrypt the signing keys stored in the database/);
    expect(line).to.not.contain('Unsupported state');

    const cli = await runCliWith({ DATABASE_URL: database.url, LATCH_SECRET: other }, ['clients', 'create', '--name', 'x', '--grant', 'client_credentials']);
    expect(cli.code).to.equal(1);
    expect(cli.stderr.trim().split('\n')).to.have.length(1);
    expect(cli.stderr).to.match(/^latch: LATCH_SECRET cannot decrypt the signing keys stored in the database/);
    // Nothing was written with the wrong secret.
    const listed = await runCliWith({ DATABASE_URL: database.url, LATCH_SECRET: TEST_SECRET }, ['clients', 'list']);
    expect(listed.json.map((c: { name: string }) => c.name)).to.not.include('x');
  });

  it('a PostgreSQL that cannot be reached: host, port, database and the reason, no stack trace', async () => {
    const closed = await freePort();
    const url = `postgres://latch:hunter2-secret@127.0.0.1:${closed}/latch_nowhere`;
    const expected = new RegExp(`cannot connect to PostgreSQL at host 127\\.0\\.0\\.1, port ${closed}, database "latch_nowhere": connection refused`);
    const server = await runToExit('server', { DATABASE_URL: url });
    expect(server.code).to.equal(1);
    expect(expectOneLine(server.stderr, new RegExp(`^latch: failed to start: ${expected.source}`))).to.not.contain('hunter2');
    const cli = await runToExit('cli', { DATABASE_URL: url }, ['users', 'list']);
    expect(cli.code).to.equal(1);
    expect(expectOneLine(cli.stderr, new RegExp(`^latch: ${expected.source}`))).to.not.contain('hunter2');
    expect(cli.stderr).to.not.contain('hunter2');
  });

  it('a PostgreSQL that refuses the login: host, port, database and the server\'s reason', async function () {
    if (!onPostgres) this.skip();
    const url = new URL(database.url);
    url.username = 'latch_no_such_role';
    url.password = 'hunter2-secret';
    const target = `host ${url.hostname}, port ${url.port || '5432'}, database "${url.pathname.slice(1)}"`.replace(/[.]/g, '\\.');
    const expected = `PostgreSQL at ${target} refused the connection: .*latch_no_such_role`;
    const server = await runToExit('server', { DATABASE_URL: url.toString() });
    expect(server.code).to.equal(1);
    expect(expectOneLine(server.stderr, new RegExp(`^latch: failed to start: ${expected}`))).to.not.contain('hunter2');
    const cli = await runToExit('cli', { DATABASE_URL: url.toString() }, ['users', 'list']);
    expect(cli.code).to.equal(1);
    expectOneLine(cli.stderr, new RegExp(`^latch: ${expected}`));
    expect(cli.stderr + server.stderr).to.not.contain('hunter2');
  });

  it('a mistyped CLI flag is named with the closest known one', async () => {
    const r = await runToExit('cli', { DATABASE_URL: database.url }, ['clients', 'create', '--name', 'x', '--redirect-url', 'https://app.example.test/cb']);
    expect(r.code).to.equal(2);
    expect(r.stdout).to.equal('');
    expectOneLine(r.stderr, /^latch: unknown flag --redirect-url; did you mean --redirect-uri\? \(usage: latch clients create /);
    const far = await runToExit('cli', { DATABASE_URL: database.url }, ['users', 'create', '--colour', 'blue']);
    expect(far.code).to.equal(2);
    expectOneLine(far.stderr, /^latch: unknown flag --colour \(usage: latch users create /);
    // A command that takes no options says so rather than ignoring one.
    const none = await runCliWith({ DATABASE_URL: database.url, LATCH_SECRET: TEST_SECRET }, ['users', 'list', '--superuser']);
    expect(none.code).to.equal(2);
    expect(none.stderr).to.equal('latch: unknown flag --superuser (usage: latch users list)\n');
  });

  it('suggests only flags within a typo\'s distance (transpositions count once)', () => {
    expect(closestFlag('emial', ['email', 'password'])).to.equal('email');
    expect(closestFlag('redirect-url', ['redirect-uri', 'post-logout-redirect-uri'])).to.equal('redirect-uri');
    expect(closestFlag('scopes', ['scope', 'resource'])).to.equal('scope');
    expect(closestFlag('colour', ['email', 'password', 'name'])).to.equal(undefined);
  });

  it('takes an id beginning with a dash (a key thumbprint) as an argument, and one beginning with -- after --', () => {
    expect(parse(['-Xy9_kid'], {}, 'keys retire KID').positionals).to.deep.equal(['-Xy9_kid']);
    expect(parse(['--', '--Xy9'], {}, 'keys retire KID').positionals).to.deep.equal(['--Xy9']);
    const withFlag = parse(['-abc', '--name', '-def'], { name: { type: 'string' } }, 'x');
    expect(withFlag.positionals).to.deep.equal(['-abc']);
    expect(withFlag.values.name).to.equal('-def');
    expect(() => parse(['--Xy9'], {}, 'keys retire KID')).to.throw(/unknown flag --Xy9/);
  });
});
