import { request } from 'node:http';

import { expect } from 'chai';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import * as oidc from 'openid-client';

import { noneMatch } from '../src/oidc/published-documents.js';
import { startTestServer, type TestServer } from './helpers/server.js';

const API = 'https://api.example.test';
const DISCOVERY = '/.well-known/openid-configuration';

/** A GET with any headers, Host included (fetch may not set Host). */
function get(port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET', headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const found = await probe();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('JWKS and discovery: kept bytes, ETag, Cache-Control, 304', () => {
  let srv: TestServer;

  before(async () => {
    srv = await startTestServer();
  });
  after(async () => {
    await srv?.close();
  });

  it('serves the JWKS with a strong ETag and no-cache, the same bytes each time, and oidc-provider\'s headers', async () => {
    const first = await get(srv.port, '/jwks');
    const second = await get(srv.port, '/jwks?ignored=1', { origin: 'https://rp.example' });
    for (const res of [first, second]) {
      expect(res.status).to.equal(200);
      expect(res.headers['content-type']).to.equal('application/jwk-set+json; charset=utf-8');
      expect(res.headers.etag).to.match(/^"[A-Za-z0-9_-]{16,}"$/);
      expect(res.headers['cache-control']).to.equal('no-cache');
      expect(String(res.headers.vary)).to.match(/\bOrigin\b/i);
      expect(res.headers['access-control-allow-credentials']).to.equal(undefined);
      expect(res.headers['x-content-type-options']).to.equal('nosniff');
      expect(res.headers['x-request-id']).to.be.a('string');
      expect(Number(res.headers['content-length'])).to.equal(Buffer.byteLength(res.body));
    }
    expect(first.headers['access-control-allow-origin']).to.equal('*');
    expect(second.headers['access-control-allow-origin']).to.equal('https://rp.example');
    expect(second.body).to.equal(first.body);
    expect(second.headers.etag).to.equal(first.headers.etag);
    const { keys } = JSON.parse(first.body) as { keys: Record<string, unknown>[] };
    expect(keys.map((k) => k.kid).sort()).to.deep.equal(srv.running.oidc.keyRing().publicJwks.map((k) => k.kid).sort());
    for (const k of keys) expect(k).to.not.have.any.keys('d', 'p', 'q', 'dp', 'dq', 'qi');
  });

  it('answers 304 on a matching If-None-Match (weak comparison, lists, *), 200 otherwise', async () => {
    for (const path of ['/jwks', DISCOVERY]) {
      const full = await get(srv.port, path);
      const etag = full.headers.etag as string;
      for (const inm of [etag, `W/${etag}`, `"nope", ${etag}`, '*']) {
        const res = await get(srv.port, path, { 'if-none-match': inm, origin: 'https://rp.example' });
        expect(res.status, `${path} If-None-Match: ${inm}`).to.equal(304);
        expect(res.body).to.equal('');
        expect(res.headers.etag).to.equal(etag);
        expect(res.headers['cache-control']).to.equal('no-cache');
        expect(res.headers['access-control-allow-origin']).to.equal('https://rp.example');
      }
      const other = await get(srv.port, path, { 'if-none-match': '"something-else"' });
      expect(other.status).to.equal(200);
      expect(other.body).to.equal(full.body);
    }
    expect(noneMatch(undefined, '"a"')).to.equal(false);
    expect(noneMatch('"a-longer"', '"a"')).to.equal(false);
  });

  it('keeps one discovery document per origin: endpoints name the origin the request came to', async () => {
    const own = JSON.parse((await get(srv.port, DISCOVERY)).body) as Record<string, unknown>;
    expect(own.issuer).to.equal(srv.url);
    expect(own.token_endpoint).to.equal(`${srv.url}/token`);
    expect(own.jwks_uri).to.equal(`${srv.url}/jwks`);
    // Asked for under another host name first, then again under the issuer's: neither leaks into the other.
    const other = await get(srv.port, DISCOVERY, { host: `localhost:${srv.port}` });
    const viaOther = JSON.parse(other.body) as Record<string, unknown>;
    expect(viaOther.token_endpoint).to.equal(`http://localhost:${srv.port}/token`);
    expect(viaOther.issuer).to.equal(srv.url);
    expect(other.headers.etag).to.not.equal((await get(srv.port, DISCOVERY)).headers.etag);
    expect(JSON.parse((await get(srv.port, DISCOVERY)).body)).to.deep.equal(own);
    expect(JSON.parse((await get(srv.port, DISCOVERY, { host: `localhost:${srv.port}` })).body)).to.deep.equal(viaOther);
    // openid-client reads it as before.
    const config = await oidc.discovery(new URL(srv.url), 'any-client', undefined, oidc.None(), { execute: [oidc.allowInsecureRequests] });
    expect(config.serverMetadata().token_endpoint).to.equal(`${srv.url}/token`);
  });

  it('logs and counts each answer under the route oidc-provider gives it', async () => {
    const ids = [`jwks-${Date.now()}-a`, `jwks-${Date.now()}-b`];
    await get(srv.port, '/jwks', { 'x-request-id': ids[0]! });
    const etag = (await get(srv.port, '/jwks', { 'x-request-id': ids[1]! })).headers.etag as string;
    const notModified = `jwks-${Date.now()}-304`;
    await get(srv.port, '/jwks', { 'x-request-id': notModified, 'if-none-match': etag });
    const discoveryId = `discovery-${Date.now()}`;
    await get(srv.port, `${DISCOVERY}?q=do-not-log`, { 'x-request-id': discoveryId });
    const lineOf = (id: string) => until(`the log line of ${id}`, async () => srv.logger.lines.find((l) => l.msg === 'request' && l.requestId === id));
    for (const id of ids) expect(await lineOf(id)).to.include({ level: 'info', method: 'GET', route: 'jwks', path: '/jwks', status: 200 });
    expect(await lineOf(notModified)).to.include({ route: 'jwks', path: '/jwks', status: 304 });
    expect(await lineOf(discoveryId)).to.include({ route: 'discovery', path: DISCOVERY, status: 200 });
    const text = await (await fetch(`${srv.url}/metrics`)).text();
    const count = (status: string) => Number(new RegExp(`^latch_http_requests_total\\{method="GET",route="jwks",status="${status}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
    expect(count('200')).to.be.at.least(2);
    expect(count('304')).to.be.at.least(1);
  });

  it('publishes a rotated key as soon as the Provider is rebuilt (another process rotating through the database)', async () => {
    const before = await get(srv.port, '/jwks');
    const oldKids = (JSON.parse(before.body) as { keys: { kid: string }[] }).keys.map((k) => k.kid);
    expect((await srv.cli('resources', 'create', '--identifier', API, '--scope', 'read', '--alg', 'ES256')).code).to.equal(0);
    const machine = (await srv.cli('clients', 'create', '--name', 'Worker', '--grant', 'client_credentials', '--resource', API, '--scope', 'read')).json as { client_id: string; client_secret: string };
    const rotated = await srv.cli('keys', 'rotate');
    expect(rotated.code, rotated.stderr).to.equal(0);
    // The change feed reaches this server; the next JWKS lists the new keys, under a new ETag.
    const after = await until('the rotated JWKS', async () => {
      const res = await get(srv.port, '/jwks', { 'if-none-match': before.headers.etag as string });
      return res.status === 200 ? res : undefined;
    });
    const jwks = JSON.parse(after.body) as { keys: { kid: string }[] };
    expect(jwks.keys).to.have.length(oldKids.length * 2);
    expect(jwks.keys.map((k) => k.kid)).to.include.members(oldKids);
    expect(after.headers.etag).to.not.equal(before.headers.etag);
    // A token signed by the new key verifies against the JWKS now served.
    const res = await fetch(`${srv.url}/token`, { method: 'POST', headers: { authorization: `Basic ${Buffer.from(`${machine.client_id}:${machine.client_secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=client_credentials&scope=read' });
    const token = ((await res.json()) as { access_token: string }).access_token;
    expect(oldKids).to.not.include(decodeProtectedHeader(token).kid);
    await jwtVerify(token, createLocalJWKSet(jwks as never), { issuer: srv.url, audience: API });
  });
});
