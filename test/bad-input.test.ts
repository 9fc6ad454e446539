/**
 * Bad input on every endpoint: each case asserts the exact OAuth error (RFC 6749 §5.2 `error`
 * code and HTTP status, or the HTML error page where the user agent must not be redirected) and
 * that no answer is a 5xx or carries a stack trace or a file path. The suite ends by asserting the
 * server logged no error.
 */
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { connect } from 'node:net';
import { performance } from 'node:perf_hooks';

import { expect } from 'chai';

import { Agent, authorize, parseForms, type PageResponse } from './helpers/agent.js';
import { startTestServer, type TestServer } from './helpers/server.js';

const REDIRECT = 'http://127.0.0.1:9/callback';
const API = 'https://api.bad-input.example.test';
const USER = { email: 'Grace.Hopper@example.test', password: 'a long and correct password' };

interface Reply {
  status: number;
  headers: Headers;
  text: string;
  json: any;
}

interface Client {
  client_id: string;
  client_secret?: string;
}

/** Fails when a body shows anything of the server's insides: stack frames, file paths, error classes. */
function expectNoLeak(text: string, label = 'body') {
  expect(text, `${label}: stack frame`).to.not.match(/^\s+at\s/m);
  expect(text, `${label}: stack frame`).to.not.match(/\bat .+:\d+:\d+\)?/);
  expect(text, `${label}: file path`).to.not.match(/(?:\/work\/|\/src\/|node_modules|file:\/\/|\.[cm]?[jt]s:\d+)/);
  expect(text, `${label}: error class`).to.not.match(/\b(?:\w*Error|Exception): /);
}

function expectOAuthError(res: Reply, status: number, error: string) {
  expectNoLeak(res.text);
  expect(res.status, res.text).to.equal(status);
  expect(res.headers.get('content-type'), res.text).to.match(/^application\/json/);
  expect(res.json?.error, res.text).to.equal(error);
  if (res.json.error_description !== undefined) expect(res.json.error_description).to.be.a('string');
}

/** The friendly HTML error page: never a redirect, so nothing reaches an unverified redirect_uri. */
function expectErrorPage(res: Reply | PageResponse, status: number, code?: string) {
  const text = 'text' in res ? res.text : res.body;
  expectNoLeak(text);
  expect(res.status, text.slice(0, 500)).to.equal(status);
  expect(res.headers.get('content-type')).to.match(/^text\/html/);
  expect(res.headers.get('location'), 'no redirect').to.equal(null);
  expect(text).to.match(/<html/i);
  if (code) expect(text, `error code ${code} on the page`).to.contain(code);
}

