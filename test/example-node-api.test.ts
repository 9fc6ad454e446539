/**
 * examples/node-api/server.js as users run it: `node examples/node-api/server.js` in a child
 * process (plain Node, no loader), against a real Latch over real HTTP and WebSocket, with tokens
 * got by signing in through Latch's pages. Fixtures go through the `latch` CLI.
 */
import { spawn, spawnSync } from 'node:child_process';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';

import { expect } from 'chai';
import WebSocket from 'ws';

import { codeFlowTokens } from './helpers/agent.js';
import { ROOT } from './helpers/markdown.js';
import { freePort, startTestServer, type TestServer } from './helpers/server.js';

const REDIRECT = 'http://127.0.0.1:9/callback';
const API = 'https://items.example.test';
const OTHER_API = 'https://other.example.test';
const ADA = { email: 'ada@example.test', password: 'correct horse battery staple' };
const BOB = { email: 'bob@example.test', password: 'bob walks along the quiet river' };
const ROOT_USER = { email: 'root@example.test', password: 'superuser passphrase for root' };

type Client = { client_id: string; client_secret: string };

/** One running copy of the example. */
interface Example {
  url: string;
  ws: string;
  /** Everything it printed on stdout and stderr. */
  output(): string;
  /** Undefined while it runs; its exit code or signal once it has stopped. */
  exited(): number | string | undefined;
  stop(): Promise<void>;
}

/** A frame the way a stack trace prints one: `    at fn (file:line:col)`. */
const STACK_FRAME = /^\s+at .+:\d+:\d+\)?$/m;

