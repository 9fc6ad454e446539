import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';

import { expect } from 'chai';
import type { Knex } from 'knex';

import { migrations } from '../migrations/index.js';
import type { AuditActor } from '../src/services/audit.js';
import { ConflictError, NotFoundError, ValidationError } from '../src/services/errors.js';
import { emailDomainAllowed } from '../src/services/identity-providers.js';
import { expectCovered, startApiHarness, type ApiHarness } from './helpers/api.js';
import { freshDatabase, startTestServer, type TestDatabase, type TestServer } from './helpers/server.js';

const BY: AuditActor = { actorId: 'test' };
const SECRET = 'upstream-client-secret-0123456789';

async function waitFor(what: string, fn: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await fn()) return Date.now() - start;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** An HTTP server that counts the requests it gets: the issuer that must not be contacted. */
async function countingServer(): Promise<{ url: string; hits: () => number; close: () => Promise<void> }> {
  let hits = 0;
  const server: Server = createServer((_req, res) => {
    hits++;
    res.statusCode = 404;
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, hits: () => hits, close: () => new Promise((r) => server.close(() => r())) };
}

describe('identity providers and linked identities', function () {
  this.timeout(120_000);
  let database: TestDatabase;
  let h: ApiHarness;
  let srv: TestServer;
  const call = (...args: Parameters<ApiHarness['call']>) => h.call(...args);
  const cliFails = async (...args: string[]) => {
    const r = await srv.cli(...args);
    expect(r.code, `${args.join(' ')} should fail`).to.not.equal(0);
    expect(r.stdout).to.equal('');
    return r.stderr;
  };
  const types = async (subjectId: string) => (await srv.running.services.audit.list({ subjectId })).map((e) => e.type);
  const account = async (email: string, password = true) => {
    const made = await h.cli('users', 'create', '--email', email, '--password', 'a long enough passphrase 42');
    if (!password) await srv.running.db('accounts').where({ id: made.id }).update({ password_hash: null });
    return made.id as string;
  };

  before(async () => {
    database = await freshDatabase();
    h = await startApiHarness({ database });
    srv = h.srv;
  });
  after(async () => {
    await h?.close();
    await database?.drop();
  });

  describe('CLI', () => {
    it('creates an oidc provider without contacting its issuer, with defaults and redirect_uri, never printing the secret', async () => {
      const issuer = await countingServer();
      try {
        const r = await srv.cli('idps', 'create', '--name', 'corp', '--kind', 'oidc', '--client-id', 'latch-at-corp', '--client-secret', SECRET, '--issuer', issuer.url, '--allowed-domain', 'Corp.Example', '--allowed-domain', 'example.org');
        expect(r.code, r.stderr).to.equal(0);
        expect(r.stdout).to.not.include(SECRET);
        expect(r.json).to.include({ id: 'corp', name: 'corp', display_name: 'corp', kind: 'oidc', issuer: issuer.url, client_id: 'latch-at-corp', link: 'ask', enabled: true, api_url: null, web_url: null, redirect_uri: `${srv.url}/federation/callback/corp` });
        expect(r.json.scopes).to.deep.equal(['openid', 'email', 'profile']);
        expect(r.json.allowed_domains).to.deep.equal(['corp.example', 'example.org']);
        expect(r.json).to.not.have.property('client_secret');
        expect(issuer.hits(), 'requests to the issuer').to.equal(0);
      } finally {
        await issuer.close();
      }
    });

    it('creates a github provider with the github.com defaults, or the URLs given; --scope is one space-separated string', async () => {
      const gh = await h.cli('idps', 'create', '--name', 'github', '--kind', 'github', '--client-id', 'Iv1.abc', '--client-secret', SECRET, '--display-name', 'GitHub', '--link', 'never', '--disabled');
      expect(gh).to.include({ kind: 'github', issuer: null, api_url: 'https://api.github.com', web_url: 'https://github.com', link: 'never', enabled: false, display_name: 'GitHub' });
      expect(gh.scopes).to.deep.equal(['read:user', 'user:email']);
      const ghe = await h.cli('idps', 'create', '--name', 'ghe', '--kind', 'github', '--client-id', 'x', '--client-secret', 'y', '--api-url', 'http://localhost:9/api/v3/', '--web-url', 'https://ghe.example.com', '--scope', 'read:user user:email read:org');
      expect(ghe).to.include({ api_url: 'http://localhost:9/api/v3', web_url: 'https://ghe.example.com' });
      expect(ghe.scopes).to.deep.equal(['read:user', 'user:email', 'read:org']);
      const listed = await h.cli('idps', 'list');
      expect(listed).to.be.an('array');
      expect(listed.map((p: { name: string }) => p.name)).to.include.members(['corp', 'github', 'ghe']);
      for (const p of listed) expect(p).to.have.property('redirect_uri').and.not.have.property('client_secret');
    });

    it('update replaces the given fields and keeps the others (the secret too); --enabled / --disabled switch', async () => {
      // The CLI is another process as far as the server's cache knows: its changes reach the server
      // through the change feed, polled here rather than waited for.
      await srv.running.services.feed.pollNow();
      const before = (await srv.running.services.identityProviders.forSignIn('ghe'))!;
      expect(before, 'ghe, created by the CLI, seen by the server').to.not.equal(undefined);
      const u = await h.cli('idps', 'update', 'ghe', '--display-name', 'GitHub Enterprise', '--allowed-domain', 'ghe.example.com', '--disabled');
      expect(u).to.include({ display_name: 'GitHub Enterprise', enabled: false, client_id: 'x', web_url: 'https://ghe.example.com', link: 'ask' });
      expect(u.allowed_domains).to.deep.equal(['ghe.example.com']);
      expect(u.scopes).to.deep.equal(['read:user', 'user:email', 'read:org']);
      await srv.running.services.feed.pollNow();
      const after = (await srv.running.services.identityProviders.forSignIn('ghe'))!;
      expect(after.clientSecret).to.equal(before.clientSecret).and.equal('y');
      expect((await h.cli('idps', 'update', 'ghe', '--enabled', '--client-secret', 'new-secret')).enabled).to.equal(true);
      // The CLI is another process as far as the server's cache knows: the change reaches it through the feed.
      await srv.running.services.feed.pollNow();
      expect((await srv.running.services.identityProviders.forSignIn('ghe'))!.clientSecret).to.equal('new-secret');
      // `--allowed-domain ''` clears the list; a null-like API value restores the github default URL.
      expect((await h.cli('idps', 'update', 'ghe', '--allowed-domain', '')).allowed_domains).to.deep.equal([]);
      const audit = await srv.running.services.audit.list({ subjectId: 'ghe' });
      const update = audit.find((e) => e.type === 'identity_provider.update' && (e.details as Record<string, unknown>).client_secret_changed === true);
      expect(update, 'the secret change is audited as a change').to.exist;
      expect(JSON.stringify(audit)).to.not.include('new-secret');
    });

    it('--client-secret-stdin reads the secret from standard input (never on the command line), and refuses it with --client-secret', async () => {
      // The real CLI as a separate process, its stdin a pipe: what `printf %s "$S" | latch idps …` does.
      const run = (args: string[], input: string) =>
        new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
          const child = spawn(process.execPath, [join(process.cwd(), 'bin/latch.js'), ...args], { env: { ...process.env, ...srv.env }, stdio: ['pipe', 'pipe', 'pipe'] });
          let stdout = '';
          let stderr = '';
          child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
          child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
          child.once('exit', (code) => resolve({ code, stdout, stderr }));
          child.stdin.end(input);
        });
      const created = await run(['idps', 'create', '--name', 'piped', '--kind', 'github', '--client-id', 'Iv1.piped', '--client-secret-stdin'], 'from-stdin-secret\n');
      expect(created.code, created.stderr).to.equal(0);
      expect(JSON.parse(created.stdout)).to.include({ name: 'piped', client_id: 'Iv1.piped' });
      await srv.running.services.feed.pollNow();
      expect((await srv.running.services.identityProviders.forSignIn('piped'))!.clientSecret, 'the final line break is not part of the secret').to.equal('from-stdin-secret');
      const updated = await run(['idps', 'update', 'piped', '--client-secret-stdin'], 'rotated-secret');
      expect(updated.code, updated.stderr).to.equal(0);
      await srv.running.services.feed.pollNow();
      expect((await srv.running.services.identityProviders.forSignIn('piped'))!.clientSecret).to.equal('rotated-secret');
      const both = await run(['idps', 'update', 'piped', '--client-secret', 'x', '--client-secret-stdin'], 'y');
      expect(both.code, 'a usage error').to.equal(2);
      expect(both.stderr).to.match(/--client-secret or --client-secret-stdin, not both/);
      const empty = await run(['idps', 'create', '--name', 'empty', '--kind', 'github', '--client-id', 'a', '--client-secret-stdin'], '');
      expect(empty.code, 'a usage error').to.equal(2);
      expect(empty.stderr).to.match(/standard input is empty/);
      expect((await run(['idps', 'delete', 'piped'], '')).code).to.equal(0);
    });

    it('refuses bad input with one line naming the flag, and a taken name', async () => {
      expect(await cliFails('idps', 'create', '--name', 'Bad_Name', '--kind', 'oidc', '--client-id', 'a', '--client-secret', 'b', '--issuer', 'https://idp.example')).to.match(/--name /);
      expect(await cliFails('idps', 'create', '--name', 'x', '--kind', 'saml', '--client-id', 'a', '--client-secret', 'b')).to.match(/--kind must be one of oidc, github/);
      expect(await cliFails('idps', 'create', '--name', 'x', '--kind', 'oidc', '--client-id', 'a', '--client-secret', 'b')).to.match(/--issuer is required/);
      expect(await cliFails('idps', 'create', '--name', 'x', '--kind', 'oidc', '--client-id', 'a', '--client-secret', 'b', '--issuer', 'http://idp.example.com')).to.match(/--issuer must be an https URL/);
      expect(await cliFails('idps', 'create', '--name', 'x', '--kind', 'oidc', '--client-id', 'a', '--client-secret', 'b', '--issuer', 'https://idp.example.com/?q=1')).to.match(/--issuer must not contain a query/);
      expect(await cliFails('idps', 'create', '--name', 'x', '--kind', 'oidc', '--client-id', 'a', '--client-secret', 'b', '--issuer', 'https://idp.example.com', '--scope', 'email profile')).to.match(/--scope must include openid/);
      expect(await cliFails('idps', 'create', '--name', 'x', '--kind', 'github', '--client-id', 'a', '--client-secret', 'b', '--issuer', 'https://idp.example.com')).to.match(/--issuer is only for kind oidc/);
      expect(await cliFails('idps', 'create', '--name', 'x', '--kind', 'github', '--client-id', 'a', '--client-secret', 'b', '--api-url', 'http://api.example.com')).to.match(/--api-url must be an https URL/);
      expect(await cliFails('idps', 'create', '--name', 'x', '--kind', 'github', '--client-id', 'a', '--client-secret', 'b', '--link', 'always')).to.match(/--link must be one of auto, ask, never/);
      expect(await cliFails('idps', 'create', '--name', 'x', '--kind', 'github', '--client-id', 'a', '--client-secret', 'b', '--allowed-domain', 'not a domain!')).to.match(/--allowed-domain/);
      expect(await cliFails('idps', 'create', '--name', 'x', '--kind', 'github', '--client-id', 'a')).to.match(/--client-secret is required/);
      expect(await cliFails('idps', 'create', '--name', 'corp', '--kind', 'github', '--client-id', 'a', '--client-secret', 'b')).to.match(/already exists/);
      expect(await cliFails('idps', 'update', 'ghe', '--kind', 'oidc')).to.match(/--kind cannot be changed/);
      expect(await cliFails('idps', 'update', 'ghe', '--enabled', '--disabled')).to.match(/not both/);
      expect(await cliFails('idps', 'update', 'nope', '--enabled')).to.match(/not found/);
      expect(await cliFails('idps', 'delete', 'nope')).to.match(/not found/);
      expect((await h.cli('idps', 'list')).map((p: { name: string }) => p.name)).to.not.include('x');
    });

    it('stores the client secret encrypted under LATCH_SECRET, never in plaintext, and never in the audit trail', async () => {
      const rows = (await srv.running.db('identity_providers').select('name', 'client_secret')) as { name: string; client_secret: string }[];
      expect(rows.length).to.be.greaterThan(2);
      for (const r of rows) expect(r.client_secret).to.match(/^v1\./).and.not.include(SECRET).and.not.include('new-secret');
      expect((await srv.running.services.identityProviders.forSignIn('corp'))!.clientSecret).to.equal(SECRET);
      const events = await srv.running.services.audit.list({ type: 'identity_provider.create' });
      expect(events.length).to.be.greaterThan(2);
      expect(JSON.stringify(await srv.running.services.audit.list({ limit: 1000 }))).to.not.include(SECRET);
    });
  });

  describe('admin API', () => {
    it('creates, lists, gets, updates and deletes; the secret is write-only; scopes are an array', async () => {
      const created = await call('POST', '/api/v1/identity-providers', { token: h.admin, body: { name: 'google', kind: 'oidc', issuer: 'https://accounts.google.com', client_id: 'g-id', client_secret: SECRET, display_name: 'Google', link: 'auto' } });
      expect(created.status, JSON.stringify(created.json)).to.equal(201);
      expect(created.headers.get('location')).to.equal(`${srv.url}/api/v1/identity-providers/google`);
      expect(created.json).to.include({ id: 'google', redirect_uri: `${srv.url}/federation/callback/google`, link: 'auto' });
      expect(JSON.stringify(created.json)).to.not.include(SECRET);
      const list = await call('GET', '/api/v1/identity-providers?limit=2', { token: h.reader });
      expect(list.json.data).to.have.length(2);
      expect(list.json.next_cursor).to.be.a('string');
      const rest = await call('GET', `/api/v1/identity-providers?cursor=${list.json.next_cursor}`, { token: h.reader });
      expect([...list.json.data, ...rest.json.data].map((p: { name: string }) => p.name).sort()).to.deep.equal(['corp', 'ghe', 'github', 'google']);
      expect(JSON.stringify([list.json, rest.json])).to.not.include(SECRET).and.not.include('client_secret');
      const got = await call('GET', '/api/v1/identity-providers/google', { token: h.reader });
      expect(got.json).to.deep.equal(created.json);
      expect(JSON.stringify(got.json)).to.not.include(SECRET);

      expect((await call('PATCH', '/api/v1/identity-providers/google', { token: h.admin, body: { enabled: false }, headers: { 'if-match': '"stale"' } })).status).to.equal(412);
      const patched = await call('PATCH', '/api/v1/identity-providers/google', { token: h.admin, body: { scopes: ['openid', 'email'], allowed_domains: ['Example.COM'] }, headers: { 'if-match': got.headers.get('etag')! } });
      expect(patched.status, JSON.stringify(patched.json)).to.equal(200);
      expect(patched.json).to.include({ client_id: 'g-id', display_name: 'Google', link: 'auto' });
      expect(patched.json.scopes).to.deep.equal(['openid', 'email']);
      expect(patched.json.allowed_domains).to.deep.equal(['example.com']);
      expect((await srv.running.services.identityProviders.forSignIn('google'))!.clientSecret, 'the secret is kept').to.equal(SECRET);
      const resetUrls = await call('PATCH', '/api/v1/identity-providers/ghe', { token: h.admin, body: { api_url: null } });
      expect(resetUrls.json.api_url).to.equal('https://api.github.com');

      const bad = await call('POST', '/api/v1/identity-providers', { token: h.admin, body: { name: 'bad', kind: 'oidc', issuer: 'http://evil.example', client_id: 'a', client_secret: 'x' } });
      expect(bad.status).to.equal(422);
      expect(bad.json.errors.map((e: { field: string }) => e.field)).to.include('issuer');
      expect((await call('POST', '/api/v1/identity-providers', { token: h.admin, body: { name: 'UPPER', kind: 'github', client_id: 'a', client_secret: 'b' } })).json.errors[0].field).to.equal('name');
      expect((await call('PATCH', '/api/v1/identity-providers/google', { token: h.admin, body: { kind: 'github' } })).status).to.equal(422);
      expect((await call('PATCH', '/api/v1/identity-providers/google', { token: h.admin, body: { client_secret: 5 } })).status).to.equal(422);
      expect((await call('POST', '/api/v1/identity-providers', { token: h.admin, body: { name: 'google', kind: 'github', client_id: 'a', client_secret: 'b' } })).status).to.equal(409);
      expect((await call('POST', '/api/v1/identity-providers', { token: h.reader, body: { name: 'r', kind: 'github', client_id: 'a', client_secret: 'b' } })).status).to.equal(403);
      expect((await call('GET', '/api/v1/identity-providers/nope', { token: h.reader })).status).to.equal(404);
      expect((await call('DELETE', '/api/v1/identity-providers/nope', { token: h.admin })).status).to.equal(404);
      expect(await types('google')).to.include.members(['identity_provider.create', 'identity_provider.update']);
    });
  });

  describe('linked identities', () => {
    let alice: string;
    let bob: string;

    before(async () => {
      alice = await account('alice@example.test');
      bob = await account('bob@example.test', false);
    });

    it('links, finds by subject, records sign-ins and lists an account\'s identities', async () => {
      const fed = srv.running.services.federatedIdentities;
      const link = await fed.link({ accountId: alice, provider: 'corp', subject: 'corp-1001', email: 'alice@corp.example', method: 'auto' }, BY);
      expect(link).to.include({ accountId: alice, provider: 'corp', subject: 'corp-1001', email: 'alice@corp.example', lastLoginAt: null });
      expect((await fed.findBySubject('corp', 'corp-1001'))?.accountId).to.equal(alice);
      expect(await fed.findBySubject('github', 'corp-1001')).to.equal(undefined);
      await fed.recordLogin(link.id, 'alice.new@corp.example');
      const [listed] = await fed.listForAccount(alice);
      expect(listed).to.include({ provider: 'corp', displayName: 'corp', email: 'alice.new@corp.example' });
      expect(listed!.lastLoginAt).to.be.a('string');
      expect(await fed.waysIn(alice)).to.deep.equal({ password: true, identities: 1 });

      // One account per upstream identity, one identity per provider and account.
      expect(await fed.link({ accountId: bob, provider: 'corp', subject: 'corp-1001', email: null }, BY).catch((e: unknown) => e)).to.be.instanceOf(ConflictError);
      expect(await fed.link({ accountId: alice, provider: 'corp', subject: 'corp-2002', email: null }, BY).catch((e: unknown) => e)).to.be.instanceOf(ConflictError);
      expect(await fed.link({ accountId: alice, provider: 'nope', subject: 's', email: null }, BY).catch((e: unknown) => e)).to.be.instanceOf(NotFoundError);
      expect(await fed.link({ accountId: 'no-such-account', provider: 'corp', subject: 's', email: null }, BY).catch((e: unknown) => e)).to.be.instanceOf(NotFoundError);
      expect(await fed.link({ accountId: alice, provider: 'github', subject: '', email: null }, BY).catch((e: unknown) => e)).to.be.instanceOf(ValidationError);
      expect(await types(alice)).to.include('federation.link');

      const api = await call('GET', `/api/v1/users/${alice}/identities`, { token: h.reader });
      expect(api.status).to.equal(200);
      expect(api.json.data).to.have.length(1);
      expect(api.json.data[0]).to.include({ id: 'corp', provider: 'corp', display_name: 'corp', subject: 'corp-1001', email: 'alice.new@corp.example' });
      expect((await call('GET', '/api/v1/users/nope/identities', { token: h.reader })).status).to.equal(404);
    });

    it('unlinks through the API; the last way in (no password, no other link) is refused with 409', async () => {
      const fed = srv.running.services.federatedIdentities;
      await fed.link({ accountId: bob, provider: 'corp', subject: 'corp-bob', email: 'bob@corp.example' }, BY);
      await fed.link({ accountId: bob, provider: 'github', subject: '4242', email: 'bob@example.test' }, BY);
      expect(await fed.waysIn(bob)).to.deep.equal({ password: false, identities: 2 });
      expect((await call('DELETE', `/api/v1/users/${bob}/identities/corp`, { token: h.reader })).status).to.equal(403);
      expect((await call('DELETE', `/api/v1/users/${bob}/identities/corp`, { token: h.admin })).status).to.equal(204);
      const last = await call('DELETE', `/api/v1/users/${bob}/identities/github`, { token: h.admin });
      expect(last.status).to.equal(409);
      expect(last.json.detail).to.match(/last way to sign in/);
      expect((await fed.listForAccount(bob)).map((l) => l.provider)).to.deep.equal(['github']);
      expect((await call('DELETE', `/api/v1/users/${bob}/identities/corp`, { token: h.admin })).status).to.equal(404);
      // With a password, the only link may go.
      expect((await call('DELETE', `/api/v1/users/${alice}/identities/corp`, { token: h.admin })).status).to.equal(204);
      expect(await fed.listForAccount(alice)).to.deep.equal([]);
      const unlinks = (await srv.running.services.audit.list({ subjectId: bob })).filter((e) => e.type === 'federation.unlink');
      expect(unlinks).to.have.length(1);
      expect(unlinks[0]!.details).to.include({ provider: 'corp', via: 'api' });
    });

    it('two unlinks at once cannot both pass the last-way-in check', async () => {
      const fed = srv.running.services.federatedIdentities;
      const carol = await account('carol@example.test', false);
      await fed.link({ accountId: carol, provider: 'corp', subject: 'corp-carol', email: null }, BY);
      await fed.link({ accountId: carol, provider: 'ghe', subject: '77', email: null }, BY);
      const results = await Promise.allSettled([fed.unlink(carol, 'corp', BY), fed.unlink(carol, 'ghe', BY)]);
      expect(results.filter((r) => r.status === 'fulfilled')).to.have.length(1);
      const refused = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(refused?.reason).to.be.instanceOf(ConflictError);
      expect(await fed.listForAccount(carol)).to.have.length(1);
    });

    it('deleting a provider deletes its links in the same change, each audited; erasing an account deletes its links', async () => {
      const fed = srv.running.services.federatedIdentities;
      const dave = await account('dave@example.test');
      await fed.link({ accountId: dave, provider: 'ghe', subject: '9001', email: 'dave@ghe.example.com' }, BY);
      expect((await call('DELETE', '/api/v1/identity-providers/ghe', { token: h.admin })).status).to.equal(204);
      expect(await fed.findBySubject('ghe', '9001')).to.equal(undefined);
      expect(await srv.running.db('federated_identities').where({ provider: 'ghe' }).count({ n: '*' }).first()).to.satisfy((r: { n: number | string }) => Number(r.n) === 0);
      const unlink = (await srv.running.services.audit.list({ subjectId: dave })).find((e) => e.type === 'federation.unlink');
      expect(unlink?.details).to.include({ provider: 'ghe', reason: 'provider_deleted' });
      const deleted = (await srv.running.services.audit.list({ subjectId: 'ghe' })).find((e) => e.type === 'identity_provider.delete');
      expect((deleted?.details as Record<string, unknown>).links_deleted).to.be.greaterThan(0);
      expect((await call('GET', '/api/v1/identity-providers/ghe', { token: h.reader })).status).to.equal(404);

      const link = await fed.link({ accountId: dave, provider: 'corp', subject: 'corp-dave', email: null }, BY);
      await fed.recordLogin(link.id, 'dave.upstream@corp.example');
      // An event naming the upstream address (as a sign-in's may): erased with the account's own.
      await srv.running.services.audit.record({ type: 'federation.login', subjectId: dave, details: { provider: 'corp', email: 'dave.upstream@corp.example' } });
      expect((await call('DELETE', `/api/v1/users/${dave}`, { token: h.admin })).status).to.equal(204);
      expect(await fed.findBySubject('corp', 'corp-dave')).to.equal(undefined);
      expect(JSON.stringify(await srv.running.services.audit.list({ limit: 1000 }))).to.not.include('dave.upstream@corp.example');
    });

    it('deletes with the CLI too', async () => {
      expect(await h.cli('idps', 'delete', 'github')).to.deep.equal({ name: 'github', deleted: true });
      expect((await h.cli('idps', 'list')).map((p: { name: string }) => p.name)).to.not.include('github');
    });
  });

  describe('every instance', () => {
    let b: TestServer;
    before(async () => {
      // A second process on the same database, polling the change feed at the production pace.
      b = await startTestServer({ database, changePollMs: 1000, env: { ISSUER: srv.url } });
    });
    after(async () => {
      expect(b.errors()).to.deep.equal([]);
      await b.close();
    });

    it('sees a created, updated and disabled provider within 5 s (cached sign-in view)', async () => {
      const other = b.running.services.identityProviders;
      // Fill the other instance's cache first: the change must reach it through the feed.
      expect((await other.enabled()).map((p) => p.name)).to.not.include('okta');
      expect(await other.forSignIn('okta')).to.equal(undefined);
      await h.cli('idps', 'create', '--name', 'okta', '--kind', 'oidc', '--client-id', 'o', '--client-secret', 'first', '--issuer', 'https://okta.example.com', '--display-name', 'Okta');
      expect(await waitFor('created on the other instance', async () => (await other.enabled()).some((p) => p.name === 'okta'), 5000)).to.be.below(5000);
      expect((await other.forSignIn('okta'))!.clientSecret).to.equal('first');

      expect((await call('PATCH', '/api/v1/identity-providers/okta', { token: h.admin, body: { client_secret: 'second' } })).status).to.equal(200);
      expect(await waitFor('new secret on the other instance', async () => (await other.forSignIn('okta'))?.clientSecret === 'second', 5000)).to.be.below(5000);

      await h.cli('idps', 'update', 'okta', '--disabled');
      expect(await waitFor('disabled on the other instance', async () => !(await other.enabled()).some((p) => p.name === 'okta'), 5000)).to.be.below(5000);
      expect((await other.forSignIn('okta'))!.enabled).to.equal(false);
      const enabled = await other.enabled();
      expect(enabled.every((p) => p.enabled)).to.equal(true);
      expect(JSON.stringify(enabled)).to.not.include('second');

      expect((await call('DELETE', '/api/v1/identity-providers/okta', { token: h.admin })).status).to.equal(204);
      expect(await waitFor('deleted on the other instance', async () => (await other.forSignIn('okta')) === undefined, 5000)).to.be.below(5000);
    });
  });

  describe('contract', () => {
    it('allowed domains are matched exactly, case-insensitively; none allows any', () => {
      expect(emailDomainAllowed({ allowedDomains: [] }, 'a@b.c')).to.equal(true);
      expect(emailDomainAllowed({ allowedDomains: ['example.com'] }, 'A@Example.COM')).to.equal(true);
      expect(emailDomainAllowed({ allowedDomains: ['example.com'] }, 'a@sub.example.com')).to.equal(false);
      expect(emailDomainAllowed({ allowedDomains: ['example.com'] }, 'a@example.com.evil')).to.equal(false);
      expect(emailDomainAllowed({ allowedDomains: ['example.com'] }, 'example.com')).to.equal(false);
    });

    it('every identity provider and identities operation answered a 2xx that validated against openapi.yaml', () => {
      expectCovered('/api/v1/identity-providers', '/api/v1/users/{id}/identities');
    });
  });
});

