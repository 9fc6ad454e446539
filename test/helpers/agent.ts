/**
 * A minimal browser over real HTTP: a cookie jar, manual redirects, and form parsing, enough to
 * walk through the login and consent pages exactly as a browser posts them.
 */

import * as oidc from 'openid-client';

import { recordPublic, recordSecret } from './secrets-registry.js';

export interface Form {
  action: string;
  method: string;
  fields: Record<string, string>;
}

export interface PageResponse {
  status: number;
  url: string;
  headers: Headers;
  body: string;
}

const decode = (s: string) => s.replace(/&#39;/g, "'").replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');

/** Every <form> of a page with its hidden and pre-filled inputs. */
export function parseForms(html: string, baseUrl: string): Form[] {
  const forms: Form[] = [];
  for (const m of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const attrs = m[1]!;
    const action = decode(/action="([^"]*)"/i.exec(attrs)?.[1] ?? '');
    const method = (/method="([^"]*)"/i.exec(attrs)?.[1] ?? 'get').toLowerCase();
    const fields: Record<string, string> = {};
    for (const input of m[2]!.matchAll(/<input\b([^>]*)>/gi)) {
      const name = /name="([^"]*)"/i.exec(input[1]!)?.[1];
      if (!name) continue;
      fields[name] = decode(/value="([^"]*)"/i.exec(input[1]!)?.[1] ?? '');
    }
    forms.push({ action: new URL(action || baseUrl, baseUrl).toString(), method, fields });
  }
  return forms;
}

export class Agent {
  readonly cookies = new Map<string, string>();

  private store(url: string, headers: Headers) {
    for (const c of headers.getSetCookie()) {
      const [pair] = c.split(';');
      const i = pair!.indexOf('=');
      const name = pair!.slice(0, i).trim();
      const value = pair!.slice(i + 1).trim();
      // Like browsers, cookies are per host name, not per port (RFC 6265 §8.5).
      const key = `${new URL(url).hostname}|${name}`;
      if (!value || /expires=Thu, 01 Jan 1970/i.test(c)) this.cookies.delete(key);
      else this.cookies.set(key, value);
    }
  }

  private cookieHeader(url: string): string {
    const host = new URL(url).hostname;
    return [...this.cookies]
      .filter(([k]) => k.startsWith(`${host}|`))
      .map(([k, v]) => `${k.split('|')[1]}=${v}`)
      .join('; ');
  }

  /** One request, no redirect following. */
  async request(url: string, init: { method?: string; form?: Record<string, string>; headers?: Record<string, string> } = {}): Promise<PageResponse> {
    const headers: Record<string, string> = { accept: 'text/html', ...init.headers };
    const cookie = this.cookieHeader(url);
    if (cookie) headers.cookie = cookie;
    let body: string | undefined;
    if (init.form) {
      for (const [name, value] of Object.entries(init.form)) {
        if (['password', 'new_password', 'current_password'].includes(name)) recordSecret('password', value);
        else recordPublic(value);
      }
      headers['content-type'] = 'application/x-www-form-urlencoded';
      body = new URLSearchParams(init.form).toString();
    }
    const res = await fetch(url, { method: init.method ?? (body ? 'POST' : 'GET'), headers, body, redirect: 'manual' });
    this.store(url, res.headers);
    return { status: res.status, url, headers: res.headers, body: await res.text() };
  }

  /**
   * Follows redirects until a page on the server answers or a redirect leaves for `stopAt`
   * (the client's redirect_uri): returns that last response.
   */
  async follow(url: string, init: Parameters<Agent['request']>[1] = {}, stopAt?: string): Promise<PageResponse> {
    let res = await this.request(url, init);
    for (let i = 0; i < 20 && res.status >= 300 && res.status < 400; i++) {
      const next = new URL(res.headers.get('location')!, res.url).toString();
      if (stopAt && next.startsWith(stopAt)) return { ...res, url: next };
      res = await this.request(next);
    }
    return res;
  }

  async submit(page: PageResponse, formIndex: number, values: Record<string, string> = {}, stopAt?: string): Promise<PageResponse> {
    const form = parseForms(page.body, page.url)[formIndex];
    if (!form) throw new Error(`no form #${formIndex} on ${page.url} (status ${page.status}): ${page.body.slice(0, 300)}`);
    return this.follow(form.action, { method: 'POST', form: { ...form.fields, ...values } }, stopAt);
  }
}

/**
 * Walks an authorization request through the login page (and consent page when shown) and
 * returns the URL the browser was finally sent to (the client's redirect_uri with code or error).
 */
export async function authorize(agent: Agent, authorizationUrl: string, redirectUri: string, login?: { email: string; password: string }): Promise<{ callback: URL; pages: string[] }> {
  const pages: string[] = [];
  let res = await agent.follow(authorizationUrl, {}, redirectUri);
  for (let step = 0; step < 5; step++) {
    if (res.url.startsWith(redirectUri)) return { callback: new URL(res.url), pages };
    if (res.status !== 200) throw new Error(`unexpected ${res.status} at ${res.url}: ${res.body.slice(0, 500)}`);
    if (/name="password"/.test(res.body)) {
      if (!login) throw new Error('login page shown but no credentials given');
      pages.push('login');
      res = await agent.submit(res, 0, login, redirectUri);
    } else if (/\/confirm"/.test(res.body)) {
      pages.push('consent');
      res = await agent.submit(res, 0, {}, redirectUri);
    } else {
      throw new Error(`unexpected page at ${res.url}: ${res.body.slice(0, 500)}`);
    }
  }
  throw new Error('too many interaction steps');
}

/**
 * The authorization code flow with PKCE (S256) for a confidential client, through Latch's real
 * pages and `openid-client` as the relying party: the token endpoint's response.
 */
export async function codeFlowTokens(issuer: string, client: { client_id: string; client_secret: string }, redirectUri: string, user: { email: string; password: string }, params: Record<string, string>) {
  const config = await oidc.discovery(new URL(issuer), client.client_id, client.client_secret, oidc.ClientSecretBasic(client.client_secret), { execute: [oidc.allowInsecureRequests] });
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const url = oidc.buildAuthorizationUrl(config, { redirect_uri: redirectUri, state, code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', ...params });
  const { callback } = await authorize(new Agent(), url.toString(), redirectUri, user);
  return oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state });
}
