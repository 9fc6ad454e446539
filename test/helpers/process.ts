import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { scanLog, secretsMark } from './secrets-registry.js';
import { freePort, TEST_SECRET } from './server.js';

const ROOT = new URL('../..', import.meta.url).pathname;

export interface LatchProcess {
  port: number;
  base: string;
  child: ChildProcess;
  log(): string;
  /** Sends the signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Starts `src/index.ts` in its own Node process (as `npm start` does) and waits for /readyz.
 * It listens on `env.PORT` when given (a free port otherwise), with ISSUER http://127.0.0.1:PORT
 * unless `env.ISSUER` says otherwise.
 */
export async function spawnLatch(env: Record<string, string>, options: { readyTimeoutMs?: number } = {}): Promise<LatchProcess> {
  const readyTimeoutMs = options.readyTimeoutMs ?? 15_000;
  const port = env.PORT ? Number(env.PORT) : await freePort();
  const mark = secretsMark();
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/index.ts')], {
    env: { ...process.env, PORT: String(port), ISSUER: `http://127.0.0.1:${port}`, LATCH_SECRET: TEST_SECRET, DATA_DIR: mkdtempSync(join(tmpdir(), 'latch-proc-')), LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`latch exited with ${child.exitCode}: ${log}`);
    const ok = await fetch(`${base}/readyz`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) break;
    if (i * 100 > readyTimeoutMs) {
      child.kill('SIGKILL');
      throw new Error(`latch did not become ready: ${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    port,
    base,
    child,
    log: () => log,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null) child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(timer);
      scanLog(log, mark, `latch process ${child.pid}`);
      return code;
    },
  };
}

/**
 * Runs `src/index.ts` (the server) or the compiled `bin/latch.js` (the CLI, after `npm run build`)
 * until it exits, for start-ups that must fail: resolves with the exit code and what it wrote.
 * A server that is still running after `timeoutMs` is killed and reported with code null.
 */
export async function runToExit(what: 'server' | 'cli', env: Record<string, string>, args: string[] = [], timeoutMs = 30_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const argv = what === 'server' ? ['--import', 'tsx', join(ROOT, 'src/index.ts')] : [join(ROOT, 'bin/latch.js'), ...args];
  const child = spawn(process.execPath, argv, {
    env: { ...process.env, PORT: String(await freePort()), LATCH_SECRET: TEST_SECRET, DATA_DIR: mkdtempSync(join(tmpdir(), 'latch-exit-')), LOG_LEVEL: 'info', ...env },
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/**
 * Runs a command (a Python test run, a seed script) to its end without blocking the event loop:
 * a Latch under test may run in this process. Killed after `timeoutMs`; stdout and stderr together.
 */
export function runCommand(cmd: string, args: string[], env: Record<string, string> = {}, timeoutMs = 120_000): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}
