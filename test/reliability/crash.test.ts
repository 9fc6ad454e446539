import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { expect } from 'chai';

import { loadConfig } from '../../src/config/index.js';
import { openDatabase } from '../../src/db/knex.js';
import { Agent, authorize } from '../helpers/agent.js';
import { spawnLatch, type LatchProcess } from '../helpers/process.js';
import { freePort, freshDatabase, runCliWith, TEST_SECRET, type TestDatabase } from '../helpers/server.js';
import { storedStateId } from '../../src/repositories/provider-state.js';

const REDIRECT = 'http://127.0.0.1:9/callback';
const USER = { email: 'crash@example.test', password: 'correct horse battery staple' };
const PASSWORD = 'a long and unguessable passphrase 42';
/** How long the load runs before the kill. */
const LOAD_MS = 3000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Creds = { client_id: string; client_secret: string };
const basic = (c: Creds) => `Basic ${Buffer.from(`${encodeURIComponent(c.client_id)}:${encodeURIComponent(c.client_secret)}`).toString('base64')}`;

/** The pids of a process's children (a cluster primary's workers), from /proc. */
function childrenOf(pid: number): number[] {
  const text = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
  return text ? text.split(/\s+/).map(Number) : [];
}

/**
 * kill -9 under sustained load (docs/operations.md, "Running in production"): a Latch process, or
 * one WEB_CONCURRENCY worker, is killed with SIGKILL while clients run client-credentials,
 * refresh rotations, code flows and admin API writes. After the restart on the same database,
 * everything a client received before the kill is honoured, no refresh token is valid twice and
 * no row is half-written.
 */
