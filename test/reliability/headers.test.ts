import { expect } from 'chai';
import { Secret, TOTP } from 'otpauth';

import { Agent, authorize, parseForms, type PageResponse } from '../helpers/agent.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

/**
 * Every page and endpoint a browser or a client reaches carries the baseline headers
 * (docs/security.md): a CSP that allows no inline script and forbids framing
 * (`frame-ancestors 'none'`, CSP Level 2 §7.7.3), `X-Content-Type-Options: nosniff`, a
 * `Referrer-Policy`; behind TLS (TRUST_PROXY and X-Forwarded-Proto: https) HSTS (RFC 6797) and
 * Secure cookies; every cookie HttpOnly and SameSite. The walk is done twice: over plain HTTP
 * and as seen behind a TLS-terminating proxy.
 */

const REDIRECT = 'http://127.0.0.1:9/callback';

/** An agent that records every response, optionally as if behind a TLS-terminating proxy. */
class RecordingAgent extends Agent {
  readonly seen: { method: string; res: PageResponse }[] = [];

  constructor(private readonly behindTls: boolean) {
    super();
  }

  override async request(url: string, init: Parameters<Agent['request']>[1] = {}): Promise<PageResponse> {
    // Behind the proxy Latch builds https:// URLs of itself; the proxy is this agent.
    const plain = url.replace(/^https:\/\/127\.0\.0\.1:/, 'http://127.0.0.1:');
    const res = await super.request(plain, { ...init, headers: { ...(this.behindTls ? { 'x-forwarded-proto': 'https' } : {}), ...init.headers } });
    this.seen.push({ method: init.method ?? (init.form ? 'POST' : 'GET'), res });
    return res;
  }
}

function directives(csp: string): Map<string, string[]> {
  return new Map(
    csp
      .split(';')
      .map((d) => d.trim().split(/\s+/))
      .filter((d) => d[0])
      .map(([name, ...values]) => [name!.toLowerCase(), values]),
  );
}

/** The problems of one response's headers and cookies (empty: all good). */
function problemsOf(res: PageResponse, behindTls: boolean): string[] {
  const found: string[] = [];
  const h = res.headers;
  const csp = h.get('content-security-policy');
  if (!csp) found.push('no Content-Security-Policy');
  else {
    const d = directives(csp);
    const scripts = d.get('script-src') ?? d.get('default-src');
    if (!scripts) found.push('CSP does not restrict scripts');
    else if (scripts.includes("'unsafe-inline'") || scripts.includes("'unsafe-eval'") || scripts.includes('*')) found.push(`CSP allows unsafe scripts: ${scripts.join(' ')}`);
    if (d.get('frame-ancestors')?.join(' ') !== "'none'") found.push(`CSP frame-ancestors is ${d.get('frame-ancestors')?.join(' ') ?? 'missing'}`);
  }
  if (h.get('x-content-type-options') !== 'nosniff') found.push('no X-Content-Type-Options: nosniff');
  if (!/^(no-referrer|same-origin|strict-origin|strict-origin-when-cross-origin)$/.test(h.get('referrer-policy') ?? '')) found.push(`Referrer-Policy ${h.get('referrer-policy')}`);
  const hsts = h.get('strict-transport-security');
  if (behindTls && !/max-age=(\d+)/.test(hsts ?? '')) found.push('no HSTS behind TLS');
  if (behindTls && Number(/max-age=(\d+)/.exec(hsts ?? '')?.[1]) < 15_552_000) found.push(`HSTS max-age too short: ${hsts}`);
  if (!behindTls && hsts) found.push('HSTS over plain HTTP');
  for (const cookie of h.getSetCookie()) {
    const name = cookie.split('=')[0];
    if (!/;\s*httponly/i.test(cookie)) found.push(`cookie ${name} not HttpOnly`);
    if (!/;\s*samesite=(lax|strict)/i.test(cookie)) found.push(`cookie ${name} without SameSite=Lax/Strict`);
    if (behindTls && !/;\s*secure/i.test(cookie)) found.push(`cookie ${name} not Secure behind TLS`);
  }
  return found;
}

