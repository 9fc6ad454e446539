import { expect } from 'chai';

import { storedTimeOf } from '../src/routes/api/audit-events.js';
import { expectCovered, startApiHarness, type ApiHarness } from './helpers/api.js';
import type { TestServer } from './helpers/server.js';

/** The payload of a JWT (no verification: the server checked it). */
const claimsOf = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;

/** The same instant as `iso`, written with a UTC offset of `minutes`. */
function withOffset(iso: string, minutes: number): string {
  const local = new Date(Date.parse(iso) + minutes * 60_000).toISOString().slice(0, -1);
  const abs = Math.abs(minutes);
  return `${local}${minutes < 0 ? '-' : '+'}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
}

describe('account API (/api/v1/me) and the audit trail (/api/v1/audit-events)', function () {
  this.timeout(60_000);
  let h: ApiHarness;
  let srv: TestServer;
  let API: string;
  const alice = { email: 'alice@example.test', password: 'a quiet orchard by the sea', id: '' };
  const bob = { email: 'bob@example.test', password: 'bob rides a yellow bicycle', id: '' };
  let aliceToken: string;
  let bobToken: string;
  let resourceServer: { client_id: string; client_secret: string };
  const call = (...args: Parameters<ApiHarness['call']>) => h.call(...args);

  before(async () => {
    h = await startApiHarness();
    ({ srv, API } = h);
    alice.id = (await h.cli('users', 'create', '--email', alice.email, '--password', alice.password, '--name', 'Alice')).id;
    bob.id = (await h.cli('users', 'create', '--email', bob.email, '--password', bob.password)).id;
    aliceToken = await h.userToken(alice, 'account');
    bobToken = await h.userToken(bob, 'account');
    resourceServer = await h.cli('clients', 'create', '--name', 'api-gateway', '--grant', 'client_credentials', '--resource', API, '--scope', 'account');
  });

  after(async () => {
    await h?.close();
  });

  async function introspect(token: string): Promise<Record<string, unknown>> {
    const res = await fetch(`${srv.url}/token/introspection`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${resourceServer.client_id}:${resourceServer.client_secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token }),
    });
    return (await res.json()) as Record<string, unknown>;
  }

  describe('/me', () => {
    it('answers the caller\'s own account with its organizations and an ETag', async () => {
      const org = await h.cli('orgs', 'create', '--name', 'Acme', '--slug', 'acme', '--owner', alice.email);
      const me = await call('GET', '/api/v1/me', { token: aliceToken });
      expect(me.status).to.equal(200);
      expect(me.headers.get('etag')).to.match(/^"/);
      expect(me.json).to.include({ id: alice.id, email: alice.email, name: 'Alice', superuser: false, active: true });
      expect(me.json.roles).to.deep.equal([]);
      expect(me.json.organizations).to.deep.equal([{ id: org.id, name: 'Acme', slug: 'acme', role: 'owner' }]);
      expect((await call('GET', '/api/v1/me', { token: bobToken })).json.organizations).to.deep.equal([]);
    });

    it('PATCH changes the name only, honours If-Match, refuses anything else', async () => {
      const got = await call('GET', '/api/v1/me', { token: aliceToken });
      const etag = got.headers.get('etag')!;
      const patched = await call('PATCH', '/api/v1/me', { token: aliceToken, body: { name: 'Alice Liddell' }, headers: { 'if-match': etag } });
      expect(patched.status).to.equal(200);
      expect(patched.json.name).to.equal('Alice Liddell');
      expect(patched.headers.get('etag')).to.not.equal(etag);
      const stale = await call('PATCH', '/api/v1/me', { token: aliceToken, body: { name: 'Again' }, headers: { 'if-match': etag } });
      expect(stale.status).to.equal(412);
      expect((await call('GET', '/api/v1/me', { token: aliceToken })).json.name).to.equal('Alice Liddell');

      const unknown = await call('PATCH', '/api/v1/me', { token: aliceToken, body: { email: 'x@example.test', superuser: true } });
      expect(unknown.status).to.equal(422);
      expect(unknown.json.errors.map((e: { field: string }) => e.field)).to.have.members(['email', 'superuser']);
      expect((await call('PATCH', '/api/v1/me', { token: aliceToken, body: { name: 5 } })).json.errors).to.deep.equal([{ field: 'name', message: 'must be a string' }]);
      expect((await call('PATCH', '/api/v1/me', { token: aliceToken, body: { name: 'x'.repeat(256) } })).status).to.equal(422);
      expect((await call('PATCH', '/api/v1/me', { token: aliceToken, body: { name: 'a\u0000b' } })).status).to.equal(422);
      expect((await call('PATCH', '/api/v1/me', { token: aliceToken, raw: '{"name":' })).status).to.equal(400);
      expect((await call('PATCH', '/api/v1/me', { token: aliceToken, body: ['name'] })).status).to.equal(422);
      expect((await call('GET', '/api/v1/me', { token: aliceToken })).json.name).to.equal('Alice Liddell');

      const cleared = await call('PATCH', '/api/v1/me', { token: bobToken, body: { name: null } });
      expect(cleared.json.name).to.equal(null);
      const events = await srv.running.services.audit.list({ subjectId: alice.id, type: 'account.update' });
      expect(events[0]).to.deep.include({ actorId: alice.id, details: { display_name: { before: 'Alice', after: 'Alice Liddell' } } });
    });

    it('lists and ends only the caller\'s own sessions and grants', async () => {
      const second = await h.userToken(alice, 'account');
      const sessions = await call('GET', '/api/v1/me/sessions', { token: second });
      expect(sessions.json.data.length).to.be.greaterThan(1);
      expect((await call('GET', '/api/v1/me/sessions?limit=1', { token: second })).json.next_cursor).to.be.a('string');
      const bobSession = (await call('GET', '/api/v1/me/sessions', { token: bobToken })).json.data[0].id;
      expect((await call('DELETE', `/api/v1/me/sessions/${bobSession}`, { token: second })).status).to.equal(404);
      expect((await call('DELETE', `/api/v1/me/sessions/${'x'.repeat(300)}`, { token: second })).status).to.equal(404);
      // The session the first token was issued through (its Session row names the grant).
      const first = String(claimsOf(aliceToken).grant_id);
      const own = claimsOf(second).grant_id;
      const rows = await srv.running.services.state.listByAccount('Session', alice.id);
      const grantsOf = (row: Record<string, unknown>) => Object.values((row.authorizations ?? {}) as Record<string, { grantId?: string }>).map((a) => a.grantId);
      const firstSession = String(rows.find((r) => grantsOf(r).includes(first))!.uid);
      let grants = (await call('GET', '/api/v1/me/grants', { token: second })).json.data as { id: string; client_id: string; scopes: string[] }[];
      expect(grants.map((g) => g.id)).to.include.members([own, first]);
      expect(grants.find((g) => g.id === own)!.scopes).to.include('account');
      // Ending a session is a logout: the applications signed in through it lose their grant.
      expect((await call('DELETE', `/api/v1/me/sessions/${firstSession}`, { token: second })).status).to.equal(204);
      expect((await call('GET', '/api/v1/me/sessions', { token: second })).json.data).to.have.length(sessions.json.data.length - 1);
      expect((await call('GET', '/api/v1/me', { token: aliceToken })).status).to.equal(401);
      grants = (await call('GET', '/api/v1/me/grants', { token: second })).json.data;
      expect(grants.map((g) => g.id)).to.include(own).and.not.include(first);
      expect((await call('GET', '/api/v1/me/sessions?limit=0', { token: second })).status).to.equal(422);

      const bobGrant = (await call('GET', '/api/v1/me/grants', { token: bobToken })).json.data[0].id;
      expect((await call('DELETE', `/api/v1/me/grants/${bobGrant}`, { token: second })).status).to.equal(404);
      expect((await call('GET', '/api/v1/me', { token: bobToken })).status, 'bob\'s grant survives').to.equal(200);
      // Revoking the grant of another of the caller's tokens ends that token.
      const third = await h.userToken(alice, 'account');
      const thirdGrant = String(claimsOf(third).grant_id);
      expect((await call('DELETE', `/api/v1/me/grants/${thirdGrant}`, { token: second })).status).to.equal(204);
      expect((await call('GET', '/api/v1/me', { token: third })).status).to.equal(401);
      expect((await call('DELETE', `/api/v1/me/grants/${thirdGrant}`, { token: second })).status).to.equal(404);
      expect((await call('GET', '/api/v1/me', { token: second })).status).to.equal(200);
      const types = (await srv.running.services.audit.list({ subjectId: alice.id })).map((e) => e.type);
      expect(types).to.include.members(['session.revoke', 'grant.revoke']);
      aliceToken = second;
    });
  });

  describe('/me/change-password', () => {
    const carol = { email: 'carol@example.test', password: 'carol keeps seven goats', id: '' };
    let carolToken: string;
    before(async () => {
      carol.id = (await h.cli('users', 'create', '--email', carol.email, '--password', carol.password, '--name', 'Carol')).id;
      carolToken = await h.userToken(carol, 'account');
    });

    it('checks the body, the policy and the current password, then ends every session', async () => {
      const newPassword = 'marble lanterns drift upstream';
      const missing = await call('POST', '/api/v1/me/change-password', { token: carolToken, body: {} });
      expect(missing.json.errors.map((e: { field: string }) => e.field)).to.have.members(['current_password', 'new_password']);
      const types = await call('POST', '/api/v1/me/change-password', { token: carolToken, body: { current_password: 1, new_password: [], extra: true } });
      expect(types.json.errors.map((e: { field: string }) => e.field)).to.have.members(['current_password', 'new_password', 'extra']);
      for (const weak of ['short', 'password123', 'aaaaaaaaaaaaaaaa', 'x'.repeat(1025)]) {
        const r = await call('POST', '/api/v1/me/change-password', { token: carolToken, body: { current_password: carol.password, new_password: weak } });
        expect(r.status, weak).to.equal(422);
        expect(r.json.errors[0].field).to.equal('new_password');
      }
      const wrong = await call('POST', '/api/v1/me/change-password', { token: carolToken, body: { current_password: 'not my password at all', new_password: newPassword } });
      expect(wrong.status).to.equal(422);
      expect(wrong.json.errors).to.deep.equal([{ field: 'current_password', message: 'is not your current password' }]);
      const failure = (await srv.running.services.audit.list({ subjectId: carol.id, type: 'login.failure' }))[0]!;
      expect(failure.details).to.deep.include({ reason: 'invalid_credentials', context: 'api' });

      // A personal access token made before the change keeps working; the code-flow token does not.
      const pat = (await call('POST', '/api/v1/me/tokens', { token: carolToken, body: { name: 'script', scopes: [`${API}:account`] } })).json.token as string;
      const other = await h.userToken(carol, 'account');
      expect((await call('GET', '/api/v1/me/sessions', { token: carolToken })).json.data.length).to.be.greaterThan(0);
      expect((await call('POST', '/api/v1/me/change-password', { token: carolToken, body: { current_password: carol.password, new_password: newPassword } })).status).to.equal(204);
      expect((await call('GET', '/api/v1/me', { token: carolToken })).status).to.equal(401);
      expect((await call('GET', '/api/v1/me', { token: other })).status).to.equal(401);
      expect((await call('GET', '/api/v1/me/sessions', { token: pat })).json.data).to.deep.equal([]);
      const changed = (await srv.running.services.audit.list({ subjectId: carol.id, type: 'password.change' }))[0]!;
      expect(changed).to.deep.include({ actorId: carol.id, details: { via: 'api' } });
      expect(changed.clientId).to.be.a('string');
      carol.password = newPassword;
      carolToken = await h.userToken(carol, 'account');
      expect((await call('GET', '/api/v1/me', { token: carolToken })).status).to.equal(200);
    });

    it('counts wrong current passwords like failed sign-ins: 429 with Retry-After once locked', async () => {
      let last;
      for (let i = 0; i < 6; i++) {
        last = await call('POST', '/api/v1/me/change-password', { token: carolToken, body: { current_password: `wrong guess number ${i}`, new_password: 'copper kettles hum at dawn' } });
        if (last.status === 429) break;
        expect(last.status).to.equal(422);
      }
      expect(last!.status).to.equal(429);
      expect(Number(last!.headers.get('retry-after'))).to.be.greaterThan(0);
      expect(last!.json.type).to.equal('https://latch.dev/problems/too-many-requests');
      // Locked: even the right password is refused.
      expect((await call('POST', '/api/v1/me/change-password', { token: carolToken, body: { current_password: carol.password, new_password: 'copper kettles hum at dawn' } })).status).to.equal(429);
      expect(await srv.running.services.audit.list({ subjectId: carol.id, type: 'login.lockout' })).to.have.length(1);
    });
  });

  describe('/me/tokens', () => {
    it('creates a token (shown once), which works on the API and at introspection until revoked', async () => {
      const created = await call('POST', '/api/v1/me/tokens', { token: aliceToken, body: { name: 'deploy script', scopes: [`${API}:account`], expires_in_days: 7 } });
      expect(created.status).to.equal(201);
      expect(created.headers.get('location')).to.equal(`${srv.url}/api/v1/me/tokens/${created.json.id}`);
      expect(created.json).to.include({ name: 'deploy script', organization_id: null, revoked_at: null, last_used_at: null });
      expect(created.json.scopes).to.deep.equal(['account']);
      expect(created.json.audience).to.deep.equal([API]);
      expect(created.json.prefix).to.equal(created.json.token.slice(0, 8));
      expect(Date.parse(created.json.expires_at) - Date.parse(created.json.created_at)).to.equal(7 * 86_400_000);
      const pat = created.json.token as string;

      const me = await call('GET', '/api/v1/me', { token: pat });
      expect(me.status).to.equal(200);
      expect(me.json.id).to.equal(alice.id);
      expect((await call('GET', '/api/v1/users', { token: pat })).status).to.equal(403);
      expect(await introspect(pat)).to.include({ active: true, sub: alice.id, scope: 'account' });

      const got = await call('GET', `/api/v1/me/tokens/${created.json.id}`, { token: aliceToken });
      expect(got.headers.get('etag')).to.match(/^"/);
      expect(got.json).to.not.have.property('token');
      const list = await call('GET', '/api/v1/me/tokens', { token: aliceToken });
      expect(list.json.data[0].id).to.equal(created.json.id);
      expect((await call('GET', '/api/v1/me/tokens', { token: bobToken })).json.data).to.deep.equal([]);
      expect((await call('GET', `/api/v1/me/tokens/${created.json.id}`, { token: bobToken })).status).to.equal(404);
      expect((await call('DELETE', `/api/v1/me/tokens/${created.json.id}`, { token: bobToken })).status).to.equal(404);
      expect((await call('GET', `/api/v1/me/tokens/${'x'.repeat(200)}`, { token: aliceToken })).status).to.equal(404);
      for (const id of ['%00', 'a%00b', '%E0%A4%A']) {
        expect((await call('GET', `/api/v1/me/tokens/${id}`, { token: aliceToken })).status, id).to.equal(404);
        expect((await call('DELETE', `/api/v1/me/sessions/${id}`, { token: aliceToken })).status, id).to.equal(404);
        expect((await call('DELETE', `/api/v1/me/grants/${id}`, { token: aliceToken })).status, id).to.equal(404);
        expect((await call('GET', `/api/v1/audit-events/${id}`, { token: h.admin })).status, id).to.equal(404);
      }

      expect((await call('DELETE', `/api/v1/me/tokens/${created.json.id}`, { token: aliceToken })).status).to.equal(204);
      expect((await call('GET', '/api/v1/me', { token: pat })).status).to.equal(401);
      expect(await introspect(pat)).to.deep.equal({ active: false });
      expect((await call('GET', `/api/v1/me/tokens/${created.json.id}`, { token: aliceToken })).status).to.equal(404);
      expect((await call('DELETE', `/api/v1/me/tokens/${created.json.id}`, { token: aliceToken })).status).to.equal(404);
      expect((await call('GET', '/api/v1/me/tokens', { token: aliceToken })).json.data).to.deep.equal([]);
      const types = (await srv.running.services.audit.list({ subjectId: alice.id })).map((e) => e.type);
      expect(types).to.include.members(['pat.create', 'pat.revoke']);
    });

    it('makes organization tokens only for the caller\'s organizations', async () => {
      const org = (await call('GET', '/api/v1/me', { token: aliceToken })).json.organizations[0];
      const made = await call('POST', '/api/v1/me/tokens', { token: aliceToken, body: { name: 'acme', scopes: [`${API}:account`], organization_id: org.id } });
      expect(made.status).to.equal(201);
      expect(made.json.organization_id).to.equal(org.id);
      expect(await introspect(made.json.token)).to.include({ active: true, org_id: org.id, org_role: 'owner' });
      const notMember = await call('POST', '/api/v1/me/tokens', { token: bobToken, body: { name: 'acme', scopes: [`${API}:account`], organization_id: org.id } });
      expect(notMember.json.errors[0].field).to.equal('organization_id');
      expect((await call('POST', '/api/v1/me/tokens', { token: bobToken, body: { name: 'acme', scopes: [`${API}:account`], organization_id: 'a\u0000' } })).status).to.equal(422);
      expect((await call('DELETE', `/api/v1/me/tokens/${made.json.id}`, { token: aliceToken })).status).to.equal(204);
    });

    it('refuses bad input with 422 and the 51st live token with 409', async () => {
      const post = (body: unknown) => call('POST', '/api/v1/me/tokens', { token: bobToken, body });
      const scopes = [`${API}:account`];
      const fields = async (body: unknown) => ((await post(body)).json.errors as { field: string }[]).map((e) => e.field);
      expect(await fields({})).to.have.members(['name', 'scopes']);
      expect(await fields({ name: 'x', scopes, extra: 1 })).to.deep.equal(['extra']);
      expect(await fields({ name: 'x'.repeat(101), scopes })).to.deep.equal(['name']);
      expect(await fields({ name: 'x', scopes: 'account' })).to.deep.equal(['scopes']);
      expect(await fields({ name: 'x', scopes: [] })).to.deep.equal(['scopes']);
      expect(await fields({ name: 'x', scopes: ['https://nowhere.example.test:read'] })).to.deep.equal(['scopes']);
      expect(await fields({ name: 'x', scopes: ['no-colon'] })).to.deep.equal(['scopes']);
      expect(await fields({ name: 'x', scopes, expires_in_days: 0 })).to.deep.equal(['expires_in_days']);
      expect(await fields({ name: 'x', scopes, expires_in_days: 100_000 })).to.deep.equal(['expires_in_days']);
      expect(await fields({ name: 'x', scopes, expires_in_days: '7' })).to.deep.equal(['expires_in_days']);
      expect(await fields({ name: 'x', scopes, organization_id: 5 })).to.deep.equal(['organization_id']);

      for (let i = 0; i < 50; i++) expect((await post({ name: `t${i}`, scopes })).status).to.equal(201);
      const over = await post({ name: 'one too many', scopes });
      expect(over.status).to.equal(409);
      expect(over.json.type).to.equal('https://latch.dev/problems/conflict');
      const page1 = await call('GET', '/api/v1/me/tokens?limit=20', { token: bobToken });
      expect(page1.json.data).to.have.length(20);
      const page3 = await call('GET', `/api/v1/me/tokens?limit=20&cursor=${(await call('GET', `/api/v1/me/tokens?limit=20&cursor=${page1.json.next_cursor}`, { token: bobToken })).json.next_cursor}`, { token: bobToken });
      expect(page3.json.data).to.have.length(10);
      expect(page3.json.next_cursor).to.equal(null);
    });
  });

  describe('/audit-events', () => {
    type Event = { id: string; type: string; at: string; actor_id: string | null; subject_id: string | null; client_id: string | null; details: unknown };
    const list = async (query: string, token = h.admin) => {
      const r = await call('GET', `/api/v1/audit-events?${query}`, { token });
      expect(r.status, `${query}: ${JSON.stringify(r.json)}`).to.equal(200);
      return r.json as { data: Event[]; next_cursor: string | null };
    };
    /** Every event of a query, following next_cursor with pages of `limit`. */
    async function all(query: string, limit: number): Promise<Event[]> {
      const out: Event[] = [];
      let cursor: string | null = null;
      do {
        const page = await list(`${query}&limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`);
        expect(page.data.length).to.be.at.most(limit);
        out.push(...page.data);
        cursor = page.next_cursor;
      } while (cursor);
      return out;
    }

    it('lists the trail newest first, filtered by actor, subject and type, in pages', async () => {
      // Events made through the API: three renames by dave, each audited as account.update.
      const dave = { email: 'dave@example.test', password: 'dave paints the harbour blue' };
      const daveId = (await h.cli('users', 'create', '--email', dave.email, '--password', dave.password)).id as string;
      const daveToken = await h.userToken(dave, 'account');
      for (const name of ['D1', 'D2', 'D3']) {
        expect((await call('PATCH', '/api/v1/me', { token: daveToken, body: { name } })).status).to.equal(200);
        // Distinct milliseconds, so that the time filters below can split them.
        await new Promise((r) => setTimeout(r, 3));
      }

      const everything = await list('limit=200', h.reader);
      const ids = everything.data.map((e) => Number(e.id));
      expect(ids).to.deep.equal([...ids].sort((a, b) => b - a));
      const byDave = await all(`actor=${daveId}`, 1);
      expect(byDave.filter((e) => e.type === 'account.update')).to.have.length(3);
      expect(byDave.every((e) => e.actor_id === daveId)).to.equal(true);
      const updates = await all(`actor=${daveId}&type=account.update`, 1);
      expect(updates.map((e) => (e.details as { display_name: { after: string } }).display_name.after)).to.deep.equal(['D3', 'D2', 'D1']);
      expect(new Set(updates.map((e) => e.id)).size).to.equal(3);
      const aboutDave = await all(`subject=${daveId}`, 2);
      expect(aboutDave.every((e) => e.subject_id === daveId)).to.equal(true);
      expect(aboutDave.map((e) => e.id)).to.include.members(updates.map((e) => e.id));
      expect((await list('type=no.such.type')).data).to.deep.equal([]);
      expect((await list(`actor=${'x'.repeat(128)}`)).data).to.deep.equal([]);

      const one = await call('GET', `/api/v1/audit-events/${updates[0]!.id}`, { token: h.reader });
      expect(one.json).to.deep.equal(updates[0]);
      expect(one.headers.get('etag')).to.match(/^"/);
      for (const id of ['0', '999999999', 'abc', '9'.repeat(40), '-1', '1.5']) expect((await call('GET', `/api/v1/audit-events/${id}`, { token: h.reader })).status, id).to.equal(404);
    });

    it('filters by time with any UTC offset (since inclusive, until exclusive)', async () => {
      const updates = (await list('type=account.update&limit=200')).data;
      expect(updates.length).to.be.greaterThan(3);
      // Three renames at distinct milliseconds: the middle one's time bounds the window.
      const d = (await list('type=account.update&limit=3')).data;
      const [newest, middle, oldest] = d as [Event, Event, Event];
      const expected = (since: string, until?: string) => updates.filter((e) => e.at >= since && (!until || e.at < until)).map((e) => e.id);
      const sinceMiddle = await all(`type=account.update&since=${encodeURIComponent(withOffset(middle.at, 60))}`, 1);
      expect(sinceMiddle.map((e) => e.id)).to.deep.equal(expected(middle.at));
      expect(sinceMiddle.map((e) => e.id)).to.include.members([newest.id, middle.id]).and.not.include(oldest.id);
      const untilMiddle = await list(`type=account.update&limit=200&until=${encodeURIComponent(withOffset(middle.at, -330))}`);
      expect(untilMiddle.data.map((e) => e.id)).to.deep.equal(expected('0000', middle.at));
      expect(untilMiddle.data.map((e) => e.id)).to.include(oldest.id).and.not.include(middle.id);
      const window = await list(`type=account.update&since=${encodeURIComponent(withOffset(middle.at, 0))}&until=${encodeURIComponent(withOffset(newest.at, 120))}`);
      expect(window.data.map((e) => e.id)).to.deep.equal(expected(middle.at, newest.at));
      // An unencoded `+` arrives as a space: read as the offset's sign.
      const plain = await list(`type=account.update&since=${withOffset(middle.at, 60)}`);
      expect(plain.data.map((e) => e.id)).to.deep.equal(sinceMiddle.map((e) => e.id));
      expect((await list('since=2000-01-01T00:00:00Z&until=2000-01-02T00:00:00Z')).data).to.deep.equal([]);
      expect((await list('since=9999-12-31T23:59:59.999Z')).data).to.deep.equal([]);
    });

    it('refuses malformed filters and cursors with 422', async () => {
      const bad = async (query: string) => {
        const r = await call('GET', `/api/v1/audit-events?${query}`, { token: h.admin });
        expect(r.status, query).to.equal(422);
        return (r.json.errors as { field: string }[]).map((e) => e.field);
      };
      for (const since of ['yesterday', '2026-11-23', '2026-11-23T10:00:00', '2026-02-30T00:00:00Z', '2026-11-23T24:00:00Z', '2026-11-23T10:00:00+24:00', '1e9', '0000-01-01T00:00:00+01:00']) {
        expect(await bad(`since=${encodeURIComponent(since)}`), since).to.deep.equal(['since']);
      }
      expect(await bad('until=nope&since=nope')).to.have.members(['since', 'until']);
      expect(await bad('since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z')).to.deep.equal(['until']);
      expect(await bad('since=2026-01-01T00:00:00Z&since=2026-01-02T00:00:00Z')).to.deep.equal(['since']);
      expect(await bad(`actor=${'x'.repeat(129)}`)).to.deep.equal(['actor']);
      expect(await bad('subject=%00')).to.deep.equal(['subject']);
      expect(await bad(`type=${'t'.repeat(65)}`)).to.deep.equal(['type']);
      expect(await bad('limit=0')).to.deep.equal(['limit']);
      expect(await bad('cursor=zzz')).to.deep.equal(['cursor']);
      const forged = Buffer.from(JSON.stringify(['2026-01-01T00:00:00.000Z', 'not-a-number'])).toString('base64url');
      expect(await bad(`cursor=${forged}`)).to.deep.equal(['cursor']);
      const huge = Buffer.from(JSON.stringify(['2026-01-01T00:00:00.000Z', '9'.repeat(30)])).toString('base64url');
      expect(await bad(`cursor=${huge}`)).to.deep.equal(['cursor']);
    });

    it('normalises RFC 3339 times to the stored form', () => {
      expect(storedTimeOf('2026-11-23T10:00:00+01:00')).to.equal('2026-11-23T09:00:00.000Z');
      expect(storedTimeOf('2026-11-23t10:00:00.5z')).to.equal('2026-11-23T10:00:00.500Z');
      expect(storedTimeOf('2026-11-23T10:00:00.1230001Z')).to.equal('2026-11-23T10:00:00.124Z');
      expect(storedTimeOf('2026-11-23T10:00:00.123Z')).to.equal('2026-11-23T10:00:00.123Z');
      expect(storedTimeOf('2026-11-23T00:30:00-05:30')).to.equal('2026-11-23T06:00:00.000Z');
      expect(storedTimeOf('2026-11-23T10:00:00 02:00')).to.equal('2026-11-23T08:00:00.000Z');
      expect(storedTimeOf('2016-12-31T23:59:60Z')).to.equal('2017-01-01T00:00:00.000Z');
      expect(storedTimeOf('2024-02-29T00:00:00Z')).to.equal('2024-02-29T00:00:00.000Z');
      expect(storedTimeOf('0050-01-01T00:00:00Z')).to.equal('0050-01-01T00:00:00.000Z');
      expect(storedTimeOf('2023-02-29T00:00:00Z')).to.equal(undefined);
      expect(storedTimeOf('9999-12-31T23:00:00-01:00')).to.equal(undefined);
    });
  });

  describe('contract', () => {
    it('only a user token with the scope account reaches /me; only admin tokens the audit trail', async () => {
      for (const token of [h.admin, h.superToken]) {
        const r = await call('GET', '/api/v1/me', { token });
        expect(r.status).to.equal(403);
        expect(r.headers.get('www-authenticate')).to.equal('Bearer realm="latch", error="insufficient_scope", scope="account"');
      }
      expect((await call('GET', '/api/v1/audit-events', { token: aliceToken })).status).to.equal(403);
      expect((await call('GET', '/api/v1/audit-events', { token: h.superToken })).status).to.equal(200);
    });

    it('every operation under /me and /audit-events answered a 2xx that validated against openapi.yaml', () => {
      expectCovered('/api/v1/me', '/api/v1/audit-events');
    });
  });
});
