import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { freePort } from './server.js';

/**
 * A throwaway PostgreSQL cluster of its own (initdb + pg_ctl) on a free port of 127.0.0.1, so a
 * test may stop, kill and restart it; the machine's shared PostgreSQL is never touched. As root,
 * the server runs as the `postgres` user (PostgreSQL refuses to run as root).
 */
export interface ThrowawayPostgres {
  port: number;
  url: string;
  /** `pg_ctl stop -m <mode>`: `immediate` is a crash as clients see it. */
  stop(mode?: 'immediate' | 'fast'): void;
  /** Starts it again on the same port and data folder; returns once it accepts connections. */
  start(): void;
  /** Whether it was left running. */
  readonly running: boolean;
  /** Stops it (if running) and removes its folder. */
  destroy(): void;
}

/** The folder holding initdb and pg_ctl, or undefined when PostgreSQL's server programs are not installed. */
export function postgresBin(): string | undefined {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).sort((a, b) => Number(b) - Number(a)) : [];
  for (const v of versions) if (existsSync(join(root, v, 'bin', 'initdb'))) return join(root, v, 'bin');
  try {
    const found = execFileSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' }).trim();
    return found ? join(found, '..') : undefined;
  } catch {
    return undefined;
  }
}

export async function startThrowawayPostgres(bin: string): Promise<ThrowawayPostgres> {
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  const dir = mkdtempSync(join(tmpdir(), 'latch-pg-'));
  const data = join(dir, 'data');
  if (root) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(dir, uid, gid);
  }
  const run = (program: string, args: string[]) => {
    const argv = root ? ['-u', 'postgres', '--', join(bin, program), ...args] : args;
    execFileSync(root ? 'runuser' : join(bin, program), argv, { stdio: 'pipe', timeout: 30_000 });
  };
  const port = await freePort();
  run('initdb', ['-D', data, '-U', 'postgres', '-A', 'trust', '--no-sync', '-E', 'UTF8']);
  // Only TCP on 127.0.0.1, the socket in our own folder; fsync off: a test cluster.
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off`;
  const start = () => run('pg_ctl', ['-D', data, '-o', options, '-l', join(dir, 'server.log'), '-w', '-t', '20', 'start']);
  let running = false;
  start();
  running = true;
  return {
    port,
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    get running() {
      return running;
    },
    stop(mode = 'immediate') {
      run('pg_ctl', ['-D', data, '-m', mode, '-w', '-t', '20', 'stop']);
      running = false;
    },
    start() {
      start();
      running = true;
    },
    destroy() {
      try {
        if (running) run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', '-t', '20', 'stop']);
      } finally {
        running = false;
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
