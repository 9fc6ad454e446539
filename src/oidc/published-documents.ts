import { createHash } from 'node:crypto';

import type Koa from 'koa';

import { BoundedCache } from '../lib/lru.js';
import { ROUTE_NAME } from '../lib/route-label.js';
import type { Oidc } from './provider.js';

/**
 * The two public documents every relying party and resource server fetches — the JWKS and the
 * discovery metadata — change only when the Provider is rebuilt (signing keys rotated or retired,
 * by this process or another one through the change feed: provider.ts reloadKeys). Their bytes
 * are kept per Provider and served before oidc-provider's router runs, with a strong ETag and a
 * 304 on a matching If-None-Match (RFC 9110 §13.1.2, §15.4.5).
 */
const DOCUMENTS: ReadonlyMap<string, 'jwks' | 'discovery'> = new Map([
  ['/jwks', 'jwks'],
  ['/.well-known/openid-configuration', 'discovery'],
  ['/.well-known/oauth-authorization-server', 'discovery'],
]);

/**
 * RFC 9111 §5.2.2.4: a cache may keep the document but must revalidate it before each use. A
 * rotation makes the new key sign at once, so a JWKS held for a fixed max-age could miss the key
 * of tokens already issued; with the ETag, revalidating costs a 304.
 */
const CACHE_CONTROL = 'no-cache';

interface Document {
  body: Buffer;
  type: string;
  etag: string;
}

/** Discovery names endpoints under the request's own origin (oidc-provider's urlFor): one document per origin, a few origins kept. */
const ORIGINS_KEPT = 16;

/** The origin oidc-provider resolves endpoint URLs against (ctx.href: protocol and Host, X-Forwarded-* behind the trusted proxy). */
const originOf = (ctx: Koa.Context) => `${ctx.protocol}://${ctx.host}`;

/** RFC 9110 §13.1.2: If-None-Match matches with the weak comparison, `*` matches any current representation. */
export function noneMatch(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  for (const part of header.split(',')) {
    const tag = part.trim();
    if (tag === '*' || tag === etag || (tag.startsWith('W/') && tag.slice(2) === etag)) return true;
  }
  return false;
}

/**
 * oidc-provider's handler for everything outside Latch's own routes, with the published
 * documents answered from bytes kept per Provider. The first GET of a document after a Provider
 * is built goes through oidc-provider, whose response is kept: the bytes, content type and CORS
 * rules stay exactly oidc-provider's (CORS: `Access-Control-Allow-Origin` is the request's
 * Origin, or `*`, with `Vary: Origin`; never credentials).
 */
export function publishedDocuments(oidc: Pick<Oidc, 'provider' | 'middleware'>): Koa.Middleware {
  let provider: unknown;
  let jwks: Document | undefined;
  const discovery = new BoundedCache<string, Document>(ORIGINS_KEPT);

  const current = () => {
    if (provider !== oidc.provider) {
      provider = oidc.provider;
      jwks = undefined;
      discovery.clear();
    }
  };

  const send = (ctx: Koa.Context, doc: Document) => {
    const { res } = ctx;
    res.setHeader('Vary', 'Origin');
    res.setHeader('Access-Control-Allow-Origin', ctx.req.headers.origin || '*');
    res.setHeader('ETag', doc.etag);
    res.setHeader('Cache-Control', CACHE_CONTROL);
    if (noneMatch(ctx.req.headers['if-none-match'], doc.etag)) {
      ctx.status = 304;
      return;
    }
    res.setHeader('Content-Type', doc.type);
    ctx.body = doc.body;
  };

  const keep = (ctx: Koa.Context, name: 'jwks' | 'discovery', built: unknown): void => {
    const oidcRoute = (ctx as Koa.Context & { oidc?: { route?: string } }).oidc?.route;
    // Only a 200 whose JSON oidc-provider made for this very document, from the Provider in
    // place when the request started (a rebuild in between would keep stale keys).
    if (ctx.status !== 200 || oidcRoute !== name || built !== oidc.provider || provider !== built) return;
    const json = ctx.body;
    const type = ctx.response.get('Content-Type');
    if (json === null || typeof json !== 'object' || Buffer.isBuffer(json) || !type) return;
    const body = Buffer.from(JSON.stringify(json));
    const doc: Document = { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"` };
    if (name === 'jwks') jwks = doc;
    else discovery.set(originOf(ctx), doc);
    ctx.body = body;
    ctx.set('ETag', doc.etag);
    ctx.set('Cache-Control', CACHE_CONTROL);
  };

  return (ctx, next) => {
    // An absolute-form request target (`GET http://host/jwks`) is left to oidc-provider: its
    // URLs would be resolved against that target rather than against protocol and Host.
    const name = ctx.method === 'GET' && ctx.url.startsWith('/') ? DOCUMENTS.get(ctx.path) : undefined;
    if (!name) return oidc.middleware(ctx, next);
    current();
    const doc = name === 'jwks' ? jwks : discovery.get(originOf(ctx));
    if (doc) {
      (ctx.state as Record<symbol, string>)[ROUTE_NAME] = name;
      send(ctx, doc);
      return Promise.resolve();
    }
    const built = oidc.provider;
    return Promise.resolve(oidc.middleware(ctx, next)).then(() => keep(ctx, name, built));
  };
}
