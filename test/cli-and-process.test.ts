import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { expect } from 'chai';

import { openDatabase } from '../src/db/knex.js';
import { migrateLatest, migrateRollbackAll } from '../src/db/migrate.js';
import { loadConfig } from '../src/config/index.js';
import { freePort, freshDatabase, TEST_SECRET, type TestDatabase } from './helpers/server.js';

const run = promisify(execFile);
const ROOT = new URL('..', import.meta.url).pathname;
const BIN = join(ROOT, 'bin', 'latch.js');

async function latch(env: Record<string, string>, ...args: string[]) {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, cwd: ROOT });
    return { code: 0, stdout, stderr, json: JSON.parse(stdout) as any };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr, json: undefined };
  }
}

describe('the latch command (compiled bin)', () => {
  let db: TestDatabase;
  let env: Record<string, string>;

  before(async () => {
    db = await freshDatabase();
    env = { DATABASE_URL: db.url, LATCH_SECRET: TEST_SECRET, DATA_DIR: mkdtempSync(join(tmpdir(), 'latch-cli-')) };
  });
  after(async () => db.drop());

  it('migrates, creates users, resources and clients, and prints JSON', async () => {
    const m = await latch(env, 'migrate');
    expect(m.code, m.stderr).to.equal(0);
    expect(m.json.applied).to.be.an('array');
    const u = await latch(env, 'users', 'create', '--email', 'root@example.test', '--password', 'a long enough password', '--superuser');
    expect(u.code, u.stderr).to.equal(0);
    expect(u.json).to.include({ email: 'root@example.test', superuser: true });
    const r = await latch(env, 'resources', 'create', '--identifier', 'urn:example:api', '--scope', 'a b', '--scope', 'c', '--ttl', '300', '--alg', 'EdDSA');
    expect(r.code, r.stderr).to.equal(0);
    expect(r.json).to.include({ identifier: 'urn:example:api', access_token_ttl: 300, alg: 'EdDSA' });
    expect(r.json.scopes).to.deep.equal(['a', 'b', 'c']);
    const c = await latch(env, 'clients', 'create', '--name', 'Post', '--grant', 'client_credentials', '--resource', 'urn:example:api', '--auth-method', 'client_secret_post');
    expect(c.code, c.stderr).to.equal(0);
    expect(c.json.token_endpoint_auth_method).to.equal('client_secret_post');
    expect(c.json.client_secret).to.be.a('string').with.length.at.least(43);
    const basic = await latch(env, 'clients', 'create', '--name', 'Default', '--redirect-uri', 'https://app.example.test/cb');
    expect(basic.json.token_endpoint_auth_method).to.equal('client_secret_basic');
    expect(basic.json.grant_types).to.deep.equal(['authorization_code', 'refresh_token']);
    const pub = await latch(env, 'clients', 'create', '--name', 'SPA', '--public', '--redirect-uri', 'http://localhost:5173/cb', '--web-origin', 'http://localhost:5173');
    expect(pub.json).to.include({ token_endpoint_auth_method: 'none', public: true });
    expect(pub.json).to.not.have.property('client_secret');
  });

  it('never stores a client secret in plaintext', async () => {
    const c = await latch(env, 'clients', 'create', '--name', 'Secretive', '--grant', 'client_credentials');
    const knex = openDatabase(loadConfig(env).database);
    try {
      const row = (await knex('clients').where({ id: c.json.client_id }).first()) as Record<string, unknown>;
      expect(JSON.stringify(row)).to.not.contain(c.json.client_secret);
      expect(row.secret_hash).to.match(/^[0-9a-f]{64}$/);
    } finally {
      await knex.destroy();
    }
  });

  it('answers bad input with one line on stderr and a non-zero exit', async () => {
    for (const args of [['frobnicate'], ['users', 'create', '--email', 'x@example.test'], ['clients', 'create', '--name', 'x', '--bogus'], ['resources', 'create', '--identifier', 'not a uri'], ['keys', 'retire', 'nope']]) {
      const r = await latch(env, ...args);
      expect(r.code, args.join(' ')).to.not.equal(0);
      expect(r.stderr.trim().split('\n'), args.join(' ')).to.have.length(1);
      expect(r.stderr).to.match(/^latch: /);
    }
    const badEnv = await latch({ ...env, PORT: 'nope' }, 'keys', 'list');
    expect(badEnv.code).to.not.equal(0);
    expect(badEnv.stderr.trim()).to.match(/^latch: invalid configuration: PORT /);
  });
});

