/**
 * Moving a FastAPI app to Latch, end to end: the app's own data made by Python the way such apps
 * store it (examples/migrate-fastapi/seed.py: bcrypt from `bcrypt`, argon2id with pwdlib's
 * parameters from `argon2-cffi`), `latch import app` run on it (dry run, then for real, then
 * again), the old users signing in to Latch with their old passwords through the code flow, and
 * the app itself (examples/migrate-fastapi/app.py under uvicorn, switched to latch_auth) serving
 * them by their old ids: own items only, the superuser route, an organization route, an old
 * agent API key through introspection and a site's old headers through legacy_client.
 * Sources: the app's SQLite file (--map), a mongoexport-style jsonl export with ObjectId ids
 * (--preset fastapi-users-beanie) and the same tables on PostgreSQL (--preset fastapi-users).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { expect } from 'chai';
import pg from 'pg';

import { codeFlowTokens } from './helpers/agent.js';
import { runCommand } from './helpers/process.js';
import { freePort, onPostgres, startTestServer, type TestServer } from './helpers/server.js';

const ROOT_DIR = new URL('..', import.meta.url).pathname;
const EXAMPLE = join(ROOT_DIR, 'examples/migrate-fastapi');
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const REDIRECT = 'http://127.0.0.1:9/callback';
/** The API the example's map.yaml names. */
const API = 'https://api.example.com';
const SCOPE = 'openid email roles read';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

type Client = { client_id: string; client_secret: string };
type Section = { imported: number; skipped: number; unchanged: number };
type Summary = { users: Section; organizations: Section; memberships: Section; api_keys: Section; clients: Section; problems: { table: string; id: string | number; reason: string }[] };
interface SeedUser { id: string; name: string; email: string; password: string | null; hashed_password: string; is_active: boolean; is_superuser: boolean; is_verified: boolean }
interface Seed {
  users: SeedUser[];
  items: { owner_id: string; title: string }[];
  organizations?: { id: string; name: string; slug: string }[];
  memberships?: { user_id: string; organization_id: string; role: string }[];
  api_keys?: { id: string; user_id: string; name: string; key: string | null; key_prefix: string; key_hash: string }[];
  sites?: { uuid: string; name: string; organization_id: string; api_token: string }[];
}

const claimsOf = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
const byName = (seed: Seed, name: string) => seed.users.find((u) => u.name === name)!;

