import { readFileSync } from 'node:fs';

import { expect } from 'chai';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import * as oidc from 'openid-client';
import { parse } from 'yaml';

import { Agent, authorize } from './agent.js';
import { startTestServer, type TestDatabase, type TestServer } from './server.js';

/**
 * The admin API's test harness: openapi.yaml loaded into Ajv, a `call` that checks every real
 * response (status, headers, body) against the file, and tokens for the usual callers.
 */
type Doc = { paths: Record<string, Record<string, any>>; components: Record<string, any> };
export const SPEC_TEXT = readFileSync(new URL('../../openapi.yaml', import.meta.url), 'utf8');
export const doc = parse(SPEC_TEXT) as Doc;
const ajv = new Ajv2020({ strict: false, allErrors: true });
(addFormats as unknown as (a: Ajv2020) => void)(ajv);
ajv.addSchema(doc as object, 'openapi');

export const METHODS = ['get', 'post', 'patch', 'put', 'delete'];
const esc = (s: string) => s.replace(/~/g, '~0').replace(/\//g, '~1');

/** The template of openapi.yaml a concrete path belongs to (literal segments win over parameters). */
export function templateOf(path: string): string | undefined {
  const matches = Object.keys(doc.paths).filter((t) => new RegExp(`^${t.replace(/\{[^}]+\}/g, '[^/]+')}$`).test(path));
  return matches.sort((a, b) => (a.match(/\{/g)?.length ?? 0) - (b.match(/\{/g)?.length ?? 0))[0];
}

/** Every operation of openapi.yaml under /api as `METHOD /template`. */
export function specOperations(prefix = '/api/'): string[] {
  return Object.entries(doc.paths)
    .filter(([p]) => p.startsWith(prefix))
    .flatMap(([p, ops]) => Object.keys(ops).filter((m) => METHODS.includes(m)).map((m) => `${m.toUpperCase()} ${p}`))
    .sort();
}

/** Operations answered with a 2xx that validated against openapi.yaml (across every API test file). */
export const covered = new Set<string>();

/** Fails unless every operation whose path starts with one of `prefixes` answered a validated 2xx. */
export function expectCovered(...prefixes: string[]): void {
  const ops = specOperations().filter((o) => prefixes.some((p) => o.split(' ')[1]!.startsWith(p)));
  expect(ops.length, `no operation under ${prefixes.join(', ')}`).to.be.greaterThan(0);
  expect(ops.filter((o) => !covered.has(o))).to.deep.equal([]);
}

/** Checks a real response against openapi.yaml: status documented, headers present and valid, body valid. */
export async function checkResponse(method: string, path: string, res: Response, text: string): Promise<void> {
  const template = templateOf(path);
  expect(template, `${method} ${path} is not in openapi.yaml`).to.be.a('string');
  const op = doc.paths[template!]![method.toLowerCase()];
  expect(op, `${method} ${template} is not in openapi.yaml`).to.be.an('object');
  const status = String(res.status);
  let response = op.responses[status];
  expect(response, `${method} ${template} answered ${status}, which openapi.yaml does not document: ${text.slice(0, 300)}`).to.be.an('object');
  let pointer = `openapi#/paths/${esc(template!)}/${method.toLowerCase()}/responses/${status}`;
  if (response.$ref) {
    pointer = `openapi${response.$ref}`;
    response = doc.components.responses[response.$ref.split('/').pop()];
  }
  for (const [name, h] of Object.entries<any>(response.headers ?? {})) {
    const value = res.headers.get(name);
    expect(value, `${method} ${template} ${status}: header ${name}`).to.be.a('string');
    const schema = h.$ref ? doc.components.headers[h.$ref.split('/').pop()].schema : h.schema;
    expect(ajv.validate(schema, value), `${name}: ${value} ${ajv.errorsText()}`).to.equal(true);
  }
  const types = Object.keys(response.content ?? {});
  if (types.length === 0) {
    expect(text, `${method} ${template} ${status} must have no body`).to.equal('');
  } else {
    const type = (res.headers.get('content-type') ?? '').split(';')[0]!.trim();
    expect(types, `${method} ${template} ${status} content type`).to.include(type);
    if (type.endsWith('json')) {
      const validate = ajv.getSchema(`${pointer}/content/${esc(type)}/schema`)!;
      expect(validate(JSON.parse(text)), `${method} ${template} ${status}: ${ajv.errorsText(validate.errors)} in ${text.slice(0, 500)}`).to.equal(true);
    }
  }
  if (res.status < 300) covered.add(`${method.toUpperCase()} ${template}`);
}

export interface ApiResponse {
  status: number;
  headers: Headers;
  json: any;
}

export interface CallOptions {
  token?: string | undefined;
  body?: unknown;
  raw?: string;
  headers?: Record<string, string>;
}

export interface Credentials {
  client_id: string;
  client_secret: string;
}

export interface ApiHarness {
  srv: TestServer;
  /** `${ISSUER}/api`, the API's resource identifier. */
  API: string;
  /** A request to the server; the response is checked against openapi.yaml. */
  call(method: string, path: string, options?: CallOptions): Promise<ApiResponse>;
  /** Runs the CLI (exit code 0 expected) and answers its JSON. */
  cli(...args: string[]): Promise<any>;
  /** A client-credentials access token. */
  cc(client: Credentials, scope: string, resource: string): Promise<string>;
  /** A user's access token for the API through the first-party `console` client (code flow + PKCE). */
  userToken(user: { email: string; password: string }, scope: string): Promise<string>;
  /** The machine client `ops` (client_credentials, admin:read admin:write on the API). */
  machine: Credentials;
  /** A machine client's token with admin:read admin:write. */
  admin: string;
  /** A machine client's token with admin:read only. */
  reader: string;
  /** A superuser's token with admin:read admin:write. */
  superToken: string;
  root: { id: string; email: string; password: string };
  close(): Promise<void>;
}

export async function startApiHarness(options: { env?: Record<string, string>; database?: TestDatabase } = {}): Promise<ApiHarness> {
  // The walks over every operation make hundreds of calls a minute: limits are tested on their own.
  const env = { API_REQUESTS_PER_MINUTE: '1000000', API_AUTH_FAILURES_PER_MINUTE: '1000000', ...options.env };
  const srv = await startTestServer({ changePollMs: 100, env, ...(options.database ? { database: options.database } : {}) });
  const API = `${srv.url}/api`;
  const cli = async (...args: string[]) => {
    const r = await srv.cli(...args);
    expect(r.code, `${args.join(' ')}: ${r.stderr}`).to.equal(0);
    return r.json;
  };
  async function call(method: string, path: string, options: CallOptions = {}): Promise<ApiResponse> {
    const headers: Record<string, string> = { ...options.headers };
    if (options.token) headers.authorization = `Bearer ${options.token}`;
    let body: string | undefined;
    if (options.raw !== undefined) body = options.raw;
    else if (options.body !== undefined) body = JSON.stringify(options.body);
    if (body !== undefined && !headers['content-type']) headers['content-type'] = 'application/json';
    const res = await fetch(`${srv.url}${path}`, { method, headers, body });
    const text = await res.text();
    await checkResponse(method, path.split('?')[0]!, res, text);
    return { status: res.status, headers: res.headers, json: text ? (JSON.parse(text) as any) : undefined };
  }
  async function cc(client: Credentials, scope: string, resource: string) {
    const res = await fetch(`${srv.url}/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', scope, resource }),
    });
    const json = (await res.json()) as Record<string, string>;
    expect(res.status, JSON.stringify(json)).to.equal(200);
    return json.access_token!;
  }
  const web = await cli('clients', 'create', '--name', 'console', '--redirect-uri', 'http://127.0.0.1:9/callback', '--first-party', '--resource', API, '--scope', 'openid admin:read admin:write account');
  async function userToken(user: { email: string; password: string }, scope: string) {
    const config = await oidc.discovery(new URL(srv.url), web.client_id, web.client_secret, oidc.ClientSecretBasic(web.client_secret), { execute: [oidc.allowInsecureRequests] });
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const url = oidc.buildAuthorizationUrl(config, { redirect_uri: 'http://127.0.0.1:9/callback', state, code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', scope: `openid ${scope}`, resource: API });
    const { callback } = await authorize(new Agent(), url.toString(), 'http://127.0.0.1:9/callback', user);
    const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state });
    return tokens.access_token;
  }
  const machine = await cli('clients', 'create', '--name', 'ops', '--grant', 'client_credentials', '--resource', API, '--scope', 'admin:read admin:write');
  const admin = await cc(machine, 'admin:read admin:write', API);
  const reader = await cc(machine, 'admin:read', API);
  const rootLogin = { email: 'root@example.test', password: 'superuser passphrase for root' };
  const root = { ...rootLogin, id: (await cli('users', 'create', '--email', rootLogin.email, '--password', rootLogin.password, '--superuser')).id as string };
  const superToken = await userToken(rootLogin, 'admin:read admin:write');
  return {
    srv,
    API,
    call,
    cli,
    cc,
    userToken,
    machine,
    admin,
    reader,
    superToken,
    root,
    async close() {
      expect(srv.errors()).to.deep.equal([]);
      await srv.close();
    },
  };
}
