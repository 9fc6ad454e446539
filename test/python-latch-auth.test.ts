/**
 * latch_auth (packages/python) and the FastAPI example (examples/fastapi/app.py) against a real
 * Latch: this file makes the accounts, clients and tokens, writes them to a JSON file and runs
 * the Python unittest suite in packages/python/tests, which calls Latch, the verifier, its
 * legacy_client dependency and the example over real HTTP and WebSocket. The Python side needs Debian's python3-fastapi,
 * python3-uvicorn, python3-jwt, python3-httpx, python3-cryptography and python3-websockets.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { expect } from 'chai';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';

import { codeFlowTokens } from './helpers/agent.js';
import { runCommand } from './helpers/process.js';
import { startTestServer, type TestServer } from './helpers/server.js';

const REDIRECT = 'http://127.0.0.1:9/callback';
const API = 'https://items.example.test';
const SHORT_API = 'https://short.example.test';
const OTHER_API = 'https://other.example.test';
const ADA = { email: 'ada@example.test', password: 'correct horse battery staple' };
const ROOT = { email: 'root@example.test', password: 'superuser passphrase for root' };
/** Debian's interpreter has the packages; `python3` on PATH may be another one. */
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const DEBIAN_PACKAGES = 'python3-fastapi python3-uvicorn python3-jwt python3-httpx python3-cryptography python3-websockets';

type Client = { client_id: string; client_secret: string };

