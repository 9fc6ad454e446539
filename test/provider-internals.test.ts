import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import { expect } from 'chai';
import * as jose from 'jose';
import Koa from 'koa';
import Provider, { type KoaContextWithOIDC } from 'oidc-provider';

import { restoreOfflineAccess } from '../src/oidc/offline-access.js';
import { createHash } from 'node:crypto';

import { exportJWK, generateKeyPair, SignJWT } from 'jose';

import { refuseStaleProof, replayId } from '../src/oidc/dpop.js';
import { atomicReplayDetection, BACKCHANNEL_LOGOUT_EVENT, compareClientSecretsWith, deliverBackchannelLogoutsWith, deriveRotatedRefreshTokenIds, isUnstoredSessionSave, keepInGrantPayload, memoiseClientFind, providerHandler, sidInEveryIdToken, signLogoutToken } from '../src/oidc/provider-internals.js';

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
  const remembered: { id: string; payload: Record<string, unknown>; expiresIn: number }[] = [];

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
      features: { clientCredentials: { enabled: true }, devInteractions: { enabled: false }, dPoP: { enabled: true, requireNonce: refuseStaleProof } },
      extraParams: {
        probe(ctx) {
          seenByValidator.push(ctx.oidc.params?.scope);
          restoreOfflineAccess(ctx as KoaContextWithOIDC);
        },
      },
    });
    keepInGrantPayload(provider, 'organizationId');
    atomicReplayDetection(
      provider,
      async (id, payload, expiresIn) => {
        const fresh = !remembered.some((r) => r.id === id);
        remembered.push({ id, payload, expiresIn });
        return fresh;
      },
      replayId,
    );
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

  it('a DPoP proof\'s jti goes through the static ReplayDetection.unique, keyed SHA-256(client id + jti); features.dPoP.requireNonce sees every proof first', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    const jwk = await exportJWK(publicKey);
    const make = (iat: number, jti: string) => new SignJWT({ htm: 'POST', htu: `${base}/token` }).setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk }).setIssuedAt(iat).setJti(jti).sign(privateKey);
    const send = async (dpop: string) => {
      const res = await fetch(`${base}/token`, { method: 'POST', headers: { authorization: `Basic ${Buffer.from('machine:presented-secret').toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded', dpop }, body: 'grant_type=client_credentials' });
      return { status: res.status, body: (await res.json()) as Record<string, string> };
    };
    const now = Math.floor(Date.now() / 1000);
    const once = await make(now, 'one-jti');
    const first = await send(once);
    expect(first.status).to.equal(200);
    expect(first.body.token_type).to.equal('DPoP');
    const expected = createHash('sha256').update('machineone-jti').digest('base64url');
    expect(replayId('machine', 'one-jti')).to.equal(expected);
    expect(remembered.map((r) => r.id)).to.deep.equal([expected]);
    expect(remembered[0]!.expiresIn).to.be.within(1, 300);
    // The replacement decides: a jti it has seen is refused.
    const again = await send(once);
    expect(again.status).to.equal(400);
    expect(again.body.error).to.equal('invalid_grant');
    // requireNonce runs before the library's own five-minute iat window: 90 s is refused.
    const stale = await send(await make(now - 90, 'stale-jti'));
    expect(stale.status).to.equal(400);
    expect(stale.body.error).to.equal('invalid_dpop_proof');
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

describe('oidc-provider internals of back-channel logout (src/oidc/provider-internals.ts)', () => {
  let server: Server;
  let base: string;
  let provider: Provider;
  const enqueued: [string, string, string | undefined][] = [];

  before(async () => {
    const app = new Koa();
    let listener: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => res.end();
    server = createServer((req, res) => listener(req, res)).listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    provider = new Provider(base, {
      clients: [
        { client_id: 'rp', client_secret: 'a-secret-long-enough-for-hs256-000000', redirect_uris: ['http://127.0.0.1:9/cb'], backchannel_logout_uri: 'http://127.0.0.1:9/bcl' },
        { client_id: 'other', client_secret: 'another-secret-long-enough-0000000000', redirect_uris: ['http://127.0.0.1:9/cb'] },
      ],
      features: { devInteractions: { enabled: false }, backchannelLogout: { enabled: true } },
    });
    deliverBackchannelLogoutsWith(provider, async (clientId, sub, sid) => {
      enqueued.push([clientId, sub, sid]);
    });
    const handler = providerHandler(provider);
    app.use((ctx) => handler(ctx));
    const callback = app.callback();
    listener = (req, res) => void callback(req, res);
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  it('end_session calls Client#backchannelLogout(sub, sid) of each client of the session with a backchannel_logout_uri', async () => {
    const Session = provider.Session as unknown as new (payload: object) => { save(ttl: number): Promise<string> };
    const session = new Session({ jti: 'session-1', accountId: 'account-1', loginTs: Math.floor(Date.now() / 1000), authorizations: { rp: { sid: 'sid-rp' }, other: { sid: 'sid-other' } }, state: { secret: 'xsrf-1' } });
    await session.save(60);
    const res = await fetch(`${base}/session/end/confirm`, { method: 'POST', redirect: 'manual', headers: { cookie: `_session=session-1`, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ xsrf: 'xsrf-1', logout: 'yes' }) });
    expect(res.status, await res.text()).to.be.oneOf([302, 303]);
    expect(enqueued).to.deep.equal([['rp', 'account-1', 'sid-rp']]);
    expect(await provider.Session.find('session-1')).to.equal(undefined);
  });

  it('saving a changed session that was never stored throws the TypeError isUnstoredSessionSave names', async () => {
    // The request's session proxy marks it touched when the error handler sets its state.
    const session = new (provider.Session as unknown as new (p: object) => unknown)({ jti: 'never-stored' }) as { state: unknown; persist(): Promise<unknown> };
    session.state = { secret: 'xsrf' };
    let thrown: unknown;
    await session.persist().catch((err: unknown) => (thrown = err));
    expect(isUnstoredSessionSave(thrown), String(thrown)).to.equal(true);
    expect(isUnstoredSessionSave(new TypeError('something else'))).to.equal(false);
  });

  it('includeSid is the Client method that decides whether ID tokens carry sid', async () => {
    const other = (await provider.Client.find('other'))!;
    const proto = provider.Client.prototype as unknown as { includeSid(): boolean };
    expect(proto.includeSid).to.be.a('function');
    expect((other as unknown as { includeSid(): boolean }).includeSid()).to.not.equal(true);
    sidInEveryIdToken(provider);
    expect((other as unknown as { includeSid(): boolean }).includeSid()).to.equal(true);
  });

  it('IdToken with use "logout" signs a logout token with the provider keys, typ logout+jwt, a two-minute exp and no nonce', async () => {
    const client = (await provider.Client.find('rp'))!;
    const token = await signLogoutToken(provider, client, 'account-1', 'sid-rp');
    const jwks = jose.createRemoteJWKSet(new URL(`${base}/jwks`));
    const { payload, protectedHeader } = await jose.jwtVerify(token, jwks, { issuer: base, audience: 'rp', typ: 'logout+jwt' });
    expect(protectedHeader.alg).to.equal(client.idTokenSignedResponseAlg);
    expect(payload).to.include({ sub: 'account-1', sid: 'sid-rp' });
    expect(payload.events).to.deep.equal({ [BACKCHANNEL_LOGOUT_EVENT]: {} });
    expect(payload.jti).to.be.a('string');
    expect(payload.exp! - payload.iat!).to.equal(120);
    expect(payload).to.not.have.property('nonce');
  });
});
