/**
 * Starting the two servers under test: Latch (compiled, `node dist/src/index.js`, configured
 * through the `latch` CLI on a fresh database) and the bare oidc-provider (dist/bench/bare-server.js).
 */
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import pg from 'pg';

import { DEFAULT_ARGON2 } from '../src/services/passwords.js';
import { freePort, spawnNode, waitReady, type Child } from './procs.js';
import type { BareConfig, ClientCreds, Target } from './types.js';

/** The repository root (this file runs as dist/bench/servers.js). */
export const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');

export const REDIRECT_URI = 'http://127.0.0.1:9/callback';
export const USER_PASSWORD = 'correct horse battery staple';

/** The argon2id cost of the users' hashes and of password_verify: Latch's default unless ARGON2_MEMORY_KIB or ARGON2_TIME_COST is set. */
export const BENCH_ARGON2 = {
  ...DEFAULT_ARGON2,
  ...(process.env.ARGON2_MEMORY_KIB ? { memoryCost: Number(process.env.ARGON2_MEMORY_KIB) } : {}),
  ...(process.env.ARGON2_TIME_COST ? { timeCost: Number(process.env.ARGON2_TIME_COST) } : {}),
};

/**
 * The sign-in accounts: one per concurrent code flow. Latch's login guard reserves an attempt
 * per account+IP before verifying the password, so many parallel sign-ins of ONE account from
 * one IP are refused (429) by design; distinct accounts measure the login itself.
 */
export const benchUsers = (n: number) => Array.from({ length: Math.max(1, n) }, (_, i) => ({ email: `bench.user${i}@example.test`, password: USER_PASSWORD, name: `Bench User ${i}` }));
export const API_ES256 = 'https://es256.bench.example';
export const API_RS256 = 'https://rs256.bench.example';
const SECRET = `bench-${randomBytes(24).toString('base64url')}`;

export interface Database {
  kind: 'sqlite' | 'postgres';
  url: string;
  /** SQLite file path (sqlite only). */
  file?: string;
  drop(): Promise<void>;
}

const isPostgresUrl = (u: string | undefined): u is string => /^postgres(ql)?:\/\//.test(u ?? '');

/** A fresh SQLite file in `dir`, or (DATABASE_URL=postgres://...) a new database on that server. */
export async function freshDatabase(dir: string, forceSqlite = false): Promise<Database> {
  const base = process.env.DATABASE_URL;
  if (!forceSqlite && isPostgresUrl(base)) {
    const url = new URL(base);
    if (url.hostname !== '127.0.0.1' && url.hostname !== 'localhost') throw new Error('the bench only uses a PostgreSQL server on 127.0.0.1 (DATABASE_URL names another host)');
    const name = `latch_bench_${randomBytes(6).toString('hex')}`;
    const admin = new pg.Client({ connectionString: base });
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE ${name}`);
    } finally {
      await admin.end();
    }
    url.pathname = `/${name}`;
    let dropped = false;
    return {
      kind: 'postgres',
      url: url.toString(),
      async drop() {
        if (dropped) return;
        dropped = true;
        const c = new pg.Client({ connectionString: base });
        await c.connect();
        try {
          await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        } finally {
          await c.end();
        }
      },
    };
  }
  const d = mkdtempSync(join(dir, 'db-'));
  const file = join(d, 'latch.sqlite');
  return { kind: 'sqlite', url: `sqlite:${file}`, file, drop: async () => rmSync(d, { recursive: true, force: true }) };
}

export interface LatchEnv {
  env: Record<string, string>;
  url: string;
}

export async function latchEnv(db: Database, dataDir: string, extra: Record<string, string> = {}): Promise<LatchEnv> {
  const port = await freePort();
  mkdirSync(dataDir, { recursive: true });
  const url = `http://127.0.0.1:${port}`;
  const env: Record<string, string> = { PORT: String(port), ISSUER: url, DATABASE_URL: db.url, LATCH_SECRET: SECRET, DATA_DIR: dataDir, LOG_LEVEL: 'warn', ...extra };
  // Lets an operator shorten the purge interval to measure its effect (see --seed-rows).
  if (process.env.PURGE_INTERVAL) env.PURGE_INTERVAL = process.env.PURGE_INTERVAL;
  // The users' hashes (made by the CLI with this environment) at BENCH_ARGON2's cost.
  env.ARGON2_MEMORY_KIB = String(BENCH_ARGON2.memoryCost);
  env.ARGON2_TIME_COST = String(BENCH_ARGON2.timeCost);
  return { env, url };
}

/** Runs `latch ARGS...` (bin/latch.js) with the server's environment; returns its JSON output. */
export async function latchCli(env: Record<string, string>, ...args: string[]): Promise<Record<string, unknown>> {
  return new Promise((resolvePromise, reject) => {
    execFile(process.execPath, [join(ROOT, 'bin/latch.js'), ...args], { env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) {
        reject(new Error(`latch ${args.slice(0, 2).join(' ')} failed: ${stderr.trim() || err.message}`));
        return;
      }
      resolvePromise(JSON.parse(stdout) as Record<string, unknown>);
    });
  });
}

