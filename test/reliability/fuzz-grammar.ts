/**
 * The fuzzer's grammar (test/reliability/fuzz.test.ts): fast-check arbitraries that build requests
 * to every endpoint out of real parameter names, valid-looking values, placeholders for real
 * objects (filled in when the request is sent) and hostile values. A case is plain JSON, so a
 * shrunk failure can be saved in fuzz-regressions.json and replayed as it is.
 */
import fc from 'fast-check';

import { doc, METHODS } from '../helpers/api.js';

/** A request sent through node:http (keep-alive); `{{name}}` placeholders are filled in when sent. */
export interface HttpCase {
  kind: 'http';
  method: string;
  path: string;
  query: [string, string][];
  headers: [string, string][];
  body?: { encoding: 'form' | 'json' | 'multipart' | 'raw'; params: [string, string][]; raw?: string; pad?: number };
}

/** Bytes fetch and node:http refuse to send: written to a socket as latin1 (one byte per char). */
export interface RawCase {
  kind: 'raw';
  head: string;
  body: string;
}

export type FuzzCase = HttpCase | RawCase;

/** What kind of answer an endpoint owes: decides which shape an error must have. */
export type Family = 'oauth-json' | 'api' | 'page';

/** The endpoints that answer RFC 6749 JSON errors (§5.2), with the methods they serve. */
export const OAUTH_JSON: Record<string, string[]> = {
  '/token': ['POST'],
  '/token/introspection': ['POST'],
  '/token/revocation': ['POST'],
  '/request': ['POST'],
  '/device/auth': ['POST'],
  '/me': ['GET', 'POST'],
};

export function familyOf(method: string, path: string): Family {
  const p = path.split('?')[0]!;
  if (OAUTH_JSON[p]?.includes(method)) return 'oauth-json';
  if (p.startsWith('/api/v1/')) return 'api';
  return 'page';
}

const NASTY = [
  '',
  ' ',
  'x',
  '\u0000',
  'a\u0000b',
  '%00',
  '%',
  '%zz',
  '%c3%28',
  '%ff%fe',
  '\ufffd',
  '\ud800',
  '\u202e\u0000\u200b',
  '😀',
  '../../../etc/passwd',
  '..%2f..%2fetc%2fpasswd',
  '<script>alert(1)</script>',
  '"><img src=x onerror=alert(1)>',
  "' OR '1'='1' --",
  "'; DROP TABLE accounts; --",
  '${7*7}',
  '<%= 7*7 %>',
  '{{7*7}}',
  '__proto__',
  'constructor',
  'null',
  'undefined',
  'true',
  '-1',
  '0',
  '1e309',
  '99999999999999999999999',
  'NaN',
  '[]',
  '{}',
  '{"a":',
  '[[[[[[[[[[[[[[[[[[[[',
  'http://evil.example/',
  'javascript:alert(1)',
  'data:text/html,<script>alert(1)</script>',
  'http://127.0.0.1:9/callback',
  'http://127.0.0.1:9/callback#frag',
  'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.',
  'eyJhbGciOiJIUzI1NiJ9.e30.ZZZZ',
  'a'.repeat(300),
  'a'.repeat(10_000),
  '\r\nSet-Cookie: x=1',
];

