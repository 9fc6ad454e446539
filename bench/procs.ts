/**
 * Child processes of the bench: every server is spawned in its own process group, remembered,
 * and killed (SIGTERM, then SIGKILL) when it is stopped, when the bench ends and when it fails.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';

export interface Child {
  proc: ChildProcess;
  pid: number;
  /** The last lines the process wrote to stderr/stdout (for error messages). */
  tail(): string;
  /** Resolves when the process has exited. */
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

const live = new Set<Child>();

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    // The child leads its own process group (detached): this reaches cluster workers too.
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

/** Spawns `node args...` with exactly `env` (plus PATH/HOME) in a new process group. */
export function spawnNode(args: string[], env: Record<string, string>, options: { cwd?: string; onStdout?: (line: string) => void } = {}): Child {
  const proc = spawn(process.execPath, args, {
    cwd: options.cwd,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  if (proc.pid === undefined) throw new Error(`could not spawn node ${args.join(' ')}`);
  const pid = proc.pid;
  const lines: string[] = [];
  const keep = (chunk: Buffer, stdout: boolean) => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (!line) continue;
      if (stdout) options.onStdout?.(line);
      lines.push(line);
      if (lines.length > 40) lines.shift();
    }
  };
  proc.stdout!.on('data', (c: Buffer) => keep(c, true));
  proc.stderr!.on('data', (c: Buffer) => keep(c, false));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  let stopping: Promise<void> | undefined;
  const child: Child = {
    proc,
    pid,
    tail: () => lines.join('\n'),
    exited,
    stop() {
      stopping ??= (async () => {
        if (proc.exitCode === null && proc.signalCode === null) {
          killGroup(pid, 'SIGTERM');
          const done = await Promise.race([exited.then(() => true), sleep(5000).then(() => false)]);
          if (!done) {
            killGroup(pid, 'SIGKILL');
            await Promise.race([exited, sleep(2000)]);
          }
        }
        // Cluster workers that outlived their primary.
        killGroup(pid, 'SIGKILL');
        live.delete(child);
      })();
      return stopping;
    },
  };
  live.add(child);
  return child;
}

/** Stops every child still running (on exit and on error). */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((c) => c.stop()));
}

/** Synchronous last resort (process 'exit' handler): SIGKILL every remaining group. */
export function killAllSync(): void {
  for (const c of live) killGroup(c.pid, 'SIGKILL');
}

/** Polls `url` until it answers 200; returns the elapsed ms since `since`. */
export async function waitReady(url: string, child: Child, since: number, timeoutMs = 30_000): Promise<number> {
  const deadline = since + timeoutMs;
  for (;;) {
    if (child.proc.exitCode !== null || child.proc.signalCode !== null) {
      throw new Error(`server exited (${child.proc.exitCode ?? child.proc.signalCode}) before it was ready:\n${child.tail()}`);
    }
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === 200) return performance.now() - since;
    } catch {
      // not listening yet
    }
    if (performance.now() > deadline) throw new Error(`server not ready after ${timeoutMs} ms:\n${child.tail()}`);
    await sleep(5);
  }
}

function vmRssKb(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** VmRSS of a process and its descendants (cluster workers), in MB. */
export function rssMb(pid: number): number {
  let kb = 0;
  const stack = [pid];
  while (stack.length) {
    const p = stack.pop()!;
    kb += vmRssKb(p);
    stack.push(...childrenOf(p));
  }
  return Math.round((kb / 1024) * 10) / 10;
}

let clockTicks: number | undefined;

function ticksPerSecond(): number {
  clockTicks ??= (() => {
    try {
      return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      return 100;
    }
  })();
  return clockTicks;
}

/** CPU time the whole machine spent busy (all cores, idle and iowait excluded), in ms. */
export function machineBusyMs(): number {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal
    const busy = f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + (f[7] ?? 0);
    return (busy * 1000) / ticksPerSecond();
  } catch {
    return 0;
  }
}

/** CPU time (user + system, every thread) of a process and its descendants, in ms. */
export function cpuMs(pid: number): number {
  const tps = ticksPerSecond();
  let ticks = 0;
  const stack = [pid];
  while (stack.length) {
    const p = stack.pop()!;
    try {
      // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // gone
    }
    stack.push(...childrenOf(p));
  }
  return (ticks * 1000) / tps;
}

/** CPU time of every process named `comm` (e.g. the PostgreSQL backends serving Latch), in ms. */
export function cpuMsOfCommand(comm: string): number {
  let ticks = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) !== comm) continue;
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // gone
    }
  }
  return (ticks * 1000) / ticksPerSecond();
}

/** The 1-minute load average (another busy process on this 2-core machine skews every figure). */
export function loadAverage(): number {
  try {
    return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
  } catch {
    return 0;
  }
}
