import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

import { Agent, type PageResponse } from './agent.js';

/**
 * A local stand-in for GitHub, speaking the documented endpoints Latch uses
 * (docs.github.com: "Authorizing OAuth apps" web application flow, REST "Users" and "Emails"):
 *
 *   GET  /login/oauth/authorize       a page with Authorize and Cancel (Cancel redirects with error=access_denied)
 *   POST /login/oauth/access_token    form-encoded client_id, client_secret, code, redirect_uri[, code_verifier];
 *                                     JSON when Accept says so, else form-encoded; failures are 200 with `error`
 *   GET  /user, /user/emails          Bearer (or `token`) authorization, a User-Agent required
 *
 * The REST API answers both at the root and under /api/v3 (GitHub Enterprise's layout):
 * `webUrl` is the root, `apiUrl` the prefixed one, so a client that ignores api_url's path fails.
 */

export interface GithubEmail {
  email: string;
  primary: boolean;
  verified: boolean;
  visibility?: 'public' | 'private' | null;
}

export interface GithubUser {
  id: number;
  login: string;
  name: string | null;
  emails: GithubEmail[];
}

export interface GithubStubOptions {
  /** The OAuth app's callback URLs (exact match, like GitHub's registered callback). */
  redirectUris: string[];
  users?: GithubUser[];
  clientId?: string;
  clientSecret?: string;
  port?: number;
}

export interface GithubStub {
  url: string;
  port: number;
  /** Where the OAuth endpoints are (a provider's web_url). */
  webUrl: string;
  /** Where the REST API is (a provider's api_url). */
  apiUrl: string;
  clientId: string;
  clientSecret: string;
  users: GithubUser[];
  /** apiStatus: answer every REST call with this status (a GitHub outage). */
  mode: { apiStatus?: number };
  /** Every request it answered, with the headers and parameters a test may check. */
  requests: { method: string; path: string; headers: http.IncomingHttpHeaders; params: Record<string, string> }[];
  /** Follows an authorization URL through the Authorize page as `login` and returns the callback URL. */
  signIn(authorizationUrl: URL | string, login: string, options?: { cancel?: boolean; agent?: Agent }): Promise<URL>;
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

export const DEFAULT_GITHUB_USERS: GithubUser[] = [
  {
    id: 1001,
    login: 'octocat',
    name: 'The Octocat',
    emails: [
      { email: 'octo-secondary@upstream.test', primary: false, verified: true, visibility: null },
      { email: 'octocat@upstream.test', primary: true, verified: true, visibility: 'public' },
    ],
  },
  { id: 1002, login: 'unverified-cat', name: null, emails: [{ email: 'unverified-cat@upstream.test', primary: true, verified: false, visibility: 'private' }] },
  {
    id: 1003,
    login: 'half-cat',
    name: null,
    // A verified address that is not the primary one: not enough.
    emails: [
      { email: 'half-primary@upstream.test', primary: true, verified: false, visibility: 'private' },
      { email: 'half-verified@upstream.test', primary: false, verified: true, visibility: null },
    ],
  },
];

const escape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const same = (a: string, b: string) => a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));

interface Issued {
  login: string;
  clientId: string;
  redirectUri: string;
  scope: string;
  challenge?: string;
  expires: number;
}