/** Values that are valid for some parameter somewhere: the fuzzer mixes them up. */
const VALID: Record<string, string[]> = {
  client_id: ['{{web_id}}', '{{spa_id}}', '{{machine_id}}', '{{tv_id}}'],
  client_secret: ['{{web_secret}}', '{{machine_secret}}'],
  response_type: ['code', 'token', 'id_token', 'code id_token', 'none'],
  redirect_uri: ['http://127.0.0.1:9/callback'],
  post_logout_redirect_uri: ['http://127.0.0.1:9/callback'],
  scope: ['openid', 'openid profile email', 'openid offline_access', 'admin:read admin:write', 'read', 'account'],
  grant_type: ['authorization_code', 'refresh_token', 'client_credentials', 'urn:ietf:params:oauth:grant-type:device_code', 'urn:ietf:params:oauth:grant-type:token-exchange', 'password', 'implicit'],
  code: ['{{code}}'],
  code_verifier: ['{{verifier}}', 'v'.repeat(43)],
  code_challenge: ['E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGUgaqNmWc'],
  code_challenge_method: ['S256', 'plain'],
  refresh_token: ['{{refresh}}'],
  token: ['{{access}}', '{{refresh}}', '{{admin}}'],
  token_type_hint: ['access_token', 'refresh_token'],
  subject_token: ['{{access}}'],
  subject_token_type: ['urn:ietf:params:oauth:token-type:access_token', 'urn:ietf:params:oauth:token-type:jwt'],
  requested_token_type: ['urn:ietf:params:oauth:token-type:access_token'],
  resource: ['{{issuer}}/api', 'https://api.fuzz.example.test'],
  audience: ['{{issuer}}/api'],
  access_token: ['{{access}}'],
  id_token_hint: ['{{id_token}}'],
  prompt: ['login', 'consent', 'none', 'select_account', 'create'],
  max_age: ['0', '-1', '3600'],
  response_mode: ['query', 'fragment', 'form_post', 'jwt'],
  request_uri: ['urn:ietf:params:oauth:request_uri:x'],
  device_code: ['{{device_code}}'],
  user_code: ['{{user_code}}', 'BCDF-GHJK'],
  organization: ['{{org_id}}', 'acme'],
  organization_id: ['{{org_id}}'],
  email: ['{{email}}', 'someone@example.test', 'not an email'],
  password: ['wrong password but long enough', 'short'],
  current_password: ['not the current password'],
  new_password: ['a brand new long passphrase'],
  _csrf: ['{{csrf}}'],
  xsrf: ['{{csrf}}'],
  token_name: ['ci'],
  invitation: ['{{invitation_id}}'],
  role: ['owner', 'admin', 'member', 'viewer'],
  member: ['{{user_id}}'],
  session: ['{{session_id}}'],
  expires_in_days: ['1', '0', '366', '-5'],
  return_to: ['/account', 'http://evil.example/', '//evil.example'],
  logout: ['yes'],
  confirm: ['yes'],
  abort: ['yes'],
  state: ['st'],
  nonce: ['n'],
};

