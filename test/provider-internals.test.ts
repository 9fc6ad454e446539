import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import { expect } from 'chai';
import Koa from 'koa';
import Provider, { type KoaContextWithOIDC } from 'oidc-provider';

import { restoreOfflineAccess } from '../src/oidc/offline-access.js';
import { compareClientSecretsWith, deriveRotatedRefreshTokenIds, keepInGrantPayload, memoiseClientFind, providerHandler } from '../src/oidc/provider-internals.js';

/**
 * What src/oidc/provider-internals.ts (and the offline_access restoration) rely on in the
 * installed oidc-provider, asserted against a bare Provider on a real port: an upgrade that
 * changes one of these internals fails here.
 */
describe('oidc-provider internals Latch relies on (src/oidc/provider-internals.ts)', () => {
  const REDIRECT = 'http://127.0.0.1:9/cb';
  let server: Server;
  let base: string;
  let provider: Provider;
  const looked: string[] = [];
  const compared: [string, string][] = [];
  const metadata = { client_id: 'machine', client_secret: 'stored-secret', grant_types: ['client_credentials'], redirect_uris: [], response_types: [] };
  const seenByValidator: unknown[] = [];

  before(async () => {
    const app = new Koa();
    // Koa composes its middleware when the listener is made: the listener is made once the
    // provider (which needs the port for its issuer) is mounted.
    let listener: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => res.end();
    server = createServer((req, res) => listener(req, res)).listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    provider = new Provider(base, {
      clients: [
        metadata,
        { client_id: 'spa', token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'], redirect_uris: [REDIRECT], response_types: ['code'], scope: 'openid offline_access' },
      ],
      scopes: ['openid', 'offline_access'],
      ttl: { ClientCredentials: 60, Grant: 60, Interaction: 60, Session: 60 },
      features: { clientCredentials: { enabled: true }, devInteractions: { enabled: false } },
      extraParams: {
        probe(ctx) {
          seenByValidator.push(ctx.oidc.params?.scope);
          restoreOfflineAccess(ctx as KoaContextWithOIDC);
        },
      },
    });
    keepInGrantPayload(provider, 'organizationId');
    compareClientSecretsWith(provider, (presented, stored) => {
      compared.push([presented, stored]);
      return presented === 'presented-secret' && stored === 'stored-secret';
    });
    memoiseClientFind(provider, async (id) => {
      looked.push(id);
      return id === 'machine' ? metadata : undefined;
    });
    const handler = providerHandler(provider);
    app.use((ctx) => handler(ctx));
    const callback = app.callback();
    listener = (req, res) => void callback(req, res);
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  const token = (user: string, secret: string) =>
    fetch(`${base}/token`, { method: 'POST', headers: { authorization: `Basic ${Buffer.from(`${user}:${secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=client_credentials' });

  it('the provider is a Koa app whose middleware array serves on the caller\'s context', async () => {
    const stack = (provider as unknown as { middleware: unknown }).middleware;
    expect(stack).to.be.an('array').that.is.not.empty;
    for (const m of stack as unknown[]) expect(m).to.be.a('function');
    const res = await fetch(`${base}/.well-known/openid-configuration`);
    expect(res.status).to.equal(200);
    expect(((await res.json()) as { issuer: string }).issuer).to.equal(base);
  });

  it('client authentication compares secrets through Client.prototype.compareClientSecret', async () => {
    expect(provider.Client.prototype.compareClientSecret).to.be.a('function');
    expect((await token('machine', 'presented-secret')).status).to.equal(200);
    expect(compared).to.deep.include(['presented-secret', 'stored-secret']);
    // The replacement decides: the stored value itself is refused.
    const refused = await token('machine', 'stored-secret');
    expect(refused.status).to.equal(401);
    expect(((await refused.json()) as { error: string }).error).to.equal('invalid_client');
  });

  it('the token endpoint looks clients up through the static Client.find; one Client per metadata object', async () => {
    looked.length = 0;
    expect((await token('machine', 'presented-secret')).status).to.equal(200);
    expect(looked).to.include('machine');
    const a = await provider.Client.find('machine');
    const b = await provider.Client.find('machine');
    expect(a).to.be.instanceOf(provider.Client);
    expect(a!.clientId).to.equal('machine');
    expect(b).to.equal(a);
  });

  it('a Grant keeps only the properties its IN_PAYLOAD lists, and the list can grow', async () => {
    const listed = (provider.Grant as unknown as { IN_PAYLOAD: unknown }).IN_PAYLOAD;
    expect(listed).to.be.an('array').that.includes.members(['accountId', 'clientId', 'openid', 'organizationId']);
    const grant = new provider.Grant({ accountId: 'a1', clientId: 'machine' });
    Object.assign(grant, { organizationId: 'org-1', notListed: 'dropped' });
    const id = await grant.save();
    const found = (await provider.Grant.find(id)) as unknown as Record<string, unknown>;
    expect(found.organizationId).to.equal('org-1');
    expect(found.notListed).to.equal(undefined);
  });

  it('offline_access is dropped without prompt=consent before extraParams validators run, and restored there for the interaction', async () => {
    seenByValidator.length = 0;
    const url = new URL(`${base}/auth`);
    url.search = new URLSearchParams({ client_id: 'spa', response_type: 'code', redirect_uri: REDIRECT, scope: 'openid offline_access', code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256' }).toString();
    const res = await fetch(url, { redirect: 'manual' });
    expect(res.status).to.equal(303);
    expect(seenByValidator).to.deep.equal(['openid']);
    const uid = res.headers.get('location')!.split('/').pop()!;
    const interaction = await provider.Interaction.find(uid);
    expect(interaction?.params.scope).to.equal('openid offline_access');
  });

  it('a rotation saves its new RefreshToken through generateTokenId while RotatedRefreshToken is the rotated one', async () => {
    deriveRotatedRefreshTokenIds(provider, (rotated) => `next-of-${rotated}`.slice(0, 43));
    const client = (await provider.Client.find('spa'))!;
    const grant = new provider.Grant({ accountId: 'a1', clientId: 'spa' });
    grant.addOIDCScope('openid offline_access');
    const grantId = await grant.save();
    // Outside a rotation the id stays random.
    const rt = new provider.RefreshToken({ client, accountId: 'a1', grantId, scope: 'openid offline_access', gty: 'authorization_code' });
    const value = await rt.save();
    expect(value).to.not.match(/^next-of-/);
    const res = await fetch(`${base}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: value, client_id: 'spa' }) });
    const body = (await res.json()) as { refresh_token?: string };
    expect(res.status, JSON.stringify(body)).to.equal(200);
    expect(body.refresh_token).to.equal(`next-of-${value}`.slice(0, 43));
  });
});
