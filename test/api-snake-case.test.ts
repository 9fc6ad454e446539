import { expect } from 'chai';

import { doc, METHODS, startApiHarness, templateOf, type ApiHarness, type ApiResponse, type CallOptions } from './helpers/api.js';

/** The one key convention of every JSON body Latch answers. */
const SNAKE = /^[a-z][a-z0-9_]*$/;

/** Every key of a JSON value that is not snake_case, with its path (objects in arrays included). */
function badKeys(value: unknown, path = '$'): string[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => badKeys(v, `${path}[${i}]`));
  if (value === null || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([k, v]) => [...(SNAKE.test(k) ? [] : [`${path}.${k}`]), ...badKeys(v, `${path}.${k}`)]);
}

/** Every property name a schema of openapi.yaml declares (`properties` and `required`), with where. */
function schemaNames(node: unknown, path: string): string[] {
  if (Array.isArray(node)) return node.flatMap((n, i) => schemaNames(n, `${path}/${i}`));
  if (node === null || typeof node !== 'object') return [];
  const o = node as Record<string, unknown>;
  const own: string[] = [];
  if (o.properties && typeof o.properties === 'object' && !Array.isArray(o.properties)) own.push(...Object.keys(o.properties).map((k) => `${path}/properties/${k}`));
  if (Array.isArray(o.required)) own.push(...(o.required as unknown[]).filter((k): k is string => typeof k === 'string').map((k) => `${path}/required/${k}`));
  const nested = Object.entries(o).flatMap(([k, v]) => (k === 'properties' && v && typeof v === 'object' ? Object.entries(v).flatMap(([name, s]) => schemaNames(s, `${path}/properties/${name}`)) : schemaNames(v, `${path}/${k}`)));
  return [...own, ...nested];
}

/** Operations of openapi.yaml whose success answers a JSON body (the ones this test must see). */
function operationsWithJsonBodies(): string[] {
  const ops: string[] = [];
  for (const [template, item] of Object.entries(doc.paths)) {
    for (const method of Object.keys(item).filter((m) => METHODS.includes(m))) {
      const responses = Object.entries((item[method] as { responses: Record<string, { content?: Record<string, unknown>; $ref?: string }> }).responses);
      if (responses.some(([status, r]) => status.startsWith('2') && r.content && Object.keys(r.content).some((t) => t.includes('json')))) ops.push(`${method.toUpperCase()} ${template}`);
    }
  }
  return ops.sort();
}

/**
 * snake_case in every JSON body (issue 18.3): every operation of openapi.yaml that answers JSON is
 * called on a real server with real data (users, clients, resources, roles, organizations,
 * personal access tokens, keys, the audit events all of that wrote, and an audit row stored in
 * the older camelCase form), and every key of every body, nested ones included, must match
 * ^[a-z][a-z0-9_]*$ — problems too. The schemas of openapi.yaml are held to the same rule.
 */