const AUTHORIZE = ['client_id', 'response_type', 'redirect_uri', 'scope', 'state', 'nonce', 'code_challenge', 'code_challenge_method', 'prompt', 'max_age', 'response_mode', 'request', 'request_uri', 'resource', 'login_hint', 'id_token_hint', 'claims', 'ui_locales', 'acr_values', 'organization', 'display'];
const TOKEN = ['grant_type', 'code', 'redirect_uri', 'code_verifier', 'refresh_token', 'client_id', 'client_secret', 'scope', 'resource', 'device_code', 'subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'requested_token_type', 'audience', 'client_assertion', 'client_assertion_type', 'organization'];

/** The endpoints outside /api: method(s), path (placeholders allowed) and the parameters they read. */
export const ENDPOINTS: { methods: string[]; path: string; params: string[]; form?: boolean }[] = [
  { methods: ['GET', 'POST'], path: '/auth', params: AUTHORIZE },
  { methods: ['POST'], path: '/token', params: TOKEN },
  { methods: ['POST'], path: '/request', params: [...AUTHORIZE, 'client_secret'] },
  { methods: ['POST'], path: '/device/auth', params: ['client_id', 'client_secret', 'scope', 'resource', 'organization'] },
  { methods: ['POST'], path: '/token/introspection', params: ['token', 'token_type_hint', 'client_id', 'client_secret'] },
  { methods: ['POST'], path: '/token/revocation', params: ['token', 'token_type_hint', 'client_id', 'client_secret'] },
  { methods: ['GET', 'POST'], path: '/me', params: ['access_token', 'scope'] },
  { methods: ['GET', 'POST'], path: '/session/end', params: ['id_token_hint', 'post_logout_redirect_uri', 'state', 'client_id', 'ui_locales', 'logout_hint'] },
  { methods: ['POST'], path: '/session/end/confirm', params: ['xsrf', 'logout'], form: true },
  { methods: ['GET'], path: '/jwks', params: [] },
  { methods: ['GET'], path: '/.well-known/openid-configuration', params: [] },
  { methods: ['GET'], path: '/.well-known/oauth-authorization-server', params: [] },
  { methods: ['GET', 'POST'], path: '/device', params: ['user_code', 'xsrf', 'confirm', 'abort'], form: true },
  { methods: ['GET'], path: '/interaction/{{uid}}', params: [] },
  { methods: ['POST'], path: '/interaction/{{uid}}/login', params: ['_csrf', 'email', 'password'], form: true },
  { methods: ['POST'], path: '/interaction/{{uid}}/confirm', params: ['_csrf'], form: true },
  { methods: ['POST'], path: '/interaction/{{uid}}/abort', params: ['_csrf'], form: true },
  { methods: ['GET', 'POST'], path: '/interaction/{{uid}}/mfa', params: ['_csrf', 'code'], form: true },
  { methods: ['POST'], path: '/interaction/{{uid}}/mfa/continue', params: ['_csrf', 'code'], form: true },
  { methods: ['GET'], path: '/interaction/{{uid}}/federation/{{idp}}', params: [] },
  { methods: ['GET'], path: '/federation/callback/{{idp}}', params: ['state', 'code', 'error'] },
  { methods: ['GET', 'POST'], path: '/register', params: ['_csrf', 'email', 'password', 'name', 'return_to'], form: true },
  { methods: ['GET', 'POST'], path: '/forgot-password', params: ['_csrf', 'email'], form: true },
  { methods: ['GET', 'POST'], path: '/reset-password', params: ['_csrf', 'token', 'password'], form: true },
  { methods: ['GET', 'POST'], path: '/verify-email', params: ['_csrf', 'token'], form: true },
  { methods: ['GET', 'POST'], path: '/verify-email/resend', params: ['_csrf', 'email'], form: true },
  { methods: ['GET', 'POST'], path: '/invitation', params: ['_csrf', 'token', 'password', 'name'], form: true },
  { methods: ['GET'], path: '/account', params: ['return_to'] },
  { methods: ['GET'], path: '/account/callback', params: ['code', 'state', 'error', 'iss'] },
  { methods: ['POST'], path: '/account/profile', params: ['_csrf', 'name'], form: true },
  { methods: ['POST'], path: '/account/password', params: ['_csrf', 'current_password', 'new_password'], form: true },
  { methods: ['POST'], path: '/account/sessions/end', params: ['_csrf', 'session'], form: true },
  { methods: ['POST'], path: '/account/applications/revoke', params: ['_csrf', 'client_id'], form: true },
  { methods: ['GET'], path: '/account/mfa', params: [] },
  { methods: ['GET', 'POST'], path: '/account/mfa/enable', params: ['_csrf', 'code'], form: true },
  { methods: ['POST'], path: '/account/mfa/disable', params: ['_csrf', 'code', 'password'], form: true },
  { methods: ['POST'], path: '/account/mfa/recovery-codes', params: ['_csrf', 'code', 'password'], form: true },
  { methods: ['GET', 'POST'], path: '/account/tokens', params: ['_csrf', 'name', 'scope', 'expires_in_days', 'organization_id'], form: true },
  { methods: ['GET', 'POST'], path: '/account/tokens/revoke', params: ['_csrf', 'id'], form: true },
  { methods: ['GET'], path: '/account/organizations/{{org_id}}', params: [] },
  { methods: ['POST'], path: '/account/organizations/{{org_id}}/invitations', params: ['_csrf', 'email', 'role'], form: true },
  { methods: ['POST'], path: '/account/organizations/{{org_id}}/invitations/revoke', params: ['_csrf', 'invitation'], form: true },
  { methods: ['POST'], path: '/account/organizations/{{org_id}}/leave', params: ['_csrf'], form: true },
  { methods: ['POST'], path: '/account/organizations/{{org_id}}/members/remove', params: ['_csrf', 'member'], form: true },
  { methods: ['POST'], path: '/account/organizations/{{org_id}}/members/role', params: ['_csrf', 'member', 'role'], form: true },
  { methods: ['GET'], path: '/account/invitations', params: [] },
  { methods: ['GET', 'POST'], path: '/account/invitations/accept', params: ['_csrf', 'token', 'invitation'], form: true },
  { methods: ['POST'], path: '/account/invitations/decline', params: ['_csrf', 'token', 'invitation'], form: true },
  { methods: ['GET'], path: '/account/federation', params: [] },
  { methods: ['POST'], path: '/account/federation/{{idp}}/unlink', params: ['_csrf'], form: true },
  { methods: ['GET'], path: '/healthz', params: [] },
  { methods: ['GET'], path: '/readyz', params: [] },
  { methods: ['GET'], path: '/metrics', params: [] },
  { methods: ['GET'], path: '/api/openapi.yaml', params: [] },
  { methods: ['GET'], path: '/api/docs', params: [] },
  { methods: ['GET'], path: '/static/latch.css', params: [] },
];

/** Segments that replace a path's placeholder: real ids (filled in) or junk. */
const ODD_SEGMENTS = ['x', '%00', '%ff', '%c3%28', 'a'.repeat(300), '-1', '0', '00000000-0000-0000-0000-000000000000', '..', '%2e%2e%2f', "'%3B--", '%F0%9F%98%80', '%20', '%0d%0a'];

const junkString = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...NASTY) },
  { weight: 2, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 30 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 30 }) },
);

