import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect } from 'node:net';

import { expect } from 'chai';
import * as oidc from 'openid-client';

import { Agent, authorize, parseForms, type PageResponse } from './helpers/agent.js';
import { startTestServer, type TestServer } from './helpers/server.js';

const REDIRECT = 'http://127.0.0.1:9/callback';
const API = 'https://api.observability.test';
const USER = { email: 'mary.somerville@example.test', password: 'the mechanism of the heavens' };
const WRONG_PASSWORD = 'not-her-password-at-all';
const DISABLED = { email: 'disabled@example.test', password: 'disabled account password' };
const METRICS_TOKEN = `mt-${randomBytes(24).toString('base64url')}`;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** An Agent that remembers every cookie value it ever held (interaction cookies are short-lived). */
class RecordingAgent extends Agent {
  static readonly seen = new Set<string>();

  override async request(...args: Parameters<Agent['request']>): Promise<PageResponse> {
    const res = await super.request(...args);
    for (const v of this.cookies.values()) RecordingAgent.seen.add(v);
    return res;
  }
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the Prometheus text format into samples (comments skipped). */
function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`unparsable metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, '$1');
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

/** Sum of the samples of `name` whose labels include `labels` (0 when none). */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((sum, s) => sum + s.value, 0);
}

const has = (samples: Sample[], name: string, labels: Record<string, string> = {}) => samples.some((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));

async function waitFor<T>(fn: () => T | undefined, what: string, ms = 2000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('observability: metrics, request log, request ids, no secrets in logs', () => {
  let srv: TestServer;
  let web: { client_id: string; client_secret: string };
  let machine: { client_id: string; client_secret: string };
  /** Every secret the run handles: none may appear in any log line. */
  const secrets = new Map<string, string>();
  const keep = (label: string, v: string | undefined | null) => {
    if (v) secrets.set(`${label} #${secrets.size}`, v);
  };

  const scrape = async (token: string | undefined = METRICS_TOKEN) => {
    const res = await fetch(`${srv.url}/metrics`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
    expect(res.status).to.equal(200);
    expect(res.headers.get('content-type')).to.match(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    return { text, samples: parseMetrics(text) };
  };

  const discover = (c: { client_id: string; client_secret: string }) =>
    oidc.discovery(new URL(srv.url), c.client_id, c.client_secret, oidc.ClientSecretBasic(c.client_secret), { execute: [oidc.allowInsecureRequests] });

  /** Keeps the CSRF tokens of the forms on a page. */
  const keepForms = (page: PageResponse) => {
    for (const f of parseForms(page.body, page.url)) keep('csrf', f.fields._csrf);
  };

  /** An authorization URL with PKCE; the verifier is a secret too. */
  async function authorizationUrl(config: oidc.Configuration, scope: string, extra: Record<string, string> = {}) {
    const verifier = oidc.randomPKCECodeVerifier();
    keep('pkce verifier', verifier);
    const state = oidc.randomState();
    const url = oidc.buildAuthorizationUrl(config, { redirect_uri: REDIRECT, scope, state, code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', ...extra });
    return { url: url.toString(), verifier, state };
  }

  /** Opens the login page and submits a wrong password: 401, the login page again. */
  async function failedLogin(agent: Agent, url: string, email = USER.email, password = WRONG_PASSWORD) {
    const login = await agent.follow(url, {}, REDIRECT);
    expect(login.status).to.equal(200);
    expect(login.body).to.contain('name="password"');
    keepForms(login);
    const again = await agent.submit(login, 0, { email, password }, REDIRECT);
    expect(again.status).to.equal(401);
    keepForms(again);
    return again;
  }

  /** Code flow through the forms (login + consent), then the code grant. */
  async function codeFlow(scope: string, extra: Record<string, string> = {}) {
    const config = await discover(web);
    const agent = new RecordingAgent();
    const { url, verifier, state } = await authorizationUrl(config, scope, extra);
    const { callback, pages } = await authorize(agent, url, REDIRECT, USER);
    expect(pages).to.deep.equal(['login', 'consent']);
    keep('authorization code', callback.searchParams.get('code'));
    const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state });
    keep('access token', tokens.access_token);
    keep('refresh token', tokens.refresh_token);
    keep('id token', tokens.id_token);
    return { config, tokens, agent };
  }

  before(async () => {
    srv = await startTestServer({ env: { METRICS_TOKEN } });
    keep('metrics token', METRICS_TOKEN);
    keep('password', USER.password);
    keep('wrong password', WRONG_PASSWORD);
    keep('disabled password', DISABLED.password);
    expect((await srv.cli('users', 'create', '--email', USER.email, '--password', USER.password, '--name', 'Mary')).code).to.equal(0);
    expect((await srv.cli('users', 'create', '--email', DISABLED.email, '--password', DISABLED.password)).code).to.equal(0);
    await srv.running.db('accounts').where({ email: DISABLED.email }).update({ active: false });
    expect((await srv.cli('resources', 'create', '--identifier', API, '--scope', 'read')).code).to.equal(0);
    const w = await srv.cli('clients', 'create', '--name', 'Observed web app', '--redirect-uri', REDIRECT, '--scope', 'openid profile email offline_access');
    expect(w.code, w.stderr).to.equal(0);
    web = w.json;
    const m = await srv.cli('clients', 'create', '--name', 'Observed worker', '--grant', 'client_credentials', '--resource', API, '--scope', 'read');
    expect(m.code, m.stderr).to.equal(0);
    machine = m.json;
    keep('web client secret', web.client_secret);
    keep('machine client secret', machine.client_secret);
  });

  after(async () => {
    expect(srv.errors(), JSON.stringify(srv.errors())).to.deep.equal([]);
    await srv.close();
  });

  describe('GET /metrics', () => {
    it('exposes HTTP, token, login, rate-limit, pool and process series that increase with traffic', async () => {
      const before = (await scrape()).samples;
      const cc = (s: Sample[]) => value(s, 'latch_tokens_issued_total', { grant_type: 'client_credentials', client_id: machine.client_id });
      const codeGrants = (s: Sample[]) => value(s, 'latch_tokens_issued_total', { grant_type: 'authorization_code', client_id: web.client_id });
      const logins = (s: Sample[], result: string) => value(s, 'latch_logins_total', { result });

      // A client_credentials token.
      const t = await oidc.clientCredentialsGrant(await discover(machine), { scope: 'read' });
      keep('client credentials access token', t.access_token);
      // A failed login (wrong password), a login of a disabled account, then a successful one.
      const config = await discover(web);
      const failed = await failedLogin(new RecordingAgent(), (await authorizationUrl(config, 'openid')).url);
      const uid = /\/interaction\/([^/"]+)\/login/.exec(failed.body)![1]!;
      await failedLogin(new RecordingAgent(), (await authorizationUrl(config, 'openid')).url, DISABLED.email, DISABLED.password);
      await codeFlow('openid email');
      // A few GETs, one of them to a path nobody serves.
      const junk = `/no-such-page-${randomBytes(6).toString('hex')}`;
      for (const path of ['/healthz', '/healthz', '/healthz', '/readyz', '/.well-known/openid-configuration', '/jwks', junk]) await fetch(`${srv.url}${path}`);

      const { text, samples: after } = await scrape();
      const d = (name: string, labels: Record<string, string>) => value(after, name, labels) - value(before, name, labels);

      // HTTP requests by route (bounded) and status, counter and histogram.
      expect(d('latch_http_requests_total', { method: 'GET', route: '/healthz', status: '200' })).to.equal(3);
      expect(d('latch_http_request_duration_seconds_count', { method: 'GET', route: '/healthz', status: '200' })).to.equal(3);
      expect(d('latch_http_request_duration_seconds_bucket', { method: 'GET', route: '/healthz', status: '200', le: '+Inf' })).to.equal(3);
      expect(value(after, 'latch_http_request_duration_seconds_sum', { route: '/healthz' })).to.be.greaterThan(0);
      expect(d('latch_http_requests_total', { method: 'GET', route: '/readyz', status: '200' })).to.equal(1);
      expect(d('latch_http_requests_total', { method: 'GET', route: 'discovery', status: '200' })).to.be.at.least(1);
      expect(d('latch_http_requests_total', { method: 'GET', route: 'jwks', status: '200' })).to.be.at.least(1);
      expect(d('latch_http_requests_total', { method: 'POST', route: 'token', status: '200' })).to.equal(2);
      expect(d('latch_http_requests_total', { method: 'GET', route: 'authorization', status: '303' })).to.equal(3);
      expect(d('latch_http_requests_total', { method: 'GET', route: 'resume', status: '303' })).to.be.at.least(1);
      expect(d('latch_http_requests_total', { method: 'GET', route: '/interaction/:uid', status: '200' })).to.be.at.least(4);
      expect(d('latch_http_requests_total', { method: 'POST', route: '/interaction/:uid/login', status: '401' })).to.equal(2);
      expect(d('latch_http_requests_total', { method: 'POST', route: '/interaction/:uid/login', status: '303' })).to.equal(1);
      expect(d('latch_http_requests_total', { method: 'GET', route: 'other', status: '404' })).to.equal(1);
      expect(has(after, 'latch_http_requests_total', { route: '/metrics', status: '200' })).to.equal(true);
      // Never a raw path: no interaction uid, no unknown path, only patterns and route names.
      expect(text).to.not.contain(junk).and.not.contain(uid);
      const routes = new Set(after.filter((s) => s.name === 'latch_http_requests_total').map((s) => s.labels.route!));
      for (const r of routes) expect(r).to.match(/^(other|[a-z_.]+|(\/(:?[a-z.-]+|:uid))+)$/);

      // Token issuance by grant type and client.
      expect(cc(after) - cc(before)).to.equal(1);
      expect(codeGrants(after) - codeGrants(before)).to.equal(1);

      // Logins by result (all three series exist from the start).
      expect(logins(after, 'invalid_credentials') - logins(before, 'invalid_credentials')).to.equal(1);
      expect(logins(after, 'inactive') - logins(before, 'inactive')).to.equal(1);
      expect(logins(after, 'success') - logins(before, 'success')).to.equal(1);
      expect(has(before, 'latch_logins_total', { result: 'inactive' })).to.equal(true);

      // No request was refused by a rate limiter: the counter is declared, with no series.
      expect(text).to.contain('# TYPE latch_rate_limit_rejections_total counter');
      expect(has(after, 'latch_rate_limit_rejections_total')).to.equal(false);

      // Database pool, read at scrape time.
      for (const name of ['latch_db_pool_used_connections', 'latch_db_pool_free_connections', 'latch_db_pool_pending_acquires']) {
        expect(has(after, name), name).to.equal(true);
        expect(value(after, name)).to.be.at.least(0);
      }
      expect(value(after, 'latch_db_pool_pending_acquires')).to.equal(0);
      expect(value(after, 'latch_db_pool_used_connections') + value(after, 'latch_db_pool_free_connections')).to.be.at.least(1);

      // prom-client's default metrics, prefixed, on this server's own registry.
      expect(has(after, 'latch_nodejs_eventloop_lag_seconds')).to.equal(true);
      expect(has(after, 'latch_nodejs_eventloop_lag_p99_seconds')).to.equal(true);
      expect(has(after, 'latch_process_cpu_user_seconds_total')).to.equal(true);
      expect(after.some((s) => s.name.startsWith('nodejs_') || s.name.startsWith('process_'))).to.equal(false);

      // And they go on increasing.
      await fetch(`${srv.url}/healthz`);
      const later = (await scrape()).samples;
      expect(value(later, 'latch_http_requests_total', { route: '/healthz' })).to.equal(value(after, 'latch_http_requests_total', { route: '/healthz' }) + 1);
      expect(value(later, 'latch_http_requests_total', { route: '/metrics' })).to.be.greaterThan(value(after, 'latch_http_requests_total', { route: '/metrics' }));
    });

    it('requires the METRICS_TOKEN bearer token when it is set', async () => {
      const get = (headers: Record<string, string> = {}) => fetch(`${srv.url}/metrics`, { headers });
      const refused: Record<string, string>[] = [{}, { authorization: 'Bearer wrong-token' }, { authorization: `Bearer ${METRICS_TOKEN}x` }, { authorization: `Bearer ${METRICS_TOKEN.slice(0, -1)}` }, { authorization: `Basic ${Buffer.from(`x:${METRICS_TOKEN}`).toString('base64')}` }, { authorization: METRICS_TOKEN }];
      for (const headers of refused) {
        const res = await get(headers);
        expect(res.status, JSON.stringify(headers)).to.equal(401);
        expect(res.headers.get('www-authenticate')).to.equal('Bearer');
        expect(await res.text()).to.not.contain('latch_');
      }
      expect((await get({ authorization: `Bearer ${METRICS_TOKEN}` })).status).to.equal(200);
      expect((await get({ authorization: `bearer ${METRICS_TOKEN}` })).status).to.equal(200);
    });

    it('is open when METRICS_TOKEN is unset, and each server has its own registry', async () => {
      const open = await startTestServer();
      try {
        const res = await fetch(`${open.url}/metrics`);
        expect(res.status).to.equal(200);
        const samples = parseMetrics(await res.text());
        // A new server starts from zero even though another one in this process has traffic.
        expect(value(samples, 'latch_http_requests_total', { route: '/healthz' })).to.equal(0);
        expect(value(samples, 'latch_tokens_issued_total')).to.equal(0);
      } finally {
        await open.close();
      }
    });
  });

  describe('request ids and the request log', () => {
    const requestLines = () => srv.logger.lines.filter((l) => l.msg === 'request');
    const lineFor = (id: string) => waitFor(() => requestLines().find((l) => l.requestId === id), `the request line of ${id}`);

    it('echoes a sane X-Request-Id and logs one line per request with it', async () => {
      for (const [path, route] of [
        ['/healthz', '/healthz'],
        ['/.well-known/openid-configuration', 'discovery'],
      ] as const) {
        const id = `req-${randomBytes(4).toString('hex')}.A_b`;
        const res = await fetch(`${srv.url}${path}?secret_query=do-not-log-me`, { headers: { 'x-request-id': id } });
        expect(res.status).to.equal(200);
        expect(res.headers.get('x-request-id')).to.equal(id);
        const line = await lineFor(id);
        expect(line).to.include({ level: 'info', method: 'GET', route, path, status: 200 });
        expect(line.durationMs).to.be.a('number').and.at.least(0);
        expect(line.remoteAddress).to.be.a('string').and.match(/127\.0\.0\.1/);
        expect(requestLines().filter((l) => l.requestId === id)).to.have.length(1);
      }
      const longest = 'a'.repeat(128);
      expect((await fetch(`${srv.url}/healthz`, { headers: { 'x-request-id': longest } })).headers.get('x-request-id')).to.equal(longest);
      expect(JSON.stringify(srv.logger.lines)).to.not.contain('do-not-log-me');
    });

    it('replaces a missing or unsafe X-Request-Id with a new UUID', async () => {
      const unsafe = ['a'.repeat(129), 'has space', 'semi;colon', 'quote"d', 'ünïcode', 'a/b', ''];
      const seen = new Set<string>();
      for (const sent of [undefined, ...unsafe]) {
        const res = await fetch(`${srv.url}/healthz`, { headers: sent === undefined ? {} : { 'x-request-id': sent } });
        const id = res.headers.get('x-request-id')!;
        expect(id, String(sent)).to.match(UUID);
        expect(seen.has(id)).to.equal(false);
        seen.add(id);
        await lineFor(id);
      }
      // On oidc-provider's endpoints too, and on errors.
      const res = await fetch(`${srv.url}/token`, { method: 'POST', headers: { 'x-request-id': 'bad id' }, body: new URLSearchParams({ grant_type: 'client_credentials' }) });
      expect(res.status).to.equal(400);
      const id = res.headers.get('x-request-id')!;
      expect(id).to.match(UUID);
      expect(await lineFor(id)).to.include({ method: 'POST', route: 'token', path: '/token', status: 400 });
    });

    it('logs a request whose client went away before the answer, marked aborted', async () => {
      const id = `gone-${randomBytes(4).toString('hex')}`;
      const socket = connect(srv.port, '127.0.0.1');
      await once(socket, 'connect');
      // Half a body: the server is still reading it when the connection goes.
      socket.write(`POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: ${id}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type=`);
      await new Promise((r) => setTimeout(r, 100));
      socket.destroy();
      const line = await lineFor(id);
      expect(line).to.include({ method: 'POST', path: '/token', aborted: true });
      expect(requestLines().filter((l) => l.requestId === id)).to.have.length(1);
    });
  });

  describe('logs of a full run', () => {
    it('contain no password, client secret, token, code, cookie or metrics token', async () => {
      // Code flow with refresh (offline_access), a refresh, a client_credentials grant, a failed
      // login, userinfo, introspection and revocations.
      const { config, tokens } = await codeFlow('openid profile email offline_access', { prompt: 'consent' });
      expect(tokens.refresh_token).to.be.a('string');
      const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token!);
      keep('refreshed access token', refreshed.access_token);
      keep('refreshed refresh token', refreshed.refresh_token);
      keep('refreshed id token', refreshed.id_token);
      await oidc.fetchUserInfo(config, refreshed.access_token, tokens.claims()!.sub);
      const machineConfig = await discover(machine);
      const cc = await oidc.clientCredentialsGrant(machineConfig, { scope: 'read' });
      keep('client credentials access token', cc.access_token);
      expect((await oidc.tokenIntrospection(machineConfig, cc.access_token)).active).to.equal(true);
      const failedAgent = new RecordingAgent();
      await failedLogin(failedAgent, (await authorizationUrl(config, 'openid')).url);
      // Secrets sent where they do not belong: a query string, a wrong secret, a bad token.
      await fetch(`${srv.url}/healthz?password=${encodeURIComponent(USER.password)}&client_secret=${web.client_secret}`);
      const wrongSecret = `${web.client_secret}-wrong`;
      keep('wrong client secret', wrongSecret);
      const bad = await fetch(`${srv.url}/token`, { method: 'POST', headers: { authorization: `Basic ${Buffer.from(`${web.client_id}:${wrongSecret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshed.refresh_token! }) });
      expect(bad.status).to.equal(401);
      await oidc.tokenRevocation(config, refreshed.refresh_token!);
      await oidc.tokenRevocation(config, refreshed.access_token);
      await oidc.tokenRevocation(machineConfig, cc.access_token);
      expect((await oidc.tokenIntrospection(machineConfig, cc.access_token)).active).to.equal(false);
      // The revoked refresh token no longer works.
      const reuse = await oidc.refreshTokenGrant(config, refreshed.refresh_token!).then(
        () => null,
        (e: unknown) => e,
      );
      expect(reuse).to.be.instanceOf(oidc.ResponseBodyError);
      await scrape();
      await fetch(`${srv.url}/no-such-page`);

      const lines = srv.logger.lines;
      for (const v of RecordingAgent.seen) keep('cookie', v);
      expect(RecordingAgent.seen.size).to.be.at.least(6);
      // The run was logged: one line per request, on every kind of route.
      const routes = new Set(lines.filter((l) => l.msg === 'request').map((l) => l.route));
      for (const r of ['token', 'revocation', 'introspection', 'userinfo', 'authorization', 'resume', '/interaction/:uid', '/interaction/:uid/login', '/interaction/:uid/confirm', '/metrics', 'other']) {
        expect(routes.has(r), `a request line for ${r}`).to.equal(true);
      }
      expect(lines.some((l) => l.msg === 'request' && l.path === '/interaction/:uid/login' && l.route === '/interaction/:uid/login')).to.equal(true);
      expect(lines.some((l) => l.msg === 'request' && l.path === '/auth/:uid' && l.route === 'resume')).to.equal(true);
      const everything = lines.map((l) => JSON.stringify(l)).join('\n');
      expect(secrets.size).to.be.at.least(25);
      for (const [label, secret] of secrets) {
        expect(secret.length, label).to.be.at.least(8);
        expect(everything.includes(secret), `${label} appears in the logs`).to.equal(false);
        expect(everything.includes(JSON.stringify(secret).slice(1, -1)), `${label} (escaped) appears in the logs`).to.equal(false);
      }
      // No query string, header or cookie ever.
      for (const l of lines) {
        expect(String(l.path ?? '')).to.not.contain('?');
        for (const k of Object.keys(l)) expect(k.toLowerCase()).to.not.match(/cookie|authorization|header|query|body|password|secret/);
      }
    });
  });
});