export async function startGithubStub(options: GithubStubOptions): Promise<GithubStub> {
  const users = options.users ?? DEFAULT_GITHUB_USERS;
  const clientId = options.clientId ?? 'Iv1.latchstub';
  const clientSecret = options.clientSecret ?? randomBytes(20).toString('hex');
  const mode: GithubStub['mode'] = {};
  const requests: GithubStub['requests'] = [];
  const codes = new Map<string, Issued>();
  const tokens = new Map<string, { login: string; scope: string }>();

  const json = (res: http.ServerResponse, status: number, body: unknown) => {
    res.statusCode = status;
    res.setHeader('content-type', 'application/json; charset=utf-8');
    res.end(JSON.stringify(body));
  };
  const redirect = (res: http.ServerResponse, to: URL) => {
    res.statusCode = 302;
    res.setHeader('location', to.toString());
    res.end();
  };

  async function readParams(req: http.IncomingMessage, url: URL): Promise<Record<string, string>> {
    const params = Object.fromEntries(url.searchParams);
    if (req.method !== 'POST') return params;
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const body = /json/.test(req.headers['content-type'] ?? '') ? (JSON.parse(raw || '{}') as Record<string, string>) : Object.fromEntries(new URLSearchParams(raw));
    return { ...params, ...body };
  }

  function authorizePage(res: http.ServerResponse, p: Record<string, string>) {
    const hidden = ['client_id', 'redirect_uri', 'scope', 'state', 'code_challenge', 'code_challenge_method']
      .filter((k) => p[k] !== undefined)
      .map((k) => `<input type="hidden" name="${k}" value="${escape(p[k]!)}">`)
      .join('');
    const cancel = new URL(p.redirect_uri!);
    cancel.searchParams.set('error', 'access_denied');
    cancel.searchParams.set('error_description', 'The user has denied your application access.');
    cancel.searchParams.set('error_uri', 'https://docs.github.com/apps/managing-oauth-apps/troubleshooting-authorization-request-errors/#access-denied');
    if (p.state !== undefined) cancel.searchParams.set('state', p.state);
    res.setHeader('content-type', 'text/html; charset=utf-8');
    res.end(`<!doctype html><html><head><title>Authorize application</title></head><body>
<h1>Authorize application</h1><p>An application would like to read your profile and email addresses (${escape(p.scope ?? '')}).</p>
<form method="post" action="/login/oauth/authorize">${hidden}
<label>Signed in as <input name="login" value="${escape(p.login ?? users[0]?.login ?? '')}"></label>
<button type="submit">Authorize</button></form>
<a id="cancel" href="${escape(cancel.toString())}">Cancel</a>
</body></html>`);
  }

  /** Checks of GET and POST /login/oauth/authorize; undefined when the request may go on. */
  function badAuthorizeRequest(p: Record<string, string>): string | undefined {
    if (p.client_id !== clientId) return 'unknown client_id';
    if (!p.redirect_uri || !options.redirectUris.includes(p.redirect_uri)) return 'redirect_uri does not match the registered callback URL';
    if (p.code_challenge !== undefined && p.code_challenge_method !== 'S256') return 'only S256 code challenges';
    return undefined;
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse) {
    const url = new URL(req.url ?? '/', `http://${req.headers.host}`);
    const p = await readParams(req, url);
    const path = url.pathname.replace(/^\/api\/v3(?=\/)/, '');
    requests.push({ method: req.method ?? 'GET', path: url.pathname, headers: req.headers, params: p });

    if (path === '/login/oauth/authorize') {
      const bad = badAuthorizeRequest(p);
      if (bad) {
        res.statusCode = 400;
        return res.end(bad);
      }
      if (req.method === 'GET') return authorizePage(res, p);
      const user = users.find((u) => u.login === p.login);
      if (!user) {
        res.statusCode = 400;
        return res.end('no such user');
      }
      const code = randomBytes(10).toString('hex');
      codes.set(code, { login: user.login, clientId, redirectUri: p.redirect_uri!, scope: p.scope ?? '', challenge: p.code_challenge, expires: Date.now() + 600_000 });
      const back = new URL(p.redirect_uri!);
      back.searchParams.set('code', code);
      if (p.state !== undefined) back.searchParams.set('state', p.state);
      return redirect(res, back);
    }

    if (path === '/login/oauth/access_token' && req.method === 'POST') {
      const reply = (body: Record<string, string>) => {
        if (/application\/json/.test(req.headers.accept ?? '')) return json(res, 200, body);
        res.setHeader('content-type', 'application/x-www-form-urlencoded; charset=utf-8');
        res.end(new URLSearchParams(body).toString());
      };
      const error = (code: string, description: string) => reply({ error: code, error_description: description, error_uri: `https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#${code.replace(/_/g, '-')}` });
      if (p.client_id !== clientId || !same(p.client_secret ?? '', clientSecret)) return error('incorrect_client_credentials', 'The client_id and/or client_secret passed are incorrect.');
      const issued = codes.get(p.code ?? '');
      // Codes are single-use: a second exchange is a bad_verification_code, as on GitHub.
      codes.delete(p.code ?? '');
      if (!issued || issued.expires < Date.now() || issued.clientId !== p.client_id) return error('bad_verification_code', 'The code passed is incorrect or expired.');
      if (p.redirect_uri !== undefined && p.redirect_uri !== issued.redirectUri) return error('redirect_uri_mismatch', 'The redirect_uri MUST match the registered callback URL for this application.');
      if (issued.challenge !== undefined) {
        const computed = createHash('sha256')
          .update(p.code_verifier ?? '')
          .digest('base64url');
        if (!p.code_verifier || computed !== issued.challenge) return error('bad_verification_code', 'The code_verifier does not match the code_challenge.');
      }
      const token = `gho_${randomBytes(18).toString('hex')}`;
      tokens.set(token, { login: issued.login, scope: issued.scope });
      return reply({ access_token: token, scope: issued.scope.split(' ').join(','), token_type: 'bearer' });
    }

    if ((path === '/user' || path === '/user/emails') && req.method === 'GET') {
      // GitHub refuses API requests without a User-Agent.
      if (!req.headers['user-agent']) return json(res, 403, { message: 'Request forbidden by administrative rules. Please make sure your request has a User-Agent header.' });
      if (mode.apiStatus) return json(res, mode.apiStatus, { message: 'Server Error' });
      const m = /^(?:Bearer|token) (.+)$/i.exec(req.headers.authorization ?? '');
      const grant = m ? tokens.get(m[1]!) : undefined;
      const user = grant && users.find((u) => u.login === grant.login);
      if (!grant || !user) return json(res, 401, { message: 'Bad credentials', documentation_url: 'https://docs.github.com/rest' });
      res.setHeader('x-oauth-scopes', grant.scope.split(' ').join(', '));
      if (path === '/user') {
        const publicEmail = user.emails.find((e) => e.visibility === 'public')?.email ?? null;
        return json(res, 200, { login: user.login, id: user.id, node_id: `U_${user.id}`, avatar_url: `https://avatars.example.test/u/${user.id}`, html_url: `https://github.example.test/${user.login}`, type: 'User', name: user.name, email: publicEmail });
      }
      // Reading the addresses needs the user:email (or user) scope; without it GitHub answers 404.
      if (!grant.scope.split(/[ ,]+/).some((s) => s === 'user:email' || s === 'user')) return json(res, 404, { message: 'Not Found', documentation_url: 'https://docs.github.com/rest' });
      return json(res, 200, user.emails.map((e) => ({ email: e.email, primary: e.primary, verified: e.verified, visibility: e.visibility ?? null })));
    }

    json(res, 404, { message: 'Not Found' });
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      res.statusCode = 400;
      res.end(`bad request: ${(err as Error).message}`);
    });
  });
  const sockets = new Set<Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const listen = (p: number) =>
    new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(p, '127.0.0.1', () => {
        server.off('error', reject);
        resolve((server.address() as AddressInfo).port);
      });
    });
  const port = await listen(options.port ?? 0);
  const url = `http://127.0.0.1:${port}`;
  let running = true;
  const stop = async () => {
    if (!running) return;
    running = false;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of sockets) s.destroy();
    await closed;
  };

  return {
    url,
    port,
    webUrl: url,
    apiUrl: `${url}/api/v3`,
    clientId,
    clientSecret,
    users,
    mode,
    requests,
    async signIn(authorizationUrl, login, opts = {}) {
      const agent = opts.agent ?? new Agent();
      const redirectUri = new URL(authorizationUrl).searchParams.get('redirect_uri') ?? options.redirectUris[0]!;
      const page: PageResponse = await agent.follow(String(authorizationUrl), {}, redirectUri);
      if (page.status !== 200) throw new Error(`unexpected authorize page ${page.status}: ${page.body.slice(0, 300)}`);
      if (opts.cancel) {
        const href = /id="cancel" href="([^"]*)"/.exec(page.body)![1]!.replace(/&amp;/g, '&');
        return new URL(href);
      }
      const res = await agent.submit(page, 0, { login }, redirectUri);
      if (!res.url.startsWith(redirectUri)) throw new Error(`the stub did not send the browser back: ${res.status} ${res.body.slice(0, 300)}`);
      return new URL(res.url);
    },
    stop,
    async start() {
      if (running) return;
      await listen(port);
      running = true;
    },
    close: stop,
  };
}