describe('crash safety: kill -9 under load', function () {
  this.timeout(90_000);
  let db: TestDatabase;
  let dataDir: string;
  let env: Record<string, string>;
  let latch: LatchProcess | undefined;
  let web: Creds;
  let machine: Creds;
  let ops: Creds;
  /** Signed in for the refresh chains; the code loop signs in apart (see `codeAgent`). */
  const agent = new Agent();
  /**
   * The code loop's own session, so its own grant: re-presenting a code whose redemption response
   * the kill lost is reuse, which revokes that code's grant (RFC 6749 §4.1.2), and must not take
   * the refresh chains' grant with it.
   */
  const codeAgent = new Agent();

  const cli = async (...args: string[]) => {
    const r = await runCliWith(env, args);
    expect(r.code, `${args.join(' ')}: ${r.stderr}`).to.equal(0);
    return r.json;
  };

  before(async () => {
    db = await freshDatabase();
    dataDir = mkdtempSync(join(tmpdir(), 'latch-crash-'));
    const port = await freePort();
    env = {
      PORT: String(port),
      ISSUER: `http://127.0.0.1:${port}`,
      DATABASE_URL: db.url,
      LATCH_SECRET: TEST_SECRET,
      DATA_DIR: dataDir,
      LOG_LEVEL: 'warn',
      API_REQUESTS_PER_MINUTE: '1000000',
      API_AUTH_FAILURES_PER_MINUTE: '1000000',
      ARGON2_MEMORY_KIB: '8192',
      ARGON2_TIME_COST: '2',
    };
    latch = await spawnLatch(env);
    const api = `${env.ISSUER}/api`;
    await cli('users', 'create', '--email', USER.email, '--password', USER.password);
    web = await cli('clients', 'create', '--name', 'Web', '--redirect-uri', REDIRECT, '--first-party', '--scope', 'openid offline_access');
    machine = await cli('clients', 'create', '--name', 'Machine', '--grant', 'client_credentials', '--resource', api, '--scope', 'admin:read');
    ops = await cli('clients', 'create', '--name', 'Ops', '--grant', 'client_credentials', '--resource', api, '--scope', 'admin:read admin:write');
  });

  after(async () => {
    if (latch) await latch.stop('SIGKILL');
    await db?.drop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  /**
   * After the kill, a keep-alive connection fetch pooled to the killed process can still be handed
   * out before its close is seen: the request fails with UND_ERR_SOCKET without reaching any
   * server. While verifying (nothing is killed then) such a request is sent again, once, on a new
   * connection; during the load every failure counts.
   */
  let verifying = false;
  const send = async (url: string, init: RequestInit): Promise<Response> => {
    try {
      return await fetch(url, init);
    } catch (err) {
      if (!verifying || (err as { cause?: { code?: string } }).cause?.code !== 'UND_ERR_SOCKET') throw err;
      return fetch(url, init);
    }
  };
  const post = async (path: string, as: Creds | undefined, params: Record<string, string>) => {
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
    if (as) headers.authorization = basic(as);
    const res = await send(`${env.ISSUER}${path}`, { method: 'POST', headers, body: new URLSearchParams(params) });
    return { status: res.status, body: (await res.json()) as Record<string, string> };
  };
  const token = (as: Creds, params: Record<string, string>) => post('/token', as, params);
  const active = async (as: Creds, value: string) => (await post('/token/introspection', as, { token: value })).body.active as unknown as boolean;
  const apiCall = async (method: string, path: string, bearer: string, body?: unknown) => {
    const res = await send(`${env.ISSUER}${path}`, { method, headers: { authorization: `Bearer ${bearer}`, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
    const text = await res.text();
    return { status: res.status, json: text ? (JSON.parse(text) as Record<string, string>) : undefined };
  };
  /** A code for the Web client, from the agent's signed-in session (first party: no consent page). */
  const code = async (as: Agent = agent) => {
    const verifier = randomBytes(32).toString('base64url');
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    const url = `${env.ISSUER}/auth?${new URLSearchParams({ client_id: web.client_id, response_type: 'code', redirect_uri: REDIRECT, scope: 'openid offline_access', prompt: 'consent', code_challenge: challenge, code_challenge_method: 'S256' })}`;
    const { callback } = await authorize(as, url, REDIRECT, USER);
    return { code: callback.searchParams.get('code')!, verifier };
  };
  const exchange = (c: { code: string; verifier: string }) => token(web, { grant_type: 'authorization_code', code: c.code, code_verifier: c.verifier, redirect_uri: REDIRECT });

  /** Load until `killAt`, kill, and report what clients received before the kill. */
  async function loadAndKill(kill: () => void) {
    verifying = false;
    const adminToken = (await token(ops, { grant_type: 'client_credentials', scope: 'admin:read admin:write', resource: `${env.ISSUER}/api` })).body.access_token!;
    const chains: { refresh: string; accessTokens: string[] }[] = [];
    for (let i = 0; i < 4; i++) {
      const start = await exchange(await code());
      expect(start.status, JSON.stringify(start.body)).to.equal(200);
      chains.push({ refresh: start.body.refresh_token!, accessTokens: [start.body.access_token!] });
    }
    const got = {
      sent: 0,
      ccTokens: [] as string[],
      codes: [] as { code: string; verifier: string; redeemed?: { access_token: string; refresh_token: string } }[],
      users: [] as string[],
      orgs: [] as { id: string; owner: string }[],
      rotations: 0,
      failures: [] as string[],
    };
    let stopped = false;
    const loop = async (step: () => Promise<void>) => {
      while (!stopped) {
        try {
          got.sent++;
          await step();
        } catch (err) {
          // A request cut by the kill: its response was never received. Anything else is a failure.
          if (!(err instanceof TypeError && /fetch failed/.test(err.message))) got.failures.push(String(err));
          if (stopped) return;
        }
      }
    };
    const loops = [
      ...[0, 1].map(() =>
        loop(async () => {
          const res = await token(machine, { grant_type: 'client_credentials', scope: 'admin:read', resource: `${env.ISSUER}/api` });
          if (res.status === 200) got.ccTokens.push(res.body.access_token!);
        }),
      ),
      ...chains.map((chain) =>
        loop(async () => {
          const res = await token(web, { grant_type: 'refresh_token', refresh_token: chain.refresh });
          expect(res.status, JSON.stringify(res.body)).to.equal(200);
          chain.refresh = res.body.refresh_token!;
          chain.accessTokens.push(res.body.access_token!);
          got.rotations++;
        }),
      ),
      loop(async () => {
        const c: (typeof got.codes)[number] = await code(codeAgent);
        got.sent++;
        got.codes.push(c);
        const res = await exchange(c);
        if (res.status === 200) c.redeemed = { access_token: res.body.access_token!, refresh_token: res.body.refresh_token! };
      }),
      loop(async () => {
        const n = randomBytes(5).toString('hex');
        const user = await apiCall('POST', '/api/v1/users', adminToken, { email: `u-${n}@example.test`, password: PASSWORD });
        if (user.status !== 201) return;
        got.users.push(user.json!.id!);
        got.sent++;
        const org = await apiCall('POST', '/api/v1/organizations', adminToken, { name: `Org ${n}`, slug: `org-${n}`, owner_id: user.json!.id });
        if (org.status === 201) got.orgs.push({ id: org.json!.id!, owner: user.json!.id! });
      }),
    ];
    await sleep(LOAD_MS);
    kill();
    stopped = true;
    await Promise.all(loops);
    expect(got.failures).to.deep.equal([]);
    return { got, chains, adminToken };
  }

  /** After the restart: everything received is honoured, nothing valid twice, nothing half-written. */
  async function verify(report: Awaited<ReturnType<typeof loadAndKill>>, label: string) {
    verifying = true;
    const { got, chains } = report;
    const lost: string[] = [];
    let checked = 0;
    /** Codes the kill cut after their redemption committed: presenting one again is reuse. */
    let codesLost = 0;
    // Rotations the kill cut after they committed: the client holds a refresh token that is
    // already rotated, which only REFRESH_REUSE_WINDOW keeps from being reuse.
    const probe = openDatabase(loadConfig(env).database);
    const inFlight = Number((await probe('provider_state').where({ model: 'RefreshToken' }).whereIn('id', chains.map((c) => storedStateId('RefreshToken', c.refresh))).whereNotNull('consumed_at').count({ n: '*' }).first())!.n);
    await probe.destroy();
    // Every chain's last refresh token works (a rotation whose response the kill lost is a retry
    // within REFRESH_REUSE_WINDOW), and so does the token it gives. First, as a client would retry
    // at once: the window is counted from the rotation.
    for (const [i, chain] of chains.entries()) {
      checked++;
      const next = await token(web, { grant_type: 'refresh_token', refresh_token: chain.refresh });
      if (next.status !== 200) {
        lost.push(`chain ${i} refresh token: ${JSON.stringify(next.body)}`);
        continue;
      }
      const after = await token(web, { grant_type: 'refresh_token', refresh_token: next.body.refresh_token! });
      expect(after.status, JSON.stringify(after.body)).to.equal(200);
    }

    const adminToken = (await token(ops, { grant_type: 'client_credentials', scope: 'admin:read admin:write', resource: `${env.ISSUER}/api` })).body.access_token!;
    for (const t of got.ccTokens) {
      checked++;
      if (!(await active(machine, t))) lost.push(`client-credentials access token ${t.slice(-8)}`);
    }
    for (const [i, chain] of chains.entries()) {
      for (const t of chain.accessTokens) {
        checked++;
        if (!(await active(web, t))) lost.push(`chain ${i} access token`);
      }
    }
    for (const c of got.codes) {
      checked++;
      if (c.redeemed) {
        if (!(await active(web, c.redeemed.access_token))) lost.push('code-flow access token');
      } else {
        // Received, not redeemed before the kill (or its response was lost: then it was redeemed).
        const res = await exchange(c);
        if (res.status !== 200) codesLost++;
        if (res.status !== 200 && res.body.error_description !== 'grant request is invalid') lost.push(`code: ${JSON.stringify(res.body)}`);
      }
    }
    for (const id of got.users) {
      checked++;
      if ((await apiCall('GET', `/api/v1/users/${id}`, adminToken)).status !== 200) lost.push(`user ${id}`);
    }
    for (const org of got.orgs) {
      checked++;
      if ((await apiCall('GET', `/api/v1/organizations/${org.id}`, adminToken)).status !== 200) lost.push(`organization ${org.id}`);
    }
    // No half-written rows.
    const config = loadConfig(env);
    const knex = openDatabase(config.database);
    try {
      const rows = await knex('provider_state').select('model', 'id', 'payload', 'grant_id');
      for (const row of rows as { model: string; id: string; payload: string; grant_id: string | null }[]) expect(() => JSON.parse(row.payload), `${row.model} ${row.id}`).to.not.throw();
      const grants = new Set((rows as { model: string; id: string }[]).filter((r) => r.model === 'Grant').map((r) => r.id));
      const orphans = (rows as { model: string; grant_id: string | null }[]).filter((r) => r.grant_id && r.model !== 'Grant' && !grants.has(r.grant_id));
      expect(orphans.map((r) => r.model), 'tokens whose grant is missing').to.deep.equal([]);
      const accounts = new Set((await knex('accounts').pluck('id')) as string[]);
      const orgs = new Set((await knex('organizations').pluck('id')) as string[]);
      const members = (await knex('organization_members').select('organization_id', 'account_id')) as { organization_id: string; account_id: string | null }[];
      for (const m of members) {
        expect(orgs.has(m.organization_id), 'membership of a missing organization').to.equal(true);
        if (m.account_id) expect(accounts.has(m.account_id), 'membership of a missing account').to.equal(true);
      }
      // An organization created with an owner exists with its owner, or not at all.
      for (const id of orgs) expect(members.some((m) => m.organization_id === id), `organization ${id} without its owner`).to.equal(true);
      const audits = (await knex('audit_events').select('at', 'type', 'details')) as { at: string | null; type: string | null; details: string | null }[];
      for (const a of audits) {
        expect(a.at && a.type, 'audit row without time or type').to.be.a('string');
        if (a.details !== null) expect(() => JSON.parse(a.details!)).to.not.throw();
      }
      console.log(`      ${label} (${config.database.client}): ${got.sent} requests sent, ${got.rotations} refresh rotations, ${got.ccTokens.length} client-credentials tokens, ${got.codes.length} codes (${codesLost} redeemed with the response lost), ${got.users.length} users and ${got.orgs.length} organizations created; ${inFlight} of ${chains.length} refresh chains had a rotation committed whose response was lost; ${checked} received artifacts checked after the kill, ${lost.length} lost; ${rows.length} provider rows and ${audits.length} audit rows consistent`);
    } finally {
      await knex.destroy();
    }
    expect(lost).to.deep.equal([]);
    // No refresh token valid twice: once its successor was used, the old one is reuse (and the
    // grant, which every chain here shares, is revoked by that rule).
    for (const [i, chain] of chains.entries()) {
      const twice = await token(web, { grant_type: 'refresh_token', refresh_token: chain.refresh });
      expect(twice.body.error, `chain ${i}: a refresh token valid twice`).to.equal('invalid_grant');
    }
  }

  it('loses nothing a client received when the single process is killed', async () => {
    const report = await loadAndKill(() => latch!.child.kill('SIGKILL'));
    await latch!.stop('SIGKILL');
    latch = await spawnLatch(env);
    await verify(report, 'single process');
  });

  it('loses nothing a client received when one of WEB_CONCURRENCY=2 workers is killed', async () => {
    await latch!.stop('SIGKILL');
    latch = await spawnLatch({ ...env, WEB_CONCURRENCY: '2' }, { readyTimeoutMs: 45_000 });
    const primary = latch.child.pid!;
    const report = await loadAndKill(() => {
      const [worker] = childrenOf(primary);
      expect(worker, 'a worker to kill').to.be.a('number');
      process.kill(worker!, 'SIGKILL');
    });
    // The primary replaces the worker; both serve the port again.
    for (let i = 0; i < 50 && childrenOf(primary).length < 2; i++) await sleep(100);
    expect(childrenOf(primary)).to.have.length(2);
    await verify(report, 'one of two workers');
  });
});