describe('migrations', () => {
  it('go up, down and up again on a fresh database', async () => {
    const db = await freshDatabase();
    const knex = openDatabase(loadConfig({ DATABASE_URL: db.url, LATCH_SECRET: TEST_SECRET }).database);
    try {
      expect(await migrateLatest(knex)).to.have.length.at.least(1);
      for (const t of ['provider_state', 'clients', 'resource_servers', 'accounts', 'signing_keys', 'changes']) expect(await knex.schema.hasTable(t), t).to.equal(true);
      await migrateRollbackAll(knex);
      expect(await knex.schema.hasTable('clients')).to.equal(false);
      await migrateLatest(knex);
      expect(await knex.schema.hasTable('clients')).to.equal(true);
      // Emails are unique case-insensitively at the database level too.
      const row = { email_verified: false, active: true, superuser: false, created_at: 'x', updated_at: 'x' };
      await knex('accounts').insert({ id: '1', email: 'A@x.test', ...row });
      let failed = false;
      try {
        await knex('accounts').insert({ id: '2', email: 'a@X.TEST', ...row });
      } catch {
        failed = true;
      }
      expect(failed).to.equal(true);
    } finally {
      await knex.destroy();
      await db.drop();
    }
  });
});

describe('npm start entry point (src/index.ts in a child process)', function () {
  this.timeout(60_000);
  let child: ChildProcess | undefined;
  let db: TestDatabase;
  before(async () => {
    db = await freshDatabase();
  });
  after(async () => {
    child?.kill('SIGKILL');
    await db.drop();
  });

  it('refuses a bad configuration with one clear line', async () => {
    const r = await run(process.execPath, ['--import', 'tsx', join(ROOT, 'src/index.ts')], { env: { ...process.env, ACCESS_TOKEN_TTL: 'soon', DATABASE_URL: db.url, LATCH_SECRET: TEST_SECRET } }).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    expect(r.code).to.equal(1);
    const lines = r.stderr.split('\n').filter((l) => l && !l.startsWith('oidc-provider WARNING'));
    expect(lines).to.deep.equal(['latch: invalid configuration: ACCESS_TOKEN_TTL must be a whole number (got "soon")']);
  });

  it('serves discovery, creates ADMIN_EMAIL, and shuts down cleanly on SIGTERM', async () => {
    const port = await freePort();
    const dataDir = mkdtempSync(join(tmpdir(), 'latch-proc-'));
    child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/index.ts')], {
      env: { ...process.env, PORT: String(port), DATABASE_URL: db.url, DATA_DIR: dataDir, ADMIN_EMAIL: 'admin@example.test', ADMIN_PASSWORD: 'initial admin password', LATCH_SECRET: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    let discovery: Record<string, unknown> | undefined;
    for (let i = 0; i < 100 && !discovery; i++) {
      await new Promise((r) => setTimeout(r, 200));
      discovery = await fetch(`http://127.0.0.1:${port}/.well-known/openid-configuration`).then(
        (r) => r.json() as Promise<Record<string, unknown>>,
        () => undefined,
      );
    }
    expect(discovery, log).to.not.equal(undefined);
    expect(discovery!.issuer).to.equal(`http://localhost:${port}`);
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).to.equal(200);
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).to.equal(200);
    expect(log).to.contain('LATCH_SECRET is not set');
    expect(log).to.contain('administrator account created');
    const exited = new Promise<number | null>((resolve) => child!.on('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    expect(await exited).to.equal(0);
    child = undefined;
  });
});

describe('behind a TLS-terminating proxy (TRUST_PROXY=true)', () => {
  it('honours X-Forwarded-Proto: Secure cookies and an https issuer that works', async () => {
    const { startTestServer } = await import('./helpers/server.js');
    const { Agent } = await import('./helpers/agent.js');
    const srv = await startTestServer({ env: { TRUST_PROXY: 'true', ISSUER: 'https://auth.example.test', NODE_ENV: 'production' } });
    try {
      const c = await srv.cli('clients', 'create', '--name', 'App', '--redirect-uri', 'https://app.example.test/cb');
      const base = `http://127.0.0.1:${srv.port}`;
      const d = (await (await fetch(`${base}/.well-known/openid-configuration`, { headers: { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'auth.example.test' } })).json()) as { authorization_endpoint: string };
      expect(d.authorization_endpoint).to.equal('https://auth.example.test/auth');
      const agent = new Agent();
      const q = new URLSearchParams({ client_id: c.json.client_id, redirect_uri: 'https://app.example.test/cb', response_type: 'code', scope: 'openid', code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuz7-cVv7-M', code_challenge_method: 'S256' });
      const res = await agent.request(`${base}/auth?${q}`, { headers: { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'auth.example.test' } });
      expect(res.status).to.equal(303);
      const cookies = res.headers.getSetCookie();
      expect(cookies.length).to.be.greaterThan(0);
      for (const cookie of cookies) {
        expect(cookie.toLowerCase(), cookie).to.contain('; secure').and.contain('httponly').and.match(/samesite=(lax|none)/);
      }
      expect(res.headers.get('strict-transport-security')).to.contain('max-age=');
    } finally {
      await srv.close();
    }
  });

  it('readyz answers 503 when the database is gone', async () => {
    const { startTestServer } = await import('./helpers/server.js');
    const srv = await startTestServer();
    try {
      expect((await fetch(`${srv.url}/readyz`)).status).to.equal(200);
      await srv.running.db.destroy();
      const res = await fetch(`${srv.url}/readyz`);
      expect(res.status).to.equal(503);
      expect((await fetch(`${srv.url}/healthz`)).status).to.equal(200);
    } finally {
      await srv.close().catch(() => undefined);
    }
  });
});
