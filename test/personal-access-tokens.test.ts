/**
 * Personal access tokens, over real HTTP against a real server: made on the account page (signed
 * in through Latch like a browser), shown once, stored as a hash, bounded by the scopes the user
 * holds (RBAC roles, organization roles), checked by a resource server at the introspection
 * endpoint (RFC 7662), and dead at once when revoked, expired, or when the owner is deactivated
 * or leaves the token's organization. Setup goes through the `latch` CLI.
 */
import { createHash } from 'node:crypto';

import { expect } from 'chai';

import { Agent, parseForms, type PageResponse } from './helpers/agent.js';
import { startTestServer, type TestServer } from './helpers/server.js';

const ORDERS = 'https://orders.example.test';
const DOCS = 'https://docs.example.test';
const TOKEN_RE = /lat_[A-Za-z0-9_-]{43}/;

interface User {
  email: string;
  password: string;
  id: string;
  agent: Agent;
}

const formIndex = (res: PageResponse, action: RegExp) => parseForms(res.body, res.url).findIndex((f) => action.test(new URL(f.action).pathname));

describe('Personal access tokens', function () {
  this.timeout(60_000);

  let srv: TestServer;
  let ada: User;
  let bob: User;
  let orgId: string;
  /** A resource server client for ORDERS, and one for DOCS only. */
  let ordersRs: { client_id: string; client_secret: string };
  let docsRs: { client_id: string; client_secret: string };

  async function cli(...args: string[]) {
    const out = await srv.cli(...args);
    expect(out.code, `latch ${args.join(' ')}: ${out.stderr}`).to.equal(0);
    return out.json;
  }

  /** Opens /account/tokens, signing in through Latch's login page first when needed. */
  async function tokensPage(user: User, query = ''): Promise<PageResponse> {
    let res = await user.agent.follow(`${srv.url}/account/tokens${query}`);
    if (/name="password"/.test(res.body)) res = await user.agent.submit(res, formIndex(res, /\/login$/), { email: user.email, password: user.password });
    expect(res.status, res.body.slice(0, 500)).to.equal(200);
    expect(res.url).to.equal(`${srv.url}/account/tokens${query}`);
    return res;
  }

  const csrfOf = (page: PageResponse) => parseForms(page.body, page.url).find((f) => f.fields._csrf)!.fields._csrf!;

  /** Posts the create form as the page would (one checkbox field per scope). */
  async function create(user: User, fields: { name?: string; scopes?: string[]; organization_id?: string; expires_in_days?: string }, page?: PageResponse) {
    const p = page ?? (await tokensPage(user, fields.organization_id ? `?organization=${fields.organization_id}` : ''));
    const form: Record<string, string> = { _csrf: csrfOf(p), name: fields.name ?? 'script', organization_id: fields.organization_id ?? '' };
    if (fields.expires_in_days !== undefined) form.expires_in_days = fields.expires_in_days;
    (fields.scopes ?? []).forEach((s, i) => (form[`scope.${i}`] = s));
    return user.agent.request(`${srv.url}/account/tokens`, { form });
  }

  async function createToken(user: User, fields: Parameters<typeof create>[1]): Promise<{ token: string; id: string }> {
    const res = await create(user, fields);
    expect(res.status, res.body.slice(0, 800)).to.equal(200);
    const token = TOKEN_RE.exec(res.body)?.[0];
    expect(token, 'the token is on the page').to.be.a('string');
    const row = await db().where({ token_hash: sha256(token!) }).first();
    return { token: token!, id: row.id };
  }

  async function introspect(token: string, client = ordersRs): Promise<Record<string, any>> {
    const res = await fetch(`${srv.url}/token/introspection`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${encodeURIComponent(client.client_id)}:${encodeURIComponent(client.client_secret)}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: new URLSearchParams({ token }),
    });
    expect(res.status).to.equal(200);
    return (await res.json()) as Record<string, any>;
  }

  const db = () => srv.running.db('personal_access_tokens');
  const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
  const liveCount = async (accountId: string) => Number((await db().where({ account_id: accountId }).whereNull('revoked_at').count({ n: '*' }).first())!.n);

  before(async () => {
    srv = await startTestServer();
    const makeUser = async (name: string): Promise<User> => {
      const email = `${name}@example.test`;
      const password = `${name} walks along the quiet river`;
      const json = await cli('users', 'create', '--email', email, '--password', password, '--email-verified');
      return { email, password, id: json.id, agent: new Agent() };
    };
    ada = await makeUser('ada');
    bob = await makeUser('bob');
    // ORDERS grants scopes by role; DOCS has no RBAC: any user holds its scopes.
    await cli('resources', 'create', '--identifier', ORDERS, '--scope', 'read write admin', '--rbac');
    await cli('resources', 'create', '--identifier', DOCS, '--scope', 'browse', '--scope', 'docs:export');
    await cli('roles', 'create', '--name', 'order-reader', '--permission', `${ORDERS}:read`);
    await cli('roles', 'assign', '--role', 'order-reader', '--user', ada.email);
    await cli('roles', 'create', '--name', 'order-writer', '--org', '--permission', `${ORDERS}:write`);
    await cli('roles', 'create', '--name', 'order-admin', '--org', '--permission', `${ORDERS}:write`, '--permission', `${ORDERS}:admin`);
    orgId = (await cli('orgs', 'create', '--name', 'Acme', '--slug', 'acme', '--owner', bob.email)).id;
    await cli('orgs', 'members', 'add', '--org', 'acme', '--user', ada.email, '--role', 'order-writer');
    ordersRs = await cli('clients', 'create', '--name', 'orders-api', '--grant', 'client_credentials', '--resource', ORDERS, '--scope', 'read');
    docsRs = await cli('clients', 'create', '--name', 'docs-api', '--grant', 'client_credentials', '--resource', DOCS, '--scope', 'browse');
    await srv.running.services.feed.pollNow();
  });

  after(async () => {
    expect(srv?.errors() ?? []).to.deep.equal([]);
    await srv?.close();
  });

  it('offers, as checkboxes, exactly the scopes the user holds', async () => {
    const page = await tokensPage(ada);
    expect(page.body).to.contain(`value="${ORDERS}:read"`);
    expect(page.body).to.contain(`value="${DOCS}:browse"`);
    expect(page.body).to.not.contain(`value="${ORDERS}:write"`);
    expect(page.body).to.not.contain('<script');
    // For the organization: its role's permissions alone (global roles add nothing).
    const orgPage = await tokensPage(ada, `?organization=${orgId}`);
    expect(orgPage.body).to.contain(`value="${ORDERS}:write"`);
    expect(orgPage.body).to.not.contain(`value="${ORDERS}:read"`);
    expect(orgPage.body).to.not.contain(`value="${ORDERS}:admin"`);
  });

  it('shows a new token once, with the lat_ prefix, and stores only its hash', async () => {
    const res = await create(ada, { name: 'deploy script', scopes: [`${ORDERS}:read`] });
    expect(res.status).to.equal(200);
    expect(res.headers.get('cache-control')).to.contain('no-store');
    expect(res.body).to.match(/Copy this token now/);
    const token = TOKEN_RE.exec(res.body)![0];
    expect(Buffer.from(token.slice(4), 'base64url')).to.have.length(32);

    const row = await db().where({ account_id: ada.id, name: 'deploy script' }).first();
    expect(row.token_hash).to.equal(sha256(token));
    expect(JSON.stringify(row)).to.not.contain(token.slice(4));
    expect(row.scopes).to.equal('read');
    expect(JSON.parse(row.audience)).to.deep.equal([ORDERS]);
    expect(row.organization_id).to.equal(null);
    // 90 days unless chosen otherwise.
    expect(Date.parse(row.expires_at) - Date.parse(row.created_at)).to.equal(90 * 86_400_000);

    // The list shows it (name, first characters) but never the token again.
    const list = await tokensPage(ada);
    expect(list.body).to.contain('deploy script');
    expect(list.body).to.contain(`${token.slice(0, 8)}…`);
    expect(list.body).to.not.contain(token);
  });

  it('answers introspection for a live token (RFC 7662 §2.2)', async () => {
    const { token, id } = await createToken(ada, { name: 'reporting', scopes: [`${ORDERS}:read`], expires_in_days: '7' });
    const answer = await introspect(token);
    expect(answer).to.include({ active: true, sub: ada.id, scope: 'read', client_id: 'latch-account', token_type: 'Bearer', jti: id, iss: srv.url });
    expect(answer.aud).to.deep.equal([ORDERS]);
    expect(answer.exp - answer.iat).to.equal(7 * 86_400);
    expect(answer).to.not.have.property('org_id');
    expect(answer).to.not.have.property('org_role');

    // A client that does not serve ORDERS may not see it.
    expect(await introspect(token, docsRs)).to.deep.equal({ active: false });
    // Unknown or malformed lat_ tokens: inactive, no error.
    expect(await introspect(`lat_${'A'.repeat(43)}`)).to.deep.equal({ active: false });
    expect(await introspect('lat_short')).to.deep.equal({ active: false });
    expect(await introspect(`${token}\u0000`)).to.deep.equal({ active: false });
  });

  it('takes scopes that contain a colon themselves (URI:docs:export)', async () => {
    const { token } = await createToken(ada, { name: 'exporter', scopes: [`${DOCS}:docs:export`] });
    const answer = await introspect(token, docsRs);
    expect(answer).to.include({ active: true, scope: 'docs:export' });
    expect(answer.aud).to.deep.equal([DOCS]);
  });

  it('refuses scopes the user does not hold and other bad input with a form error', async () => {
    const before = await liveCount(ada.id);
    const cases: [Parameters<typeof create>[1], RegExp][] = [
      [{ scopes: [`${ORDERS}:write`] }, /do not hold/],
      [{ scopes: [`${ORDERS}:read`, `${ORDERS}:admin`] }, /do not hold/],
      [{ scopes: ['https://unknown.example.test:read'] }, /do not hold/],
      [{ scopes: ['no-colon'] }, /RESOURCE_URI:SCOPE/],
      [{ scopes: [] }, /at least one scope/],
      [{ name: '  ', scopes: [`${ORDERS}:read`] }, /name is required/],
      [{ name: 'x'.repeat(101), scopes: [`${ORDERS}:read`] }, /at most 100 characters/],
      [{ scopes: [`${ORDERS}:read`], expires_in_days: '0' }, /from 1 to 365/],
      [{ scopes: [`${ORDERS}:read`], expires_in_days: '366' }, /from 1 to 365/],
      [{ scopes: [`${ORDERS}:read`], expires_in_days: 'soon' }, /from 1 to 365/],
    ];
    const page = await tokensPage(ada);
    for (const [fields, message] of cases) {
      const res = await create(ada, fields, page);
      expect(res.status, JSON.stringify(fields)).to.equal(400);
      expect(res.body, JSON.stringify(fields)).to.match(message);
      expect(res.body).to.not.match(TOKEN_RE);
    }
    // An organization the user is not a member of (and write, held only through Acme).
    const other = (await cli('orgs', 'create', '--name', 'Other', '--slug', 'other', '--owner', bob.email)).id;
    const res = await create(ada, { scopes: [`${DOCS}:browse`], organization_id: other }, page);
    expect(res.status).to.equal(400);
    expect(res.body).to.match(/not an organization you belong to/);
    expect(await liveCount(ada.id)).to.equal(before);
  });

  it('refuses a form without its CSRF token', async () => {
    const before = await liveCount(ada.id);
    await tokensPage(ada);
    const res = await ada.agent.request(`${srv.url}/account/tokens`, { form: { name: 'no csrf', 'scope.0': `${ORDERS}:read` } });
    expect(res.status).to.equal(403);
    const forged = await ada.agent.request(`${srv.url}/account/tokens`, { form: { _csrf: 'forged', name: 'no csrf', 'scope.0': `${ORDERS}:read` } });
    expect(forged.status).to.equal(403);
    expect(await liveCount(ada.id)).to.equal(before);
  });

  it('carries the organization and the owner\'s current role there', async () => {
    const { token, id } = await createToken(ada, { name: 'acme ci', scopes: [`${ORDERS}:write`], organization_id: orgId });
    expect((await db().where({ id }).first()).organization_id).to.equal(orgId);
    const answer = await introspect(token);
    expect(answer).to.include({ active: true, sub: ada.id, scope: 'write', org_id: orgId, org_role: 'order-writer' });
    expect(answer.aud).to.deep.equal([ORDERS]);

    // A new role in the organization shows at the next introspection.
    await cli('orgs', 'members', 'update', '--org', 'acme', '--user', ada.email, '--role', 'order-admin');
    await srv.running.services.feed.pollNow();
    // The token keeps the scopes it was made with (admin is not added).
    expect(await introspect(token)).to.include({ active: true, scope: 'write', org_role: 'order-admin' });

    // A role without the token's scope: nothing left, inactive.
    await cli('orgs', 'members', 'update', '--org', 'acme', '--user', ada.email, '--role', 'viewer');
    await srv.running.services.feed.pollNow();
    expect(await introspect(token)).to.deep.equal({ active: false });

    // Leaving the organization ends it at once (no cache in the way).
    await cli('orgs', 'members', 'update', '--org', 'acme', '--user', ada.email, '--role', 'order-writer');
    await srv.running.services.feed.pollNow();
    expect(await introspect(token)).to.include({ active: true, org_role: 'order-writer' });
    await cli('orgs', 'members', 'remove', '--org', 'acme', '--user', ada.email);
    expect(await introspect(token)).to.deep.equal({ active: false });
    await cli('orgs', 'members', 'add', '--org', 'acme', '--user', ada.email, '--role', 'order-writer');
  });

  it('is inactive once expired', async () => {
    const { token, id } = await createToken(ada, { name: 'short-lived', scopes: [`${ORDERS}:read`], expires_in_days: '1' });
    expect((await introspect(token)).active).to.equal(true);
    await db().where({ id }).update({ expires_at: new Date(Date.now() - 1000).toISOString() });
    expect(await introspect(token)).to.deep.equal({ active: false });
    // Listed as expired, still revocable.
    expect((await tokensPage(ada)).body).to.match(/short-lived[\s\S]*?expired/);
  });

  it('is inactive at once when revoked', async () => {
    const { token, id } = await createToken(ada, { name: 'to revoke', scopes: [`${ORDERS}:read`] });
    expect((await introspect(token)).active).to.equal(true);
    const page = await tokensPage(ada);
    const i = parseForms(page.body, page.url).findIndex((f) => f.fields.id === id);
    expect(i).to.be.at.least(0);
    const res = await ada.agent.submit(page, i);
    expect(res.url).to.equal(`${srv.url}/account/tokens?done=token-revoked`);
    expect(res.body).to.contain('The token was revoked');
    expect(res.body).to.not.contain('to revoke');
    expect(await introspect(token)).to.deep.equal({ active: false });
    expect((await db().where({ id }).first()).revoked_at).to.be.a('string');

    // Nobody revokes another account's token.
    const bobs = await createToken(bob, { name: 'bob tool', scopes: [`${DOCS}:browse`] });
    const adaPage = await tokensPage(ada);
    await ada.agent.request(`${srv.url}/account/tokens/revoke`, { form: { _csrf: csrfOf(adaPage), id: bobs.id } });
    expect((await introspect(bobs.token, docsRs)).active).to.equal(true);
  });

  it('is inactive at once when its owner is deactivated', async () => {
    const { token } = await createToken(bob, { name: 'bob docs', scopes: [`${DOCS}:browse`] });
    const answer = await introspect(token, docsRs);
    expect(answer).to.include({ active: true, sub: bob.id, scope: 'browse' });
    expect(answer.aud).to.deep.equal([DOCS]);
    await cli('users', 'update', '--email', bob.email, '--active', 'false');
    expect(await introspect(token, docsRs)).to.deep.equal({ active: false });
    await cli('users', 'update', '--email', bob.email, '--active', 'true');
    expect((await introspect(token, docsRs)).active).to.equal(true);
  });

  it('records the last use, in batches', async () => {
    const { token, id } = await createToken(ada, { name: 'used', scopes: [`${ORDERS}:read`] });
    expect((await db().where({ id }).first()).last_used_at).to.equal(null);
    const started = Date.now();
    for (let i = 0; i < 5; i++) expect((await introspect(token)).active).to.equal(true);
    // No write per request: nothing in the row until the flush.
    expect((await db().where({ id }).first()).last_used_at).to.equal(null);
    // A refused introspection (wrong resource server) is not a use.
    const other = await createToken(ada, { name: 'not used', scopes: [`${ORDERS}:read`] });
    await introspect(other.token, docsRs);

    await srv.running.services.personalTokens.flush();
    const used = (await db().where({ id }).first()).last_used_at;
    expect(Date.parse(used)).to.be.within(started - 1000, Date.now() + 1000);
    expect((await db().where({ id: other.id }).first()).last_used_at).to.equal(null);
    expect((await tokensPage(ada)).body).to.contain(used.replace('T', ' ').slice(0, 16));
  });

  it('allows at most 50 live tokens per account', async () => {
    const service = srv.running.services.personalTokens;
    const live = await service.list(bob.id);
    const now = new Date().toISOString();
    for (let n = live.filter((t) => !t.revokedAt && t.expiresAt > now).length; n < 50; n++) await service.create({ id: bob.id }, { name: `bulk ${n}`, scopes: [`${DOCS}:browse`] });
    const res = await create(bob, { scopes: [`${DOCS}:browse`] });
    expect(res.status).to.equal(400);
    expect(res.body).to.match(/at most 50 live tokens/);
  });

  it('writes pending last uses when the server closes', async () => {
    const { token, id } = await createToken(ada, { name: 'used before shutdown', scopes: [`${ORDERS}:read`] });
    expect((await introspect(token)).active).to.equal(true);
    expect((await db().where({ id }).first()).last_used_at).to.equal(null);
    // What the server's close() calls before the pool closes.
    await srv.running.services.personalTokens.close();
    expect((await db().where({ id }).first()).last_used_at).to.be.a('string');
  });

  it('leaves other tokens to oidc-provider', async () => {
    const cc = await fetch(`${srv.url}/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${ordersRs.client_id}:${ordersRs.client_secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'read', resource: ORDERS }),
    });
    const { access_token } = (await cc.json()) as { access_token: string };
    expect(await introspect(access_token)).to.include({ active: true, client_id: ordersRs.client_id });
    expect(await introspect('not-a-token')).to.deep.equal({ active: false });
  });
});
