import { randomBytes } from 'node:crypto';

import { expect } from 'chai';
import pg from 'pg';

import { DatabaseUnavailableError } from '../../src/db/connect.js';
import { databaseOutage } from '../../src/db/outage.js';
import { spawnLatch, type LatchProcess } from '../helpers/process.js';
import { runCliWith, TEST_SECRET } from '../helpers/server.js';
import { postgresBin, startThrowawayPostgres, type ThrowawayPostgres } from '../helpers/throwaway-postgres.js';

/**
 * A PostgreSQL outage as clients see it (docs/operations.md, "Running in production"): a Latch
 * process on a PostgreSQL cluster of its own, under light load; the cluster is killed
 * (`pg_ctl stop -m immediate`), then started again on the same port; later a table is locked so
 * that statements hang. Never a 500, never a wait past 10 s, 503 in each endpoint's own error
 * format, and recovery without restarting Latch.
 */

const STATEMENT_TIMEOUT_MS = 1000;
const REDIRECT = 'http://127.0.0.1:9/callback';
const HANG_LIMIT_MS = 10_000;

interface Answer {
  status: number;
  type: string;
  text: string;
  ms: number;
}

async function send(url: string, init: RequestInit = {}): Promise<Answer> {
  const started = Date.now();
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(HANG_LIMIT_MS + 5000) });
  const text = await res.text();
  return { status: res.status, type: res.headers.get('content-type') ?? '', text, ms: Date.now() - started };
}

const randomToken = () => randomBytes(32).toString('base64url');

