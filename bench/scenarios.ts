/**
 * The scenarios. Each prepares what it needs on one server (tokens, a refresh-token pool),
 * checks one request answers as expected, then returns a function that loads the server for a
 * given number of seconds.
 */
import { decodeProtectedHeader } from 'jose';

import { basicAuth, Browser, codeFlow, tokenRequest } from './browser.js';
import { cannon, loop } from './load.js';
import type { Measurement, Target } from './types.js';

export const SCENARIOS = ['client_credentials_es256', 'client_credentials_rs256', 'refresh', 'introspect_opaque', 'introspect_jwt', 'code_flow', 'password_verify', 'jwks', 'discovery'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

/** Scenarios served over HTTP (everything but the in-process password_verify). */
export const HTTP_SCENARIOS = SCENARIOS.filter((s) => s !== 'password_verify');

export type Runner = (seconds: number) => Promise<Measurement>;

const FORM = 'application/x-www-form-urlencoded';

async function expectJson(res: Response, what: string): Promise<Record<string, unknown>> {
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${what}: HTTP ${res.status} ${text.slice(0, 200)}`);
  return JSON.parse(text) as Record<string, unknown>;
}

async function introspect(target: Target, client: Target['web'], token: string): Promise<Record<string, unknown>> {
  const res = await fetch(`${target.url}/token/introspection`, { method: 'POST', headers: { authorization: basicAuth(client), 'content-type': FORM, accept: 'application/json' }, body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString() });
  return expectJson(res, `introspection on ${target.kind}`);
}

/** Prepares `name` on `target` and returns its load runner. */
export async function prepare(name: Exclude<ScenarioName, 'password_verify'>, target: Target, connections: number, log: (s: string) => void): Promise<Runner> {
  switch (name) {
    case 'client_credentials_es256':
    case 'client_credentials_rs256': {
      const alg = name === 'client_credentials_es256' ? 'ES256' : 'RS256';
      const client = alg === 'ES256' ? target.ccEs256 : target.ccRs256;
      const body = 'grant_type=client_credentials&scope=read';
      const t = await tokenRequest(target, client, { grant_type: 'client_credentials', scope: 'read' });
      const header = decodeProtectedHeader(t.access_token);
      if (header.alg !== alg || header.typ !== 'at+jwt') throw new Error(`${name} on ${target.kind}: expected an ${alg} at+jwt, got ${JSON.stringify(header)}`);
      return (seconds) => cannon({ url: `${target.url}/token`, method: 'POST', headers: { authorization: basicAuth(client), 'content-type': FORM }, body, connections, seconds });
    }

    case 'refresh': {
      // Each pool token comes from its own sign-in (a fresh browser: its own session and grant),
      // offline_access + prompt=consent for the first-party client (consent is skipped). One
      // session for the whole pool would put every token of the run in ONE grant: as refreshes
      // pile tokens into it, oidc-provider's in-memory adapter (the bare server's) rescans the
      // grant's whole token list on every save, and the baseline slows down as the run goes on.
      const size = connections * 4 + 10;
      const pool: string[] = [];
      let signIns = 0;
      let reported = false;
      const topUp = async () => {
        const t0 = performance.now();
        let issued = 0;
        while (pool.length < size) {
          const user = target.users[signIns++ % target.users.length]!;
          const t = await codeFlow(target, { browser: new Browser(), user, scope: 'openid offline_access', prompt: 'consent' });
          if (!t.refresh_token) throw new Error(`refresh on ${target.kind}: the code flow returned no refresh token`);
          pool.push(t.refresh_token);
          issued++;
        }
        // Reported once: later top-ups (between the measured turns) refill what a turn's end dropped.
        if (issued && !reported) log(`  ${target.kind}: ${issued} refresh tokens pre-issued, one sign-in each, in ${Math.round(performance.now() - t0)} ms (pool ${pool.length})`);
        reported = true;
      };
      await topUp();
      // Every refresh token is used exactly once: a request takes one from the pool, and the
      // rotated token of its response goes back in. At most `connections` are in flight, so the
      // pool never runs dry unless requests fail (then a dummy token makes the failure visible).
      // Tokens taken for requests that a run's end leaves unsent are dropped, and the pool is
      // topped up again (outside the measurement) before the next run.
      const headers = { authorization: basicAuth(target.web), 'content-type': FORM, accept: 'application/json' };
      return async (seconds) => {
        await topUp();
        return cannon({
          url: `${target.url}/token`,
          method: 'POST',
          headers,
          connections,
          seconds,
          setupRequest: (req) => ({ ...req, body: `grant_type=refresh_token&refresh_token=${encodeURIComponent(pool.shift() ?? 'pool-exhausted')}` }),
          onResponse: (status, body) => {
            if (status !== 200) return;
            try {
              const rt = (JSON.parse(body) as { refresh_token?: string }).refresh_token;
              if (rt) pool.push(rt);
            } catch {
              // counted by status
            }
          },
        });
      };
    }

    case 'introspect_opaque': {
      const { access_token: token } = await codeFlow(target, { scope: 'openid' });
      if (token.split('.').length === 3) throw new Error(`introspect_opaque on ${target.kind}: expected an opaque access token`);
      const check = await introspect(target, target.web, token);
      if (check.active !== true) throw new Error(`introspect_opaque on ${target.kind}: token not active: ${JSON.stringify(check)}`);
      const body = new URLSearchParams({ token, token_type_hint: 'access_token' }).toString();
      return (seconds) => cannon({ url: `${target.url}/token/introspection`, method: 'POST', headers: { authorization: basicAuth(target.web), 'content-type': FORM }, body, connections, seconds });
    }

    case 'introspect_jwt': {
      const { access_token: token } = await tokenRequest(target, target.ccEs256, { grant_type: 'client_credentials', scope: 'read' });
      const check = await introspect(target, target.introspector, token);
      if (check.active !== true) throw new Error(`introspect_jwt on ${target.kind}: token not active: ${JSON.stringify(check)}`);
      const body = new URLSearchParams({ token, token_type_hint: 'access_token' }).toString();
      return (seconds) => cannon({ url: `${target.url}/token/introspection`, method: 'POST', headers: { authorization: basicAuth(target.introspector), 'content-type': FORM }, body, connections, seconds });
    }

    case 'code_flow': {
      const first = await codeFlow(target);
      if (!first.id_token) throw new Error(`code_flow on ${target.kind}: no ID token`);
      let shown = 0;
      return (seconds) =>
        loop(
          connections,
          seconds,
          async (worker) => {
            await codeFlow(target, { user: target.users[worker % target.users.length]! });
          },
          (err) => {
            if (shown++ < 3) log(`  code_flow error on ${target.kind}: ${err instanceof Error ? err.message : String(err)}`);
          },
        );
    }

    case 'jwks':
      await expectJson(await fetch(`${target.url}/jwks`), 'jwks');
      return (seconds) => cannon({ url: `${target.url}/jwks`, connections, seconds });

    case 'discovery':
      await expectJson(await fetch(`${target.url}/.well-known/openid-configuration`), 'discovery');
      return (seconds) => cannon({ url: `${target.url}/.well-known/openid-configuration`, connections, seconds });
  }
}
