import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

import { decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, SignJWT } from 'jose';
import Provider, { type Adapter, type AdapterPayload, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';

import { Agent, type PageResponse } from './agent.js';

/**
 * A local OpenID Connect provider standing in for Google or any other upstream: a second
 * oidc-provider (the package Latch itself is built on) on a free 127.0.0.1 port, with real
 * discovery, a real JWKS and real signed ID tokens. The machine running the tests has no
 * internet, and a stand-in we can switch off, make refuse or make lie is what the upstream
 * failure paths need.
 *
 * Signing in: the login page asks for an account id or email (no password) and consents
 * automatically. `signIn()` walks it over HTTP; a real browser sees a plain form with
 * "Sign in" and "Cancel".
 */

export interface UpstreamAccount {
  /** The `sub` of its ID tokens. */
  id: string;
  email: string;
  email_verified: boolean;
  name?: string;
  /** False: the ID token carries no email and the client must read userinfo. */
  emailInIdToken?: boolean;
}

export interface UpstreamOidcOptions {
  /** The client's registered redirect URIs (Latch's `${ISSUER}/federation/callback/{name}`). */
  redirectUris: string[];
  accounts?: UpstreamAccount[];
  clientId?: string;
  clientSecret?: string;
  /** What discovery offers as token_endpoint_auth_methods_supported, and what the client is registered with (the first). */
  authMethods?: ('client_secret_basic' | 'client_secret_post')[];
  port?: number;
}

export interface UpstreamOidc {
  issuer: string;
  port: number;
  clientId: string;
  clientSecret: string;
  accounts: UpstreamAccount[];
  /**
   * Switches a test flips: sign ID tokens with a key not in the JWKS; answer every sign-in with
   * access_denied; overwrite ID token claims (iss, aud, exp, ...), re-signed with the real key.
   */
  mode: { badSignature: boolean; deny: boolean; idTokenClaims?: Record<string, unknown> };
  /**
   * Method and path (no query) of every request it answered; at the token endpoint, whether the
   * client authenticated in the Authorization header (basic) or not (post).
   */
  requests: { method: string; path: string; auth?: 'basic' | 'post' }[];
  /**
   * Follows an authorization URL through the login page as `login` (an account id or email) and
   * returns the callback URL the browser is sent to (the client's redirect URI with code or error).
   * `cancel` presses Cancel instead. The agent keeps the upstream session between calls when given.
   */
  signIn(authorizationUrl: URL | string, login: string, options?: { cancel?: boolean; agent?: Agent }): Promise<URL>;
  /** Stops answering (connections refused) / answers again on the same port. */
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

export const DEFAULT_UPSTREAM_ACCOUNTS: UpstreamAccount[] = [
  { id: 'up-verified', email: 'grace@upstream.test', email_verified: true, name: 'Grace Hopper' },
  { id: 'up-unverified', email: 'mallory@upstream.test', email_verified: false, name: 'Mallory' },
  { id: 'up-userinfo', email: 'linus@upstream.test', email_verified: true, name: 'Linus', emailInIdToken: false },
];

/** oidc-provider's storage interface over one Map per instance (its own adapter warns on every start). */
function memoryAdapter() {
  const store = new Map<string, AdapterPayload>();
  return class MemoryAdapter implements Adapter {
    constructor(private readonly model: string) {}
    private key(id: string) {
      return `${this.model}:${id}`;
    }
    async upsert(id: string, payload: AdapterPayload) {
      store.set(this.key(id), payload);
    }
    async find(id: string) {
      return store.get(this.key(id));
    }
    async findByUserCode() {
      return undefined;
    }
    async findByUid(uid: string) {
      for (const [k, v] of store) if (k.startsWith(`${this.model}:`) && v.uid === uid) return v;
      return undefined;
    }
    async consume(id: string) {
      const p = store.get(this.key(id));
      if (p) p.consumed = Math.floor(Date.now() / 1000);
    }
    async destroy(id: string) {
      store.delete(this.key(id));
    }
    async revokeByGrantId(grantId: string) {
      for (const [k, v] of store) if (v.grantId === grantId) store.delete(k);
    }
  };
}

const escape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

async function readForm(req: http.IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function listen(server: http.Server, port: number): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  return (server.address() as AddressInfo).port;
}

export async function startUpstreamOidc(options: UpstreamOidcOptions): Promise<UpstreamOidc> {
  const accounts = options.accounts ?? DEFAULT_UPSTREAM_ACCOUNTS;
  const clientId = options.clientId ?? 'latch-at-upstream';
  const clientSecret = options.clientSecret ?? randomBytes(24).toString('base64url');
  const authMethods = options.authMethods ?? ['client_secret_basic', 'client_secret_post'];
  const mode: UpstreamOidc['mode'] = { badSignature: false, deny: false };
  const requests: UpstreamOidc['requests'] = [];

  // The issuer's port must be known before the Provider is built: bind first, then build.
  let handler: http.RequestListener = (_req, res) => res.end();
  const server = http.createServer((req, res) => handler(req, res));
  const port = await listen(server, options.port ?? 0);
  const issuer = `http://127.0.0.1:${port}`;

  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const signing = { ...(await exportJWK(privateKey)), kid: 'upstream-1', alg: 'RS256', use: 'sig' };
  // The impostor: same kid and algorithm, another key. ID tokens it signs fail signature checks.
  const rogue = (await generateKeyPair('RS256')).privateKey;

  const findAccount = (id: string) => accounts.find((a) => a.id === id || a.email.toLowerCase() === id.toLowerCase());

  const configuration: Configuration = {
    adapter: memoryAdapter(),
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: options.redirectUris,
        response_types: ['code'],
        grant_types: ['authorization_code'],
        token_endpoint_auth_method: authMethods[0],
      },
    ],
    clientAuthMethods: authMethods,
    jwks: { keys: [signing as never] },
    cookies: {
      keys: [randomBytes(32).toString('hex')],
      // Cookies are per host, not per port (RFC 6265 §8.5): Latch on the same 127.0.0.1 uses
      // oidc-provider's default names, so the stand-in's must differ.
      names: { session: '_upstream_session', interaction: '_upstream_interaction', resume: '_upstream_resume' },
    },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
    // Scope-requested claims in the ID token as well (as Google does), unless an account says otherwise.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    ttl: { AccessToken: 600, AuthorizationCode: 60, IdToken: 600, Interaction: 600, Grant: 3600, Session: 3600 },
    features: { devInteractions: { enabled: false }, userinfo: { enabled: true } },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(_ctx, id) {
      const account = findAccount(id);
      if (!account) return undefined;
      return {
        accountId: account.id,
        async claims(use) {
          const withEmail = use !== 'id_token' || account.emailInIdToken !== false;
          return { sub: account.id, name: account.name, ...(withEmail ? { email: account.email, email_verified: account.email_verified } : {}) };
        },
      };
    },
    // Auto-consent: the grant covers whatever OIDC scopes the request asks for.
    async loadExistingGrant(ctx: KoaContextWithOIDC) {
      const { oidc } = ctx;
      const grantId = oidc.result?.consent?.grantId || oidc.session!.grantIdFor(oidc.client!.clientId);
      const grant = (grantId && (await oidc.provider.Grant.find(grantId))) || new oidc.provider.Grant({ clientId: oidc.client!.clientId, accountId: oidc.session!.accountId! });
      grant.addOIDCScope([...oidc.requestParamOIDCScopes].join(' '));
      await grant.save();
      return grant;
    },
  };
  const provider = new Provider(issuer, configuration);

  // The token response's ID token, altered when asked to: other claims, or the impostor's signature.
  provider.use(async (ctx, next) => {
    await next();
    if ((!mode.badSignature && !mode.idTokenClaims) || ctx.path !== '/token' || ctx.status !== 200) return;
    const body = ctx.body as { id_token?: string } | undefined;
    if (!body?.id_token) return;
    const header = decodeProtectedHeader(body.id_token);
    const claims = { ...decodeJwt(body.id_token), ...mode.idTokenClaims };
    body.id_token = await new SignJWT(claims).setProtectedHeader({ alg: header.alg!, kid: header.kid!, typ: header.typ }).sign(mode.badSignature ? rogue : privateKey);
  });

  const callback = provider.callback();

  async function loginPage(req: http.IncomingMessage, res: http.ServerResponse, uid: string) {
    const details = await provider.interactionDetails(req, res);
    const client = String(details.params.client_id ?? '');
    res.setHeader('content-type', 'text/html; charset=utf-8');
    res.end(`<!doctype html><html><head><title>Upstream sign-in</title></head><body>
<h1>Upstream identity provider</h1><p>Signing in to <code>${escape(client)}</code>.</p>
<form method="post" action="/interaction/${escape(uid)}/login">
<label>Account id or email <input name="login" autofocus value="${escape(accounts[0]?.email ?? '')}"></label>
<button type="submit">Sign in</button></form>
<form method="post" action="/interaction/${escape(uid)}/cancel"><button type="submit">Cancel</button></form>
<ul>${accounts.map((a) => `<li>${escape(a.email)} (${a.email_verified ? 'verified' : 'unverified'})</li>`).join('')}</ul>
</body></html>`);
  }

  async function submit(req: http.IncomingMessage, res: http.ServerResponse, action: string) {
    const form = await readForm(req);
    const denied = { error: 'access_denied', error_description: 'the user cancelled the sign-in' };
    if (action === 'cancel' || mode.deny) return provider.interactionFinished(req, res, denied, { mergeWithLastSubmission: false });
    const account = findAccount(form.get('login') ?? '');
    if (!account) {
      res.statusCode = 400;
      res.setHeader('content-type', 'text/plain');
      return res.end('no such account');
    }
    return provider.interactionFinished(req, res, { login: { accountId: account.id } }, { mergeWithLastSubmission: false });
  }

  handler = (req, res) => {
    const url = new URL(req.url ?? '/', issuer);
    const entry: UpstreamOidc['requests'][number] = { method: req.method ?? 'GET', path: url.pathname };
    if (url.pathname === '/token') entry.auth = /^basic /i.test(req.headers.authorization ?? '') ? 'basic' : 'post';
    requests.push(entry);
    const m = /^\/interaction\/([^/]+)(?:\/(login|cancel))?$/.exec(url.pathname);
    if (m) {
      const work = req.method === 'POST' && m[2] ? submit(req, res, m[2]) : loginPage(req, res, m[1]!);
      work.catch((err: unknown) => {
        res.statusCode = 400;
        res.setHeader('content-type', 'text/plain');
        res.end(`interaction failed: ${(err as Error).message}`);
      });
      return;
    }
    void callback(req, res);
  };

  const sockets = new Set<import('node:net').Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  let running = true;

  const stop = async () => {
    if (!running) return;
    running = false;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of sockets) s.destroy();
    await closed;
  };

  return {
    issuer,
    port,
    clientId,
    clientSecret,
    accounts,
    mode,
    requests,
    async signIn(authorizationUrl, login, opts = {}) {
      const agent = opts.agent ?? new Agent();
      const redirectUri = new URL(authorizationUrl).searchParams.get('redirect_uri') ?? options.redirectUris[0]!;
      let res: PageResponse = await agent.follow(String(authorizationUrl), {}, redirectUri);
      for (let i = 0; i < 3 && !res.url.startsWith(redirectUri); i++) {
        if (res.status !== 200 || !/name="login"/.test(res.body)) throw new Error(`unexpected upstream page ${res.status} at ${res.url}: ${res.body.slice(0, 300)}`);
        res = await agent.submit(res, opts.cancel ? 1 : 0, opts.cancel ? {} : { login }, redirectUri);
      }
      if (!res.url.startsWith(redirectUri)) throw new Error(`the upstream did not send the browser back: ${res.status} at ${res.url}: ${res.body.slice(0, 300)}`);
      return new URL(res.url);
    },
    stop,
    async start() {
      if (running) return;
      await listen(server, port);
      running = true;
    },
    close: stop,
  };
}