describe('snake_case in every JSON body', function () {
  this.timeout(120_000);
  let h: ApiHarness;
  const seen = new Map<string, number>();
  const offenders: string[] = [];

  /** A call whose JSON body is walked (and whose operation is counted when it succeeded). */
  async function call(method: string, path: string, options: CallOptions = {}): Promise<ApiResponse> {
    const r = await h.call(method, path, options);
    const template = templateOf(path.split('?')[0]!);
    if (r.status < 300) seen.set(`${method} ${template}`, (seen.get(`${method} ${template}`) ?? 0) + 1);
    offenders.push(...badKeys(r.json).map((k) => `${method} ${path} ${r.status}: ${k}`));
    return r;
  }

  before(async () => {
    h = await startApiHarness();
  });
  after(async () => {
    await h?.close();
  });

  it('the schemas of openapi.yaml name their properties in snake_case', () => {
    const names = schemaNames(doc.paths, '#/paths').concat(schemaNames((doc as unknown as { components: unknown }).components, '#/components'));
    expect(names.length, 'the walk found the schemas').to.be.greaterThan(100);
    expect(names.filter((n) => !SNAKE.test(n.split('/').pop()!))).to.deep.equal([]);
  });

  it('finds a camelCase key when there is one (the walk itself can fail)', () => {
    expect(badKeys({ data: [{ details: { after: { displayName: 'x' } } }] })).to.deep.equal(['$.data[0].details.after.displayName']);
    expect(badKeys({ a_b: [1, { c: null }], 'https://x': 1 })).to.deep.equal(['$.https://x']);
  });

  it('every documented JSON response body, with real data, has only snake_case keys', async () => {
    const { admin, reader, root } = h;
    const ok = (r: ApiResponse, status = 200) => {
      expect(r.status, JSON.stringify(r.json)).to.equal(status);
      return r.json;
    };

    // Users, with a session and a grant of their own.
    const login = { email: 'walker@example.test', password: 'a walking passphrase 42' };
    const user = ok(await call('POST', '/api/v1/users', { token: admin, body: { ...login, name: 'Walker' } }), 201);
    ok(await call('GET', '/api/v1/users', { token: reader }));
    ok(await call('GET', `/api/v1/users/${user.id}`, { token: reader }));
    ok(await call('PATCH', `/api/v1/users/${user.id}`, { token: admin, body: { name: 'Walker Two', email_verified: true } }));
    ok(await call('POST', `/api/v1/users/${user.id}/reset-mfa`, { token: admin }), 204);
    await h.userToken(login, 'account');
    expect(ok(await call('GET', `/api/v1/users/${user.id}/sessions`, { token: reader })).data).to.not.be.empty;
    expect(ok(await call('GET', `/api/v1/users/${user.id}/grants`, { token: reader })).data).to.not.be.empty;
    ok(await call('POST', `/api/v1/users/${user.id}/revoke-sessions`, { token: admin }), 204);

    // Clients.
    const client = ok(await call('POST', '/api/v1/clients', { token: admin, body: { name: 'walk', grant_types: ['client_credentials'], resources: [h.API], scope: 'admin:read' } }), 201);
    ok(await call('GET', '/api/v1/clients', { token: reader }));
    ok(await call('GET', `/api/v1/clients/${client.id}`, { token: reader }));
    ok(await call('PATCH', `/api/v1/clients/${client.id}`, { token: admin, body: { name: 'walk two' } }));
    ok(await call('POST', `/api/v1/clients/${client.id}/rotate-secret`, { token: admin, body: { overlap_seconds: 60 } }));
    ok(await call('POST', `/api/v1/clients/${client.id}/disable`, { token: admin }));
    ok(await call('POST', `/api/v1/clients/${client.id}/enable`, { token: admin }));

    // Resources and roles.
    const resource = ok(await call('POST', '/api/v1/resources', { token: admin, body: { identifier: 'https://walk.example.test', scopes: ['walk:read'], access_token_ttl: 600 } }), 201);
    ok(await call('GET', '/api/v1/resources', { token: reader }));
    ok(await call('GET', `/api/v1/resources/${resource.id}`, { token: reader }));
    ok(await call('PATCH', `/api/v1/resources/${resource.id}`, { token: admin, body: { name: 'Walk', rbac: true } }));
    const role = ok(await call('POST', '/api/v1/roles', { token: admin, body: { name: 'walker', description: 'walks', permissions: [`${resource.identifier}:walk:read`] } }), 201);
    ok(await call('GET', '/api/v1/roles', { token: reader }));
    ok(await call('GET', `/api/v1/roles/${role.id}`, { token: reader }));
    ok(await call('PATCH', `/api/v1/roles/${role.id}`, { token: admin, body: { description: 'walks far' } }));
    ok(await call('POST', `/api/v1/roles/${role.id}/assign`, { token: admin, body: { user_id: user.id } }), 204);
    expect(ok(await call('GET', `/api/v1/roles/${role.id}/holders`, { token: reader })).data).to.have.length(1);

    // Organizations, members, invitations.
    const org = ok(await call('POST', '/api/v1/organizations', { token: admin, body: { name: 'Walkers', slug: 'walkers', owner_id: root.id } }), 201);
    ok(await call('GET', '/api/v1/organizations', { token: reader }));
    ok(await call('GET', `/api/v1/organizations/${org.id}`, { token: reader }));
    ok(await call('PATCH', `/api/v1/organizations/${org.id}`, { token: admin, body: { name: 'Walkers Inc' } }));
    ok(await call('POST', `/api/v1/organizations/${org.id}/members`, { token: admin, body: { user_id: user.id, role: 'member' } }), 201);
    ok(await call('GET', `/api/v1/organizations/${org.id}/members`, { token: reader }));
    ok(await call('GET', `/api/v1/organizations/${org.id}/members/${user.id}`, { token: reader }));
    ok(await call('PATCH', `/api/v1/organizations/${org.id}/members/${user.id}`, { token: admin, body: { role: 'admin' } }));
    const invitation = ok(await call('POST', `/api/v1/organizations/${org.id}/invitations`, { token: admin, body: { email: 'invitee@example.test', role: 'member' } }), 201);
    ok(await call('GET', `/api/v1/organizations/${org.id}/invitations`, { token: reader }));
    ok(await call('GET', `/api/v1/organizations/${org.id}/invitations/${invitation.id}`, { token: reader }));
    ok(await call('DELETE', `/api/v1/organizations/${org.id}/invitations/${invitation.id}`, { token: admin }), 204);

    // The signed-in user's own account and personal access tokens.
    const own = await h.userToken(root, 'account');
    expect(ok(await call('GET', '/api/v1/me', { token: own })).organizations).to.have.length(1);
    ok(await call('PATCH', '/api/v1/me', { token: own, body: { name: 'Root' } }));
    ok(await call('GET', '/api/v1/me/sessions', { token: own }));
    ok(await call('GET', '/api/v1/me/grants', { token: own }));
    const pat = ok(await call('POST', '/api/v1/me/tokens', { token: own, body: { name: 'walk', scopes: [`${h.API}:account`], expires_in_days: 7 } }), 201);
    ok(await call('GET', '/api/v1/me/tokens', { token: own }));
    ok(await call('GET', `/api/v1/me/tokens/${pat.id}`, { token: own }));
    ok(await call('DELETE', `/api/v1/me/tokens/${pat.id}`, { token: own }), 204);

    // Upstream identity providers, and an identity linked to the user (as a sign-in links it).
    const idp = ok(await call('POST', '/api/v1/identity-providers', { token: admin, body: { name: 'walk-idp', kind: 'oidc', issuer: 'https://idp.walk.example.test', client_id: 'walk', client_secret: 'walk secret', allowed_domains: ['walk.example.test'] } }), 201);
    ok(await call('GET', '/api/v1/identity-providers', { token: reader }));
    ok(await call('GET', `/api/v1/identity-providers/${idp.id}`, { token: reader }));
    ok(await call('PATCH', `/api/v1/identity-providers/${idp.id}`, { token: admin, body: { display_name: 'Walk IdP', link: 'auto' } }));
    await h.srv.running.services.federatedIdentities.link({ accountId: user.id, provider: idp.id, subject: 'walk-sub', email: 'walker@walk.example.test' }, { actorId: 'test' });
    expect(ok(await call('GET', `/api/v1/users/${user.id}/identities`, { token: reader })).data).to.have.length(1);
    ok(await call('DELETE', `/api/v1/users/${user.id}/identities/${idp.id}`, { token: admin }), 204);
    ok(await call('DELETE', `/api/v1/identity-providers/${idp.id}`, { token: admin }), 204);

    // Keys: one algorithm, then all of them, then a retirement.
    const keys = ok(await call('GET', '/api/v1/keys', { token: reader })).data as { id: string; alg: string }[];
    // Not the RS256 key: it signed the tokens used here (the API resource's alg), and a retired
    // key's tokens stop verifying.
    const key = keys.find((k) => k.alg !== 'RS256')!;
    ok(await call('GET', `/api/v1/keys/${key.id}`, { token: reader }));
    ok(await call('POST', `/api/v1/keys/${key.id}/rotate`, { token: admin }));
    ok(await call('POST', '/api/v1/keys/rotate', { token: admin }));
    ok(await call('POST', `/api/v1/keys/${key.id}/retire`, { token: admin }));

    // An audit row written before details were stored in snake_case reads like a new one.
    const [legacy] = (await h.srv.running.db('audit_events').insert({ type: 'account.update', at: new Date().toISOString(), actor_id: user.id, subject_id: user.id, details: JSON.stringify({ displayName: { before: 'A', after: 'B' }, emailVerified: { before: false, after: true } }) }).returning('id')) as ({ id: number } | number)[];
    const legacyId = typeof legacy === 'object' ? legacy.id : legacy;
    expect(ok(await call('GET', `/api/v1/audit-events/${legacyId}`, { token: reader })).details).to.deep.equal({ display_name: { before: 'A', after: 'B' }, email_verified: { before: false, after: true } });
    // Every event the calls above wrote, with their details.
    const events = ok(await call('GET', '/api/v1/audit-events?limit=200', { token: reader })).data as { type: string; details: unknown }[];
    expect(events.map((e) => e.type)).to.include.members(['account.create', 'account.update', 'account.admin_update', 'client.create', 'client.rotate_secret', 'role.assign', 'organization.create', 'key.rotate', 'key.retire', 'pat.create', 'identity_provider.create', 'identity_provider.update', 'federation.unlink']);
    expect(events.filter((e) => e.details !== null).length).to.be.greaterThan(20);

    // Health, then a problem of every kind a client can cause.
    ok(await call('GET', '/healthz'));
    ok(await call('GET', '/readyz'));
    const problems: [number, ApiResponse][] = [
      [400, await call('POST', '/api/v1/users', { token: admin, raw: '{' })],
      [401, await call('GET', '/api/v1/users')],
      [403, await call('POST', '/api/v1/users', { token: reader, body: {} })],
      [404, await call('GET', '/api/v1/users/nope', { token: reader })],
      [409, await call('POST', '/api/v1/users', { token: admin, body: login })],
      [412, await call('PATCH', `/api/v1/users/${user.id}`, { token: admin, body: { name: 'x' }, headers: { 'if-match': '"stale"' } })],
      [413, await call('POST', '/api/v1/users', { token: admin, raw: JSON.stringify({ name: 'x'.repeat(70_000) }) })],
      [415, await call('POST', '/api/v1/users', { token: admin, raw: 'email=x', headers: { 'content-type': 'text/plain' } })],
      [422, await call('POST', '/api/v1/users', { token: admin, body: { email: 5, roles: 'x', nickName: 1 } })],
    ];
    for (const [status, r] of problems) expect(r.status, JSON.stringify(r.json)).to.equal(status);
    expect(problems.find(([s]) => s === 422)![1].json.errors.length).to.be.greaterThan(1);

    expect(operationsWithJsonBodies().filter((op) => !op.startsWith('GET /api/docs') && !seen.has(op)), 'operations answering JSON that this walk never called').to.deep.equal([]);
    expect(offenders).to.deep.equal([]);
  });
});
