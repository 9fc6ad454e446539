import { createHmac, randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

import { createVerifier, expressBearer, type AccessClaims, koaBearer, verifyUpgrade, VerifyError, type Verifier, type VerifierOptions } from '@latch/verify';
import { expect } from 'chai';
import { decodeJwt, decodeProtectedHeader, exportJWK, exportSPKI, generateKeyPair, importJWK, SignJWT } from 'jose';
import Koa from 'koa';

import { codeFlowTokens } from './helpers/agent.js';
import { startTestServer, type TestServer } from './helpers/server.js';

const REDIRECT = 'http://127.0.0.1:9/callback';
const API = 'https://orders.example.test';
const OTHER_API = 'https://other.example.test';
const ADA = { email: 'ada@example.test', password: 'correct horse battery staple' };
const ROOT = { email: 'root@example.test', password: 'superuser passphrase for root' };

type Client = { client_id: string; client_secret: string };

/** @latch/verify, imported by its package name, against a real Latch over real HTTP. */
describe('@latch/verify', function () {
  this.timeout(60_000);

  let srv: TestServer;
  let web: Client;
  let rs: Client;
  let acme: { id: string };
  let globex: { id: string };
  let ids: Record<string, string>;
  let adaToken: string;

  const cli = async (...args: string[]) => {
    const r = await srv.cli(...args);
    expect(r.code, `${args.join(' ')}: ${r.stderr}`).to.equal(0);
    return r.json;
  };

  async function signIn(user: { email: string; password: string }, params: Record<string, string>, client = web) {
    return codeFlowTokens(srv.url, client, REDIRECT, user, params);
  }

  const accessToken = async (user: typeof ADA, scope: string, extra: Record<string, string> = {}) => (await signIn(user, { scope, resource: API, ...extra })).access_token;

  /** A verifier whose fetches of the key set and introspection endpoint are counted, on a clock the test moves. */
  function counted(options: Partial<VerifierOptions> = {}) {
    const calls = { jwks: 0, discovery: 0, introspection: 0 };
    const clock = { offset: 0 };
    const verifier = createVerifier({
      issuer: srv.url,
      audience: API,
      now: () => Date.now() + clock.offset,
      fetch: async (input, init) => {
        const path = new URL(String(input)).pathname;
        if (path === '/jwks') calls.jwks += 1;
        else if (path.endsWith('/openid-configuration')) calls.discovery += 1;
        else if (path.endsWith('/introspection')) calls.introspection += 1;
        return fetch(input, init);
      },
      ...options,
    });
    return { verifier, calls, clock };
  }

  async function refusal(promise: Promise<unknown>): Promise<VerifyError> {
    try {
      await promise;
    } catch (err) {
      expect(err).to.be.instanceOf(VerifyError);
      return err as VerifyError;
    }
    throw new Error('the token was accepted');
  }

  /** A token with Latch's claims but signed by a key Latch never published. */
  async function foreignToken(kid: string, claims: Record<string, unknown>) {
    const { privateKey } = await generateKeyPair('ES256');
    return new SignJWT(claims).setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid }).sign(privateKey);
  }

  before(async () => {
    srv = await startTestServer({ changePollMs: 100 });
    ids = {};
    ids[ADA.email] = (await cli('users', 'create', '--email', ADA.email, '--password', ADA.password, '--email-verified')).id;
    ids[ROOT.email] = (await cli('users', 'create', '--email', ROOT.email, '--password', ROOT.password, '--superuser')).id;
    await cli('resources', 'create', '--identifier', API, '--scope', 'orders:read', '--scope', 'orders:write', '--scope', 'orders:delete');
    await cli('resources', 'create', '--identifier', OTHER_API, '--scope', 'other:read');
    web = await cli('clients', 'create', '--name', 'Shop', '--first-party', '--redirect-uri', REDIRECT, '--resource', API, '--resource', OTHER_API, '--scope', 'openid email roles orders:read orders:write orders:delete other:read');
    rs = await cli('clients', 'create', '--name', 'Orders API', '--grant', 'client_credentials', '--resource', API);
    await cli('roles', 'grant', '--role', 'viewer', '--org', '--permission', `${API}:orders:read`);
    acme = await cli('orgs', 'create', '--name', 'Acme', '--slug', 'acme', '--owner', ADA.email);
    globex = await cli('orgs', 'create', '--name', 'Globex', '--slug', 'globex', '--owner', ROOT.email);
    await srv.running.services.feed.pollNow();
    adaToken = await accessToken(ADA, 'openid email roles orders:read');
  });

  after(async () => {
    expect(srv.errors(), JSON.stringify(srv.errors())).to.deep.equal([]);
    await srv.close();
  });

  it('accepts a valid access token and returns its typed claims', async () => {
    const { verifier, calls } = counted();
    const claims = await verifier.verify(adaToken, { scopes: ['orders:read'] });
    expect(claims).to.include({ sub: ids[ADA.email], email: ADA.email, email_verified: true, is_superuser: false, client_id: web.client_id, source: 'jwt' });
    expect(claims.scopes).to.deep.equal(['orders:read']);
    expect(claims.roles).to.deep.equal([]);
    expect(claims.payload.iss).to.equal(srv.url);
    // Discovery and keys are fetched once and then cached.
    await verifier.verify(adaToken);
    expect(calls).to.deep.equal({ jwks: 1, discovery: 1, introspection: 0 });
  });

  it('refuses a missing, expired, wrong-audience or wrong-issuer token with the RFC 6750 §3 challenge', async () => {
    const { verifier, clock } = counted();
    const none = await refusal(verifier.verify(undefined));
    expect(none.status).to.equal(401);
    expect(none.challenge).to.equal(`Bearer realm="${API}"`);

    const { exp } = decodeJwt(adaToken);
    clock.offset = (exp! + 6) * 1000 - Date.now();
    const expired = await refusal(verifier.verify(adaToken));
    expect(expired.status).to.equal(401);
    expect(expired.challenge).to.match(new RegExp(`^Bearer realm="${API}", error="invalid_token", error_description="[^"]*expired`));
    // Within the 5 s tolerance it is still good.
    clock.offset = (exp! + 3) * 1000 - Date.now();
    expect((await verifier.verify(adaToken)).sub).to.equal(ids[ADA.email]);

    const other = await refusal(counted({ audience: OTHER_API }).verifier.verify(adaToken));
    expect(other.status).to.equal(401);
    expect(other.challenge).to.contain('error="invalid_token"').and.contain('aud');
    // A token for the other API is refused by this one.
    const forOther = await accessToken(ADA, 'openid other:read', { resource: OTHER_API });
    expect((await refusal(verifier.verify(forOther))).challenge).to.contain('aud');

    // Another issuer whose discovery points at Latch's keys: Latch's tokens are not its tokens.
    const proxy = http.createServer((req, res) => {
      const me = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
      if (req.url === '/.well-known/openid-configuration') {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ issuer: me, jwks_uri: `${srv.url}/jwks` }));
      } else {
        res.statusCode = 404;
        res.end();
      }
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    try {
      const issuer = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
      const wrongIss = await refusal(createVerifier({ issuer, audience: API }).verify(adaToken));
      expect(wrongIss.status).to.equal(401);
      expect(wrongIss.challenge).to.contain('iss');
    } finally {
      await new Promise((r) => proxy.close(r));
    }
  });

  it('refuses alg none, an HS256 forgery keyed with the public key, an ID token and an unknown key', async () => {
    const { verifier, calls } = counted();
    const [header, payload] = adaToken.split('.') as [string, string];
    const { kid } = decodeProtectedHeader(adaToken);
    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');

    const none = `${b64({ alg: 'none', typ: 'at+jwt', kid })}.${payload}.`;
    expect((await refusal(verifier.verify(none))).challenge).to.contain('algorithm');

    const jwks = (await (await fetch(`${srv.url}/jwks`)).json()) as { keys: (Record<string, unknown> & { kid: string })[] };
    const publicJwk = jwks.keys.find((k) => k.kid === kid)!;
    const pem = await exportSPKI((await importJWK(publicJwk, publicJwk.alg as string)) as Parameters<typeof exportSPKI>[0]);
    for (const secret of [pem, JSON.stringify(publicJwk)]) {
      const signingInput = `${b64({ alg: 'HS256', typ: 'at+jwt', kid })}.${payload}`;
      const forged = `${signingInput}.${createHmac('sha256', secret).update(signingInput).digest('base64url')}`;
      const err = await refusal(verifier.verify(forged));
      expect(err.status).to.equal(401);
      expect(err.challenge).to.contain('error="invalid_token"');
    }
    // The untouched token is fine, so the refusals above are about the algorithm.
    expect(`${header}.${payload}`).to.equal(adaToken.split('.').slice(0, 2).join('.'));
    expect((await verifier.verify(adaToken)).sub).to.equal(ids[ADA.email]);

    // An ID token (typ JWT, aud the client) presented to an API whose audience is that client.
    const tokens = await signIn(ADA, { scope: 'openid email orders:read', resource: API });
    const asApi = counted({ audience: web.client_id }).verifier;
    expect((await refusal(asApi.verify(tokens.id_token!))).challenge).to.contain('typ');

    const unknown = await foreignToken('not-a-latch-key', { ...decodeJwt(adaToken) });
    const err = await refusal(verifier.verify(unknown));
    expect(err.status).to.equal(401);
    expect(err.challenge).to.contain('unknown key');
    expect(calls.jwks, 'no refetch within 30 s of the first fetch').to.equal(1);
  });

  it('picks up a rotated key after exactly one refetch, and junk kids refetch at most once per 30 s', async () => {
    const { verifier, calls, clock } = counted();
    await verifier.verify(adaToken);
    expect(calls.jwks).to.equal(1);

    const junk = async (n: number) => {
      for (let i = 0; i < n; i++) await refusal(verifier.verify(await foreignToken(`junk-${clock.offset}-${i}`, decodeJwt(adaToken))));
    };
    await junk(10);
    expect(calls.jwks, 'the first fetch counts: no refetch within 30 s').to.equal(1);
    clock.offset = 31_000;
    await junk(10);
    expect(calls.jwks, 'one refetch for ten junk kids').to.equal(2);

    const oldKid = decodeProtectedHeader(adaToken).kid;
    await cli('keys', 'rotate');
    await srv.running.services.feed.pollNow();
    const rotated = await accessToken(ADA, 'openid orders:read');
    expect(decodeProtectedHeader(rotated).kid).to.not.equal(oldKid);
    // Within 30 s of the last fetch the new kid is not fetched for...
    expect((await refusal(verifier.verify(rotated))).challenge).to.contain('unknown key');
    expect(calls.jwks).to.equal(2);
    // ...after that, exactly one refetch and it is accepted, as are later tokens with it.
    clock.offset = 62_000;
    expect((await verifier.verify(rotated)).sub).to.equal(ids[ADA.email]);
    expect(calls.jwks).to.equal(3);
    await verifier.verify(rotated);
    expect(calls.jwks).to.equal(3);
    expect(calls.discovery).to.equal(1);
  });

  it('refuses a DPoP-bound token (cnf.jkt) presented as a bearer token (RFC 9449 §7.1)', async () => {
    const worker = await cli('clients', 'create', '--name', 'DPoP worker', '--grant', 'client_credentials', '--resource', API, '--scope', 'orders:read');
    await srv.running.services.feed.pollNow();
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    const jwk = await exportJWK(publicKey);
    const dpop = await new SignJWT({ htm: 'POST', htu: `${srv.url}/token` }).setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk }).setIssuedAt().setJti(randomUUID()).sign(privateKey);
    const res = await fetch(`${srv.url}/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${worker.client_id}:${worker.client_secret}`).toString('base64')}`, dpop, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'orders:read', resource: API }),
    });
    const body = (await res.json()) as { token_type: string; access_token: string };
    expect(body.token_type).to.equal('DPoP');
    const err = await refusal(counted().verifier.verify(body.access_token));
    expect(err.status).to.equal(401);
    expect(err.challenge).to.include('error="invalid_token"');
    expect(err.message).to.match(/bound to a key \(DPoP\)/);
    // The same client without a proof gets a bearer token the verifier accepts.
    const plain = await fetch(`${srv.url}/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${worker.client_id}:${worker.client_secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'orders:read', resource: API }),
    });
    expect((await counted().verifier.verify(((await plain.json()) as { access_token: string }).access_token)).client_id).to.equal(worker.client_id);
  });

  it('checks scopes, organization, organization roles and superuser (403 insufficient_scope)', async () => {
    const { verifier } = counted();
    const scope = await refusal(verifier.verify(adaToken, { scopes: ['orders:read', 'orders:delete'] }));
    expect(scope.status).to.equal(403);
    expect(scope.challenge).to.equal(`Bearer realm="${API}", error="insufficient_scope", error_description="the token lacks a required scope", scope="orders:read orders:delete"`);

    const orgToken = await accessToken(ADA, 'openid orders:read', { organization: acme.id });
    const claims = await verifier.verify(orgToken, { organization: acme.id, orgRoles: ['owner', 'admin'] });
    expect(claims).to.include({ org_id: acme.id, org_role: 'owner' });
    for (const requirement of [{ organization: globex.id }, { orgRoles: ['admin'] }, { superuser: true }]) {
      const err = await refusal(verifier.verify(orgToken, requirement));
      expect(err.status, JSON.stringify(requirement)).to.equal(403);
      expect(err.challenge).to.contain('error="insufficient_scope"').and.not.contain('scope="');
    }
    // A token for no organization fails an organization requirement.
    expect((await refusal(verifier.verify(adaToken, { organization: acme.id }))).status).to.equal(403);

    const rootToken = await accessToken(ROOT, 'openid roles orders:read');
    expect((await verifier.verify(rootToken, { superuser: true })).is_superuser).to.equal(true);
  });

  it('refuses with 401, never throws otherwise, when Latch answers a malformed key set or an introspection without sub', async () => {
    // What a broken proxy or a misconfigured issuer could answer: the verifier must still answer 401.
    const answering = (path: string, body: unknown) =>
      createVerifier({
        issuer: srv.url,
        audience: API,
        introspection: { clientId: rs.client_id, clientSecret: rs.client_secret },
        fetch: async (input, init) => (new URL(String(input)).pathname.endsWith(path) ? Response.json(body) : fetch(input, init)),
      });
    const badKeys = await refusal(answering('/jwks', { keys: [1] }).verify(adaToken));
    expect(badKeys.status).to.equal(401);
    expect(badKeys.challenge).to.contain('error="invalid_token"').and.contain('key set is malformed');
    const noSub = await refusal(answering('/introspection', { active: true, aud: API, scope: 'orders:read', client_id: rs.client_id, exp: Math.floor(Date.now() / 1000) + 60 }).verify('lat_not-a-jwt'));
    expect(noSub.status).to.equal(401);
    expect(noSub.challenge).to.contain("sub claim is missing");
  });

  it('accepts a personal access token through introspection, and refuses it within the cache time once revoked', async () => {
    const pats = srv.running.services.personalTokens;
    const { token, record } = await pats.create({ id: ids[ADA.email]! }, { name: 'verifier test', scopes: [`${API}:orders:read`] });
    expect(token).to.match(/^lat_/);

    // Without introspection credentials a token that is not a JWT is refused outright.
    const bare = counted();
    expect((await refusal(bare.verifier.verify(token))).challenge).to.contain('introspection is not configured');
    expect(bare.calls.introspection).to.equal(0);

    const { verifier, calls, clock } = counted({ introspection: { clientId: rs.client_id, clientSecret: rs.client_secret } });
    const claims = await verifier.verify(token, { scopes: ['orders:read'] });
    expect(claims).to.include({ sub: ids[ADA.email], source: 'introspection' });
    await verifier.verify(token);
    expect(calls.introspection, 'cached').to.equal(1);
    // JWTs never go to introspection.
    await verifier.verify(adaToken);
    expect(calls.introspection).to.equal(1);

    expect(await pats.revoke(ids[ADA.email]!, record.id)).to.equal(true);
    clock.offset = 30_000;
    const err = await refusal(verifier.verify(token));
    expect(err.status).to.equal(401);
    expect(err.challenge).to.contain('not active');
    expect(calls.introspection).to.equal(2);

    // cacheSeconds 0: every verification asks Latch.
    const uncached = counted({ introspection: { clientId: rs.client_id, clientSecret: rs.client_secret, cacheSeconds: 0 } });
    const live = await pats.create({ id: ids[ADA.email]! }, { name: 'uncached', scopes: [`${API}:orders:read`] });
    await uncached.verifier.verify(live.token);
    await pats.revoke(ids[ADA.email]!, live.record.id);
    expect((await refusal(uncached.verifier.verify(live.token))).status).to.equal(401);
    expect(uncached.calls.introspection).to.equal(2);
  });

  /** Calls a local server: status, WWW-Authenticate, content type and JSON body. */
  async function call(url: string, token?: string) {
    const res = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
    return { status: res.status, challenge: res.headers.get('www-authenticate'), type: res.headers.get('content-type'), body: (await res.json()) as Record<string, unknown> };
  }

  async function listen(server: http.Server): Promise<string> {
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  async function expectMiddleware(url: string) {
    const missing = await call(url);
    expect(missing.status).to.equal(401);
    expect(missing.challenge).to.equal(`Bearer realm="${API}"`);
    expect(missing.type).to.contain('application/problem+json');
    expect(missing.body).to.include({ status: 401, title: 'Unauthorized' });

    const junk = await call(url, 'not-a-token');
    expect(junk.status).to.equal(401);
    expect(junk.challenge).to.contain('error="invalid_token"');

    const ok = await call(url, adaToken);
    expect(ok.status).to.equal(200);
    expect(ok.body).to.deep.equal({ sub: ids[ADA.email], email: ADA.email });

    const write = await call(url.replace('/read', '/write'), adaToken);
    expect(write.status).to.equal(403);
    expect(write.challenge).to.contain('error="insufficient_scope"').and.contain('scope="orders:write"');
    expect(write.type).to.contain('application/problem+json');
    expect(write.body).to.include({ status: 403, title: 'Forbidden' });
  }

  it('koaBearer puts the claims on ctx.state.auth and answers refusals with problem+json', async () => {
    const verifier = counted().verifier;
    const read = koaBearer(verifier, { scopes: ['orders:read'] });
    const write = koaBearer(verifier, { scopes: ['orders:write'] });
    const app = new Koa();
    app.use(async (ctx, next) => (ctx.path === '/write' ? write(ctx, next) : read(ctx, next)));
    app.use((ctx) => {
      const auth = ctx.state.auth as { sub: string; email: string };
      ctx.body = { sub: auth.sub, email: auth.email };
    });
    const handle = app.callback();
    const server = http.createServer((req, res) => void handle(req, res));
    try {
      await expectMiddleware(`${await listen(server)}/read`);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it('expressBearer puts the claims on req.auth and answers refusals with problem+json', async () => {
    const verifier = counted().verifier;
    const read = expressBearer(verifier, { scopes: ['orders:read'] });
    const write = expressBearer(verifier, { scopes: ['orders:write'] });
    const server = http.createServer((req, res) => {
      const request = req as http.IncomingMessage & { auth?: AccessClaims };
      (req.url === '/write' ? write : read)(request, res, (err) => {
        res.statusCode = err ? 500 : 200;
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ sub: request.auth?.sub, email: request.auth?.email }));
      });
    });
    try {
      await expectMiddleware(`${await listen(server)}/read`);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it('verifyUpgrade takes the token from the Authorization header, the bearer subprotocol or ?access_token=', async () => {
    const verifier: Verifier = counted().verifier;
    const server = http.createServer();
    server.on('upgrade', (req: http.IncomingMessage, socket: import('node:stream').Duplex) => {
      verifyUpgrade(verifier, req, { scopes: ['orders:read'] }).then(
        ({ auth, protocol }) => {
          socket.end(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Sub: ${auth.sub}\r\n${protocol ? `Sec-WebSocket-Protocol: ${protocol}\r\n` : ''}\r\n`);
        },
        (err: VerifyError) => {
          socket.end(`HTTP/1.1 ${err.status} Refused\r\nWWW-Authenticate: ${err.challenge}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
        },
      );
    });
    const base = await listen(server);
    const upgrade = (path: string, headers: Record<string, string>) =>
      new Promise<{ status: number; headers: http.IncomingHttpHeaders }>((resolve, reject) => {
        const req = http.request(`${base}${path}`, { headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', ...headers } });
        req.on('upgrade', (res, socket) => {
          socket.destroy();
          resolve({ status: res.statusCode!, headers: res.headers });
        });
        req.on('response', (res) => {
          res.resume();
          resolve({ status: res.statusCode!, headers: res.headers });
        });
        req.on('error', reject);
        req.end();
      });
    try {
      const viaHeader = await upgrade('/ws', { authorization: `Bearer ${adaToken}` });
      expect(viaHeader.status).to.equal(101);
      expect(viaHeader.headers['x-sub']).to.equal(ids[ADA.email]);
      expect(viaHeader.headers['sec-websocket-protocol']).to.equal(undefined);

      const viaProtocol = await upgrade('/ws', { 'sec-websocket-protocol': `bearer, ${adaToken}` });
      expect(viaProtocol.status).to.equal(101);
      expect(viaProtocol.headers['x-sub']).to.equal(ids[ADA.email]);
      expect(viaProtocol.headers['sec-websocket-protocol']).to.equal('bearer');

      const viaQuery = await upgrade(`/ws?access_token=${encodeURIComponent(adaToken)}`, {});
      expect(viaQuery.status).to.equal(101);
      expect(viaQuery.headers['x-sub']).to.equal(ids[ADA.email]);

      const none = await upgrade('/ws', {});
      expect(none.status).to.equal(401);
      expect(none.headers['www-authenticate']).to.equal(`Bearer realm="${API}"`);
      const bad = await upgrade('/ws?access_token=junk', {});
      expect(bad.status).to.equal(401);
      expect(bad.headers['www-authenticate']).to.contain('error="invalid_token"');
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