function valueFor(name: string): fc.Arbitrary<string> {
  const valid = Object.hasOwn(VALID, name) ? VALID[name] : undefined;
  return valid ? fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...valid) }, { weight: 2, arbitrary: junkString }) : junkString;
}

/** A parameter list: names from the endpoint (or unknown ones), each maybe twice (duplicated parameters). */
function paramsFor(names: string[]): fc.Arbitrary<[string, string][]> {
  const name = names.length > 0 ? fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...names) }, { weight: 1, arbitrary: junkString }) : junkString;
  return fc
    .array(
      name.chain((n) => fc.tuple(fc.constant(n), valueFor(n))),
      { maxLength: 8 },
    )
    .chain((list) =>
      list.length === 0
        ? fc.constant(list)
        : fc.oneof(
            { weight: 4, arbitrary: fc.constant(list) },
            // Duplicated parameters (RFC 6749 §3.1: "Request and response parameters MUST NOT be included more than once").
            { weight: 1, arbitrary: fc.tuple(fc.nat({ max: list.length - 1 }), valueFor(list[0]![0])).map(([i, v]) => [...list, [list[i]![0], v] as [string, string]]) },
          ),
    );
}

const headerValue = fc.oneof(fc.constantFrom(...NASTY), fc.string({ maxLength: 40 })).map((s) => s.replace(/[^\t\x20-\x7e]/g, '?'));

