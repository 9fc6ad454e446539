import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import pg from 'pg';

import { freePort } from '../../bench/procs.js';
import { runCli } from '../../src/cli/index.js';
import { loadConfig, type Config } from '../../src/config/index.js';
import { createLogger, type Logger } from '../../src/lib/logger.js';
import { startServer, type RunningServer } from '../../src/server.js';
import { recordSecret, scanDatabase, scanLog, secretsMark } from './secrets-registry.js';

/** True when the suite runs against PostgreSQL (DATABASE_URL=postgres://...). */
export const onPostgres = /^postgres(ql)?:\/\//.test(process.env.DATABASE_URL ?? '');

export interface TestDatabase {
  url: string;
  drop(): Promise<void>;
}

/**
 * A fresh, empty database for one suite: a new SQLite file, or a new PostgreSQL database on the
 * server DATABASE_URL names (dropped afterwards).
 */
export async function freshDatabase(): Promise<TestDatabase> {
  // Before it is dropped, the database is searched for every secret the run used since now.
  const mark = secretsMark();
  if (onPostgres) {
    const base = new URL(process.env.DATABASE_URL!);
    const name = `latch_test_${randomBytes(6).toString('hex')}`;
    const admin = new pg.Client({ connectionString: base.toString() });
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE ${name}`);
    } finally {
      await admin.end();
    }
    const url = new URL(base.toString());
    url.pathname = `/${name}`;
    return {
      url: url.toString(),
      async drop() {
        await scanDatabase(url.toString(), mark, name);
        const c = new pg.Client({ connectionString: base.toString() });
        await c.connect();
        try {
          await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        } finally {
          await c.end();
        }
      },
    };
  }
  const dir = mkdtempSync(join(tmpdir(), 'latch-test-'));
  return {
    url: `sqlite:${join(dir, 'latch.sqlite')}`,
    async drop() {
      await scanDatabase(`sqlite:${join(dir, 'latch.sqlite')}`, mark);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export { freePort };

/** A logger that keeps what it is given, so tests can assert no server error was logged. */
export function recordingLogger(): Logger & { lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const inner = createLogger('info', (line) => {
    lines.push(JSON.parse(line) as Record<string, unknown>);
    if (process.env.LATCH_TEST_LOG) process.stderr.write(line);
  });
  return Object.assign(inner, { lines });
}

export interface TestServer {
  url: string;
  port: number;
  env: Record<string, string>;
  config: Config;
  running: RunningServer;
  logger: ReturnType<typeof recordingLogger>;
  /** Runs the CLI in-process against this server's database. */
  cli(...args: string[]): Promise<{ code: number; json: any; stdout: string; stderr: string }>;
  /** Errors the server logged (must stay empty in a healthy test). */
  errors(): Record<string, unknown>[];
  close(): Promise<void>;
}

export const TEST_SECRET = 'test-secret-0123456789-abcdefghijklmnopqrstuvwxyz';

/** Runs the CLI in-process with the given environment. */
export async function runCliWith(env: Record<string, string>, args: string[]) {
  args.forEach((a, i) => a === '--password' && recordSecret('password', args[i + 1]));
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, env, { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) });
  let json: unknown;
  try {
    json = stdout ? JSON.parse(stdout) : undefined;
  } catch {
    json = undefined;
  }
  for (const item of [json].flat() as Record<string, unknown>[]) {
    recordSecret('client_secret', item?.client_secret);
    recordSecret('mailed_link', item?.invitation_url);
    recordSecret('mailed_link', item?.url);
  }
  return { code, json: json as any, stdout, stderr };
}

/**
 * Starts a real Latch on a free port over real HTTP, on the given database (fresh by default).
 * `close()` stops it and drops the database it created.
 */
export async function startTestServer(options: { database?: TestDatabase; env?: Record<string, string>; changePollMs?: number; keepDatabase?: boolean } = {}): Promise<TestServer & { database: TestDatabase }> {
  const mark = secretsMark();
  const database = options.database ?? (await freshDatabase());
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'latch-data-'));
  const env: Record<string, string> = {
    PORT: String(port),
    ISSUER: `http://127.0.0.1:${port}`,
    DATABASE_URL: database.url,
    LATCH_SECRET: TEST_SECRET,
    DATA_DIR: dataDir,
    LOG_LEVEL: 'info',
    ...options.env,
  };
  const config = loadConfig(env);
  const logger = recordingLogger();
  const running = await startServer(config, { logger, host: '127.0.0.1', changePollMs: options.changePollMs ?? 200 });
  return {
    url: config.issuer,
    port: running.port,
    env,
    config,
    running,
    logger,
    database,
    cli: (...args) => runCliWith(env, args),
    errors: () => logger.lines.filter((l) => l.level === 'error'),
    async close() {
      await running.close();
      scanLog(logger.lines.map((l) => JSON.stringify(l)).join('\n'), mark, `the server on ${config.issuer}`);
      if (!options.keepDatabase && !options.database) await database.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