/** The migrations, for rolling back one at a time. */
const migrator: Knex.MigratorConfig = {
  tableName: 'knex_migrations',
  migrationSource: {
    getMigrations: () => Promise.resolve(Object.keys(migrations)),
    getMigrationName: (name: string) => name,
    getMigration: (name: string) => Promise.resolve(migrations[name]!),
  },
};

describe('migration 20261207000000_federation', () => {
  it('goes up, down and up again', async () => {
    const db = await freshDatabase();
    const srv = await startTestServer({ database: db, keepDatabase: true });
    const knex = srv.running.db;
    try {
      await srv.cli('idps', 'create', '--name', 'kept', '--kind', 'github', '--client-id', 'a', '--client-secret', 'b');
      expect(await knex.schema.hasTable('federated_identities')).to.equal(true);
      for (let i = 0; i < 10; i++) {
        const [done] = (await knex.migrate.list(migrator)) as [{ name: string }[], unknown[]];
        if (!done.some((m) => m.name === '20261207000000_federation')) break;
        await knex.migrate.down(migrator);
      }
      expect(await knex.schema.hasTable('identity_providers')).to.equal(false);
      expect(await knex.schema.hasTable('federated_identities')).to.equal(false);
      await knex.migrate.latest(migrator);
      expect(await knex.schema.hasTable('identity_providers')).to.equal(true);
      expect(await knex.schema.hasTable('federated_identities')).to.equal(true);
    } finally {
      await srv.close();
      await db.drop();
    }
  });
});