describe('latch_auth (Python) and the FastAPI example', function () {
  this.timeout(180_000);

  let srv: TestServer;
  let web: Client;
  let dir: string;

  const cli = async (...args: string[]) => {
    const r = await srv.cli(...args);
    expect(r.code, `${args.join(' ')}: ${r.stderr}`).to.equal(0);
    return r.json;
  };

  async function signIn(user: { email: string; password: string }, params: Record<string, string>) {
    return codeFlowTokens(srv.url, web, REDIRECT, user, params);
  }

  /** A personal access token made the way a user makes one through the API (shown once). */
  async function personalToken(accountToken: string, name: string): Promise<{ token: string; id: string }> {
    const res = await fetch(`${srv.url}/api/v1/me/tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${accountToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name, scopes: [`${API}:read`], expires_in_days: 1 }),
    });
    const body = (await res.json()) as { token: string; id: string };
    expect(res.status, JSON.stringify(body)).to.equal(201);
    expect(body.token).to.match(/^lat_/);
    return { token: body.token, id: body.id };
  }

  before(async function () {
    // Like the browser suite: without the Python packages it fails in CI and is skipped, visibly, elsewhere.
    const check = await runCommand(PYTHON, ['-c', 'import fastapi, uvicorn, jwt, httpx, cryptography, websockets'], {}, 60_000);
    if (check.code !== 0) {
      const help = `${PYTHON} cannot import the packages latch_auth and its example need: apt-get install ${DEBIAN_PACKAGES}`;
      if (process.env.CI) throw new Error(`${help}\n${check.output}`);
      console.warn(`\n  [latch_auth] SKIPPED: ${help}\n`);
      this.skip();
    }
    srv = await startTestServer({ changePollMs: 100 });
    dir = mkdtempSync(join(tmpdir(), 'latch-python-'));
  });

  after(async () => {
    if (!srv) return;
    rmSync(dir, { recursive: true, force: true });
    expect(srv.errors(), JSON.stringify(srv.errors())).to.deep.equal([]);
    await srv.close();
  });

  /** A client-credentials token bound by a DPoP proof (`token_type: DPoP`, `cnf.jkt`). */
  async function dpopBoundToken(client: Client, resource: string, scope: string): Promise<string> {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    const dpop = await new SignJWT({ htm: 'POST', htu: `${srv.url}/token` }).setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: await exportJWK(publicKey) }).setIssuedAt().setJti(randomUUID()).sign(privateKey);
    const res = await fetch(`${srv.url}/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`, dpop, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', scope, resource }),
    });
    const body = (await res.json()) as { token_type: string; access_token: string };
    expect(body.token_type).to.equal('DPoP');
    return body.access_token;
  }

  it('passes the Python suite: verifier checks, key rotation, introspection, and the example over HTTP and WebSocket', async () => {
    const ids: Record<string, string> = {};
    ids.ada = (await cli('users', 'create', '--email', ADA.email, '--password', ADA.password, '--email-verified')).id;
    ids.root = (await cli('users', 'create', '--email', ROOT.email, '--password', ROOT.password, '--superuser', '--email-verified')).id;
    const apiResource = `${srv.url}/api`;
    await cli('resources', 'create', '--identifier', API, '--scope', 'read', '--scope', 'write');
    // Tokens for this one expire a second after they are issued (the expiry case, on the real clock).
    await cli('resources', 'create', '--identifier', SHORT_API, '--scope', 'read', '--ttl', '1');
    await cli('resources', 'create', '--identifier', OTHER_API, '--scope', 'other:read');
    web = await cli('clients', 'create', '--name', 'Shop', '--first-party', '--redirect-uri', REDIRECT, '--resource', API, '--resource', SHORT_API, '--resource', OTHER_API, '--resource', apiResource, '--scope', 'openid email roles read write other:read account');
    const machine: Client = await cli('clients', 'create', '--name', 'Batch job', '--grant', 'client_credentials', '--resource', API, '--scope', 'read');
    const introspection: Client = await cli('clients', 'create', '--name', 'Items API', '--grant', 'client_credentials', '--resource', API);
    const ops: Client = await cli('clients', 'create', '--name', 'Ops', '--grant', 'client_credentials', '--resource', apiResource, '--scope', 'admin:read admin:write');
    await cli('roles', 'create', '--name', 'support');
    await cli('roles', 'assign', '--role', 'support', '--user', ADA.email);
    ids.acme = (await cli('orgs', 'create', '--name', 'Acme', '--slug', 'acme', '--owner', ADA.email)).id;
    ids.globex = (await cli('orgs', 'create', '--name', 'Globex', '--slug', 'globex', '--owner', ROOT.email)).id;
    await cli('orgs', 'members', 'add', '--org', 'globex', '--user', ADA.email);
    // A machine that used to send a site id and API token of its own (legacy_client).
    const site: Client = await cli('clients', 'create', '--name', 'Site', '--grant', 'client_credentials', '--resource', API, '--scope', 'read organizations');
    await cli('orgs', 'members', 'add', '--org', 'acme', '--client', site.client_id, '--role', 'member');
    await srv.running.services.feed.pollNow();

    const full = 'openid email roles read';
    const ada = await signIn(ADA, { scope: full, resource: API });
    const account = (await signIn(ADA, { scope: 'openid account', resource: apiResource })).access_token;
    const tokens = {
      ada: ada.access_token,
      id_token: ada.id_token!,
      ada_write: (await signIn(ADA, { scope: 'openid email roles write', resource: API })).access_token,
      ada_acme: (await signIn(ADA, { scope: full, resource: API, organization: ids.acme! })).access_token,
      ada_globex: (await signIn(ADA, { scope: full, resource: API, organization: ids.globex! })).access_token,
      root: (await signIn(ROOT, { scope: full, resource: API })).access_token,
      other: (await signIn(ADA, { scope: 'openid other:read', resource: OTHER_API })).access_token,
      short: (await signIn(ADA, { scope: 'openid read', resource: SHORT_API })).access_token,
      account,
      // RFC 9449: a token bound to a key the API never sees a proof of (refused as a bearer token).
      dpop_bound: await dpopBoundToken(machine, API, 'read'),
    };
    const fixtures = {
      issuer: srv.url,
      audience: API,
      short_audience: SHORT_API,
      other_audience: OTHER_API,
      api_resource: apiResource,
      web_client_id: web.client_id,
      ids,
      tokens,
      // One for the verifier's revocation case, one for the example.
      pat: await personalToken(account, 'python verifier'),
      pat_example: await personalToken(account, 'python example'),
      clients: { machine, introspection, ops, site },
    };
    const file = join(dir, 'fixtures.json');
    writeFileSync(file, JSON.stringify(fixtures, null, 2));

    const { code, output } = await runCommand(PYTHON, ['-m', 'unittest', 'discover', '-s', 'packages/python/tests', '-v'], { LATCH_TEST_FIXTURES: file, PYTHONDONTWRITEBYTECODE: '1', PYTHONUNBUFFERED: '1' }, 170_000);
    if (process.env.LATCH_TEST_LOG) process.stderr.write(output);
    expect(code, output).to.equal(0);
    // Every test ran: none skipped for want of the fixtures or a package.
    expect(output, output).to.match(/^OK$/m);
    expect(output, output).not.to.match(/skipped/i);
    const ran = Number(/^Ran (\d+) tests?/m.exec(output)?.[1] ?? 0);
    expect(ran, output).to.be.at.least(31);
  });
});