describe('database outage (throwaway PostgreSQL cluster)', function () {
  this.timeout(60_000);
  let cluster: ThrowawayPostgres | undefined;
  let latch: LatchProcess | undefined;
  let machine: { client_id: string; client_secret: string };
  let web: { client_id: string; client_secret: string };
  let adminToken: string;
  let interaction: { path: string; cookie: string };

  const basic = (c: { client_id: string; client_secret: string }) => `Basic ${Buffer.from(`${c.client_id}:${c.client_secret}`).toString('base64')}`;
  const form = { 'content-type': 'application/x-www-form-urlencoded' };

  /** Every request a client makes in this test, with the expected answer when the database is out. */
  const probes = {
    readyz: () => send(`${latch!.base}/readyz`),
    clientCredentials: () => send(`${latch!.base}/token`, { method: 'POST', headers: { ...form, authorization: basic(machine) }, body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'admin:read', resource: `${latch!.base}/api` }) }),
    // Redeeming a code or a refresh token must read the database.
    refresh: () => send(`${latch!.base}/token`, { method: 'POST', headers: { ...form, authorization: basic(web) }, body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: randomToken() }) }),
    code: () => send(`${latch!.base}/token`, { method: 'POST', headers: { ...form, authorization: basic(web) }, body: new URLSearchParams({ grant_type: 'authorization_code', code: randomToken(), redirect_uri: REDIRECT }) }),
    authorize: () => send(`${latch!.base}/auth?${new URLSearchParams({ client_id: web.client_id, response_type: 'code', redirect_uri: REDIRECT, scope: 'openid', state: 's', code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGUgaqNmWc', code_challenge_method: 'S256' })}`, { headers: { accept: 'text/html' } }),
    adminApi: () => send(`${latch!.base}/api/v1/users`, { headers: { authorization: `Bearer ${adminToken}`, accept: 'application/json' } }),
    // The sign-in page of an interaction this browser started: reading it needs the database.
    interactionPage: () => send(`${latch!.base}${interaction.path}`, { headers: { accept: 'text/html', cookie: interaction.cookie } }),
  };

  before(async function () {
    const bin = postgresBin();
    if (!bin) {
      if (process.env.CI === 'true') throw new Error('initdb/pg_ctl not found: CI must run the database outage test (install postgresql)');
      console.log('      (skipped: PostgreSQL server programs, initdb and pg_ctl, are not installed)');
      this.skip();
    }
    cluster = await startThrowawayPostgres(bin!);
    latch = await spawnLatch({ DATABASE_URL: cluster.url, DB_STATEMENT_TIMEOUT_MS: String(STATEMENT_TIMEOUT_MS), DB_CONNECT_TIMEOUT_MS: '2000', LOG_LEVEL: 'warn', API_REQUESTS_PER_MINUTE: '100000' }, { readyTimeoutMs: 40_000 });
    const cli = async (...args: string[]) => {
      const r = await runCliWith({ DATABASE_URL: cluster!.url, LATCH_SECRET: TEST_SECRET, ISSUER: latch!.base, LOG_LEVEL: 'error' }, args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).to.equal(0);
      return r.json as { client_id: string; client_secret: string };
    };
    machine = await cli('clients', 'create', '--name', 'ops', '--grant', 'client_credentials', '--resource', `${latch.base}/api`, '--scope', 'admin:read admin:write');
    web = await cli('clients', 'create', '--name', 'shop', '--redirect-uri', REDIRECT, '--grant', 'authorization_code', '--grant', 'refresh_token', '--scope', 'openid offline_access');
    // The server sees the new clients through its change feed (polled every second).
    for (let i = 0; ; i++) {
      const cc = await probes.clientCredentials();
      if (cc.status === 200) {
        adminToken = (JSON.parse(cc.text) as { access_token: string }).access_token;
        break;
      }
      if (i > 50) throw new Error(`no admin token: ${cc.status} ${cc.text}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  before(async () => {
    const res = await fetch(`${latch!.base}/auth?${new URLSearchParams({ client_id: web.client_id, response_type: 'code', redirect_uri: REDIRECT, scope: 'openid', state: 's', code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGUgaqNmWc', code_challenge_method: 'S256' })}`, { redirect: 'manual' });
    expect(res.status).to.be.oneOf([302, 303]);
    interaction = { path: new URL(res.headers.get('location')!, latch!.base).pathname, cookie: res.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ') };
    expect(interaction.path).to.match(/^\/interaction\//);
    expect((await probes.interactionPage()).status).to.equal(200);
  });

  after(async () => {
    const log = latch?.log() ?? '';
    await latch?.stop();
    cluster?.destroy();
    // No request failed as a bug of ours (an outage is a warning, not an error).
    expect(log).to.not.match(/"level":"error"/);
  });

  it('a stopped PostgreSQL: /readyz 503 within 5 s, 503 in each format, never 500 or a hang; recovers by itself', async () => {
    // Light background load across the whole test: the outage begins and ends under it.
    const seen: { name: string; answer: Answer }[] = [];
    let loading = true;
    const names = Object.keys(probes) as (keyof typeof probes)[];
    // Two clients at a time, each cycling through every probe.
    const load = Promise.all([0, 3].map(async (offset) => {
      for (let i = offset; loading; i++) {
        const name = names[i % names.length]!;
        seen.push({ name, answer: await probes[name]().catch((err: unknown) => ({ status: 0, type: '', text: String(err), ms: 0 })) });
        await new Promise((r) => setTimeout(r, 20));
      }
    }));
    await new Promise((r) => setTimeout(r, 500));
    expect((await probes.adminApi()).status).to.equal(200);
    await new Promise((r) => setTimeout(r, 500));

    const stoppedAt = Date.now();
    cluster!.stop('immediate');
    for (;;) {
      const ready = await probes.readyz();
      if (ready.status === 503) {
        expect(JSON.parse(ready.text)).to.deep.include({ status: 'unavailable' });
        break;
      }
      expect(Date.now() - stoppedAt, '/readyz still 200').to.be.below(5000);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(Date.now() - stoppedAt).to.be.below(5000);

    // OAuth endpoints: RFC 6749 JSON temporarily_unavailable with 503 (RFC 6749 §4.1.2.1 wording).
    for (const probe of [probes.refresh, probes.code]) {
      const a = await probe();
      expect(a.status, a.text).to.equal(503);
      expect(a.type).to.match(/^application\/json/);
      expect(JSON.parse(a.text)).to.have.property('error', 'temporarily_unavailable');
    }
    // The authorization endpoint and the pages: the error page, 503, no redirect.
    for (const probe of [probes.authorize, probes.interactionPage]) {
      const a = await probe();
      expect(a.status, a.text.slice(0, 300)).to.equal(503);
      expect(a.type).to.match(/^text\/html/);
      expect(a.text).to.contain('temporarily_unavailable');
    }
    // The admin API: a problem document.
    const api = await probes.adminApi();
    expect(api.status, api.text).to.equal(503);
    expect(api.type).to.match(/^application\/problem\+json/);
    expect(JSON.parse(api.text)).to.deep.include({ type: 'https://latch.dev/problems/service-unavailable', status: 503 });

    // Back on the same port: the first requests succeed, without restarting Latch.
    cluster!.start();
    const ready = await probes.readyz();
    expect(ready.status, ready.text).to.equal(200);
    expect((await probes.adminApi()).status).to.equal(200);
    const refresh = await probes.refresh();
    expect(refresh.status, refresh.text).to.equal(400);
    expect(JSON.parse(refresh.text)).to.have.property('error', 'invalid_grant');
    const cc = await probes.clientCredentials();
    expect(cc.status, cc.text).to.equal(200);
    expect((await probes.interactionPage()).status).to.equal(200);
    await new Promise((r) => setTimeout(r, 500));

    loading = false;
    await load;
    expect(seen.length).to.be.above(20);
    const during = seen.filter((s) => s.answer.status === 503).length;
    console.log(`      ${seen.length} requests under load, ${during} answered 503 during the outage`);
    for (const { name, answer } of seen) {
      expect(answer.status, `${name}: ${answer.text.slice(0, 200)}`).to.be.oneOf([200, 302, 303, 400, 503]);
      expect(answer.ms, `${name} took ${answer.ms} ms`).to.be.below(HANG_LIMIT_MS);
      expect(answer.text, name).to.not.match(/\bat .+\.(ts|js):\d+|node_modules/);
    }
    expect(seen.some((s) => s.answer.status === 503 && s.name !== 'readyz'), 'the load saw the outage').to.equal(true);
  });

  it('a reachable but stuck PostgreSQL: the statement timeout answers 503 instead of holding the request', async () => {
    // Independent of the test before: the cluster may have been left stopped by its failure.
    if (!cluster!.running) cluster!.start();
    const locker = new pg.Client({ connectionString: cluster!.url });
    await locker.connect();
    try {
      await locker.query('BEGIN');
      // Every statement touching these tables now waits for the lock.
      await locker.query('LOCK TABLE accounts, provider_state IN ACCESS EXCLUSIVE MODE');
      const api = await probes.adminApi();
      expect(api.status, api.text).to.equal(503);
      expect(api.ms).to.be.below(STATEMENT_TIMEOUT_MS + 3000);
      expect(JSON.parse(api.text)).to.have.property('type', 'https://latch.dev/problems/service-unavailable');
      const refresh = await probes.refresh();
      expect(refresh.status, refresh.text).to.equal(503);
      expect(refresh.ms).to.be.below(STATEMENT_TIMEOUT_MS + 3000);
      expect(JSON.parse(refresh.text)).to.have.property('error', 'temporarily_unavailable');
      const page = await probes.interactionPage();
      expect(page.status).to.equal(503);
      // The database itself answers: the process stays ready.
      expect((await probes.readyz()).status).to.equal(200);
    } finally {
      await locker.query('ROLLBACK');
      await locker.end();
    }
    expect((await probes.adminApi()).status).to.equal(200);
    expect((await probes.refresh()).status).to.equal(400);
  });
});

describe('which database errors are an outage (503) and which are not', () => {
  const coded = (code: string, message = 'x') => Object.assign(new Error(message), { code });

  it('an unreachable, stopping, stuck or exhausted database is an outage', () => {
    for (const err of [coded('ECONNREFUSED'), coded('ECONNRESET'), coded('57P01', 'terminating connection due to administrator command'), coded('57P03'), coded('57014', 'canceling statement due to statement timeout'), coded('08006'), coded('53300'), coded('SQLITE_BUSY'), Object.assign(new Error('Knex: Timeout acquiring a connection.'), { name: 'KnexTimeoutError' }), new Error('Connection terminated unexpectedly'), new Error('wrapped', { cause: coded('ECONNREFUSED') })]) {
      const outage = databaseOutage(err);
      expect(outage, String(err)).to.be.instanceOf(DatabaseUnavailableError);
      expect(outage!.status).to.equal(503);
    }
  });

  it('a wrong query or a constraint is not: it stays a bug or a conflict', () => {
    for (const err of [coded('23505', 'duplicate key'), coded('42P01', 'relation does not exist'), coded('22P02'), coded('SQLITE_CONSTRAINT'), new Error('boom'), 'text', undefined, null]) {
      expect(databaseOutage(err), String(err)).to.equal(undefined);
    }
  });
});