describe('security headers and cookies on every page', function () {
  this.timeout(60_000);
  let srv: TestServer;
  const shop = { client_id: '', client_secret: '' };
  const alice = { email: 'alice@example.test', password: 'alice keeps the copper kettle' };
  const bob = { email: 'bob@example.test', password: 'bob rides the seventh ferry' };
  let orgId = '';
  let invitationUrl = '';
  let adminToken = '';

  before(async () => {
    srv = await startTestServer({ env: { TRUST_PROXY: 'true', REGISTRATION: 'open' } });
    const cli = async (...args: string[]) => {
      const r = await srv.cli(...args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).to.equal(0);
      return r.json;
    };
    // A third-party client: its users see the consent page.
    Object.assign(shop, await cli('clients', 'create', '--name', 'Shop', '--redirect-uri', REDIRECT, '--scope', 'openid email'));
    await cli('users', 'create', '--email', alice.email, '--password', alice.password);
    const b = await cli('users', 'create', '--email', bob.email, '--password', bob.password);
    orgId = (await cli('orgs', 'create', '--name', 'Acme', '--slug', 'acme', '--owner', alice.email)).id;
    invitationUrl = (await cli('orgs', 'invite', '--org', 'acme', '--email', 'carol@example.test', '--role', 'viewer')).invitation_url;
    // Bob signs in with a second factor: his sign-in shows the MFA page.
    const enrolment = await srv.running.services.mfa.beginEnrolment({ id: b.id, email: bob.email });
    const code = new TOTP({ secret: Secret.fromBase32(enrolment!.secret), algorithm: 'SHA1', digits: 6, period: 30 }).generate();
    expect(await srv.running.services.mfa.confirmEnrolment(b.id, code, { actorId: b.id })).to.be.an('array');
    const ops = await cli('clients', 'create', '--name', 'ops', '--grant', 'client_credentials', '--resource', `${srv.url}/api`, '--scope', 'admin:read');
    const res = await fetch(`${srv.url}/token`, { method: 'POST', headers: { authorization: `Basic ${Buffer.from(`${ops.client_id}:${ops.client_secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'admin:read', resource: `${srv.url}/api` }) });
    adminToken = ((await res.json()) as { access_token: string }).access_token;
    expect(adminToken).to.be.a('string');
  });

  after(async () => {
    expect(srv.errors()).to.deep.equal([]);
    await srv.close();
  });

  /** Visits every page and endpoint; answers what was seen. */
  async function walk(behindTls: boolean): Promise<RecordingAgent> {
    const agent = new RecordingAgent(behindTls);
    const base = srv.url;
    const authorizeUrl = `${base}/auth?${new URLSearchParams({ client_id: shop.client_id, response_type: 'code', redirect_uri: REDIRECT, scope: 'openid email', state: 'st', code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGUgaqNmWc', code_challenge_method: 'S256' })}`;

    // Public pages, their error answers, the documents and endpoints clients read.
    for (const path of ['/register', '/forgot-password', '/reset-password?token=bogus', '/verify-email?token=bogus', '/verify-email/resend', '/invitation?token=bogus', '/no/such/page', '/interaction/bogus', '/auth?client_id=nobody', '/session/end', '/.well-known/openid-configuration', '/jwks', '/healthz', '/readyz', '/static/latch.css', '/metrics', '/api/openapi.yaml', '/api/docs', '/api/v1/users', '/account/no-such-page', '/federation/callback/nobody?state=x&code=y', '/interaction/bogus/federation/nobody', '/interaction/bogus/federation/link']) {
      await agent.request(`${base}${path}`);
    }
    await agent.request(`${base}/no/such/endpoint`, { headers: { accept: 'application/json' } });
    await agent.request(`${base}/api/v1/users`, { headers: { authorization: `Bearer ${adminToken}`, accept: 'application/json' } });
    // Token endpoint errors and forms without CSRF tokens.
    await agent.request(`${base}/token`, { form: { grant_type: 'authorization_code', code: 'nope' }, headers: { accept: 'application/json' } });
    await agent.request(`${base}/token`, { method: 'POST', headers: { accept: 'application/json' } });
    for (const path of ['/register', '/forgot-password', '/reset-password', '/verify-email/resend', '/invitation']) await agent.request(`${base}${path}`, { form: { email: 'x@example.test' } });

    // The login page (a wrong password first), the consent page, the redirect back.
    const login = await agent.follow(authorizeUrl, {}, REDIRECT);
    expect(login.body).to.match(/name="password"/);
    const wrong = await agent.submit(login, 0, { email: alice.email, password: 'not the password' }, REDIRECT);
    expect(wrong.status).to.be.oneOf([200, 400, 401]);
    const { pages } = await authorize(agent, authorizeUrl, REDIRECT, alice);
    expect(pages).to.include('consent');

    // The account pages, signed in, and the organization and invitation pages.
    const account = await agent.follow(`${base}/account`);
    expect(account.status, account.body.slice(0, 300)).to.equal(200);
    for (const path of ['/account/mfa', '/account/tokens', `/account/organizations/${orgId}`]) {
      const page = await agent.follow(`${base}${path}`);
      expect(page.status, path).to.equal(200);
    }
    await agent.follow(invitationUrl);
    // A page's own form posted with its CSRF token (the profile), and one without (refused).
    const forms = parseForms(account.body, account.url);
    const profile = forms.findIndex((f) => /\/account\/profile$/.test(f.action));
    if (profile >= 0) await agent.submit(account, profile, {});
    await agent.request(`${base}/account/profile`, { form: { name: 'x' } });
    await agent.request(`${base}/account/signout`, { form: { _csrf: 'forged' } });

    // The MFA step of a sign-in with a second factor.
    const other = new RecordingAgent(behindTls);
    const bobLogin = await other.follow(authorizeUrl, {}, REDIRECT);
    const mfa = await other.submit(bobLogin, 0, bob, REDIRECT);
    expect(mfa.body).to.match(/name="code"/);
    agent.seen.push(...other.seen);
    return agent;
  }

  for (const behindTls of [false, true]) {
    it(behindTls ? 'behind a TLS proxy: the same, plus HSTS and Secure cookies' : 'over HTTP: CSP without inline scripts, frame-ancestors none, nosniff, Referrer-Policy, HttpOnly SameSite cookies', async () => {
      const agent = await walk(behindTls);
      const failures = agent.seen.flatMap(({ method, res }) => problemsOf(res, behindTls).map((p) => `${method} ${new URL(res.url).pathname} (${res.status}): ${p}`));
      const names = new Set(agent.seen.flatMap(({ res }) => res.headers.getSetCookie().map((c) => c.split('=')[0])));
      console.log(`      ${agent.seen.length} responses checked; cookies: ${[...names].join(', ')}`);
      expect(failures).to.deep.equal([]);
      // The walk reached what it set out to check.
      const statuses = new Set(agent.seen.map(({ res }) => res.status));
      for (const s of [200, 302, 303, 400, 401, 403, 404]) expect(statuses, `a ${s} answer was checked`).to.include(s);
      expect(agent.seen.filter(({ res }) => res.headers.getSetCookie().length > 0).length, 'responses setting cookies').to.be.above(3);
      // Latch's own cookies and oidc-provider's, each set at least once on the walk.
      for (const name of ['latch.csrf', 'latch.account', '_session', '_interaction', '_interaction_resume']) expect([...names]).to.include(name);
      expect(agent.seen.length).to.be.above(40);
    });
  }
});
