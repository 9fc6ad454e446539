/**
 * The baseline for `npm run bench`: a bare oidc-provider mounted in plain Koa, with
 * oidc-provider's default in-memory adapter, static clients, the same key types (RS256, ES256,
 * EdDSA), the same resource-indicator / refresh-rotation / introspection configuration as Latch
 * and a trivial login form (no password hashing, no CSRF). Started by bench/index.ts as a child
 * process; its configuration comes as JSON in BARE_CONFIG.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import { calculateJwkThumbprint, createLocalJWKSet, decodeProtectedHeader, exportJWK, generateKeyPair, jwtVerify, type JWK } from 'jose';
import Koa from 'koa';
import Provider, { errors, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';

import { allowedResourcesOf, defaultResource, mayIntrospect, type ClientLike } from '../src/oidc/client-policy.js';
import type { BareConfig, BareClient } from './types.js';

const KEY_ALGS = ['RS256', 'ES256', 'EdDSA'] as const;

async function generate(alg: (typeof KEY_ALGS)[number]): Promise<{ priv: JWK; pub: JWK }> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'RS256' ? { modulusLength: 2048 } : {}), ...(alg === 'EdDSA' ? { crv: 'Ed25519' } : {}) });
  const priv = await exportJWK(privateKey);
  const kid = await calculateJwkThumbprint(priv);
  const pub: JWK = { kty: priv.kty, kid, alg, use: 'sig' };
  for (const k of ['n', 'e', 'crv', 'x', 'y'] as const) if (priv[k] !== undefined) pub[k] = priv[k];
  return { priv: { ...priv, kid, alg, use: 'sig' }, pub };
}

const escapeHtml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

async function readForm(req: IncomingMessage): Promise<Record<string, string>> {
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
  return Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString('utf8')));
}

function clientMetadata(c: BareClient) {
  return {
    client_id: c.client_id,
    client_secret: c.client_secret,
    grant_types: c.grant_types,
    response_types: c.grant_types.includes('authorization_code') ? ['code'] : [],
    redirect_uris: c.redirect_uris,
    token_endpoint_auth_method: 'client_secret_basic',
    scope: c.scope,
    allowed_scopes: c.allowed_scopes,
    allowed_resources: c.allowed_resources,
    first_party: c.first_party,
  };
}

async function main(): Promise<void> {
  const cfg = JSON.parse(process.env.BARE_CONFIG ?? '{}') as BareConfig;
  const keys = await Promise.all(KEY_ALGS.map(generate));
  const resources = new Map(cfg.resources.map((r) => [r.identifier, r]));
  const accounts = new Map(cfg.users.map((u) => [u.id, u]));
  const byEmail = new Map(cfg.users.map((u) => [u.email.toLowerCase(), u]));
  const cookieKey = createHash('sha256').update('bare-bench-cookies').digest('base64url');

  const configuration: Configuration = {
    // No adapter: oidc-provider's default in-memory (LRU) adapter.
    clients: cfg.clients.map(clientMetadata) as Configuration['clients'],
    jwks: { keys: keys.map((k) => k.priv) as NonNullable<Configuration['jwks']>['keys'] },
    scopes: ['openid', 'offline_access', 'profile', 'email'],
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'updated_at'] },
    responseTypes: ['code'],
    allowOmittingSingleRegisteredRedirectUri: false,
    pkce: { required: (_ctx, client) => client.clientAuthMethod === 'none' },
    cookies: { keys: [cookieKey], long: { signed: true, httpOnly: true, sameSite: 'lax' }, short: { signed: true, httpOnly: true, sameSite: 'lax' } },
    ttl: { AccessToken: 900, ClientCredentials: 900, IdToken: 3600, RefreshToken: 604_800, AuthorizationCode: 60, Interaction: 3600, Session: 1_209_600, Grant: 1_209_600 },
    rotateRefreshToken: true,
    extraClientMetadata: { properties: ['first_party', 'allowed_resources', 'allowed_scopes'] },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(_ctx, sub) {
      const u = accounts.get(sub);
      if (!u) return undefined;
      return { accountId: u.id, claims: () => ({ sub: u.id, email: u.email, email_verified: false, name: u.name }) };
    },
    // Same policy as Latch: first-party clients skip consent (their grant covers the request).
    async loadExistingGrant(ctx) {
      const { oidc } = ctx;
      const client = oidc.client!;
      const grantId = oidc.result?.consent?.grantId || oidc.session!.grantIdFor(client.clientId);
      let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
      if ((client as unknown as ClientLike).first_party !== true || !oidc.session?.accountId) return grant;
      grant ??= new oidc.provider.Grant({ clientId: client.clientId, accountId: oidc.session.accountId });
      const oidcScopes = [...oidc.requestParamOIDCScopes];
      if (oidcScopes.length) grant.addOIDCScope(oidcScopes.join(' '));
      for (const [indicator, server] of Object.entries(oidc.resourceServers ?? {})) {
        const wanted = [...oidc.requestParamScopes].filter((s) => server.scopes.has(s));
        if (wanted.length) grant.addResourceScope(indicator, wanted.join(' '));
      }
      await grant.save();
      return grant;
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: true,
        allowedPolicy: (_ctx, client, token) => mayIntrospect(client as unknown as ClientLike, { clientId: token.clientId, aud: (token as { aud?: unknown }).aud, kind: token.kind }),
      },
      revocation: { enabled: true },
      userinfo: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: (_ctx, client, oneOf) => defaultResource(client as unknown as ClientLike, oneOf)!,
        useGrantedResource: () => true,
        async getResourceServerInfo(_ctx, indicator, client) {
          const c = client as unknown as ClientLike;
          if (!allowedResourcesOf(c).includes(indicator)) throw new errors.InvalidTarget('resource indicator is not allowed for this client');
          const rs = resources.get(indicator);
          if (!rs) throw new errors.InvalidTarget('resource indicator is not registered');
          const clientScopes = new Set(Array.isArray(c.allowed_scopes) ? (c.allowed_scopes as string[]) : []);
          return {
            scope: rs.scopes.filter((s) => clientScopes.has(s)).join(' '),
            audience: rs.identifier,
            accessTokenTTL: 900,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: rs.alg } },
          };
        },
      },
    },
  };

  const provider = new Provider(cfg.issuer, configuration);

  // JWT access tokens at the introspection endpoint (oidc-provider answers
  // unsupported_token_type): signature + expiry check against the local JWKS, as Latch does,
  // with an in-memory revocation list instead of a database.
  const jwks = createLocalJWKSet({ keys: keys.map((k) => k.pub) });
  const revoked = new Set<string>();
  provider.use(async (ctx: KoaContextWithOIDC, next: () => Promise<unknown>) => {
    await next();
    if (ctx.oidc?.route !== 'introspection' || ctx.status !== 400) return;
    const client = ctx.oidc.client as unknown as ClientLike | undefined;
    const token = (ctx.oidc.params as { token?: unknown } | undefined)?.token;
    if (!client || (ctx.body as { error?: string } | undefined)?.error !== 'unsupported_token_type' || typeof token !== 'string') return;
    try {
      decodeProtectedHeader(token);
      const { payload } = await jwtVerify(token, jwks, { issuer: cfg.issuer, typ: 'at+jwt', algorithms: [...KEY_ALGS] });
      ctx.status = 200;
      ctx.set('Cache-Control', 'no-store');
      const active = typeof payload.jti === 'string' && !revoked.has(payload.jti) && mayIntrospect(client, { clientId: payload.client_id as string, aud: payload.aud });
      ctx.body = active ? { ...payload, active: true, token_type: 'Bearer' } : { active: false };
    } catch {
      ctx.status = 200;
      ctx.body = { active: false };
    }
  });
  const handler = provider.callback();

  const app = new Koa();
  app.silent = true;
  // The trivial interaction: a login form that trusts the email, and automatic consent.
  app.use(async (ctx, next) => {
    const m = /^\/interaction\/([^/]+)(\/login)?$/.exec(ctx.path);
    if (!m) return next();
    const [req, res] = [ctx.req as IncomingMessage, ctx.res as ServerResponse];
    const details = await provider.interactionDetails(req, res);
    if (ctx.method === 'GET' && details.prompt.name === 'login') {
      ctx.type = 'html';
      ctx.set('Cache-Control', 'no-store');
      ctx.body = `<!doctype html><title>Sign in</title><form method="post" action="/interaction/${escapeHtml(details.uid)}/login"><input name="email" type="email"><input name="password" type="password"><button>Sign in</button></form>`;
      return;
    }
    let result: Parameters<Provider['interactionResult']>[2];
    if (ctx.method === 'POST' && m[2] && details.prompt.name === 'login') {
      const form = await readForm(req);
      const user = byEmail.get((form.email ?? '').trim().toLowerCase());
      result = user ? { login: { accountId: user.id, amr: ['pwd'] } } : { error: 'access_denied' };
    } else if (details.prompt.name === 'consent' && details.session?.accountId) {
      const grant = (details.grantId ? await provider.Grant.find(details.grantId) : undefined) ?? new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id as string });
      const missing = details.prompt.details as { missingOIDCScope?: string[]; missingOIDCClaims?: string[]; missingResourceScopes?: Record<string, string[]> };
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) grant.addResourceScope(indicator, scopes.join(' '));
      result = { consent: { grantId: await grant.save() } };
    } else {
      result = { error: 'invalid_request' };
    }
    const url = await provider.interactionResult(req, res, result, { mergeWithLastSubmission: false });
    ctx.status = 303;
    ctx.redirect(url);
  });
  app.use(async (ctx) => {
    ctx.respond = false;
    await handler(ctx.req, ctx.res);
  });

  const server = app.listen(cfg.port, '127.0.0.1');
  server.keepAliveTimeout = 65_000;
  server.on('listening', () => {
    process.stdout.write(`${JSON.stringify({ listening: (server.address() as AddressInfo).port })}\n`);
  });
  const stop = () => server.close(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`bare-server: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