const AUTHORIZATION = fc.oneof(
  fc.constantFrom('Basic {{web_basic}}', 'Basic {{machine_basic}}', 'Bearer {{access}}', 'Bearer {{admin}}', 'Bearer {{reader}}', 'Bearer {{account_token}}', 'Bearer {{pat}}', 'Basic', 'Bearer', 'Bearer  ', 'Basic Og==', 'Basic %%%', 'Digest x', 'Bearer a.b.c'),
  fc.tuple(junkString, junkString).map(([u, p]) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`),
  headerValue.map((v) => `Bearer ${v}`),
  headerValue,
);

const COOKIE = fc.oneof(
  fc.constantFrom('{{session_cookies}}', '{{csrf_cookie}}', '{{interaction_cookies}}', '{{session_cookies}}; _session=x', 'latch.csrf=x', 'latch.account=x; _session=%00'),
  fc.constantFrom('a=' + 'x'.repeat(12_000), Array.from({ length: 300 }, (_, i) => `c${i}=v`).join('; ')),
  headerValue,
);

const CONTENT_TYPE = fc.constantFrom(
  'application/x-www-form-urlencoded',
  'application/x-www-form-urlencoded; charset=utf-8',
  'application/x-www-form-urlencoded; charset=utf-16',
  'application/json',
  'application/json; charset=iso-8859-1',
  'application/problem+json',
  'multipart/form-data; boundary=fuzz',
  'multipart/form-data',
  'text/plain',
  'application/jwt',
  'application/xml',
  'application/octet-stream',
  '*/*',
  ';;;',
);

const ACCEPT = fc.constantFrom('application/json', 'text/html', '*/*', 'application/problem+json', 'image/png', ';q=x');

function headersArb(options: { cookies: boolean }): fc.Arbitrary<[string, string][]> {
  return fc
    .record(
      {
        authorization: AUTHORIZATION,
        cookie: options.cookies ? COOKIE : fc.constant(''),
        accept: ACCEPT,
        'accept-language': headerValue,
        'x-forwarded-for': headerValue,
        'x-forwarded-proto': fc.constantFrom('https', 'http', 'gopher', ''),
        'x-forwarded-host': headerValue,
        origin: fc.constantFrom('http://evil.example', 'null'),
        referer: headerValue,
        'user-agent': headerValue,
        'x-huge': fc.constantFrom('y'.repeat(8_000), 'y'.repeat(20_000)),
        'if-none-match': headerValue,
        dpop: headerValue,
      },
      { requiredKeys: [] },
    )
    .map((h) => Object.entries(h).filter(([, v]) => v !== '') as [string, string][]);
}

function bodyArb(params: string[]): fc.Arbitrary<HttpCase['body']> {
  return fc.oneof(
    { weight: 8, arbitrary: fc.record({ encoding: fc.constant('form' as const), params: paramsFor(params) }) },
    { weight: 2, arbitrary: fc.record({ encoding: fc.constant('json' as const), params: paramsFor(params) }) },
    { weight: 1, arbitrary: fc.record({ encoding: fc.constant('multipart' as const), params: paramsFor(params) }) },
    { weight: 1, arbitrary: fc.record({ encoding: fc.constant('raw' as const), params: fc.constant([] as [string, string][]), raw: junkString }) },
    // Oversized bodies, just under and well over the usual limits.
    { weight: 1, arbitrary: fc.record({ encoding: fc.constant('form' as const), params: paramsFor(params), pad: fc.constantFrom(60_000, 200_000, 1_200_000) }) },
  );
}

/** Which content type goes with a body: the matching one, mostly; a wrong one sometimes. */
function withContentType(c: HttpCase, wrong: string | null): HttpCase {
  if (!c.body) return c;
  const right = { form: 'application/x-www-form-urlencoded', json: 'application/json', multipart: 'multipart/form-data; boundary=fuzz', raw: 'text/plain' }[c.body.encoding];
  return { ...c, headers: [...c.headers, ['content-type', wrong ?? right]] };
}

const METHOD_ODD = fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD');

/** A request to an OAuth/OIDC endpoint, a page or a form (not /api). */
export const endpointCase: fc.Arbitrary<HttpCase> = fc
  .constantFrom(...ENDPOINTS)
  .chain((e) =>
    fc
      .record({
        method: fc.oneof({ weight: 9, arbitrary: fc.constantFrom(...e.methods) }, { weight: 1, arbitrary: METHOD_ODD }),
        path: fc.oneof({ weight: 9, arbitrary: fc.constant(e.path) }, { weight: 1, arbitrary: fc.constantFrom(...ODD_SEGMENTS).map((s) => e.path.replace(/\{\{\w+\}\}/g, s)) }),
        query: fc.oneof({ weight: 1, arbitrary: fc.constant([] as [string, string][]) }, { weight: 1, arbitrary: paramsFor(e.params) }),
        headers: headersArb({ cookies: true }),
        body: bodyArb(e.params),
        wrong: fc.option(CONTENT_TYPE, { freq: 5 }),
      })
      .map(({ method, path, query, headers, body, wrong }) => {
        const c: HttpCase = { kind: 'http', method, path, query: method === 'GET' || method === 'HEAD' ? [...query, ...(body?.params ?? [])] : query, headers };
        if (method !== 'GET' && method !== 'HEAD') c.body = body;
        return withContentType(c, wrong);
      }),
  );

/** Every admin API operation of openapi.yaml, as test/api-fuzz.test.ts walks them. */
export const API_OPERATIONS = Object.entries(doc.paths)
  .filter(([p]) => p.startsWith('/api/v1/'))
  .flatMap(([template, ops]) =>
    Object.keys(ops)
      .filter((m) => METHODS.includes(m))
      .map((m) => {
        const op = ops[m];
        let schema = op.requestBody?.content?.['application/json']?.schema;
        if (schema?.$ref) schema = doc.components.schemas[schema.$ref.split('/').pop()];
        const query = ((op.parameters ?? []) as { in?: string; name?: string }[]).filter((p) => p.in === 'query').map((p) => p.name!);
        return { method: m.toUpperCase(), template, query, properties: Object.keys(schema?.properties ?? {}) };
      }),
  );

const jsonValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: junkString },
  { weight: 1, arbitrary: fc.constantFrom(0, -1, 1.5, 2 ** 53, 1e308, true, false, null, [], {}, [null], { $ne: null }, { __proto__: { admin: true } }) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  { weight: 1, arbitrary: fc.constantFrom('{{user_id}}', '{{org_id}}', '{{email}}', 'admin:read', 'owner', 'https://api.fuzz.example.test', ['openid'], ['client_credentials']) },
);

export const apiCase: fc.Arbitrary<HttpCase> = fc
  .constantFrom(...API_OPERATIONS)
  .chain((op) =>
    fc
      .record({
        method: fc.oneof({ weight: 12, arbitrary: fc.constant(op.method) }, { weight: 1, arbitrary: METHOD_ODD }),
        ids: fc.array(fc.oneof({ weight: 2, arbitrary: fc.constantFrom('{{victim_user}}', '{{victim_org}}', '{{victim_client}}', '{{victim_role}}', '{{victim_resource}}', '{{victim_idp}}', '{{victim_pat}}') }, { weight: 3, arbitrary: fc.constantFrom(...ODD_SEGMENTS) }), { minLength: 2, maxLength: 2 }),
        query: fc.array(fc.tuple(op.query.length ? fc.constantFrom(...op.query, 'limit', 'cursor') : fc.constantFrom('limit', 'cursor', 'x'), fc.oneof(junkString, fc.constantFrom('1', '0', '-1', '1000000', 'abc'))), { maxLength: 3 }),
        token: fc.oneof({ weight: 6, arbitrary: fc.constantFrom('Bearer {{admin}}', 'Bearer {{account_token}}') }, { weight: 1, arbitrary: AUTHORIZATION }),
        headers: headersArb({ cookies: false }),
        body: fc.oneof(
          { weight: 6, arbitrary: fc.dictionary(op.properties.length ? fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...op.properties) }, { weight: 1, arbitrary: junkString }) : junkString, jsonValue, { maxKeys: 5 }).map((o) => JSON.stringify(o)) },
          { weight: 1, arbitrary: fc.constantFrom('{', '[]', '"text"', 'null', '{"a":1,"a":2}', '\u0000', '{"name":"\\ud800"}', '{"__proto__":{"x":1}}', `{"a":${'['.repeat(5000)}`, JSON.stringify({ name: 'x'.repeat(300_000) })) },
          { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v) ?? 'null') },
        ),
        wrong: fc.option(CONTENT_TYPE, { freq: 6 }),
      })
      .map(({ method, ids, query, token, headers, body, wrong }) => {
        let n = 0;
        const path = op.template.replace(/\{[^}]+\}/g, () => ids[n++ % ids.length]!);
        const c: HttpCase = { kind: 'http', method, path, query, headers: [...headers.filter(([k]) => k !== 'authorization'), ['authorization', token]] };
        if (method !== 'GET' && method !== 'HEAD' && method !== 'DELETE') {
          c.body = { encoding: 'raw', params: [], raw: body };
          c.headers.push(['content-type', wrong ?? 'application/json']);
        }
        return c;
      }),
  );

/** Bytes for a raw socket: invalid UTF-8, NUL bytes, bad framing, oversized or duplicated headers. */
const BAD_BYTES = ['\x00', '\xff', '\xc3\x28', '\xe2\x82', '\xed\xa0\x80', '\xf8\x88\x80\x80\x80', '\xc0\xaf', '\x80', '%00', '%ff'];
const rawText = fc.array(fc.oneof(fc.constantFrom(...BAD_BYTES), fc.string({ unit: 'binary-ascii', maxLength: 8 })), { maxLength: 6 }).map((a) => a.join(''));

export const rawCase: fc.Arbitrary<RawCase> = fc
  .record({
    method: fc.oneof({ weight: 5, arbitrary: fc.constantFrom('GET', 'POST') }, { weight: 1, arbitrary: fc.constantFrom('G\x00T', 'POST\xff', 'BREW', '') }),
    endpoint: fc.constantFrom(...ENDPOINTS.filter((e) => !e.path.includes('{{')), { methods: ['POST'], path: '/api/v1/users', params: ['email', 'name'] }, { methods: ['POST'], path: '/interaction/{{uid}}/login', params: ['_csrf', 'email', 'password'] }),
    pathSuffix: fc.oneof(fc.constant(''), rawText.map((t) => `?x=${t}`), fc.constantFrom('/\x00', '%00', '/..%2f', '\xff', ' HTTP/1.0')),
    version: fc.constantFrom('HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/1.1\x00', 'HTTP/9'),
    cookie: fc.constantFrom('', '{{session_cookies}}', '{{csrf_cookie}}', 'latch.csrf=\xff\x00', `a=${'z'.repeat(70_000)}`),
    auth: fc.constantFrom('', 'Bearer {{admin}}', 'Basic {{web_basic}}', 'Bearer \xff\x00', 'Basic \xc3\x28'),
    extra: fc.array(
      fc.oneof(
        fc.constantFrom('X-Nul: a\x00b', 'X-Latin: \xff\xfe', 'Content-Length: 5', 'Content-Length: -1', 'Content-Length: 99999999999999999999', 'Transfer-Encoding: chunked', 'Transfer-Encoding: gzip, chunked', 'Host:', 'Host: a\x00', 'Bad Header: x', ': novalue', 'X-Long: ' + 'l'.repeat(40_000), 'Expect: 100-continue', 'Content-Type: application/json', 'Content-Type: multipart/form-data; boundary=\xff'),
        rawText.map((t) => `X-Fuzz: ${t}`),
      ),
      { maxLength: 3 },
    ),
    params: fc.array(fc.tuple(fc.constantFrom('_csrf', 'email', 'password', 'grant_type', 'token', 'client_id', 'code', 'name', '\xff'), fc.oneof(rawText, fc.constantFrom('{{csrf}}', '{{web_id}}', 'client_credentials'))), { maxLength: 5 }),
    framing: fc.constantFrom('exact', 'exact', 'short', 'long', 'none'),
  })
  .map(({ method, endpoint, pathSuffix, version, cookie, auth, extra, params, framing }) => {
    const body = endpoint.path.startsWith('/api/') ? `{"email":"${params.map(([, v]) => v).join('')}"}` : params.map(([k, v]) => `${k}=${v}`).join('&');
    const lines = [`${method} ${endpoint.path}${pathSuffix} ${version}`, 'Host: 127.0.0.1', 'Connection: close', `Content-Type: ${endpoint.path.startsWith('/api/') ? 'application/json' : 'application/x-www-form-urlencoded'}`];
    if (cookie) lines.push(`Cookie: ${cookie}`);
    if (auth) lines.push(`Authorization: ${auth}`);
    lines.push(...extra);
    const length = Buffer.byteLength(body, 'latin1');
    if (framing === 'exact') lines.push(`Content-Length: ${length}`);
    if (framing === 'short') lines.push(`Content-Length: ${Math.max(0, length - 3)}`);
    if (framing === 'long') lines.push(`Content-Length: ${length + 10}`);
    return { kind: 'raw' as const, head: `${lines.join('\r\n')}\r\n\r\n`, body };
  });

/** The whole grammar: mostly endpoints and forms, a third admin API, some raw bytes. */
export const fuzzCase: fc.Arbitrary<FuzzCase> = fc.oneof({ weight: 10, arbitrary: endpointCase }, { weight: 5, arbitrary: apiCase }, { weight: 2, arbitrary: rawCase });