describe('examples/node-api (Koa + @latch/verify), run with node', function () {
  this.timeout(90_000);

  let srv: TestServer;
  let web: Client;
  let rs: Client;
  let acme: { id: string };
  let globex: { id: string };
  const ids: Record<string, string> = {};
  /** Without introspection credentials, and with them (personal access tokens work there only). */
  let plain: Example;
  let introspecting: Example;
  const examples: Example[] = [];
  const tokens: Record<string, string> = {};

  const cli = async (...args: string[]) => {
    const r = await srv.cli(...args);
    expect(r.code, `${args.join(' ')}: ${r.stderr}`).to.equal(0);
    return r.json;
  };

  async function signIn(user: { email: string; password: string }, params: Record<string, string>) {
    return codeFlowTokens(srv.url, web, REDIRECT, user, params);
  }

  const accessToken = async (user: typeof ADA, scope: string, extra: Record<string, string> = {}) => (await signIn(user, { scope, resource: API, ...extra })).access_token;

  async function startExample(env: Record<string, string>, attempt = 1): Promise<Example> {
    const port = await freePort();
    // A clean environment: only what the README tells a user to set.
    const child = spawn(process.execPath, ['examples/node-api/server.js'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', PORT: String(port), LATCH_ISSUER: srv.url, LATCH_AUDIENCE: API, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    let exited: number | string | undefined;
    const exit = new Promise<void>((resolve) =>
      child.once('exit', (code, signal) => {
        exited = code ?? signal ?? 'unknown';
        resolve();
      }),
    );
    const example: Example = {
      url: `http://127.0.0.1:${port}`,
      ws: `ws://127.0.0.1:${port}/ws`,
      output: () => output,
      exited: () => exited,
      async stop() {
        if (exited === undefined) child.kill('SIGTERM');
        await exit;
      },
    };
    examples.push(example);
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (exited !== undefined) {
        // Another process may take the free port before the child binds it: then try another one.
        if (/EADDRINUSE/.test(output) && attempt < 3) {
          examples.splice(examples.indexOf(example), 1);
          return startExample(env, attempt + 1);
        }
        throw new Error(`the example exited (${exited}):\n${output}`);
      }
      const res = await fetch(`${example.url}/health`).catch(() => undefined);
      if (res) {
        expect(res.status, 'GET /health without a token').to.equal(200);
        expect(await res.json()).to.deep.equal({ status: 'ok' });
        return example;
      }
      if (Date.now() > deadline) throw new Error(`the example did not answer /health:\n${output}`);
      await sleep(100);
    }
  }

  /** GET with an optional bearer token: status, challenge, content type and JSON body. */
  async function call(example: Example, path: string, token?: string) {
    const res = await fetch(`${example.url}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
    const text = await res.text();
    return { status: res.status, challenge: res.headers.get('www-authenticate'), type: res.headers.get('content-type') ?? '', body: JSON.parse(text) as Record<string, unknown> };
  }

  /** A refusal: the status, the RFC 6750 §3 challenge and an RFC 9457 problem+json body. */
  async function refused(example: Example, path: string, token: string | undefined, status: 401 | 403) {
    const r = await call(example, path, token);
    expect(r.status, `${path} → ${JSON.stringify(r.body)}`).to.equal(status);
    expect(r.challenge).to.match(new RegExp(`^Bearer realm="${API}"`));
    expect(r.type).to.contain('application/problem+json');
    expect(r.body).to.include({ status });
    expect(r.body.detail).to.be.a('string');
    return r.challenge!;
  }

  /** Opens /ws, keeps the frames, closes after the first one; resolves at the close with its code. */
  function connect(url: string, options: { protocols?: string[]; headers?: Record<string, string> } = {}) {
    return new Promise<{ opened: boolean; protocol: string; frames: { data: string; binary: boolean }[]; code: number }>((resolve, reject) => {
      const socket = new WebSocket(url, options.protocols ?? [], { headers: options.headers });
      let opened = false;
      const frames: { data: string; binary: boolean }[] = [];
      socket.on('open', () => (opened = true));
      socket.on('message', (data: Buffer, binary: boolean) => {
        frames.push({ data: data.toString(), binary });
        socket.close(1000);
      });
      socket.on('close', (code: number) => resolve({ opened, protocol: socket.protocol, frames, code }));
      socket.on('error', reject);
    });
  }

  /** The results of named connections, in order; rejects with the first failure and its name. */
  async function settled<T>(pending: Record<string, Promise<T>>): Promise<[string, T][]> {
    return Promise.all(Object.entries(pending).map(([name, p]) => p.then((r): [string, T] => [name, r], (err: Error) => Promise.reject(new Error(`${name}: ${err.message}`)))));
  }

  before(async () => {
    srv = await startTestServer({ changePollMs: 100 });
    ids.ada = (await cli('users', 'create', '--email', ADA.email, '--password', ADA.password, '--email-verified')).id;
    ids.bob = (await cli('users', 'create', '--email', BOB.email, '--password', BOB.password, '--email-verified')).id;
    ids.root = (await cli('users', 'create', '--email', ROOT_USER.email, '--password', ROOT_USER.password, '--superuser')).id;
    await cli('resources', 'create', '--identifier', API, '--scope', 'read write');
    await cli('resources', 'create', '--identifier', OTHER_API, '--scope', 'other:read');
    web = await cli('clients', 'create', '--name', 'Items web', '--first-party', '--redirect-uri', REDIRECT, '--resource', API, '--resource', OTHER_API, '--scope', 'openid email roles read write other:read');
    rs = await cli('clients', 'create', '--name', 'Items API', '--grant', 'client_credentials', '--resource', API);
    acme = await cli('orgs', 'create', '--name', 'Acme', '--slug', 'acme', '--owner', ADA.email);
    globex = await cli('orgs', 'create', '--name', 'Globex', '--slug', 'globex', '--owner', ROOT_USER.email);
    await cli('orgs', 'members', 'add', '--org', 'acme', '--user', BOB.email, '--role', 'member');
    await srv.running.services.feed.pollNow();

    tokens.ada = await accessToken(ADA, 'openid email roles read');
    tokens.adaWrite = await accessToken(ADA, 'openid write');
    tokens.adaAcme = await accessToken(ADA, 'openid email read', { organization: acme.id });
    tokens.bobAcme = await accessToken(BOB, 'openid read', { organization: acme.id });
    tokens.root = await accessToken(ROOT_USER, 'openid email roles read');
    tokens.rootWithoutRoles = await accessToken(ROOT_USER, 'openid read');
    tokens.otherApi = await accessToken(ADA, 'openid other:read', { resource: OTHER_API });
    tokens.idToken = (await signIn(ADA, { scope: 'openid email read', resource: API })).id_token!;
    // Made as the account page makes them (the CLI has no command for a user's own tokens).
    const pats = srv.running.services.personalTokens;
    tokens.pat = (await pats.create({ id: ids.ada! }, { name: 'example', scopes: [`${API}:read`] })).token;
    tokens.patAcme = (await pats.create({ id: ids.ada! }, { name: 'example acme', scopes: [`${API}:read`], organizationId: acme.id })).token;
    expect(tokens.pat).to.match(/^lat_/);

    plain = await startExample({});
    introspecting = await startExample({ LATCH_INTROSPECTION_CLIENT_ID: rs.client_id, LATCH_INTROSPECTION_CLIENT_SECRET: rs.client_secret });
  });

  after(async () => {
    const crashed = examples.filter((e) => e.exited() !== undefined).map((e) => `${e.url} exited (${e.exited()}):\n${e.output()}`);
    await Promise.all(examples.map((e) => e.stop()));
    try {
      for (const e of examples) expect(e.output(), 'the example printed a stack trace').not.to.match(STACK_FRAME);
      expect(crashed, 'an example stopped before the end').to.deep.equal([]);
      expect(srv?.errors() ?? []).to.deep.equal([]);
    } finally {
      await srv?.close();
    }
  });

  it('stops with one line, no stack trace, when its settings are missing or wrong', () => {
    for (const env of [{ LATCH_AUDIENCE: API, PORT: '4000' }, { LATCH_ISSUER: srv.url, PORT: '4000' }, { LATCH_ISSUER: srv.url, LATCH_AUDIENCE: API, PORT: 'eighty' }]) {
      const run = spawnSync(process.execPath, ['examples/node-api/server.js'], { cwd: ROOT, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, encoding: 'utf8', timeout: 10_000 });
      expect(run.status, JSON.stringify(env)).to.equal(1);
      expect(run.stderr.trim().split('\n'), run.stderr).to.have.length(1);
      expect(run.stderr).to.match(/LATCH_ISSUER.*LATCH_AUDIENCE.*PORT/);
    }
  });

  it('refuses a request without a token with 401 and a challenge without error=', async () => {
    for (const path of ['/me', '/items', '/admin', '/scoped', `/orgs/${acme.id}/settings`]) {
      const challenge = await refused(plain, path, undefined, 401);
      expect(challenge).to.equal(`Bearer realm="${API}"`);
    }
  });

  it('refuses junk, alg none, another API\'s token and an ID token with 401 invalid_token', async () => {
    const [, payload] = tokens.ada!.split('.');
    const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'at+jwt' })).toString('base64url')}.${payload}.`;
    for (const [name, token] of Object.entries({ junk: 'not-a-token', none, otherApi: tokens.otherApi!, idToken: tokens.idToken! })) {
      for (const example of [plain, introspecting]) {
        const challenge = await refused(example, '/me', token, 401);
        expect(challenge, name).to.contain('error="invalid_token"');
      }
    }
    // A header that is not a Bearer token at all counts as an invalid token too.
    const res = await fetch(`${plain.url}/me`, { headers: { authorization: 'Basic YTpi' } });
    expect(res.status).to.equal(401);
    expect(res.headers.get('www-authenticate')).to.contain('error="invalid_token"');
  });

  it('GET /me answers the seven keys, null where the token has no such claim', async () => {
    const me = await call(plain, '/me', tokens.ada);
    expect(me.status).to.equal(200);
    expect(me.body).to.deep.equal({ id: ids.ada, email: ADA.email, is_superuser: false, roles: [], scopes: ['read'], org_id: null, org_role: null });

    const bob = await call(plain, '/me', tokens.bobAcme);
    expect(bob.body).to.deep.equal({ id: ids.bob, email: null, is_superuser: false, roles: [], scopes: ['read'], org_id: acme.id, org_role: 'member' });

    const root = await call(plain, '/me', tokens.root);
    expect(root.body).to.deep.equal({ id: ids.root, email: ROOT_USER.email, is_superuser: true, roles: [], scopes: ['read'], org_id: null, org_role: null });
  });

  it('GET /items echoes the caller as owner_id', async () => {
    for (const [who, token] of [['ada', tokens.ada], ['bob', tokens.bobAcme], ['root', tokens.root]] as const) {
      const r = await call(plain, '/items', token);
      expect(r.status).to.equal(200);
      expect(r.body).to.deep.equal({ owner_id: ids[who] });
    }
  });

  it('GET /admin is for superusers only (403 insufficient_scope otherwise)', async () => {
    const ok = await call(plain, '/admin', tokens.root);
    expect(ok.status).to.equal(200);
    // is_superuser is released with scope roles: a superuser's token asked without it is refused.
    for (const token of [tokens.ada, tokens.adaAcme, tokens.bobAcme, tokens.rootWithoutRoles]) {
      const challenge = await refused(plain, '/admin', token, 403);
      expect(challenge).to.contain('error="insufficient_scope"').and.not.contain('scope="');
    }
  });

  it('GET /scoped needs scope read (403 insufficient_scope, scope="read")', async () => {
    expect((await call(plain, '/scoped', tokens.ada)).status).to.equal(200);
    const challenge = await refused(plain, '/scoped', tokens.adaWrite, 403);
    expect(challenge).to.contain('error="insufficient_scope"').and.contain('scope="read"');
    // The write token is otherwise fine.
    expect((await call(plain, '/me', tokens.adaWrite)).body).to.include({ id: ids.ada });
  });

  it('GET /orgs/:org_id/settings needs a token for that organization with role owner or admin', async () => {
    const ok = await call(plain, `/orgs/${acme.id}/settings`, tokens.adaAcme);
    expect(ok.status).to.equal(200);
    expect(ok.body).to.deep.equal({ org_id: acme.id, org_role: 'owner' });
    const cases = {
      'another organization': [`/orgs/${globex.id}/settings`, tokens.adaAcme],
      'role member': [`/orgs/${acme.id}/settings`, tokens.bobAcme],
      'no organization': [`/orgs/${acme.id}/settings`, tokens.ada],
      'a superuser without an organization': [`/orgs/${acme.id}/settings`, tokens.root],
    } as const;
    for (const [name, [path, token]] of Object.entries(cases)) {
      const challenge = await refused(plain, path, token, 403);
      expect(challenge, name).to.contain('error="insufficient_scope"');
    }
  });

  it('accepts a personal access token only when the introspection credentials are set', async () => {
    const challenge = await refused(plain, '/me', tokens.pat, 401);
    expect(challenge).to.contain('error="invalid_token"');

    const me = await call(introspecting, '/me', tokens.pat);
    expect(me.status).to.equal(200);
    expect(me.body).to.include({ id: ids.ada, is_superuser: false, org_id: null, org_role: null });
    expect(me.body.scopes).to.deep.equal(['read']);
    expect(Object.keys(me.body).sort()).to.deep.equal(['email', 'id', 'is_superuser', 'org_id', 'org_role', 'roles', 'scopes']);
    expect((await call(introspecting, '/items', tokens.pat)).body).to.deep.equal({ owner_id: ids.ada });
    expect((await call(introspecting, '/scoped', tokens.pat)).status).to.equal(200);
    expect((await call(introspecting, `/orgs/${acme.id}/settings`, tokens.patAcme)).body).to.deep.equal({ org_id: acme.id, org_role: 'owner' });
    expect(await refused(introspecting, '/admin', tokens.pat, 403)).to.contain('error="insufficient_scope"');
    expect(await refused(introspecting, '/me', 'lat_not-a-real-token', 401)).to.contain('error="invalid_token"');
    // JWTs still verify there.
    expect((await call(introspecting, '/me', tokens.ada)).body).to.include({ id: ids.ada });
  });

  it('WebSocket /ws takes the token from the header, the bearer subprotocol pair, ?access_token= or ?token=', async () => {
    const expected = JSON.stringify({ id: ids.ada });
    const forms = {
      header: connect(plain.ws, { headers: { authorization: `Bearer ${tokens.ada}` } }),
      subprotocol: connect(plain.ws, { protocols: ['bearer', tokens.ada!] }),
      access_token: connect(`${plain.ws}?access_token=${encodeURIComponent(tokens.ada!)}`),
      token: connect(`${plain.ws}?token=${encodeURIComponent(tokens.ada!)}`),
      pat: connect(`${introspecting.ws}?token=${encodeURIComponent(tokens.pat!)}`),
    };
    // Awaited together so that one failing connection does not leave the others' rejections unhandled.
    for (const [form, r] of await settled(forms)) {
      expect(r.frames, form).to.deep.equal([{ data: expected, binary: false }]);
      expect(r.code, `${form}: closed by the client after the frame`).to.equal(1000);
      expect(r.protocol, form).to.equal(form === 'subprotocol' ? 'bearer' : '');
    }
  });

  it('WebSocket /ws accepts and then closes with 1008 when the token is missing or bad, in every form', async () => {
    const forms = {
      none: connect(plain.ws),
      header: connect(plain.ws, { headers: { authorization: 'Bearer not-a-token' } }),
      subprotocol: connect(plain.ws, { protocols: ['bearer', 'not-a-token'] }),
      access_token: connect(`${plain.ws}?access_token=not-a-token`),
      token: connect(`${plain.ws}?token=not-a-token`),
      otherApi: connect(`${plain.ws}?token=${encodeURIComponent(tokens.otherApi!)}`),
      pat: connect(`${plain.ws}?access_token=${encodeURIComponent(tokens.pat!)}`),
    };
    for (const [form, r] of await settled(forms)) {
      expect(r.opened, `${form}: the upgrade is accepted`).to.equal(true);
      expect(r.code, form).to.equal(1008);
      expect(r.frames, form).to.deep.equal([]);
      expect(r.protocol, form).to.equal(form === 'subprotocol' ? 'bearer' : '');
    }
  });

  it('a malformed WebSocket frame ends that socket, not the example', async () => {
    const closed = await new Promise<boolean>((resolve, reject) => {
      const req = http.request(`${plain.url}/ws`, {
        headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', authorization: `Bearer ${tokens.ada}` },
      });
      req.on('upgrade', (res, socket) => {
        expect(res.statusCode).to.equal(101);
        // An unmasked client frame: RFC 6455 §5.1 says the server must fail the connection.
        socket.write(Buffer.from([0x81, 0x05, ...Buffer.from('hello')]));
        socket.on('close', () => resolve(true));
        socket.on('error', () => undefined);
        socket.resume();
      });
      req.on('response', (res) => reject(new Error(`no upgrade: ${res.statusCode}`)));
      req.on('error', reject);
      req.end();
    });
    expect(closed).to.equal(true);
    expect((await call(plain, '/me', tokens.ada)).status).to.equal(200);
    expect(plain.exited()).to.equal(undefined);
  });
});
