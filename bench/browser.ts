/**
 * A minimal browser for the load generator: node:http over keep-alive connections, a cookie jar,
 * manual redirects, and the login form. Drives the authorization-code + PKCE flow against Latch
 * and the bare server alike.
 *
 * node:http rather than fetch: fetch (undici) cost the load generator about 4 ms of CPU per code
 * flow on this 2-core machine, CPU taken from the servers it measures.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Agent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';

import type { ClientCreds, Target } from './types.js';

const TIMEOUT_MS = 10_000;

/** Keep-alive connections shared by every browser, as a browser (or fetch) keeps them. */
const agent = new Agent({ keepAlive: true });

interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One HTTP request on loopback; the whole body is read. */
function send(url: string, method: string, headers: Record<string, string>, body?: string): Promise<HttpResponse> {
  const u = new URL(url);
  if (u.protocol !== 'http:') throw new Error(`the bench's browser speaks plain HTTP on loopback only (got ${u.protocol})`);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: u.hostname, port: u.port, path: `${u.pathname}${u.search}`, method, headers: body === undefined ? headers : { ...headers, 'content-length': String(Buffer.byteLength(body)) }, agent, timeout: TIMEOUT_MS }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${u.pathname}: no answer within ${TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

export class Browser {
  private readonly jar = new Map<string, string>();

  private store(setCookie: string[] | undefined) {
    for (const c of setCookie ?? []) {
      const pair = c.split(';', 1)[0]!;
      const i = pair.indexOf('=');
      const name = pair.slice(0, i).trim();
      const value = pair.slice(i + 1).trim();
      if (!value || /expires=Thu, 01 Jan 1970/i.test(c)) this.jar.delete(name);
      else this.jar.set(name, value);
    }
  }

  /** One request, no redirect following (loopback only: one host per browser). */
  async request(url: string, init: { method?: string; form?: Record<string, string> } = {}): Promise<{ status: number; location: string | null; body: string }> {
    const headers: Record<string, string> = { accept: 'text/html' };
    if (this.jar.size) headers.cookie = [...this.jar].map(([k, v]) => `${k}=${v}`).join('; ');
    let body: string | undefined;
    if (init.form) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      body = new URLSearchParams(init.form).toString();
    }
    const res = await send(url, init.method ?? (body ? 'POST' : 'GET'), headers, body);
    this.store(res.headers['set-cookie']);
    const location = res.headers.location;
    return { status: res.status, location: location ? new URL(location, url).toString() : null, body: res.body };
  }
}

const decode = (s: string) => s.replace(/&#39;/g, "'").replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');

/** The first form of a page that has a password field: its action and hidden inputs. */
function loginForm(html: string, pageUrl: string): { action: string; fields: Record<string, string> } | undefined {
  for (const m of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    if (!/name="password"/i.test(m[2]!)) continue;
    const action = decode(/action="([^"]*)"/i.exec(m[1]!)?.[1] ?? '');
    const fields: Record<string, string> = {};
    for (const input of m[2]!.matchAll(/<input\b([^>]*)>/gi)) {
      const name = /name="([^"]*)"/i.exec(input[1]!)?.[1];
      if (name) fields[name] = decode(/value="([^"]*)"/i.exec(input[1]!)?.[1] ?? '');
    }
    return { action: new URL(action || pageUrl, pageUrl).toString(), fields };
  }
  return undefined;
}

export const basicAuth = (c: ClientCreds) => `Basic ${Buffer.from(`${encodeURIComponent(c.client_id)}:${encodeURIComponent(c.client_secret)}`).toString('base64')}`;

export function pkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

/**
 * Runs one authorization request in `browser` (signing in with the target's user if the login
 * page shows; consent is skipped for the first-party client) and returns the code.
 */
export async function authorize(target: Target, browser: Browser, params: { scope: string; prompt?: string; challenge: string; user: Target['users'][number] }): Promise<string> {
  const q = new URLSearchParams({
    client_id: target.web.client_id,
    response_type: 'code',
    redirect_uri: target.redirectUri,
    scope: params.scope,
    state: randomBytes(12).toString('base64url'),
    nonce: randomBytes(12).toString('base64url'),
    code_challenge: params.challenge,
    code_challenge_method: 'S256',
    ...(params.prompt ? { prompt: params.prompt } : {}),
  });
  let url = `${target.url}/auth?${q.toString()}`;
  let res = await browser.request(url);
  for (let step = 0; step < 12; step++) {
    if (res.status >= 300 && res.status < 400 && res.location) {
      if (res.location.startsWith(target.redirectUri)) {
        const cb = new URL(res.location);
        const code = cb.searchParams.get('code');
        if (!code) throw new Error(`authorization failed: ${cb.searchParams.get('error') ?? 'no code'} ${cb.searchParams.get('error_description') ?? ''}`);
        return code;
      }
      url = res.location;
      res = await browser.request(url);
      continue;
    }
    const form = res.status === 200 ? loginForm(res.body, url) : undefined;
    if (!form) throw new Error(`unexpected ${res.status} at ${url}: ${res.body.slice(0, 200)}`);
    url = form.action;
    res = await browser.request(url, { method: 'POST', form: { ...form.fields, email: params.user.email, password: params.user.password } });
  }
  throw new Error('too many steps in the authorization flow');
}

export interface TokenResponse {
  access_token: string;
  refresh_token?: string;
  id_token?: string;
}

/** POST /token with client_secret_basic; throws unless 200. */
export async function tokenRequest(target: Target, client: ClientCreds, form: Record<string, string>): Promise<TokenResponse> {
  const res = await send(`${target.url}/token`, 'POST', { authorization: basicAuth(client), 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' }, new URLSearchParams(form).toString());
  if (res.status !== 200) throw new Error(`token endpoint answered ${res.status}: ${res.body.slice(0, 200)}`);
  return JSON.parse(res.body) as TokenResponse;
}

/** A complete code flow (by default in a fresh browser, as the first user): authorize (login form) and redeem the code. */
export async function codeFlow(target: Target, options: { browser?: Browser; scope?: string; prompt?: string; user?: Target['users'][number] } = {}): Promise<TokenResponse> {
  const { verifier, challenge } = pkce();
  const code = await authorize(target, options.browser ?? new Browser(), { scope: options.scope ?? 'openid', challenge, user: options.user ?? target.users[0]!, ...(options.prompt ? { prompt: options.prompt } : {}) });
  return tokenRequest(target, target.web, { grant_type: 'authorization_code', code, redirect_uri: target.redirectUri, code_verifier: verifier });
}
