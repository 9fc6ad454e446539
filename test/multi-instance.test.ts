import { createHash } from 'node:crypto';

import { expect } from 'chai';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';

import { Agent, authorize } from './helpers/agent.js';
import { crossInstanceFlow } from './helpers/cross-flow.js';
import { freshDatabase, startTestServer, type TestDatabase, type TestServer } from './helpers/server.js';

const API = 'urn:latch:test:api';

async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs: number): Promise<T> {
  const start = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const base = (srv: TestServer) => `http://127.0.0.1:${srv.port}`;
const jwksOf = async (srv: TestServer) => (await (await fetch(`${base(srv)}/jwks`)).json()) as JSONWebKeySet;

describe('two server processes on one database', () => {
  let db: TestDatabase;
  let a: TestServer;
  let b: TestServer;
  let machine: { client_id: string; client_secret: string };

  const ccToken = async (srv: TestServer, id = machine.client_id, secret = machine.client_secret) => {
    const res = await fetch(`${base(srv)}/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=client_credentials&scope=read',
    });
    return { status: res.status, body: (await res.json()) as Record<string, string> };
  };

  before(async () => {
    db = await freshDatabase();
    // Default change-feed polling (1 s), as in production.
    a = await startTestServer({ database: db, changePollMs: 1000 });
    // One service: both processes share the issuer (as behind a load balancer).
    b = await startTestServer({ database: db, changePollMs: 1000, env: { ISSUER: a.url } });
    expect((await a.cli('resources', 'create', '--identifier', API, '--scope', 'read', '--alg', 'RS256')).code).to.equal(0);
    const m = await a.cli('clients', 'create', '--name', 'Worker', '--grant', 'client_credentials', '--resource', API, '--scope', 'read');
    expect(m.code, m.stderr).to.equal(0);
    machine = m.json;
  });

  after(async () => {
    expect([...a.errors(), ...b.errors()]).to.deep.equal([]);
    await a.close();
    await b.close();
    await db.drop();
  });

  it('serves the same keys from both processes, stored encrypted', async () => {
    const [ja, jb] = await Promise.all([jwksOf(a), jwksOf(b)]);
    expect(ja.keys.map((k) => k.kid).sort()).to.deep.equal(jb.keys.map((k) => k.kid).sort());
    expect(ja.keys.map((k) => k.alg).sort()).to.deep.equal(['ES256', 'EdDSA', 'RS256']);
    for (const k of ja.keys) expect(k, 'no private parts published').to.not.have.any.keys('d', 'p', 'q', 'dp', 'dq', 'qi');
    const rows = (await a.running.db('signing_keys').select('private_jwk')) as { private_jwk: string }[];
    for (const r of rows) expect(r.private_jwk).to.match(/^v1\./).and.not.contain('"d"');
  });

  it('a client created through the CLI works at once on both processes; disabling it takes effect within 5 s', async () => {
    const t1 = await ccToken(a);
    const t2 = await ccToken(b);
    expect(t1.status).to.equal(200);
    expect(t2.status).to.equal(200);
    const extra = await a.cli('clients', 'create', '--name', 'Temp', '--grant', 'client_credentials', '--resource', API);
    expect((await ccToken(b, extra.json.client_id, extra.json.client_secret)).status).to.equal(200);
    const started = Date.now();
    expect((await a.cli('clients', 'disable', extra.json.client_id)).code).to.equal(0);
    await waitFor('client disabled on both', async () => (await ccToken(a, extra.json.client_id, extra.json.client_secret)).status === 401 && (await ccToken(b, extra.json.client_id, extra.json.client_secret)).status === 401, 5000);
    expect(Date.now() - started).to.be.below(5000);
    expect((await ccToken(b, extra.json.client_id, extra.json.client_secret)).body.error).to.equal('invalid_client');
  });

  it("an account change made elsewhere reaches the other process's tokens within the poll interval", async () => {
    const REDIRECT = 'http://127.0.0.1:9/cb';
    const user = { email: `renamed-${Date.now()}@example.test`, password: 'a passphrase for renaming' };
    expect((await a.cli('users', 'create', '--email', user.email, '--password', user.password, '--name', 'Old Name')).code).to.equal(0);
    const web = (await a.cli('clients', 'create', '--name', 'Web', '--redirect-uri', REDIRECT, '--first-party')).json as { client_id: string; client_secret: string };
    const post = async (srv: TestServer, body: Record<string, string>) => {
      const res = await fetch(`${base(srv)}/token`, { method: 'POST', headers: { authorization: `Basic ${Buffer.from(`${web.client_id}:${web.client_secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(body) });
      return { status: res.status, body: (await res.json()) as Record<string, string> };
    };
    const nameIn = (idToken: string) => decodeJwt(idToken).name;
    const verifier = 'w'.repeat(43);
    const q = new URLSearchParams({ client_id: web.client_id, redirect_uri: REDIRECT, response_type: 'code', scope: 'openid profile offline_access', prompt: 'consent', code_challenge: createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256' });
    const { callback } = await authorize(new Agent(), `${a.url}/auth?${q}`, REDIRECT, user);
    let tokens = await post(b, { grant_type: 'authorization_code', code: callback.searchParams.get('code')!, redirect_uri: REDIRECT, code_verifier: verifier });
    expect(tokens.status, JSON.stringify(tokens.body)).to.equal(200);
    expect(nameIn(tokens.body.id_token!)).to.equal('Old Name');
    tokens = await post(b, { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token! });
    expect(nameIn(tokens.body.id_token!)).to.equal('Old Name');
    // The CLI is a third process: B learns of the change through the change feed only.
    const started = Date.now();
    expect((await a.cli('users', 'update', '--email', user.email, '--name', 'New Name')).code).to.equal(0);
    await waitFor('the new name in B\'s ID tokens', async () => {
      tokens = await post(b, { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token! });
      expect(tokens.status, JSON.stringify(tokens.body)).to.equal(200);
      return nameIn(tokens.body.id_token!) === 'New Name';
    }, 5000);
    expect(Date.now() - started).to.be.below(5000);
  });

  it('a password change empties the token cache at once: the next tokens carry its updated_at', async () => {
    const accounts = a.running.services.accounts;
    const created = await a.cli('users', 'create', '--email', `rekeyed-${Date.now()}@example.test`, '--password', 'the first passphrase here');
    expect(created.code, created.stderr).to.equal(0);
    const id = created.json.id as string;
    const before = (await accounts.findForTokens(id))!.updatedAt;
    await new Promise((r) => setTimeout(r, 5));
    await accounts.setPassword(id, 'the second passphrase here');
    const stored = (await accounts.findById(id))!.updatedAt;
    expect(stored > before, `${stored} after ${before}`).to.equal(true);
    expect((await accounts.findForTokens(id))!.updatedAt).to.equal(stored);
  });

  it('picks up a key rotation done by the CLI within 10 s; tokens signed before it still verify', async () => {
    const before = await ccToken(a);
    const oldKid = decodeProtectedHeader(before.body.access_token!).kid;
    const rotated = await a.cli('keys', 'rotate');
    expect(rotated.code, rotated.stderr).to.equal(0);
    const newRs = (rotated.json.keys as { kid: string; alg: string; current: boolean }[]).find((k) => k.alg === 'RS256' && k.current)!;
    expect(newRs.kid).to.not.equal(oldKid);
    const started = Date.now();
    for (const srv of [a, b]) {
      await waitFor('new key published and used', async () => {
        const jwks = await jwksOf(srv);
        const t = await ccToken(srv);
        return jwks.keys.some((k) => k.kid === newRs.kid) && decodeProtectedHeader(t.body.access_token!).kid === newRs.kid;
      }, 10_000);
    }
    expect(Date.now() - started).to.be.below(10_000);
    // The old key stays published: the token signed before the rotation still verifies...
    for (const srv of [a, b]) {
      const { payload } = await jwtVerify(before.body.access_token!, createLocalJWKSet(await jwksOf(srv)), { issuer: a.url, audience: API });
      expect(payload.client_id).to.equal(machine.client_id);
    }
    // ... and introspects as active on the other process (B verifies what A signed).
    const rsClient = await b.cli('clients', 'create', '--name', 'RS', '--grant', 'client_credentials', '--resource', API);
    const introspect = async (token: string) => {
      const res = await fetch(`${base(b)}/token/introspection`, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from(`${rsClient.json.client_id}:${rsClient.json.client_secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token }),
      });
      return (await res.json()) as { active: boolean; client_id?: string };
    };
    expect(await introspect(before.body.access_token!)).to.include({ active: true, client_id: machine.client_id });

    // Retiring the old key removes it from JWKS everywhere.
    const listed = await a.cli('keys', 'list');
    expect(listed.json.filter((k: { status: string }) => k.status === 'active')).to.have.length(6);
    expect((await a.cli('keys', 'retire', '--', oldKid!)).code).to.equal(0);
    await waitFor('old key retired on B', async () => !(await jwksOf(b)).keys.some((k) => k.kid === oldKid), 10_000);
    const current = await a.cli('keys', 'retire', '--', newRs.kid);
    expect(current.code, 'the current key cannot be retired').to.not.equal(0);
  });

  it('behaves as one service: login on A, token on B, refresh on A, revoke on B', async () => {
    await crossInstanceFlow(base(a), base(b), a.cli);
  });
});