/** The app under uvicorn, switched to latch_auth. */
async function startApp(srv: TestServer, appDb: string, introspection: Client): Promise<{ url: string; stop(): Promise<void> }> {
  const port = await freePort();
  const child: ChildProcess = spawn(PYTHON, [join(EXAMPLE, 'app.py')], {
    cwd: ROOT_DIR,
    env: { ...process.env, APP_DB: appDb, LATCH_ISSUER: srv.url, LATCH_AUDIENCE: API, PORT: String(port), LATCH_INTROSPECTION_CLIENT_ID: introspection.client_id, LATCH_INTROSPECTION_CLIENT_SECRET: introspection.client_secret, PYTHONDONTWRITEBYTECODE: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`the app exited with ${child.exitCode}: ${output}`);
    const up = await fetch(`${url}/health`).then((r) => r.ok, () => false);
    if (up) break;
    if (i > 300) throw new Error(`the app did not answer /health: ${output}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      // The app logs at warning level: anything it printed is a failure (a traceback, a 500).
      expect(output, 'what the app logged').not.to.match(/Traceback|Exception|Error/);
    },
  };
}

async function getJson(url: string, token?: string, init: RequestInit = {}): Promise<{ status: number; body: any }> {
  const headers = new Headers(init.headers);
  if (token) headers.set('authorization', `Bearer ${token}`);
  const res = await fetch(url, { ...init, headers });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* not JSON: kept as text for the assertion message */
  }
  return { status: res.status, body };
}

/**
 * One migration: a fresh Latch, the API and its clients registered, and helpers to run the
 * import and sign the old users in.
 */
function migration(title: string, body: (ctx: { srv: () => TestServer; dir: () => string; web: () => Client; introspection: () => Client; importApp: (...args: string[]) => Promise<{ code: number; summary: Summary; stderr: string }>; signIn: (u: SeedUser, params?: Record<string, string>) => Promise<{ access_token: string; id_token?: string }> }) => void) {
  describe(title, function () {
    let srv: TestServer;
    let dir: string;
    let web: Client;
    let introspection: Client;

    const cli = async (...args: string[]) => {
      const r = await srv.cli(...args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).to.equal(0);
      return r.json;
    };

    before(async function () {
      const check = await runCommand(PYTHON, ['-c', 'import fastapi, uvicorn, jwt, httpx, bcrypt, argon2']);
      if (check.code !== 0) {
        const help = `${PYTHON} cannot import fastapi, uvicorn, jwt, httpx, bcrypt and argon2 (apt-get install python3-fastapi python3-uvicorn python3-jwt python3-httpx python3-bcrypt python3-argon2)`;
        if (process.env.CI) throw new Error(`${help}\n${check.output}`);
        console.warn(`\n  [migrate-fastapi] SKIPPED: ${help}\n`);
        this.skip();
      }
      srv = await startTestServer({ changePollMs: 100 });
      dir = mkdtempSync(join(tmpdir(), 'latch-migrate-'));
      await cli('resources', 'create', '--identifier', API, '--scope', 'read', '--scope', 'write');
      web = await cli('clients', 'create', '--name', 'The app', '--first-party', '--redirect-uri', REDIRECT, '--resource', API, '--scope', 'openid email roles read write');
      introspection = await cli('clients', 'create', '--name', 'The app (introspection)', '--grant', 'client_credentials', '--resource', API);
      await srv.running.services.feed.pollNow();
    });

    after(async () => {
      if (!srv) return;
      rmSync(dir, { recursive: true, force: true });
      expect(srv.errors(), JSON.stringify(srv.errors())).to.deep.equal([]);
      await srv.close();
    });

    body({
      srv: () => srv,
      dir: () => dir,
      web: () => web,
      introspection: () => introspection,
      async importApp(...args) {
        const r = await srv.cli('import', 'app', ...args);
        expect(r.code, `latch import app ${args.join(' ')}: ${r.stderr}${r.stdout}`).to.equal(0);
        expect(r.json, `a JSON summary: ${r.stdout}`).to.be.an('object');
        await srv.running.services.feed.pollNow();
        return { code: r.code, summary: r.json as Summary, stderr: r.stderr };
      },
      signIn: (u, params = {}) => codeFlowTokens(srv.url, web, REDIRECT, { email: u.email, password: u.password! }, { scope: SCOPE, resource: API, ...params }),
    });
  });
}

const SECTIONS = ['users', 'organizations', 'memberships', 'api_keys', 'clients'] as const;

/** Every section present with its three counts (the summary's fixed shape). */
function expectShape(summary: Summary): void {
  for (const s of SECTIONS) expect(summary[s], `section ${s}`).to.have.all.keys('imported', 'skipped', 'unchanged');
  expect(summary.problems).to.be.an('array');
}

describe('migrating a FastAPI app to Latch (latch import app, latch_auth)', function () {
  this.timeout(600_000);

  migration('the app on SQLite, imported with --map', (m) => {
    let seed: Seed;
    let appDb: string;
    let sourceHash: string;
    let app: Awaited<ReturnType<typeof startApp>>;
    const from = () => `sqlite:${appDb}`;
    const map = join(EXAMPLE, 'map.yaml');
    const tokens: Record<string, string> = {};
    let dryRun: Summary;

    before(async function () {
      appDb = join(m.dir(), 'app.sqlite');
      const made = await runCommand(PYTHON, [join(EXAMPLE, 'seed.py'), 'sqlite', appDb, join(m.dir(), 'seed.json')]);
      expect(made.code, made.output).to.equal(0);
      seed = JSON.parse(readFileSync(join(m.dir(), 'seed.json'), 'utf8')) as Seed;
      sourceHash = sha256(appDb);
    });

    after(async () => {
      await app?.stop();
    });

    it('a dry run reports what it would import and every row it would not, and changes nothing', async () => {
      const { summary } = await m.importApp('--from', from(), '--map', map, '--dry-run');
      expectShape(summary);
      // alice, bob, root, dave (inactive) and erin (unusable hash: imported without a password);
      // of the two mallorys whose emails differ only in case, at most the first.
      expect(summary.users.imported + summary.users.skipped, JSON.stringify(summary)).to.equal(7);
      expect(summary.users.imported, JSON.stringify(summary)).to.be.oneOf([5, 6]);
      expect(summary.organizations.imported).to.equal(1);
      expect(summary.memberships.imported).to.equal(2);
      expect(summary.api_keys).to.include({ imported: 1, skipped: 1 });
      expect(summary.clients.imported).to.equal(1);
      const problems = summary.problems.map((p) => `${p.table}:${String(p.id)}`);
      expect(problems, JSON.stringify(summary.problems)).to.include(`user:${byName(seed, 'erin').id}`);
      const mallory = seed.users.filter((u) => /mallory/i.test(u.email)).map((u) => `user:${u.id}`);
      expect(problems.some((p) => mallory.includes(p)), 'the case conflict is reported').to.equal(true);
      // The map gives api_keys no id column: the problem names the 1-based row.
      expect(problems).to.include('api_keys:2');
      for (const p of summary.problems) expect(p.reason, JSON.stringify(p)).to.be.a('string').and.not.equal('');

      const users = await m.srv().cli('users', 'list');
      expect(users.code, users.stderr).to.equal(0);
      expect(users.stdout).not.to.include('alice@example.test');
      expect(sha256(appDb)).to.equal(sourceHash);
      expect(readdirSync(m.dir()).filter((f) => /-(journal|wal|shm)$/.test(f))).to.deep.equal([]);
      dryRun = summary;
    });

    it('imports the users, organizations, memberships, agent keys and sites, reporting the broken rows', async () => {
      const { summary } = await m.importApp('--from', from(), '--map', map);
      expectShape(summary);
      // The dry run printed the same JSON, counting what would happen.
      expect(summary).to.deep.equal(dryRun);
      expect(sha256(appDb), 'the source is read only').to.equal(sourceHash);
      expect(readdirSync(m.dir()).filter((f) => /-(journal|wal|shm)$/.test(f))).to.deep.equal([]);
    });

    it('the old users sign in with their old passwords (bcrypt $2b$ and $2a$, pwdlib argon2id) and their sub is their old id', async () => {
      for (const name of ['alice', 'bob', 'root']) {
        const u = byName(seed, name);
        const t = await m.signIn(u);
        expect(claimsOf(t.id_token!).sub, name).to.equal(u.id);
        expect(claimsOf(t.access_token).sub, name).to.equal(u.id);
        tokens[name] = t.access_token;
      }
      expect(claimsOf(tokens.root!).is_superuser).to.equal(true);
      expect(claimsOf(tokens.alice!).is_superuser).to.not.equal(true);
      // An inactive user is imported deactivated: no sign-in.
      const dave = await m.signIn(byName(seed, 'dave')).then(() => 'signed in', () => 'refused');
      expect(dave).to.equal('refused');
    });

    it('the app, switched to latch_auth, serves each user only their items; the superuser route refuses the others', async () => {
      app = await startApp(m.srv(), appDb, m.introspection());
      const titles = (owner: string) => seed.items.filter((i) => i.owner_id === owner).map((i) => i.title);
      for (const name of ['alice', 'bob', 'root']) {
        const res = await getJson(`${app.url}/items`, tokens[name]);
        expect(res.status, JSON.stringify(res.body)).to.equal(200);
        expect(res.body).to.deep.equal({ user_id: byName(seed, name).id, source: 'jwt', items: titles(byName(seed, name).id) });
      }
      expect((await getJson(`${app.url}/items`)).status).to.equal(401);
      expect((await getJson(`${app.url}/admin/items`, tokens.alice)).status).to.equal(403);
      expect((await getJson(`${app.url}/admin/items`, tokens.bob)).status).to.equal(403);
      const all = await getJson(`${app.url}/admin/items`, tokens.root);
      expect(all.status).to.equal(200);
      expect(all.body.items).to.deep.equal(seed.items.map((i) => i.title));
    });

    it('an organization route sees the imported org_id and the mapped org_role', async () => {
      const acme = seed.organizations![0]!;
      for (const [name, role] of [['alice', 'owner'], ['bob', 'viewer']] as const) {
        const t = await m.signIn(byName(seed, name), { organization: acme.id });
        expect(claimsOf(t.access_token)).to.include({ sub: byName(seed, name).id, org_id: acme.id, org_role: role });
        const res = await getJson(`${app.url}/orgs/${acme.id}`, t.access_token);
        expect(res.status, JSON.stringify(res.body)).to.equal(200);
        expect(res.body).to.deep.equal({ org_id: acme.id, org_role: role, name: 'Acme' });
      }
      // A token for no organization is refused there.
      expect((await getJson(`${app.url}/orgs/${acme.id}`, tokens.alice)).status).to.equal(403);
    });

    it("an agent's old API key is accepted through introspection, as its owner", async () => {
      const key = seed.api_keys![0]!;
      const introspection = m.introspection();
      const res = await fetch(`${m.srv().url}/token/introspection`, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from(`${introspection.client_id}:${introspection.client_secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token: key.key! }),
      });
      const answer = (await res.json()) as Record<string, unknown>;
      expect(answer, JSON.stringify(answer)).to.include({ active: true, sub: key.user_id });
      const items = await getJson(`${app.url}/items`, key.key!);
      expect(items.status, JSON.stringify(items.body)).to.equal(200);
      expect(items.body).to.include({ user_id: key.user_id, source: 'introspection' });
      expect((await getJson(`${app.url}/items`, `${key.key!}x`)).status).to.equal(401);
    });

    it("a site's old X-Site-UUID / X-API-Token headers work through legacy_client", async () => {
      const site = seed.sites![0]!;
      const post = (headers: Record<string, string>) => getJson(`${app.url}/api/v1/modules/`, undefined, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify([{ machine_name: 'views', version: '10.3.8' }]) });
      const ok = await post({ 'X-Site-UUID': site.uuid, 'X-API-Token': site.api_token });
      expect(ok.status, JSON.stringify(ok.body)).to.equal(200);
      expect(ok.body).to.deep.equal({ site: site.name, client_id: site.uuid, org_id: site.organization_id, org_role: 'member', modules: 1 });
      expect((await post({ 'X-Site-UUID': site.uuid, 'X-API-Token': `${site.api_token}x` })).status).to.equal(401);
      expect((await post({ 'X-Site-UUID': site.uuid })).status).to.equal(401);
    });

    it('a second import changes nothing, and the passwords Latch upgraded keep working', async () => {
      const { summary } = await m.importApp('--from', from(), '--map', map);
      expectShape(summary);
      for (const s of SECTIONS) expect(summary[s].imported, `${s}: ${JSON.stringify(summary)}`).to.equal(0);
      expect(summary.users.unchanged).to.equal(dryRun.users.imported);
      expect(summary.api_keys.unchanged).to.equal(1);
      expect(summary.clients.unchanged).to.equal(1);
      for (const name of ['alice', 'bob']) expect(claimsOf((await m.signIn(byName(seed, name))).access_token).sub).to.equal(byName(seed, name).id);
      expect(sha256(appDb)).to.equal(sourceHash);
    });
  });

  migration('a MongoDB app: a mongoexport jsonl export with ObjectId ids (--preset fastapi-users-beanie)', (m) => {
    let seed: Seed;
    let appDb: string;
    let exportDir: string;

    before(async function () {
      exportDir = join(m.dir(), 'export');
      appDb = join(m.dir(), 'app.sqlite');
      const made = await runCommand(PYTHON, [join(EXAMPLE, 'seed.py'), 'jsonl', exportDir, appDb, join(m.dir(), 'seed.json')]);
      expect(made.code, made.output).to.equal(0);
      seed = JSON.parse(readFileSync(join(m.dir(), 'seed.json'), 'utf8')) as Seed;
    });

    it('imports the User collection, the old users sign in, and the app serves them by their ObjectIds', async () => {
      const file = join(exportDir, 'User.jsonl');
      const exported = sha256(file);
      const dry = (await m.importApp('--from', `jsonl:${exportDir}`, '--preset', 'fastapi-users-beanie', '--dry-run')).summary;
      expectShape(dry);
      const { summary } = await m.importApp('--from', `jsonl:${exportDir}`, '--preset', 'fastapi-users-beanie');
      expect(summary).to.deep.equal(dry);
      expect(summary.users.imported, JSON.stringify(summary)).to.equal(5);
      expect(summary.problems.map((p) => String(p.id))).to.include(byName(seed, 'erin').id);
      expect(sha256(file)).to.equal(exported);

      const app = await startApp(m.srv(), appDb, m.introspection());
      try {
        for (const name of ['alice', 'bob', 'root']) {
          const u = byName(seed, name);
          expect(u.id).to.match(/^[0-9a-f]{24}$/);
          const t = await m.signIn(u, {});
          expect(claimsOf(t.id_token!).sub).to.equal(u.id);
          const res = await getJson(`${app.url}/items`, t.access_token);
          expect(res.status, JSON.stringify(res.body)).to.equal(200);
          expect(res.body.items).to.deep.equal(seed.items.filter((i) => i.owner_id === u.id).map((i) => i.title));
          if (name === 'root') expect((await getJson(`${app.url}/admin/items`, t.access_token)).status).to.equal(200);
          else expect((await getJson(`${app.url}/admin/items`, t.access_token)).status).to.equal(403);
        }
      } finally {
        await app.stop();
      }
      const again = (await m.importApp('--from', `jsonl:${exportDir}`, '--preset', 'fastapi-users-beanie')).summary;
      expect(again.users).to.include({ imported: 0, unchanged: 5 });
    });
  });

  migration('the app on PostgreSQL (native uuid ids, --preset fastapi-users)', (m) => {
    let seed: Seed;
    let appDb: string;
    let source: { url: string; drop(): Promise<void> } | undefined;

    before(async function () {
      // A database of its own on the PostgreSQL server the suite uses (the shared one by default).
      const base = new URL(onPostgres ? process.env.DATABASE_URL! : (process.env.MIGRATE_SOURCE_POSTGRES ?? 'postgres://postgres@127.0.0.1:5432/postgres'));
      const name = `latch_migrate_src_${randomBytes(6).toString('hex')}`;
      const admin = new pg.Client({ connectionString: base.toString() });
      try {
        await admin.connect();
      } catch (err) {
        if (process.env.CI || onPostgres) throw err;
        console.warn(`\n  [migrate-fastapi] SKIPPED: no PostgreSQL at ${base.host} for the source database (MIGRATE_SOURCE_POSTGRES)\n`);
        this.skip();
      }
      try {
        await admin.query(`CREATE DATABASE ${name}`);
      } finally {
        await admin.end();
      }
      const url = new URL(base.toString());
      url.pathname = `/${name}`;
      source = {
        url: url.toString(),
        async drop() {
          const c = new pg.Client({ connectionString: base.toString() });
          await c.connect();
          try {
            await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
          } finally {
            await c.end();
          }
        },
      };
      appDb = join(m.dir(), 'app.sqlite');
      const made = await runCommand(PYTHON, [join(EXAMPLE, 'seed.py'), 'sqlite', appDb, join(m.dir(), 'seed.json')]);
      expect(made.code, made.output).to.equal(0);
      seed = JSON.parse(readFileSync(join(m.dir(), 'seed.json'), 'utf8')) as Seed;
      // fastapi-users' SQLAlchemy table on PostgreSQL: a native uuid id.
      const db = new pg.Client({ connectionString: source.url });
      await db.connect();
      try {
        await db.query('CREATE TABLE "user" (id uuid PRIMARY KEY, email varchar(320) NOT NULL UNIQUE, hashed_password varchar(1024) NOT NULL, is_active boolean NOT NULL, is_superuser boolean NOT NULL, is_verified boolean NOT NULL)');
        for (const u of seed.users) await db.query('INSERT INTO "user" VALUES ($1, $2, $3, $4, $5, $6)', [u.id.toUpperCase(), u.email, u.hashed_password, u.is_active, u.is_superuser, u.is_verified]);
      } finally {
        await db.end();
      }
    });

    after(async () => {
      await source?.drop();
    });

    it('imports the user table read-only; the old users sign in with their lower-case uuid as sub', async () => {
      const dry = (await m.importApp('--from', source!.url, '--preset', 'fastapi-users', '--dry-run')).summary;
      expectShape(dry);
      const { summary } = await m.importApp('--from', source!.url, '--preset', 'fastapi-users');
      expect(summary).to.deep.equal(dry);
      expect(summary.users.imported + summary.users.skipped, JSON.stringify(summary)).to.equal(7);
      const app = await startApp(m.srv(), appDb, m.introspection());
      try {
        for (const name of ['alice', 'bob']) {
          const u = byName(seed, name);
          const t = await m.signIn(u);
          const sub = claimsOf(t.access_token).sub as string;
          expect(sub).to.match(UUID).and.equal(u.id);
          const res = await getJson(`${app.url}/items`, t.access_token);
          expect(res.body.items).to.deep.equal(seed.items.filter((i) => i.owner_id === u.id).map((i) => i.title));
        }
      } finally {
        await app.stop();
      }
      const again = (await m.importApp('--from', source!.url, '--preset', 'fastapi-users')).summary;
      expect(again.users).to.include({ imported: 0, unchanged: summary.users.imported });
    });
  });
});
