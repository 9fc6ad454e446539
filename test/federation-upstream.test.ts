import net from 'node:net';

import { expect } from 'chai';

import { createUpstreamClient, UpstreamError, upstreamUrlProblem, type UpstreamClient, type UpstreamProvider, type UpstreamTransaction } from '../src/federation/upstream.js';
import { startGithubStub, type GithubStub } from './helpers/github-stub.js';
import { recordingLogger } from './helpers/server.js';
import { startUpstreamOidc, type UpstreamOidc } from './helpers/upstream-oidc.js';

const CALLBACK = 'http://127.0.0.1:9/federation/callback';

async function refusal(promise: Promise<unknown>): Promise<UpstreamError> {
  try {
    await promise;
  } catch (err) {
    expect(err, String((err as Error)?.stack)).to.be.instanceOf(UpstreamError);
    return err as UpstreamError;
  }
  throw new Error('the upstream sign-in succeeded');
}

/** The upstream protocol client against local stand-ins of an OpenID Connect provider and GitHub, over real HTTP. */
describe('federation: upstream protocol client', function () {
  this.timeout(30_000);

  let up: UpstreamOidc;
  let postOnly: UpstreamOidc;
  let gh: GithubStub;
  let logger: ReturnType<typeof recordingLogger>;
  let clock: { offset: number };
  let fetched: string[];
  let client: UpstreamClient;
  /** Codes and tokens seen in this suite: none may reach a log line. */
  const secrets: string[] = [];

  const oidcProvider = (over: Partial<UpstreamProvider> = {}): UpstreamProvider => ({
    name: 'corp',
    kind: 'oidc',
    issuer: up.issuer,
    client_id: up.clientId,
    client_secret: up.clientSecret,
    scopes: ['openid', 'email', 'profile'],
    ...over,
  });
  const githubProvider = (over: Partial<UpstreamProvider> = {}): UpstreamProvider => ({
    name: 'github',
    kind: 'github',
    client_id: gh.clientId,
    client_secret: gh.clientSecret,
    scopes: ['read:user', 'user:email'],
    api_url: gh.apiUrl,
    web_url: gh.webUrl,
    ...over,
  });

  /** start → the stand-in's pages → the callback URL Latch would receive. */
  async function signIn(provider: UpstreamProvider, login: string, opts: { cancel?: boolean; via?: UpstreamClient } = {}) {
    const c = opts.via ?? client;
    const { url, transaction } = await c.start(provider, `${CALLBACK}/${provider.name}`);
    const stand = provider.kind === 'github' ? gh : provider.issuer === postOnly.issuer ? postOnly : up;
    const callback = await stand.signIn(url, login, { cancel: opts.cancel });
    const code = callback.searchParams.get('code');
    if (code) secrets.push(code);
    return { url, transaction, callback };
  }

  before(async () => {
    const redirectUris = [`${CALLBACK}/corp`, `${CALLBACK}/corp-post`, `${CALLBACK}/github`];
    up = await startUpstreamOidc({ redirectUris });
    postOnly = await startUpstreamOidc({ redirectUris, authMethods: ['client_secret_post'] });
    gh = await startGithubStub({ redirectUris });
    secrets.push(up.clientSecret, postOnly.clientSecret, gh.clientSecret);
  });

  beforeEach(() => {
    logger = recordingLogger();
    clock = { offset: 0 };
    fetched = [];
    client = createUpstreamClient({
      logger,
      now: () => Date.now() + clock.offset,
      fetch: async (input, init) => {
        fetched.push(`${init?.method ?? 'GET'} ${String(input)}`);
        const res = await fetch(input, init);
        // Tokens the upstreams hand out, so the log check below knows what to look for.
        if (/\/token$|access_token$/.test(String(input)) && res.ok) {
          const body = (await res.clone().json().catch(() => ({}))) as Record<string, unknown>;
          for (const k of ['access_token', 'id_token', 'refresh_token']) if (typeof body[k] === 'string') secrets.push(body[k]);
        }
        return res;
      },
    });
    up.mode.badSignature = false;
    up.mode.deny = false;
    up.mode.idTokenClaims = undefined;
    gh.mode.apiStatus = undefined;
  });

  afterEach(function () {
    // Never the client secret, a code or a token in a log line, whatever happened.
    const text = JSON.stringify(logger.lines);
    for (const s of secrets) expect(text, `a secret reached the log in "${this.currentTest?.title}"`).not.to.include(s);
  });

  after(async () => {
    await Promise.all([up?.close(), postOnly?.close(), gh?.close()]);
  });

  describe('oidc', () => {
    it('starts an authorization code request with PKCE S256, state, nonce and response_mode=query', async () => {
      const { url, transaction } = await client.start(oidcProvider({ scopes: ['email', 'profile'] }), `${CALLBACK}/corp`);
      expect(url.origin + url.pathname).to.equal(`${up.issuer}/auth`);
      const p = url.searchParams;
      expect(p.get('response_type')).to.equal('code');
      expect(p.get('response_mode')).to.equal('query');
      expect(p.get('client_id')).to.equal(up.clientId);
      expect(p.get('redirect_uri')).to.equal(`${CALLBACK}/corp`);
      // openid is added when the configured scopes forget it (OIDC Core §3.1.2.1).
      expect(p.get('scope')!.split(' ')).to.have.members(['openid', 'email', 'profile']);
      expect(p.get('code_challenge_method')).to.equal('S256');
      expect(p.get('code_challenge')).to.match(/^[\w-]{43}$/);
      expect(p.get('state')).to.equal(transaction.state);
      expect(p.get('nonce')).to.equal(transaction.nonce);
      expect(transaction).to.include({ provider: 'corp', redirect_uri: `${CALLBACK}/corp` });
      expect(transaction.code_verifier).to.match(/^[\w-]{43,}$/);
      // The verifier itself never leaves Latch at this step.
      expect(url.toString()).not.to.include(transaction.code_verifier);
    });

    it('finishes with the identity from a verified ID token, authenticating with client_secret_basic', async () => {
      const provider = oidcProvider();
      const { transaction, callback } = await signIn(provider, 'grace@upstream.test');
      const before = up.requests.length;
      const identity = await client.finish(provider, transaction, callback);
      expect(identity).to.deep.include({ subject: 'up-verified', email: 'grace@upstream.test', email_verified: true, name: 'Grace Hopper' });
      expect(identity.claims).to.include({ iss: up.issuer, aud: up.clientId, sub: 'up-verified', nonce: transaction.nonce });
      const after = up.requests.slice(before);
      expect(after.find((r) => r.path === '/token')?.auth).to.equal('basic');
      // The email was in the ID token: userinfo was not asked. The JWKS was read to check the signature.
      expect(after.map((r) => r.path)).not.to.include('/me');
      expect(after.map((r) => r.path)).to.include('/jwks');
    });

    it('uses client_secret_post when discovery offers only that', async () => {
      const provider = oidcProvider({ name: 'corp-post', issuer: postOnly.issuer, client_id: postOnly.clientId, client_secret: postOnly.clientSecret });
      const { transaction, callback } = await signIn(provider, 'up-verified');
      const identity = await client.finish(provider, transaction, callback);
      expect(identity.subject).to.equal('up-verified');
      expect(postOnly.requests.filter((r) => r.path === '/token').map((r) => r.auth)).to.deep.equal(['post']);
    });

    it('reads the email from userinfo when the ID token has none', async () => {
      const provider = oidcProvider();
      const { transaction, callback } = await signIn(provider, 'up-userinfo');
      const before = up.requests.length;
      const identity = await client.finish(provider, transaction, callback);
      expect(identity).to.deep.include({ subject: 'up-userinfo', email: 'linus@upstream.test', email_verified: true, name: 'Linus' });
      expect(up.requests.slice(before).map((r) => r.path)).to.include('/me');
    });

    it('reports an unverified email as unverified', async () => {
      const provider = oidcProvider();
      const { transaction, callback } = await signIn(provider, 'mallory@upstream.test');
      const identity = await client.finish(provider, transaction, callback);
      expect(identity).to.deep.include({ subject: 'up-unverified', email: 'mallory@upstream.test', email_verified: false });
    });

    it('caches discovery: one discovery request for several sign-ins', async () => {
      const provider = oidcProvider();
      await client.start(provider, `${CALLBACK}/corp`);
      await client.start(provider, `${CALLBACK}/corp`);
      expect(fetched.filter((f) => f.includes('/.well-known/openid-configuration'))).to.have.length(1);
      // After its TTL (1 h) it is read again; forget() drops it at once.
      clock.offset = 3_600_001;
      await client.start(provider, `${CALLBACK}/corp`);
      client.forget('corp');
      await client.start(provider, `${CALLBACK}/corp`);
      expect(fetched.filter((f) => f.includes('/.well-known/openid-configuration'))).to.have.length(3);
    });

    it('answers access_denied from the upstream with a 403', async () => {
      const provider = oidcProvider();
      const { transaction, callback } = await signIn(provider, 'grace@upstream.test', { cancel: true });
      expect(callback.searchParams.get('error')).to.equal('access_denied');
      const err = await refusal(client.finish(provider, transaction, callback));
      expect(err).to.include({ reason: 'access_denied', status: 403, expose: true, provider: 'corp' });
      expect(err.message).to.match(/cancelled or refused/);
      // The stand-in's deny switch gives the same answer after a sign-in attempt.
      up.mode.deny = true;
      const again = await signIn(provider, 'grace@upstream.test');
      expect((await refusal(client.finish(provider, again.transaction, again.callback))).reason).to.equal('access_denied');
    });

    it('answers another error response with upstream_error 400', async () => {
      const provider = oidcProvider();
      const { transaction } = await client.start(provider, `${CALLBACK}/corp`);
      const callback = new URL(`${CALLBACK}/corp?error=temporarily_unavailable&error_description=later&state=${transaction.state}`);
      const err = await refusal(client.finish(provider, transaction, callback));
      expect(err).to.include({ reason: 'upstream_error', status: 400 });
      expect(err.detail).to.include('temporarily_unavailable');
    });

    it('refuses a tampered, missing or repeated state, and another provider\'s transaction, before calling the upstream', async () => {
      const provider = oidcProvider();
      const { transaction, callback } = await signIn(provider, 'grace@upstream.test');
      const tampered = new URL(callback);
      tampered.searchParams.set('state', `${transaction.state.slice(0, -1)}x`);
      const missing = new URL(callback);
      missing.searchParams.delete('state');
      const twice = new URL(callback);
      twice.searchParams.append('state', transaction.state);
      const before = up.requests.length;
      for (const url of [tampered, missing, twice]) expect(await refusal(client.finish(provider, transaction, url))).to.include({ reason: 'state', status: 400 });
      const other: UpstreamTransaction = { ...transaction, provider: 'github' };
      expect((await refusal(client.finish(provider, other, callback))).reason).to.equal('state');
      // A forged error response with a wrong state is refused as forged, not as a cancellation.
      const forged = new URL(`${CALLBACK}/corp?error=access_denied&state=nope`);
      expect((await refusal(client.finish(provider, transaction, forged))).reason).to.equal('state');
      expect(up.requests.slice(before).map((r) => r.path)).not.to.include('/token');
      // The genuine callback still works: nothing was spent.
      expect((await client.finish(provider, transaction, callback)).subject).to.equal('up-verified');
    });

    it('refuses an authorization response whose iss is another issuer\'s (RFC 9207 mix-up)', async () => {
      const provider = oidcProvider();
      const { transaction, callback } = await signIn(provider, 'grace@upstream.test');
      expect(callback.searchParams.get('iss')).to.equal(up.issuer);
      const before = up.requests.length;
      for (const iss of [postOnly.issuer, null]) {
        const mixed = new URL(callback);
        if (iss) mixed.searchParams.set('iss', iss);
        else mixed.searchParams.delete('iss');
        expect(await refusal(client.finish(provider, transaction, mixed)), String(iss)).to.include({ reason: 'state', status: 400 });
      }
      expect(up.requests.slice(before).map((r) => r.path)).not.to.include('/token');
    });

    it('names the provider\'s display name in what the person reads', async () => {
      const provider = oidcProvider({ display_name: 'Acme Login' });
      const { transaction, callback } = await signIn(provider, 'grace@upstream.test', { cancel: true });
      expect((await refusal(client.finish(provider, transaction, callback))).message).to.equal('Sign-in with Acme Login was cancelled or refused.');
      await up.stop();
      try {
        client.forget('corp');
        expect((await refusal(client.start(provider, `${CALLBACK}/corp`))).message).to.equal('Acme Login could not be reached. Please try again in a moment.');
      } finally {
        await up.start();
      }
    });

    it('refuses the replay of a finished callback: the code is single-use upstream', async () => {
      const provider = oidcProvider();
      const { transaction, callback } = await signIn(provider, 'grace@upstream.test');
      await client.finish(provider, transaction, callback);
      const err = await refusal(client.finish(provider, transaction, callback));
      expect(err).to.include({ reason: 'upstream_error', status: 400 });
      expect(err.detail).to.match(/invalid_grant/);
    });

    it('refuses an ID token whose nonce is not the transaction\'s', async () => {
      const provider = oidcProvider();
      const { transaction, callback } = await signIn(provider, 'grace@upstream.test');
      const err = await refusal(client.finish(provider, { ...transaction, nonce: 'another-nonce-of-another-browser' }, callback));
      expect(err).to.include({ reason: 'bad_id_token', status: 502, expose: true });
      expect(err.detail).to.match(/nonce/);
    });

    it('refuses a correctly signed ID token with another issuer, another audience or past its expiry', async () => {
      const provider = oidcProvider();
      const now = Math.floor(Date.now() / 1000);
      const cases: [Record<string, unknown>, RegExp][] = [
        [{ iss: 'http://127.0.0.1:1' }, /iss/],
        [{ aud: 'someone-else' }, /aud/],
        [{ exp: now - 3600, iat: now - 7200 }, /timestamp|exp/],
      ];
      for (const [claims, detail] of cases) {
        up.mode.idTokenClaims = claims;
        const { transaction, callback } = await signIn(provider, 'grace@upstream.test');
        const err = await refusal(client.finish(provider, transaction, callback));
        expect(err, JSON.stringify(claims)).to.include({ reason: 'bad_id_token', status: 502 });
        expect(err.detail, JSON.stringify(claims)).to.match(detail);
      }
      // The same alteration that changes nothing is accepted: the re-signing itself is sound.
      up.mode.idTokenClaims = { name: 'Grace B. Hopper' };
      const { transaction, callback } = await signIn(provider, 'grace@upstream.test');
      expect((await client.finish(provider, transaction, callback)).name).to.equal('Grace B. Hopper');
    });

    it('refuses an ID token signed by a key that is not in the upstream\'s JWKS', async () => {
      const provider = oidcProvider();
      // A client that has the JWKS cached already must still refuse.
      const first = await signIn(provider, 'grace@upstream.test');
      await client.finish(provider, first.transaction, first.callback);
      up.mode.badSignature = true;
      const { transaction, callback } = await signIn(provider, 'grace@upstream.test');
      const err = await refusal(client.finish(provider, transaction, callback));
      expect(err).to.include({ reason: 'bad_id_token', status: 502 });
      expect(err.detail).to.match(/signature/i);
      expect(err.message).to.equal('The sign-in provider returned a sign-in token that could not be verified. Please try again.');
      expect(logger.lines.some((l) => l.msg === 'upstream sign-in failed' && l.reason === 'bad_id_token' && l.level === 'warn')).to.equal(true);
    });

    it('answers 502 unreachable while the provider is down, and recovers when it is back', async () => {
      const provider = oidcProvider();
      await up.stop();
      try {
        const err = await refusal(client.start(provider, `${CALLBACK}/corp`));
        expect(err).to.include({ reason: 'unreachable', status: 502, expose: true });
        // A refused connection, or a pooled keep-alive socket found closed.
        expect(err.detail).to.match(/ECONNREFUSED|ECONNRESET|UND_ERR_SOCKET/);
        // The failure is remembered briefly: no request is made for it.
        const count = fetched.length;
        expect((await refusal(client.start(provider, `${CALLBACK}/corp`))).reason).to.equal('unreachable');
        expect(fetched).to.have.length(count);
      } finally {
        await up.start();
      }
      // Still remembered a moment later; retried once the retry delay has passed.
      expect((await refusal(client.start(provider, `${CALLBACK}/corp`))).reason).to.equal('unreachable');
      clock.offset = 5_001;
      const { transaction, callback } = await signIn(provider, 'grace@upstream.test');
      // Down between the redirect and the callback: the token request cannot be made.
      await up.stop();
      try {
        expect(await refusal(client.finish(provider, transaction, callback))).to.include({ reason: 'unreachable', status: 502 });
      } finally {
        await up.start();
      }
      expect((await client.finish(provider, transaction, callback)).subject).to.equal('up-verified');
    });

    it('bounds every upstream request with a timeout', async () => {
      // A server that accepts connections and never answers.
      const sockets: net.Socket[] = [];
      const blackHole = net.createServer((s) => sockets.push(s));
      await new Promise<void>((resolve) => blackHole.listen(0, '127.0.0.1', resolve));
      const port = (blackHole.address() as net.AddressInfo).port;
      try {
        const slow = createUpstreamClient({ logger, timeoutMs: 300 });
        const started = Date.now();
        const err = await refusal(slow.start(oidcProvider({ issuer: `http://127.0.0.1:${port}` }), `${CALLBACK}/corp`));
        expect(err).to.include({ reason: 'unreachable', status: 502 });
        expect(err.detail).to.match(/timed out/);
        expect(Date.now() - started).to.be.below(5_000);
      } finally {
        for (const s of sockets) s.destroy();
        await new Promise((resolve) => blackHole.close(resolve));
      }
    });

    it('refuses a plain-http issuer other than 127.0.0.1 or localhost, without a request', async () => {
      for (const issuer of ['http://idp.example.test', 'http://10.0.0.1:8080', 'ftp://127.0.0.1/']) {
        const err = await refusal(client.start(oidcProvider({ issuer }), `${CALLBACK}/corp`));
        expect(err, issuer).to.include({ reason: 'upstream_error', status: 502 });
        expect(err.detail).to.match(/https/);
      }
      expect(fetched).to.deep.equal([]);
      expect(upstreamUrlProblem('https://accounts.google.com')).to.equal(undefined);
      expect(upstreamUrlProblem('http://localhost:8080')).to.equal(undefined);
      expect(upstreamUrlProblem('http://127.0.0.1:8080')).to.equal(undefined);
      expect(upstreamUrlProblem('http://example.test')).to.match(/https/);
      expect(upstreamUrlProblem('not a url')).to.match(/absolute URL/);
    });

    it('refuses a discovery document that would send the browser or a request over plain http', async () => {
      const issuer = 'https://idp.example.test';
      const document = { issuer, authorization_endpoint: 'http://idp.example.test/auth', token_endpoint: `${issuer}/token`, jwks_uri: `${issuer}/jwks`, response_types_supported: ['code'] };
      const answers: string[] = [];
      const fake = createUpstreamClient({
        logger,
        fetch: async (input) => {
          answers.push(String(input));
          return new Response(JSON.stringify(document), { headers: { 'content-type': 'application/json' } });
        },
      });
      const err = await refusal(fake.start(oidcProvider({ issuer }), `${CALLBACK}/corp`));
      expect(err).to.include({ reason: 'upstream_error', status: 502 });
      expect(err.detail).to.match(/authorization_endpoint.*https/i);
      expect(answers).to.deep.equal([`${issuer}/.well-known/openid-configuration`]);
    });

    it('answers a provider without issuer or client id with upstream_error 502, not an exception', async () => {
      for (const over of [{ issuer: null }, { issuer: '' }, { client_id: '' }]) {
        expect(await refusal(client.start(oidcProvider(over), `${CALLBACK}/corp`)), JSON.stringify(over)).to.include({ reason: 'upstream_error', status: 502 });
      }
    });

    it('re-discovers when the provider\'s issuer changes', async () => {
      const first = oidcProvider({ name: 'moving' });
      await client.start(first, `${CALLBACK}/corp`);
      const { url } = await client.start(oidcProvider({ name: 'moving', issuer: postOnly.issuer, client_id: postOnly.clientId, client_secret: postOnly.clientSecret }), `${CALLBACK}/corp`);
      expect(url.origin).to.equal(postOnly.issuer);
    });
  });

  describe('github', () => {
    it('runs GitHub\'s web flow with state and PKCE, and returns the verified primary email', async () => {
      const provider = githubProvider();
      const before = gh.requests.length;
      const { url, transaction, callback } = await signIn(provider, 'octocat');
      expect(url.origin + url.pathname).to.equal(`${gh.webUrl}/login/oauth/authorize`);
      expect(Object.fromEntries(url.searchParams)).to.include({ client_id: gh.clientId, redirect_uri: `${CALLBACK}/github`, scope: 'read:user user:email', state: transaction.state, code_challenge_method: 'S256' });
      expect(url.searchParams.get('code_challenge')).to.match(/^[\w-]{43}$/);
      const identity = await client.finish(provider, transaction, callback);
      expect(identity).to.deep.include({ subject: '1001', email: 'octocat@upstream.test', email_verified: true, name: 'The Octocat' });
      expect(identity.claims).to.include({ id: 1001, login: 'octocat' });

      const seen = gh.requests.slice(before);
      const exchange = seen.find((r) => r.path === '/login/oauth/access_token')!;
      expect(exchange.method).to.equal('POST');
      expect(exchange.headers.accept).to.equal('application/json');
      expect(exchange.params).to.include({ client_id: gh.clientId, redirect_uri: `${CALLBACK}/github`, code_verifier: transaction.code_verifier });
      // The REST API is read under api_url's path, with GitHub's documented headers.
      for (const path of ['/api/v3/user', '/api/v3/user/emails']) {
        const r = seen.find((x) => x.path === path)!;
        expect(r, path).to.exist;
        expect(r.headers.authorization).to.match(/^Bearer gho_/);
        expect(r.headers.accept).to.equal('application/vnd.github+json');
        expect(r.headers['x-github-api-version']).to.equal('2022-11-28');
        expect(r.headers['user-agent']).to.be.a('string').and.not.be.empty;
      }
    });

    it('takes the login as the name when GitHub has none', async () => {
      const users = gh.users;
      const noName = { id: 1004, login: 'nameless', name: null, emails: [{ email: 'nameless@upstream.test', primary: true, verified: true }] };
      users.push(noName);
      try {
        const provider = githubProvider();
        const { transaction, callback } = await signIn(provider, 'nameless');
        expect(await client.finish(provider, transaction, callback)).to.deep.include({ subject: '1004', name: 'nameless' });
      } finally {
        users.splice(users.indexOf(noName), 1);
      }
    });

    it('refuses an account without a verified primary email with no_verified_email 403', async () => {
      const provider = githubProvider();
      for (const login of ['unverified-cat', 'half-cat']) {
        const { transaction, callback } = await signIn(provider, login);
        const err = await refusal(client.finish(provider, transaction, callback));
        expect(err, login).to.include({ reason: 'no_verified_email', status: 403 });
        expect(err.message).to.match(/^GitHub did not return a verified email address/);
      }
    });

    it('refuses when the token cannot read the email addresses (no user:email scope)', async () => {
      const provider = githubProvider({ scopes: ['read:user'] });
      const { transaction, callback } = await signIn(provider, 'octocat');
      expect((await refusal(client.finish(provider, transaction, callback))).reason).to.equal('no_verified_email');
    });

    it('answers Cancel with access_denied 403', async () => {
      const provider = githubProvider();
      const { transaction, callback } = await signIn(provider, 'octocat', { cancel: true });
      expect(callback.searchParams.get('error')).to.equal('access_denied');
      expect(await refusal(client.finish(provider, transaction, callback))).to.include({ reason: 'access_denied', status: 403 });
    });

    it('refuses a tampered state without exchanging the code', async () => {
      const provider = githubProvider();
      const { transaction, callback } = await signIn(provider, 'octocat');
      const tampered = new URL(callback);
      tampered.searchParams.set('state', 'attacker-state');
      const before = gh.requests.length;
      expect(await refusal(client.finish(provider, transaction, tampered))).to.include({ reason: 'state', status: 400 });
      expect(gh.requests.slice(before)).to.deep.equal([]);
    });

    it('refuses the replay of a finished callback (GitHub answers 200 with bad_verification_code)', async () => {
      const provider = githubProvider();
      const { transaction, callback } = await signIn(provider, 'octocat');
      await client.finish(provider, transaction, callback);
      const err = await refusal(client.finish(provider, transaction, callback));
      expect(err).to.include({ reason: 'upstream_error', status: 400 });
      expect(err.detail).to.match(/bad_verification_code/);
    });

    it('answers a wrong client secret with upstream_error 502 and keeps the secret out of the error', async () => {
      const provider = githubProvider({ client_secret: 'not-the-secret-0123456789' });
      const { transaction, callback } = await signIn(provider, 'octocat');
      const err = await refusal(client.finish(provider, transaction, callback));
      expect(err).to.include({ reason: 'upstream_error', status: 502 });
      expect(err.detail).to.match(/incorrect_client_credentials/);
      expect(JSON.stringify({ ...err, message: err.message })).not.to.include('not-the-secret');
      expect(JSON.stringify(logger.lines)).not.to.include('not-the-secret');
    });

    it('answers 502 unreachable when GitHub is down or failing, and recovers', async () => {
      const provider = githubProvider();
      const first = await signIn(provider, 'octocat');
      await gh.stop();
      try {
        // Nothing to discover: start() works offline, the code exchange cannot.
        await client.start(provider, `${CALLBACK}/github`);
        expect(await refusal(client.finish(provider, first.transaction, first.callback))).to.include({ reason: 'unreachable', status: 502 });
      } finally {
        await gh.start();
      }
      gh.mode.apiStatus = 503;
      const second = await signIn(provider, 'octocat');
      const err = await refusal(client.finish(provider, second.transaction, second.callback));
      expect(err).to.include({ reason: 'unreachable', status: 502 });
      expect(err.detail).to.match(/503/);
      gh.mode.apiStatus = undefined;
      const third = await signIn(provider, 'octocat');
      expect((await client.finish(provider, third.transaction, third.callback)).subject).to.equal('1001');
    });

    it('refuses plain-http GitHub URLs other than 127.0.0.1 or localhost', async () => {
      for (const over of [{ web_url: 'http://github.example.test' }, { api_url: 'http://api.github.example.test' }]) {
        const err = await refusal(client.start(githubProvider(over), `${CALLBACK}/github`));
        expect(err).to.include({ reason: 'upstream_error', status: 502 });
      }
      // The defaults are GitHub's own https endpoints.
      const { url } = await client.start(githubProvider({ web_url: null, api_url: null }), `${CALLBACK}/github`);
      expect(url.origin).to.equal('https://github.com');
      expect(fetched).to.deep.equal([]);
    });
  });
});