const creds = (j: Record<string, unknown>): ClientCreds => ({ client_id: String(j.client_id), client_secret: String(j.client_secret) });

/** Creates `userCount` users, both resources and the four clients through the CLI. */
export async function setupLatch(le: LatchEnv, userCount: number): Promise<Target> {
  const { env } = le;
  const users = benchUsers(userCount);
  // Migrate once first: concurrent first-time migrations race on a fresh PostgreSQL database.
  await latchCli(env, 'migrate');
  // Then four CLI processes at a time (each hashes one password).
  for (let i = 0; i < users.length; i += 4) {
    await Promise.all(users.slice(i, i + 4).map((u) => latchCli(env, 'users', 'create', '--email', u.email, '--password', u.password, '--name', u.name)));
  }
  await latchCli(env, 'resources', 'create', '--identifier', API_ES256, '--scope', 'read', '--alg', 'ES256', '--name', 'ES256 API');
  await latchCli(env, 'resources', 'create', '--identifier', API_RS256, '--scope', 'read', '--alg', 'RS256', '--name', 'RS256 API');
  const ccEs256 = creds(await latchCli(env, 'clients', 'create', '--name', 'cc-es256', '--grant', 'client_credentials', '--resource', API_ES256, '--scope', 'read'));
  const ccRs256 = creds(await latchCli(env, 'clients', 'create', '--name', 'cc-rs256', '--grant', 'client_credentials', '--resource', API_RS256, '--scope', 'read'));
  const introspector = creds(await latchCli(env, 'clients', 'create', '--name', 'es256-introspector', '--grant', 'client_credentials', '--resource', API_ES256));
  const web = creds(await latchCli(env, 'clients', 'create', '--name', 'first-party web', '--first-party', '--redirect-uri', REDIRECT_URI, '--scope', 'openid profile email offline_access'));
  return { kind: 'latch', url: le.url, ccEs256, ccRs256, introspector, web, redirectUri: REDIRECT_URI, users: users.map(({ email, password }) => ({ email, password })) };
}

export interface Started {
  child: Child;
  /** ms from spawn to the first 200 of the readiness URL. */
  startupMs: number;
}

/** Spawns the compiled Latch (after `nodeArgs`, e.g. --cpu-prof) and waits for /readyz 200. */
export async function startLatch(le: LatchEnv, nodeArgs: string[] = []): Promise<Started> {
  const t0 = performance.now();
  const child = spawnNode([...nodeArgs, join(ROOT, 'dist/src/index.js')], le.env, { cwd: ROOT });
  try {
    const startupMs = await waitReady(`${le.url}/readyz`, child, t0);
    return { child, startupMs };
  } catch (err) {
    await child.stop();
    throw err;
  }
}

/** Spawns the bare oidc-provider with equivalent clients and resources; returns its Target. */
export async function startBare(userCount: number, nodeArgs: string[] = []): Promise<{ child: Child; target: Target }> {
  const users = benchUsers(userCount);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const client = (name: string) => ({ client_id: `${name}-${randomBytes(8).toString('base64url')}`, client_secret: randomBytes(32).toString('base64url') });
  const ccEs256 = client('cc-es256');
  const ccRs256 = client('cc-rs256');
  const introspector = client('introspector');
  const web = client('web');
  const machine = (c: ClientCreds, resource: string, scopes: string[]) => ({ ...c, grant_types: ['client_credentials'], redirect_uris: [], scope: 'openid', allowed_scopes: scopes, allowed_resources: [resource], first_party: false });
  const config: BareConfig = {
    port,
    issuer: url,
    resources: [
      { identifier: API_ES256, scopes: ['read'], alg: 'ES256' },
      { identifier: API_RS256, scopes: ['read'], alg: 'RS256' },
    ],
    clients: [
      machine(ccEs256, API_ES256, ['read']),
      machine(ccRs256, API_RS256, ['read']),
      machine(introspector, API_ES256, []),
      { ...web, grant_types: ['authorization_code', 'refresh_token'], redirect_uris: [REDIRECT_URI], scope: 'openid profile email offline_access', allowed_scopes: ['openid', 'profile', 'email', 'offline_access'], allowed_resources: [], first_party: true },
    ],
    users: users.map((u) => ({ id: randomUUID(), email: u.email, name: u.name })),
  };
  const t0 = performance.now();
  const child = spawnNode([...nodeArgs, join(ROOT, 'dist/bench/bare-server.js')], { BARE_CONFIG: JSON.stringify(config), NODE_ENV: 'development' }, { cwd: ROOT });
  try {
    await waitReady(`${url}/.well-known/openid-configuration`, child, t0);
  } catch (err) {
    await child.stop();
    throw err;
  }
  return { child, target: { kind: 'bare', url, ccEs256, ccRs256, introspector, web, redirectUri: REDIRECT_URI, users: users.map(({ email, password }) => ({ email, password })) } };
}