async function call(url: string, init: RequestInit = {}): Promise<Reply> {
  const res = await fetch(url, { redirect: 'manual', ...init });
  const text = await res.text();
  let json: unknown;
  if (/json/.test(res.headers.get('content-type') ?? '')) {
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** RFC 6749 §2.3.1: client_id and secret are form-urlencoded before the Basic encoding. */
const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

/**
 * One raw HTTP/1.1 exchange over a socket: the request text is written as is and the socket is
 * half-closed, so a body shorter than its Content-Length is really truncated. Resolves with
 * whatever the server wrote before closing.
 */
function rawExchange(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(request);
      socket.end();
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within 5 s; got ${JSON.stringify(out)}`));
    }, 5000);
    socket.on('data', (d: Buffer) => (out += d.toString('utf8')));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

/**
 * Sends `first` (its body in chunks, so without a Content-Length when there are several), then a
 * GET /healthz on the SAME keep-alive connection: a server that leaves part of a refused body on
 * the connection never parses that second request, which stalls until its requestTimeout (408).
 */
async function thenOnSameConnection(port: number, first: { path: string; headers: Record<string, string>; chunks: string[] }) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const send = (method: string, path: string, headers: Record<string, string>, chunks: string[]) =>
    new Promise<{ status: number; body: string; reused: boolean; ms: number }>((resolve, reject) => {
      const started = performance.now();
      const req = http.request({ host: '127.0.0.1', port, method, path, headers, agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, body, reused: req.reusedSocket, ms: performance.now() - started }));
      });
      req.on('error', reject);
      req.setTimeout(5000, () => req.destroy(new Error(`${method} ${path}: no answer within 5 s`)));
      for (const c of chunks) req.write(c);
      req.end();
    });
  try {
    const a = await send('POST', first.path, first.headers, first.chunks);
    const b = await send('GET', '/healthz', {}, []);
    return { first: a, second: b };
  } finally {
    agent.destroy();
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

describe('bad input on every endpoint', function () {
  this.timeout(60_000);

  let srv: TestServer;
  let ep: { authorization: string; token: string; userinfo: string; introspection: string; revocation: string };
  /** Confidential, client_secret_basic, may get refresh tokens. */
  let web: Required<Client>;
  /** A second confidential client with the same redirect_uri. */
  let other: Required<Client>;
  /** Confidential, client_secret_post. */
  let poster: Required<Client>;
  /** Public (PKCE), authorization_code + refresh_token. */
  let spa: Client;
  /** client_credentials only. */
  let machine: Required<Client>;

  const token = (body: string | URLSearchParams | Record<string, string>, headers: Record<string, string> = {}) =>
    call(ep.token, { method: 'POST', headers: { ...FORM, ...headers }, body: typeof body === 'string' || body instanceof URLSearchParams ? body : new URLSearchParams(body) });
  const asWeb = { authorization: '' };

  /** Runs a real authorization (login + consent) and returns the code and its PKCE verifier. */
  async function getCode(client: Client, scope: string, extra: Record<string, string> = {}) {
    const verifier = randomBytes(32).toString('base64url');
    const url = new URL(ep.authorization);
    url.search = new URLSearchParams({
      client_id: client.client_id,
      response_type: 'code',
      redirect_uri: REDIRECT,
      scope,
      state: randomBytes(8).toString('hex'),
      code_challenge: createHash('sha256').update(verifier).digest('base64url'),
      code_challenge_method: 'S256',
      ...extra,
    }).toString();
    const { callback } = await authorize(new Agent(), url.toString(), REDIRECT, USER);
    const code = callback.searchParams.get('code');
    expect(code, callback.toString()).to.be.a('string');
    return { code: code!, verifier };
  }

  const redeem = (client: Client, code: string, verifier: string) =>
    token(
      { grant_type: 'authorization_code', code, redirect_uri: REDIRECT, code_verifier: verifier, ...(client.client_secret ? {} : { client_id: client.client_id }) },
      client.client_secret ? { authorization: basic(client.client_id, client.client_secret) } : {},
    );

  const refresh = (client: Required<Client>, refreshToken: string) => token({ grant_type: 'refresh_token', refresh_token: refreshToken }, { authorization: basic(client.client_id, client.client_secret) });

  const introspect = (client: Required<Client>, value: string) =>
    call(ep.introspection, { method: 'POST', headers: { ...FORM, authorization: basic(client.client_id, client.client_secret) }, body: new URLSearchParams({ token: value }) });

  const userinfo = (accessToken: string) => call(ep.userinfo, { headers: { authorization: `Bearer ${accessToken}` } });

  before(async () => {
    srv = await startTestServer();
    const user = await srv.cli('users', 'create', '--email', USER.email, '--password', USER.password, '--name', 'Grace Hopper');
    expect(user.code, user.stderr).to.equal(0);
    const rs = await srv.cli('resources', 'create', '--identifier', API, '--scope', 'read', '--alg', 'ES256');
    expect(rs.code, rs.stderr).to.equal(0);
    const create = async (...args: string[]) => {
      const r = await srv.cli('clients', 'create', ...args);
      expect(r.code, r.stderr).to.equal(0);
      return r.json as Required<Client>;
    };
    web = await create('--name', 'Web', '--redirect-uri', REDIRECT, '--scope', 'openid profile email offline_access');
    other = await create('--name', 'Other', '--redirect-uri', REDIRECT, '--scope', 'openid offline_access');
    poster = await create('--name', 'Poster', '--redirect-uri', REDIRECT, '--auth-method', 'client_secret_post', '--scope', 'openid');
    spa = await create('--name', 'SPA', '--public', '--redirect-uri', REDIRECT, '--scope', 'openid email offline_access', '--grant', 'authorization_code', '--grant', 'refresh_token');
    machine = await create('--name', 'Machine', '--grant', 'client_credentials', '--resource', API, '--scope', 'read');
    asWeb.authorization = basic(web.client_id, web.client_secret);

    const d = (await (await fetch(`${srv.url}/.well-known/openid-configuration`)).json()) as Record<string, string>;
    ep = { authorization: d.authorization_endpoint!, token: d.token_endpoint!, userinfo: d.userinfo_endpoint!, introspection: d.introspection_endpoint!, revocation: d.revocation_endpoint! };
  });

  after(async () => {
    if (!srv) return;
    try {
      expect(srv.errors(), JSON.stringify(srv.errors(), null, 2)).to.deep.equal([]);
    } finally {
      await srv.close();
    }
  });

  describe('token endpoint', () => {
    const bogusCode = { grant_type: 'authorization_code', code: 'not-a-code', redirect_uri: REDIRECT };

    it('answers a wrong client secret with 401 invalid_client and a Basic challenge (RFC 6749 §5.2)', async () => {
      const viaHeader = await token(bogusCode, { authorization: basic(web.client_id, 'not-the-secret') });
      expectOAuthError(viaHeader, 401, 'invalid_client');
      // §5.2: a client that authenticated with the Authorization header gets WWW-Authenticate.
      expect(viaHeader.headers.get('www-authenticate')).to.match(/^Basic /);
      expectOAuthError(await token({ ...bogusCode, client_id: poster.client_id, client_secret: 'not-the-secret' }), 401, 'invalid_client');
      // A secret that differs only in its last character, and an empty one.
      expectOAuthError(await token(bogusCode, { authorization: basic(web.client_id, `${web.client_secret.slice(0, -1)}${web.client_secret.endsWith('A') ? 'B' : 'A'}`) }), 401, 'invalid_client');
      expectOAuthError(await token({ ...bogusCode, client_id: poster.client_id, client_secret: '' }), 401, 'invalid_client');
    });

    it('answers an unknown client_id with 401 invalid_client', async () => {
      expectOAuthError(await token(bogusCode, { authorization: basic('no-such-client', 'whatever') }), 401, 'invalid_client');
      expectOAuthError(await token({ ...bogusCode, client_id: 'no-such-client', client_secret: 'whatever' }), 401, 'invalid_client');
      expectOAuthError(await token({ ...bogusCode, client_id: 'no-such-client' }), 401, 'invalid_client');
    });

    it('refuses an authentication method that does not match the registration', async () => {
      // A public client presenting a secret, and a confidential client presenting none.
      expectOAuthError(await token({ ...bogusCode, client_id: spa.client_id, client_secret: 'made-up' }), 401, 'invalid_client');
      expectOAuthError(await token(bogusCode, { authorization: basic(spa.client_id, 'made-up') }), 401, 'invalid_client');
      expectOAuthError(await token({ ...bogusCode, client_id: web.client_id }), 401, 'invalid_client');
      expectOAuthError(await token({ ...bogusCode, client_id: poster.client_id }), 401, 'invalid_client');
      // client_secret_basic and client_secret_post carry the same shared secret: oidc-provider
      // accepts either for a client registered with one of them, so a correct secret sent the
      // other way authenticates (and then fails on the bogus code), a wrong one never does.
      expectOAuthError(await token({ ...bogusCode, client_id: web.client_id, client_secret: web.client_secret }), 400, 'invalid_grant');
      expectOAuthError(await token(bogusCode, { authorization: basic(poster.client_id, poster.client_secret) }), 400, 'invalid_grant');
      expectOAuthError(await token({ ...bogusCode, client_id: web.client_id, client_secret: poster.client_secret }), 401, 'invalid_client');
      // Two mechanisms at once (RFC 6749 §2.3: MUST NOT use more than one).
      expectOAuthError(await token({ ...bogusCode, client_id: web.client_id, client_secret: web.client_secret }, asWeb), 400, 'invalid_request');
      // A malformed Authorization header.
      expectOAuthError(await token(bogusCode, { authorization: 'Basic %%%not-base64%%%' }), 400, 'invalid_request');
      expectOAuthError(await token(bogusCode, { authorization: `Basic ${Buffer.from('no-colon').toString('base64')}` }), 400, 'invalid_request');
    });

    it('requires grant_type (invalid_request) and refuses unknown ones (unsupported_grant_type)', async () => {
      expectOAuthError(await token({ code: 'x', redirect_uri: REDIRECT }, asWeb), 400, 'invalid_request');
      expectOAuthError(await token({ grant_type: '' }, asWeb), 400, 'invalid_request');
      for (const grantType of ['password', 'implicit', 'device_code', 'nonsense', 'authorization_code ']) {
        expectOAuthError(await token({ grant_type: grantType, username: 'a', password: 'b' }, asWeb), 400, 'unsupported_grant_type');
      }
    });

    it('answers a grant type the client is not registered for with unauthorized_client (RFC 6749 §5.2)', async () => {
      expectOAuthError(await token({ grant_type: 'client_credentials' }, asWeb), 400, 'unauthorized_client');
      expectOAuthError(await token({ grant_type: 'client_credentials', client_id: spa.client_id }), 400, 'unauthorized_client');
      expectOAuthError(await token({ grant_type: 'refresh_token', refresh_token: 'x' }, { authorization: basic(machine.client_id, machine.client_secret) }), 400, 'unauthorized_client');
      expectOAuthError(await token({ grant_type: 'authorization_code', code: 'x', redirect_uri: REDIRECT }, { authorization: basic(machine.client_id, machine.client_secret) }), 400, 'unauthorized_client');
      // Grants Latch supports, for clients not registered for them.
      expectOAuthError(await token({ grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: 'x' }, asWeb), 400, 'unauthorized_client');
      expectOAuthError(await token({ grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: 'x', subject_token_type: 'urn:ietf:params:oauth:token-type:access_token' }, asWeb), 400, 'unauthorized_client');
    });

    it('refuses a JSON (or any non-form) body with invalid_request', async () => {
      const json = await call(ep.token, { method: 'POST', headers: { 'content-type': 'application/json', authorization: asWeb.authorization }, body: JSON.stringify(bogusCode) });
      expectOAuthError(json, 400, 'invalid_request');
      const plain = await call(ep.token, { method: 'POST', headers: { 'content-type': 'text/plain', authorization: asWeb.authorization }, body: new URLSearchParams(bogusCode).toString() });
      expectOAuthError(plain, 400, 'invalid_request');
      const multipart = new FormData();
      for (const [k, v] of Object.entries(bogusCode)) multipart.set(k, v);
      expectOAuthError(await call(ep.token, { method: 'POST', headers: { authorization: asWeb.authorization }, body: multipart }), 400, 'invalid_request');
    });

    it('survives malformed urlencoded bodies: bad escapes, stray separators, invalid UTF-8', async () => {
      // Lenient decoding: the broken escape stays literal and is not a known grant type.
      expectOAuthError(await token('grant_type=%zz&&&=&==%', asWeb), 400, 'unsupported_grant_type');
      expectOAuthError(await token('%', asWeb), 400, 'invalid_request');
      expectOAuthError(await token('&&&&', asWeb), 400, 'invalid_request');
      const binary = await call(ep.token, { method: 'POST', headers: { ...FORM, authorization: asWeb.authorization }, body: Buffer.from([0xff, 0xfe, 0x3d, 0x25, 0x00, 0xc3]) });
      expectOAuthError(binary, 400, 'invalid_request');
      // A well-formed request with a broken code value is just an unknown code.
      expectOAuthError(await token(`grant_type=authorization_code&code=%E0%A4%A&redirect_uri=${encodeURIComponent(REDIRECT)}`, asWeb), 400, 'invalid_grant');
    });

    it('answers a truncated body (fewer bytes than Content-Length, then EOF) with 400, logging no error', async () => {
      const body = 'grant_type=authorization_code&code=abc';
      const answer = await rawExchange(
        srv.port,
        `POST ${new URL(ep.token).pathname} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${asWeb.authorization}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length + 100}\r\n\r\n${body}`,
      );
      expect(answer).to.match(/^HTTP\/1\.1 400 /);
      expectNoLeak(answer);
      await new Promise((r) => setTimeout(r, 100));
      expect(srv.errors()).to.deep.equal([]);
      // The client's broken request goes to the log as a warning (not as a stack on stderr).
      expect(srv.logger.lines.some((l) => l.level === 'warn' && l.msg === 'oidc connection error' && l.route === 'token' && typeof l.code === 'string'), JSON.stringify(srv.logger.lines.filter((l) => l.level === 'warn'))).to.equal(true);
    });

    it('answers a 1 MB body with 400 invalid_request and keeps serving', async () => {
      const huge = `grant_type=authorization_code&redirect_uri=${encodeURIComponent(REDIRECT)}&code=${'a'.repeat(1024 * 1024)}`;
      expectOAuthError(await token(huge, asWeb), 400, 'invalid_request');
      // The same size without a Content-Length (chunked), so the limit is enforced while reading.
      const stream = new ReadableStream<Uint8Array>({
        start(controller) {
          for (let i = 0; i < 16; i++) controller.enqueue(new TextEncoder().encode(i === 0 ? 'grant_type=authorization_code&code=' : 'a'.repeat(64 * 1024)));
          controller.close();
        },
      });
      const chunked = await call(ep.token, { method: 'POST', headers: { ...FORM, authorization: asWeb.authorization }, body: stream, duplex: 'half' } as RequestInit);
      expectOAuthError(chunked, 400, 'invalid_request');
      expectOAuthError(await token(bogusCode, asWeb), 400, 'invalid_grant');
      // The refused body must not wedge the keep-alive connection it came on.
      for (const chunks of [[huge], Array.from({ length: 16 }, () => 'a'.repeat(64 * 1024))]) {
        const { first, second } = await thenOnSameConnection(srv.port, { path: new URL(ep.token).pathname, headers: { ...FORM, authorization: asWeb.authorization }, chunks });
        expect(first.status, first.body).to.equal(400);
        expect(JSON.parse(first.body).error).to.equal('invalid_request');
        expect(second.reused, 'same connection').to.equal(true);
        expect(second.status, second.body).to.equal(200);
      }
    });

    it('treats NUL bytes in client_id, code and refresh_token as unknown values (PostgreSQL text cannot hold them)', async () => {
      expectOAuthError(await token({ ...bogusCode, client_id: 'a\u0000b', client_secret: 'x' }), 401, 'invalid_client');
      expectOAuthError(await token({ ...bogusCode, client_id: '\u0000' }), 401, 'invalid_client');
      // In the Basic header a NUL makes the header itself malformed.
      expectOAuthError(await token(bogusCode, { authorization: basic('nul\u0000client', 'x') }), 400, 'invalid_request');
      expectOAuthError(await token({ ...bogusCode, code: 'abc\u0000def' }, asWeb), 400, 'invalid_grant');
      expectOAuthError(await token({ grant_type: 'refresh_token', refresh_token: '\u0000' }, asWeb), 400, 'invalid_grant');
      expectOAuthError(await token({ grant_type: 'client_credentials', scope: 'read\u0000' }, { authorization: basic(machine.client_id, machine.client_secret) }), 400, 'invalid_scope');
    });

    it('refuses duplicate parameters with invalid_request (RFC 6749 §3.2)', async () => {
      const dupes = [
        'grant_type=authorization_code&grant_type=authorization_code&code=x&redirect_uri=x',
        'grant_type=authorization_code&grant_type=client_credentials&code=x&redirect_uri=x',
        `grant_type=authorization_code&code=x&code=y&redirect_uri=${encodeURIComponent(REDIRECT)}`,
        `grant_type=authorization_code&code=x&redirect_uri=${encodeURIComponent(REDIRECT)}&redirect_uri=${encodeURIComponent(REDIRECT)}`,
        `grant_type=authorization_code&code=x&redirect_uri=${encodeURIComponent(REDIRECT)}&code_verifier=a&code_verifier=b`,
        'grant_type=refresh_token&refresh_token=a&refresh_token=b',
      ];
      for (const body of dupes) expectOAuthError(await token(body, asWeb), 400, 'invalid_request');
      // Duplicate client credentials in the body.
      expectOAuthError(await token(`grant_type=authorization_code&code=x&redirect_uri=x&client_id=${poster.client_id}&client_id=${poster.client_id}&client_secret=${poster.client_secret}`), 400, 'invalid_request');
    });
  });

  describe('authorization endpoint', () => {
    let verifier: string;
    let base: Record<string, string>;
    const authorizeWith = (params: Record<string, string | undefined>) => {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, v);
      return call(`${ep.authorization}?${q}`, { headers: { accept: 'text/html' } });
    };
    /** The error an error redirect carries, from the query or (implicit-style) the fragment. */
    const redirectParams = (res: Reply) => {
      expect(res.status, res.text.slice(0, 300)).to.be.oneOf([302, 303]);
      const location = new URL(res.headers.get('location')!);
      expect(`${location.origin}${location.pathname}`).to.equal(REDIRECT);
      return new URLSearchParams(location.hash ? location.hash.slice(1) : location.search);
    };

    before(() => {
      verifier = randomBytes(32).toString('base64url');
      base = {
        client_id: spa.client_id,
        response_type: 'code',
        redirect_uri: REDIRECT,
        scope: 'openid',
        state: 'the-state',
        code_challenge: createHash('sha256').update(verifier).digest('base64url'),
        code_challenge_method: 'S256',
      };
    });

    it('shows an HTML error page (400, no redirect) for an unknown or missing client_id', async () => {
      expectErrorPage(await authorizeWith({ ...base, client_id: 'no-such-client' }), 400, 'invalid_client');
      expectErrorPage(await authorizeWith({ ...base, client_id: undefined }), 400, 'invalid_request');
      expectErrorPage(await authorizeWith({ ...base, client_id: '' }), 400);
      expectErrorPage(await authorizeWith({ ...base, client_id: 'nul\u0000client' }), 400, 'invalid_client');
    });

    it('never redirects to a redirect_uri that is not registered exactly', async () => {
      const near = [
        'http://127.0.0.1:9/call', // a prefix
        'http://127.0.0.1:9/callbackx', // registered one is a prefix of it
        'http://127.0.0.1:9/callback/', // trailing slash
        'http://127.0.0.1:9/callback/../callback',
        'http://127.0.0.1:8/callback', // another port
        'http://127.0.0.1/callback', // default port
        'http://localhost:9/callback', // another host for the same machine
        'https://127.0.0.1:9/callback', // another scheme
        'http://127.0.0.1:9/callback?extra=1', // an added query
        'http://127.0.0.1:9/callback#', // an empty fragment
        'http://127.0.0.1:9/Callback', // case of the path
        'http://127.0.0.1:9/%63allback', // percent-encoded
        'http://127.0.0.1:9@evil.example/callback', // userinfo trick
        'https://evil.example/callback',
        'javascript:alert(1)',
      ];
      for (const redirectUri of near) {
        const res = await authorizeWith({ ...base, redirect_uri: redirectUri });
        expectErrorPage(res, 400, 'invalid_redirect_uri');
      }
      // OIDC Core §3.1.2.1: required, never guessed from the registration.
      expectErrorPage(await authorizeWith({ ...base, redirect_uri: undefined }), 400, 'invalid_request');
      // A confidential client too.
      expectErrorPage(await authorizeWith({ ...base, client_id: web.client_id, redirect_uri: `${REDIRECT}/` }), 400, 'invalid_redirect_uri');
    });

    it('redirects with invalid_request when a public client omits PKCE (RFC 9700 §2.1.1)', async () => {
      const params = redirectParams(await authorizeWith({ ...base, code_challenge: undefined, code_challenge_method: undefined }));
      expect(params.get('error')).to.equal('invalid_request');
      expect(params.get('state')).to.equal('the-state');
      expect(params.get('iss')).to.equal(srv.url);
      expect(params.get('code')).to.equal(null);
      // A challenge without its method defaults to plain (RFC 7636 §4.3), which is not offered.
      expect(redirectParams(await authorizeWith({ ...base, code_challenge_method: undefined })).get('error')).to.equal('invalid_request');
    });

    it('redirects with invalid_request for code_challenge_method=plain or a malformed challenge', async () => {
      const plain = redirectParams(await authorizeWith({ ...base, code_challenge: verifier, code_challenge_method: 'plain' }));
      expect(plain.get('error')).to.equal('invalid_request');
      expect(plain.get('code')).to.equal(null);
      for (const challenge of ['short', 'x'.repeat(200), 'not base64url!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!']) {
        expect(redirectParams(await authorizeWith({ ...base, code_challenge: challenge })).get('error'), challenge).to.equal('invalid_request');
      }
      expect(redirectParams(await authorizeWith({ ...base, code_challenge_method: 'S512' })).get('error')).to.equal('invalid_request');
    });

    it('refuses implicit and hybrid response types with unsupported_response_type (RFC 9700 §2.1.2)', async () => {
      for (const responseType of ['token', 'id_token', 'id_token token', 'code token', 'code id_token', 'none', 'nonsense']) {
        for (const client of [spa.client_id, web.client_id]) {
          const params = redirectParams(await authorizeWith({ ...base, client_id: client, response_type: responseType, nonce: 'n' }));
          expect(params.get('error'), responseType).to.equal('unsupported_response_type');
          for (const k of ['code', 'access_token', 'id_token']) expect(params.get(k), k).to.equal(null);
        }
      }
      // No response_type at all: a missing required parameter (RFC 6749 §4.1.2.1).
      const missing = redirectParams(await authorizeWith({ ...base, response_type: undefined }));
      expect(missing.get('error')).to.equal('invalid_request');
      expect(missing.get('code')).to.equal(null);
    });
  });

  describe('single-use codes and refresh tokens', () => {
    it('refuses a replayed code with invalid_grant and revokes what the first redemption issued (RFC 6749 §4.1.2)', async () => {
      const { code, verifier } = await getCode(web, 'openid email offline_access', { prompt: 'consent' });
      const first = await redeem(web, code, verifier);
      expect(first.status, first.text).to.equal(200);
      const { access_token: accessToken, refresh_token: refreshToken } = first.json as { access_token: string; refresh_token: string };
      expect(refreshToken, 'offline_access gives a refresh token').to.be.a('string');
      expect((await userinfo(accessToken)).status).to.equal(200);
      expect((await introspect(web, accessToken)).json.active).to.equal(true);

      expectOAuthError(await redeem(web, code, verifier), 400, 'invalid_grant');

      const info = await userinfo(accessToken);
      expectOAuthError(info, 401, 'invalid_token');
      expect((await introspect(web, accessToken)).json).to.deep.equal({ active: false });
      expect((await introspect(web, refreshToken)).json).to.deep.equal({ active: false });
      expectOAuthError(await refresh(web, refreshToken), 400, 'invalid_grant');
    });

    it('lets exactly one of five simultaneous redemptions of a code succeed', async () => {
      const { code, verifier } = await getCode(web, 'openid offline_access', { prompt: 'consent' });
      const replies = await Promise.all(Array.from({ length: 5 }, () => redeem(web, code, verifier)));
      const won = replies.filter((r) => r.status === 200);
      expect(won, replies.map((r) => `${r.status} ${r.text}`).join('\n')).to.have.length(1);
      for (const r of replies.filter((x) => x.status !== 200)) expectOAuthError(r, 400, 'invalid_grant');
      // The losers presented a used code: reuse revokes the grant, the winner's tokens included.
      const { access_token: accessToken, refresh_token: refreshToken } = won[0]!.json as { access_token: string; refresh_token: string };
      expectOAuthError(await refresh(web, refreshToken), 400, 'invalid_grant');
      expect((await introspect(web, accessToken)).json).to.deep.equal({ active: false });
    });

    it('answers five simultaneous refreshes with one new refresh token (REFRESH_REUSE_WINDOW); once it is used, the old one is reuse and revokes the grant', async () => {
      const { code, verifier } = await getCode(web, 'openid offline_access', { prompt: 'consent' });
      const issued = await redeem(web, code, verifier);
      expect(issued.status, issued.text).to.equal(200);
      const refreshToken = issued.json.refresh_token as string;
      const replies = await Promise.all(Array.from({ length: 5 }, () => refresh(web, refreshToken)));
      expect(replies.map((r) => r.status), replies.map((r) => `${r.status} ${r.text}`).join('\n')).to.deep.equal([200, 200, 200, 200, 200]);
      expect(new Set(replies.map((r) => (r.json as { refresh_token: string }).refresh_token)).size).to.equal(1);
      const next = replies[0]!.json as { access_token: string; refresh_token: string };
      expect(next.refresh_token).to.be.a('string').and.not.equal(refreshToken);
      const used = await refresh(web, next.refresh_token);
      expect(used.status, used.text).to.equal(200);
      const winner = used.json as { access_token: string; refresh_token: string };
      // RFC 9700 §4.14.2: a used refresh token was presented again, so the grant is revoked.
      expectOAuthError(await refresh(web, refreshToken), 400, 'invalid_grant');
      expectOAuthError(await refresh(web, winner.refresh_token), 400, 'invalid_grant');
      expect((await introspect(web, winner.access_token)).json).to.deep.equal({ active: false });
      expectOAuthError(await userinfo(winner.access_token), 401, 'invalid_token');
    });

    it('refuses a wrong or missing code_verifier with invalid_grant (RFC 7636 §4.6)', async () => {
      const { code, verifier } = await getCode(spa, 'openid');
      expectOAuthError(await redeem(spa, code, randomBytes(32).toString('base64url')), 400, 'invalid_grant');
      expectOAuthError(await redeem(spa, code, `${verifier.slice(0, -1)}${verifier.endsWith('A') ? 'B' : 'A'}`), 400, 'invalid_grant');
      expectOAuthError(await token({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT, client_id: spa.client_id }), 400, 'invalid_grant');
      // The challenge itself is not the verifier.
      expectOAuthError(await redeem(spa, code, createHash('sha256').update(verifier).digest('base64url')), 400, 'invalid_grant');
    });

    it('refuses a code at another client, or with another redirect_uri, with invalid_grant', async () => {
      const { code, verifier } = await getCode(web, 'openid');
      expectOAuthError(await redeem(other, code, verifier), 400, 'invalid_grant');
      expectOAuthError(await redeem(spa, code, verifier), 400, 'invalid_grant');
      expectOAuthError(await token({ grant_type: 'authorization_code', code, redirect_uri: `${REDIRECT}/`, code_verifier: verifier }, asWeb), 400, 'invalid_grant');
      // A refresh token of one client is no good to another.
      const offline = await getCode(web, 'openid offline_access', { prompt: 'consent' });
      const issued = await redeem(web, offline.code, offline.verifier);
      expect(issued.status, issued.text).to.equal(200);
      expectOAuthError(await refresh(other, issued.json.refresh_token as string), 400, 'invalid_grant');
      expectOAuthError(await refresh(web, 'not-a-refresh-token'), 400, 'invalid_grant');
      expectOAuthError(await token({ grant_type: 'refresh_token' }, asWeb), 400, 'invalid_request');
    });
  });

  describe('introspection and revocation', () => {
    const post = (url: string, body: string, auth?: string) => call(url, { method: 'POST', headers: { ...FORM, ...(auth ? { authorization: auth } : {}) }, body });

    it('introspection: invalid_request without a token, active:false for garbage, invalid_client for bad auth', async () => {
      expectOAuthError(await post(ep.introspection, '', asWeb.authorization), 400, 'invalid_request');
      expectOAuthError(await post(ep.introspection, 'token=', asWeb.authorization), 400, 'invalid_request');
      expectOAuthError(await post(ep.introspection, 'token=a&token=b', asWeb.authorization), 400, 'invalid_request');
      for (const garbage of ['garbage', 'a.b.c', 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.', 'x'.repeat(4000), '%00%ff', 'abc%00', '%00.%00.%00']) {
        const res = await post(ep.introspection, `token=${garbage}`, asWeb.authorization);
        expectNoLeak(res.text);
        expect(res.status, garbage).to.equal(200);
        expect(res.json, garbage).to.deep.equal({ active: false });
      }
      const hinted = await post(ep.introspection, 'token=garbage&token_type_hint=refresh_token', asWeb.authorization);
      expect(hinted.json).to.deep.equal({ active: false });
      expectOAuthError(await post(ep.introspection, 'token=garbage', basic(web.client_id, 'wrong')), 401, 'invalid_client');
      expectOAuthError(await post(ep.introspection, 'token=garbage', basic('no-such-client', 'wrong')), 401, 'invalid_client');
      expectOAuthError(await post(ep.introspection, `token=garbage&client_id=${spa.client_id}`), 401, 'invalid_client');
      expectOAuthError(await call(ep.introspection, { method: 'POST', headers: { 'content-type': 'application/json', authorization: asWeb.authorization }, body: '{"token":"x"}' }), 400, 'invalid_request');
    });

    it('revocation: invalid_request without a token, 200 for garbage (RFC 7009 §2.2), invalid_client for bad auth', async () => {
      expectOAuthError(await post(ep.revocation, '', asWeb.authorization), 400, 'invalid_request');
      for (const garbage of ['garbage', 'a.b.c', 'eyJhbGciOiJIUzI1NiJ9.e30.c2ln', 'x'.repeat(4000), 'abc%00', '%00%ff']) {
        const res = await post(ep.revocation, `token=${garbage}`, asWeb.authorization);
        expectNoLeak(res.text);
        expect(res.status, `${garbage}: ${res.text}`).to.equal(200);
      }
      expectOAuthError(await post(ep.revocation, 'token=garbage', basic(web.client_id, 'wrong')), 401, 'invalid_client');
      expectOAuthError(await post(ep.revocation, 'token=garbage', basic('no-such-client', 'wrong')), 401, 'invalid_client');
    });

    it("does not let a client revoke another client's token (RFC 7009 §2.1)", async () => {
      const { code, verifier } = await getCode(web, 'openid');
      const issued = await redeem(web, code, verifier);
      expect(issued.status, issued.text).to.equal(200);
      const accessToken = issued.json.access_token as string;
      const res = await post(ep.revocation, `token=${accessToken}`, basic(other.client_id, other.client_secret));
      expectNoLeak(res.text);
      // oidc-provider answers as for an unknown token (RFC 7009 §2.2: 200), which tells the
      // other client nothing about the token; what matters is that nothing was revoked.
      expect(res.status, res.text).to.equal(200);
      expect((await introspect(web, accessToken)).json.active, 'still active').to.equal(true);
      // Nor may it see it through introspection.
      expect((await introspect(other, accessToken)).json).to.deep.equal({ active: false });
    });
  });

  describe('userinfo', () => {
    it('answers a garbage bearer token with 401 invalid_token and WWW-Authenticate (RFC 6750 §3.1)', async () => {
      for (const garbage of ['garbage', 'a.b.c', 'x'.repeat(4000)]) {
        const res = await userinfo(garbage);
        expectOAuthError(res, 401, 'invalid_token');
        expect(res.headers.get('www-authenticate')).to.match(/^Bearer /).and.match(/error="invalid_token"/);
      }
      const none = await call(ep.userinfo);
      expectOAuthError(none, 401, 'invalid_token');
      expect(none.headers.get('www-authenticate')).to.match(/^Bearer /);
      // A client_credentials JWT for an API is not a userinfo token.
      const cc = await token({ grant_type: 'client_credentials', scope: 'read' }, { authorization: basic(machine.client_id, machine.client_secret) });
      expect(cc.status, cc.text).to.equal(200);
      expectOAuthError(await userinfo(cc.json.access_token as string), 401, 'invalid_token');
    });
  });

  describe('interaction routes', () => {
    /** Opens an authorization in a fresh browser and returns it on the login page. */
    async function loginPage() {
      const agent = new Agent();
      const q = new URLSearchParams({ client_id: web.client_id, response_type: 'code', redirect_uri: REDIRECT, scope: 'openid', code_challenge: createHash('sha256').update('v'.repeat(43)).digest('base64url'), code_challenge_method: 'S256' });
      const page = await agent.follow(`${ep.authorization}?${q}`, {}, REDIRECT);
      expect(page.status).to.equal(200);
      expect(page.body).to.match(/name="password"/);
      const form = parseForms(page.body, page.url)[0]!;
      expect(form.action).to.match(/\/interaction\/[^/]+\/login$/);
      return { agent, page, form, uid: new URL(form.action).pathname.split('/')[2]! };
    }

    it('refuses a login POST without _csrf or with a wrong one (403 page), and nobody is signed in', async () => {
      const { agent, page, form } = await loginPage();
      const stranger = await loginPage();
      const attempts: Record<string, string>[] = [
        { email: USER.email, password: USER.password },
        { email: USER.email, password: USER.password, _csrf: '' },
        { email: USER.email, password: USER.password, _csrf: 'forged' },
        { email: USER.email, password: USER.password, _csrf: form.fields._csrf!.slice(0, -2) },
        // A valid token of another browser is not valid with this browser's cookie.
        { email: USER.email, password: USER.password, _csrf: stranger.form.fields._csrf! },
      ];
      for (const fields of attempts) {
        const res = await agent.request(form.action, { method: 'POST', form: fields });
        expectErrorPage(res, 403, 'invalid_csrf_token');
        expect(res.headers.getSetCookie().join(';'), 'no session cookie').to.not.match(/_session=/);
      }
      // Still on the login prompt: nothing signed this browser in.
      const again = await agent.request(page.url);
      expect(again.status).to.equal(200);
      expect(again.body).to.match(/name="password"/);
      // And the genuine form still works.
      const ok = await agent.submit(again, 0, { email: USER.email, password: USER.password }, REDIRECT);
      expect(ok.status).to.equal(200);
      expect(ok.body).to.match(/\/confirm"/);
    });

    it('shows a 400 page for an unknown interaction', async () => {
      expectErrorPage(await new Agent().request(`${srv.url}/interaction/unknown-uid`), 400, 'session_expired');
      const { agent, form } = await loginPage();
      // This browser has an interaction, but not that one.
      expectErrorPage(await agent.request(`${srv.url}/interaction/unknown-uid`), 400, 'session_expired');
      const post = await agent.request(`${srv.url}/interaction/unknown-uid/login`, { method: 'POST', form: { ...form.fields, email: USER.email, password: USER.password } });
      expectErrorPage(post, 400, 'session_expired');
    });

    it('answers a non-form body with 415, not 500', async () => {
      const { agent, form } = await loginPage();
      const cookie = [...agent.cookies].map(([k, v]) => `${k.split('|')[1]}=${v}`).join('; ');
      const bodies: [string, string][] = [
        ['application/json', JSON.stringify({ ...form.fields, email: USER.email, password: USER.password })],
        ['text/plain', new URLSearchParams({ ...form.fields, email: USER.email, password: USER.password }).toString()],
        ['application/xml', '<login/>'],
      ];
      for (const [type, body] of bodies) {
        for (const accept of ['text/html', 'application/json']) {
          const res = await call(form.action, { method: 'POST', headers: { 'content-type': type, accept, cookie }, body });
          expectNoLeak(res.text);
          expect(res.status, `${type} ${res.text.slice(0, 200)}`).to.equal(415);
          if (accept === 'application/json') expect(res.json?.error).to.equal('invalid_request');
        }
      }
      const multipart = new FormData();
      multipart.set('email', USER.email);
      const res = await call(form.action, { method: 'POST', headers: { cookie, accept: 'text/html' }, body: multipart });
      expectErrorPage(res, 415);
      // No content type at all.
      expect((await call(form.action, { method: 'POST', headers: { cookie, accept: 'text/html' } })).status).to.equal(415);
    });

    it('answers an oversized form with 413 and a truncated one with 400, logging no error', async () => {
      const { agent, form } = await loginPage();
      const big = await agent.request(form.action, { method: 'POST', form: { ...form.fields, email: USER.email, password: 'x'.repeat(1024 * 1024) } });
      expectErrorPage(big, 413);
      const cookie = [...agent.cookies].map(([k, v]) => `${k.split('|')[1]}=${v}`).join('; ');
      // Neither a refused large form nor a refused non-form body wedges the keep-alive connection.
      const oversized = new URLSearchParams({ ...form.fields, email: USER.email, password: 'x'.repeat(1024 * 1024) }).toString();
      for (const [type, chunks, status] of [
        ['application/x-www-form-urlencoded', [oversized], 413],
        ['application/x-www-form-urlencoded', Array.from({ length: 16 }, () => 'x'.repeat(64 * 1024)), 413],
        ['application/json', Array.from({ length: 16 }, () => 'x'.repeat(64 * 1024)), 415],
      ] as const) {
        const { first, second } = await thenOnSameConnection(srv.port, { path: new URL(form.action).pathname, headers: { 'content-type': type, accept: 'text/html', cookie }, chunks: [...chunks] });
        expect(first.status).to.equal(status);
        expectNoLeak(first.body);
        expect(second.reused, 'same connection').to.equal(true);
        expect(second.status, second.body).to.equal(200);
      }
      const body = new URLSearchParams({ ...form.fields, email: USER.email }).toString();
      const answer = await rawExchange(
        srv.port,
        `POST ${new URL(form.action).pathname} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: ${cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length + 100}\r\n\r\n${body}`,
      );
      expect(answer).to.match(/^HTTP\/1\.1 400 /);
      expectNoLeak(answer);
      await new Promise((r) => setTimeout(r, 100));
      expect(srv.errors(), JSON.stringify(srv.errors())).to.deep.equal([]);
    });

    it('gives an unknown email and a wrong password the same page, in comparable time', async () => {
      const { agent, form } = await loginPage();
      const unknownEmail = 'nobody.at.all@example.test';
      const attempt = async (email: string) => {
        const started = performance.now();
        const res = await agent.request(form.action, { method: 'POST', form: { ...form.fields, email, password: 'not the password' } });
        return { res, ms: performance.now() - started };
      };
      // Warm both paths up (the first unknown-email attempt also derives the dummy hash).
      await attempt(unknownEmail);
      await attempt(USER.email);
      const unknown: number[] = [];
      const wrong: number[] = [];
      let pages: { unknown: PageResponse; wrong: PageResponse } | undefined;
      for (let i = 0; i < 4; i++) {
        const a = await attempt(unknownEmail);
        const b = await attempt(USER.email);
        unknown.push(a.ms);
        wrong.push(b.ms);
        pages = { unknown: a.res, wrong: b.res };
      }
      for (const page of [pages!.unknown, pages!.wrong]) {
        expectNoLeak(page.body);
        expect(page.status).to.equal(401);
        expect(page.body).to.contain('Invalid email or password.');
      }
      // A NUL byte in the email is just an unknown email (PostgreSQL text cannot hold one).
      const nul = await agent.request(form.action, { method: 'POST', form: { ...form.fields, email: 'nul\u0000@example.test', password: 'not the password' } });
      expectNoLeak(nul.body);
      expect(nul.status).to.equal(401);
      expect(nul.body).to.contain('Invalid email or password.');
      // Byte for byte the same page, once the echoed email is set aside.
      const strip = (html: string, email: string) => html.split(email).join('EMAIL');
      expect(strip(pages!.unknown.body, unknownEmail)).to.equal(strip(pages!.wrong.body, USER.email));
      const [mu, mw] = [median(unknown), median(wrong)];
      expect(Math.max(mu, mw) / Math.min(mu, mw), `unknown ${unknown.map(Math.round).join(',')} ms vs wrong ${wrong.map(Math.round).join(',')} ms`).to.be.below(3);
    });
  });

  describe('CLI', () => {
    async function expectOneLineFailure(...args: string[]) {
      const r = await srv.cli(...args);
      expect(r.code, `${args.join(' ')}: ${r.stdout}`).to.not.equal(0);
      expect(r.stdout, args.join(' ')).to.equal('');
      const lines = r.stderr.split('\n').filter((l) => l !== '');
      expect(lines, `${args.join(' ')}: ${r.stderr}`).to.have.length(1);
      expect(lines[0]).to.match(/^latch: \S/);
      expect(r.stderr.endsWith('\n')).to.equal(true);
      expectNoLeak(r.stderr, 'stderr');
      return lines[0]!;
    }

    it('refuses a bad redirect URI', async () => {
      for (const uri of ['not a uri', 'callback', 'https://app.example.test/cb#fragment', 'javascript:alert(1)', 'data:text/html,hi', 'ftp://app.example.test/cb']) {
        expect(await expectOneLineFailure('clients', 'create', '--name', 'Bad', '--redirect-uri', uri), uri).to.contain('--redirect-uri');
      }
      expect(await expectOneLineFailure('clients', 'create', '--name', 'Bad', '--redirect-uri', REDIRECT, '--post-logout-redirect-uri', 'javascript:alert(1)')).to.contain('--post-logout-redirect-uri');
    });

    it('refuses an unknown --resource, a bad --auth-method, and a public client_credentials client', async () => {
      expect(await expectOneLineFailure('clients', 'create', '--name', 'Bad', '--grant', 'client_credentials', '--resource', 'https://unknown.example.test')).to.contain('--resource');
      expect(await expectOneLineFailure('clients', 'create', '--name', 'Bad', '--redirect-uri', REDIRECT, '--auth-method', 'client_secret_jwt')).to.contain('--auth-method');
      expect(await expectOneLineFailure('clients', 'create', '--name', 'Bad', '--redirect-uri', REDIRECT, '--auth-method', 'nonsense')).to.contain('--auth-method');
      expect(await expectOneLineFailure('clients', 'create', '--name', 'Bad', '--public', '--grant', 'client_credentials')).to.contain('--grant');
      await expectOneLineFailure('clients', 'create', '--name', 'Bad', '--grant', 'password');
      await expectOneLineFailure('clients', 'create', '--redirect-uri', REDIRECT);
      await expectOneLineFailure('clients', 'create', '--name', 'Bad', '--bogus-flag');
    });

    it('refuses a duplicate email that differs only in case', async () => {
      await expectOneLineFailure('users', 'create', '--email', USER.email.toUpperCase(), '--password', 'another long password');
      await expectOneLineFailure('users', 'create', '--email', USER.email.toLowerCase(), '--password', 'another long password');
      await expectOneLineFailure('users', 'create', '--email', 'not-an-email', '--password', 'another long password');
      await expectOneLineFailure('users', 'create', '--email', 'short@example.test', '--password', 'short');
    });

    it('refuses resources create --alg HS256 (a shared-secret alg for offline-verified tokens)', async () => {
      expect(await expectOneLineFailure('resources', 'create', '--identifier', 'https://hs.example.test', '--alg', 'HS256')).to.contain('--alg');
      await expectOneLineFailure('resources', 'create', '--identifier', 'https://none.example.test', '--alg', 'none');
      await expectOneLineFailure('resources', 'create', '--identifier', API);
      await expectOneLineFailure('resources', 'create', '--identifier', 'not a uri');
      await expectOneLineFailure('resources', 'create', '--identifier', 'https://ttl.example.test', '--ttl', '-5');
    });
  });

  describe('a failure of ours at the authorization endpoint', () => {
    let broken: TestServer;
    before(async () => {
      broken = await startTestServer();
      // The clients table disappears: every client lookup fails inside the server.
      await broken.running.db.raw('ALTER TABLE clients RENAME TO clients_gone');
    });
    after(async () => {
      await broken?.running.db.raw('ALTER TABLE clients_gone RENAME TO clients');
      await broken?.close();
    });

    it('is a 500 error page (server_error), not a 400 that hides it, and is logged', async () => {
      const res = await call(`${broken.url}/auth?${new URLSearchParams({ client_id: 'any', response_type: 'code', scope: 'openid', redirect_uri: REDIRECT })}`, { headers: { accept: 'text/html' } });
      expectNoLeak(res.text);
      expect(res.status).to.equal(500);
      expect(res.headers.get('content-type')).to.match(/^text\/html/);
      expect(res.headers.get('location')).to.equal(null);
      expect(res.text).to.contain('server_error');
      expect(broken.errors().length).to.be.greaterThan(0);
    });
  });

  describe('health', () => {
    it('answers /healthz and /readyz with 200', async () => {
      const health = await call(`${srv.url}/healthz`);
      expect(health.status).to.equal(200);
      expect(health.json).to.deep.equal({ status: 'ok' });
      const ready = await call(`${srv.url}/readyz`);
      expect(ready.status).to.equal(200);
      expect(ready.json).to.deep.equal({ status: 'ready' });
    });
  });
});
