/**
 * `npm run bench`: throughput and latency of Latch against a bare oidc-provider on this machine.
 *
 * Latch (the compiled server, `node dist/src/index.js`) runs as a child process on a fresh
 * database (a temp SQLite file, or with DATABASE_URL=postgres://... a new PostgreSQL database on
 * that server, dropped at the end), configured through the `latch` CLI. The bare oidc-provider
 * (dist/bench/bare-server.js: plain Koa, default in-memory adapter, equivalent configuration)
 * runs as another child process. The servers are measured one after the other, never at the same
 * time; the load comes from this process (autocannon, or our own bounded loop for code flows)
 * over loopback. Every child is killed and every temp file and database removed at the end, also
 * on error or Ctrl-C.
 *
 *   npm run bench -- [--duration S] [--connections N] [--scenario NAME]... [--seed-rows]
 *                    [--workers N] [--scaling] [--json] [--short]
 *
 * `--short` is the form CI runs: a few seconds per scenario, no waiting for a quiet machine, one
 * start-up timing; it exits 1 when any request failed or a scenario completed nothing, never
 * because of a ratio (ratios on a shared CI machine are noise).
 *
 * PURGE_INTERVAL in the environment is passed on to Latch (to measure a purge under load).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import argon2 from 'argon2';

import { loop } from './load.js';
import { cpuMs, cpuMsOfCommand, freePort, killAllSync, loadAverage, machineBusyMs, rssMb, sleep, stopAll } from './procs.js';
import { HTTP_SCENARIOS, prepare, SCENARIOS, type Runner, type ScenarioName } from './scenarios.js';
import { countState, SEED, seedRows } from './seed.js';
import { BENCH_ARGON2, freshDatabase, latchEnv, setupLatch, startBare, startLatch, USER_PASSWORD, type Database, type LatchEnv, type Started } from './servers.js';
import type { Measurement, Target } from './types.js';

interface Options {
  duration: number;
  connections: number;
  scenarios: ScenarioName[];
  seedRows: boolean;
  workers: number;
  scaling: boolean;
  json: boolean;
  short: boolean;
}

/** BENCH_NODE_ARGS (e.g. `--cpu-prof --cpu-prof-dir=prof`) is passed to both measured servers. */
const PROFILE_ARGS = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);

const USAGE = 'usage: npm run bench -- [--duration SECONDS] [--connections N] [--scenario NAME]... [--seed-rows] [--workers N] [--scaling] [--json] [--short]';

/** `--short`: seconds per scenario unless --duration says otherwise. */
const SHORT_DURATION = 2;

class UsageError extends Error {}

function parseOptions(argv: string[]): Options {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        duration: { type: 'string' },
        connections: { type: 'string' },
        scenario: { type: 'string', multiple: true },
        'seed-rows': { type: 'boolean' },
        workers: { type: 'string' },
        scaling: { type: 'boolean' },
        json: { type: 'boolean' },
        short: { type: 'boolean' },
      },
    }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message.split('\n')[0]} (${USAGE})`);
  }
  const int = (v: string | undefined, flag: string, fallback: number, min: number, max: number) => {
    if (v === undefined) return fallback;
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new UsageError(`--${flag} must be a whole number from ${min} to ${max} (got "${v}")`);
    return Number(v);
  };
  const scenarios = values.scenario ?? [...SCENARIOS];
  for (const s of scenarios) {
    if (!(SCENARIOS as readonly string[]).includes(s)) throw new UsageError(`unknown --scenario "${s}" (one of ${SCENARIOS.join(', ')})`);
  }
  return {
    duration: int(values.duration, 'duration', values.short ? SHORT_DURATION : 10, 1, 3600),
    connections: int(values.connections, 'connections', 10, 1, 1000),
    scenarios: SCENARIOS.filter((s) => scenarios.includes(s)),
    seedRows: values['seed-rows'] ?? false,
    workers: int(values.workers, 'workers', 1, 1, 64),
    scaling: values.scaling ?? false,
    json: values.json ?? false,
    short: values.short ?? false,
  };
}

const log = (s: string) => process.stderr.write(`${s}\n`);

/**
 * Warm-up before each measurement, as long as the measurement itself up to 10 s: caches,
 * connection pools and above all V8's JIT. Under load from a cold start, V8 still compiles
 * (TurboFan, on background threads whose CPU counts here) for about 8 s: counted with
 * --trace-opt on Latch, 238, 116, 37, 5, 1 compilations in successive 2 s windows. A shorter
 * warm-up charges that one-off cost to the first scenario measured, of the larger code base most.
 */
const warmupSeconds = (opts: Pick<Options, 'duration' | 'short'>) => (opts.short ? 1 : Math.min(10, opts.duration));

/**
 * This 2-core machine may be shared: before a measurement, waits (up to 30 s) until other
 * programs use less than 10% of its CPU for a whole second.
 */
async function waitForQuietMachine(serverCpu: () => number, opts: Pick<Options, 'short'>): Promise<void> {
  if (opts.short) return;
  for (let second = 0; second < 30; second++) {
    const [busy0, server0, own0] = [machineBusyMs(), serverCpu(), process.cpuUsage()];
    await sleep(1000);
    const own = process.cpuUsage(own0);
    const foreign = machineBusyMs() - busy0 - (serverCpu() - server0) - (own.user + own.system) / 1000;
    if (foreign < 0.1 * 1000 * cpus().length) return;
    if (second === 0) log(`  waiting for other processes to leave the CPU (${Math.round(foreign / 10 / cpus().length)}% busy; up to 30 s)`);
  }
  log('  the machine stayed busy: measuring anyway');
}

/** Server CPU time of process `pid` (plus PostgreSQL's with `withPostgres`), ms. */
const serverCpuOf = (pid: number, withPostgres: boolean) => () => cpuMs(pid) + (withPostgres ? cpuMsOfCommand('postgres') : 0);

/** One measured run: the load's figures plus the server's and this process's CPU time. */
async function segment(run: Runner, seconds: number, serverCpu: () => number, pauseMs = 300): Promise<{ m: Measurement; cpu: number; own: number }> {
  const [cpu0, own0, busy0, t0] = [serverCpu(), process.cpuUsage(), machineBusyMs(), performance.now()];
  const m = await run(seconds);
  const cpu = serverCpu() - cpu0;
  const ownUsage = process.cpuUsage(own0);
  const own = (ownUsage.user + ownUsage.system) / 1000;
  // CPU that neither the server nor this process used: another program competing for the cores.
  const foreign = machineBusyMs() - busy0 - cpu - own;
  const share = foreign / ((performance.now() - t0) * cpus().length);
  if (share > 0.1) log(`  warning: ${Math.round(share * 100)}% of the machine's CPU went to other processes during this measurement; its figures are unreliable`);
  await sleep(pauseMs);
  return { m, cpu, own };
}

/** Segments of one server summed into one measurement (p50 weighted by operations, p99 the worst). */
function combine(parts: { m: Measurement; cpu: number; own: number }[]): Measurement {
  const ok = parts.reduce((n, p) => n + p.m.ok, 0);
  const seconds = parts.reduce((n, p) => n + p.m.seconds, 0);
  const per = (ms: number) => Math.round((ms / ok) * 1000) / 1000;
  const round2 = (n: number) => Math.round(n * 100) / 100;
  return {
    rps: seconds > 0 ? Math.round((ok / seconds) * 10) / 10 : 0,
    p50: ok ? round2(parts.reduce((n, p) => n + p.m.p50 * p.m.ok, 0) / ok) : 0,
    p99: Math.max(...parts.map((p) => p.m.p99)),
    errors: parts.reduce((n, p) => n + p.m.errors, 0),
    ok,
    seconds,
    ...(ok ? { cpuMsPerOp: per(parts.reduce((n, p) => n + p.cpu, 0)), clientCpuMsPerOp: per(parts.reduce((n, p) => n + p.own, 0)) } : {}),
  };
}

/** Warm-up, then the measured run, on one server. */
async function measure(run: Runner, opts: Options, pid: number, withPostgres: boolean): Promise<Measurement> {
  const serverCpu = serverCpuOf(pid, withPostgres);
  await waitForQuietMachine(serverCpu, opts);
  await run(warmupSeconds(opts));
  return combine([await segment(run, opts.duration, serverCpu)]);
}

/**
 * Latch and the bare server on the same scenario, interleaved: both warm up, then they take
 * turns in segments of about a second (Latch, bare, bare, Latch, Latch, bare, …), each getting
 * `duration` seconds in all. The host's speed drifts from second to second (other tenants);
 * short alternating turns expose both servers to the same drift, so their ratio holds.
 */
async function measurePair(latch: { run: Runner; pid: number }, bare: { run: Runner; pid: number }, opts: Options, withPostgres: boolean): Promise<[Measurement, Measurement]> {
  const latchCpu = serverCpuOf(latch.pid, withPostgres);
  const bareCpu = serverCpuOf(bare.pid, false);
  await waitForQuietMachine(() => latchCpu() + bareCpu(), opts);
  await latch.run(warmupSeconds(opts));
  await bare.run(warmupSeconds(opts));
  const turns = Math.max(2, Math.round(opts.duration));
  const seconds = opts.duration / turns;
  const l: Awaited<ReturnType<typeof segment>>[] = [];
  const b: Awaited<ReturnType<typeof segment>>[] = [];
  for (let i = 0; i < turns; i++) {
    const latchFirst = i % 2 === 0;
    if (latchFirst) l.push(await segment(latch.run, seconds, latchCpu, 50));
    b.push(await segment(bare.run, seconds, bareCpu, 50));
    if (!latchFirst) l.push(await segment(latch.run, seconds, latchCpu, 50));
  }
  return [combine(l), combine(b)];
}

const fmtMeasurement = (m: Measurement) => `${m.rps} req/s, p50 ${m.p50} ms, p99 ${m.p99} ms, errors ${m.errors}${m.cpuMsPerOp !== undefined ? `, server CPU ${m.cpuMsPerOp} ms/op` : ''}${m.clientCpuMsPerOp !== undefined ? `, load-generator CPU ${m.clientCpuMsPerOp} ms/op` : ''}`;

/** Runs the given HTTP scenarios against one server (process `pid`), one after the other. */
async function runScenarios(target: Target, pid: number, names: ScenarioName[], opts: Options, withPostgres = false): Promise<Map<ScenarioName, Measurement>> {
  const out = new Map<ScenarioName, Measurement>();
  for (const name of names) {
    if (name === 'password_verify') continue;
    const run = await prepare(name, target, opts.connections, log);
    const m = await measure(run, opts, pid, withPostgres);
    log(`  ${target.kind} ${name}: ${fmtMeasurement(m)}`);
    out.set(name, m);
  }
  return out;
}

/** Runs the given HTTP scenarios on Latch and the bare server, interleaved (measurePair). */
async function runPairs(latch: { target: Target; pid: number }, bare: { target: Target; pid: number }, names: ScenarioName[], opts: Options, withPostgres: boolean): Promise<{ latch: Map<ScenarioName, Measurement>; bare: Map<ScenarioName, Measurement> }> {
  const out = { latch: new Map<ScenarioName, Measurement>(), bare: new Map<ScenarioName, Measurement>() };
  for (const name of names) {
    if (name === 'password_verify') continue;
    const latchRun = await prepare(name, latch.target, opts.connections, log);
    const bareRun = await prepare(name, bare.target, opts.connections, log);
    const [l, b] = await measurePair({ run: latchRun, pid: latch.pid }, { run: bareRun, pid: bare.pid }, opts, withPostgres);
    log(`  latch ${name}: ${fmtMeasurement(l)}`);
    log(`  bare ${name}: ${fmtMeasurement(b)}`);
    out.latch.set(name, l);
    out.bare.set(name, b);
  }
  return out;
}

/** argon2id verify at Latch's configured cost, in this process, `connections` at a time. */
async function passwordVerify(opts: Options): Promise<Measurement> {
  const hash = await argon2.hash(USER_PASSWORD, { type: argon2.argon2id, ...BENCH_ARGON2 });
  const op = async () => {
    if (!(await argon2.verify(hash, USER_PASSWORD))) throw new Error('argon2 verify failed');
  };
  await loop(opts.connections, warmupSeconds(opts), op);
  const cpu0 = process.cpuUsage();
  const m = await loop(opts.connections, opts.duration, op);
  const cpu = process.cpuUsage(cpu0);
  return { ...m, ...(m.ok ? { cpuMsPerOp: Math.round(((cpu.user + cpu.system) / 1000 / m.ok) * 1000) / 1000 } : {}) };
}

/** Times `count` starts of Latch on an existing SQLite database (schema and keys in place). */
async function measureStartup(tmp: string, count = 3): Promise<{ median: number; all: number[] }> {
  const db = await freshDatabase(tmp, true);
  try {
    const le = await latchEnv(db, join(tmp, 'startup-data'));
    const first = await startLatch(le); // creates schema and signing keys
    await first.child.stop();
    const all: number[] = [];
    for (let i = 0; i < count; i++) {
      const s = await startLatch(le);
      all.push(Math.round(s.startupMs));
      await s.child.stop();
    }
    const sorted = [...all].sort((a, b) => a - b);
    return { median: sorted[Math.floor(sorted.length / 2)]!, all };
  } finally {
    await db.drop();
  }
}

function machine() {
  const c = cpus();
  return { cpu: c[0]?.model.trim() ?? 'unknown', cores: c.length, memory_gb: Math.round((totalmem() / 1024 ** 3) * 10) / 10, node: process.version, platform: `${process.platform}-${process.arch}`, loadavg_1m_at_start: loadAverage() };
}

interface Row {
  name: ScenarioName;
  /** Text table only (not in --json): server CPU ms per operation. */
  cpu?: { latch?: number | undefined; bare?: number | undefined };
  db: string;
  latch_rps: number;
  bare_rps: number | null;
  ratio: number | null;
  p50_ms: number;
  p99_ms: number;
  errors: number;
}

function table(rows: Row[], bareErrors: Map<ScenarioName, number>): string {
  // The CPU ratio (bare CPU per operation ÷ Latch's) is the throughput ratio each server would
  // reach with the cores to itself: steadier than req/s on a small or shared machine.
  const head = ['scenario', 'db', 'Latch req/s', 'bare req/s', 'Latch ÷ bare', 'p50 ms', 'p99 ms', 'errors', 'Latch CPU ms/op', 'bare CPU ms/op', 'CPU ratio'];
  const cpu = (v: number | undefined) => (v === undefined ? '—' : v.toFixed(2));
  const cpuRatio = (r: Row) => (r.cpu?.latch && r.cpu.bare ? (r.cpu.bare / r.cpu.latch).toFixed(2) : '—');
  const body = rows.map((r) => [r.name, r.db, r.latch_rps.toFixed(1), r.bare_rps === null ? '—' : r.bare_rps.toFixed(1), r.ratio === null ? '—' : r.ratio.toFixed(2), r.p50_ms.toFixed(2), r.p99_ms.toFixed(2), String(r.errors), cpu(r.cpu?.latch), cpu(r.cpu?.bare), cpuRatio(r)]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  const lines = [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)];
  const withBareErrors = [...bareErrors].filter(([, n]) => n > 0);
  if (withBareErrors.length) lines.push(`(bare server errors: ${withBareErrors.map(([s, n]) => `${s} ${n}`).join(', ')})`);
  return lines.join('\n');
}

async function main(): Promise<number> {
  let opts: Options;
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`bench: ${err.message}\n`);
      return 2;
    }
    throw err;
  }

  const tmp = mkdtempSync(join(tmpdir(), 'latch-bench-'));
  const databases = new Set<Database>();
  const cleanup = async () => {
    await stopAll();
    await Promise.allSettled([...databases].map((d) => d.drop()));
    rmSync(tmp, { recursive: true, force: true });
  };
  process.once('exit', () => {
    killAllSync();
    rmSync(tmp, { recursive: true, force: true });
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      log(`bench: ${signal}, stopping`);
      void cleanup().finally(() => process.exit(130));
    });
  }

  try {
    const m = machine();
    log(`bench: ${m.cpu}, ${m.cores} cores, ${m.memory_gb} GB, node ${m.node}; ${opts.duration} s per scenario (+${warmupSeconds(opts)} s warm-up), ${opts.connections} connections`);

    log('bench: Latch startup on an existing SQLite database');
    const startup = await measureStartup(tmp, opts.short ? 1 : 3);
    log(`  startup_ms ${startup.median} (runs: ${startup.all.join(', ')})`);

    const httpNames = opts.scenarios.filter((s): s is ScenarioName => (HTTP_SCENARIOS as readonly string[]).includes(s));
    const db = await freshDatabase(tmp);
    databases.add(db);
    const dbLabel = db.kind;
    const workersEnv = (n: number): Record<string, string> => (n > 1 ? { WEB_CONCURRENCY: String(n) } : {});
    log(`bench: Latch on a fresh ${db.kind} database${opts.workers > 1 ? `, WEB_CONCURRENCY=${opts.workers}` : ''}`);
    const le: LatchEnv = await latchEnv(db, join(tmp, 'latch-data'), workersEnv(opts.workers));
    const target = await setupLatch(le, opts.scenarios.includes('code_flow') ? opts.connections : 1);
    let latch = await startLatch(le, PROFILE_ARGS);
    await sleep(2000);
    const idleRss = rssMb(latch.child.pid);
    log(`  idle_rss_mb ${idleRss}`);
    // The bare oidc-provider runs alongside, idle while Latch is loaded and the reverse.
    let latchResults = new Map<ScenarioName, Measurement>();
    const bareResults = new Map<ScenarioName, Measurement>();
    if (httpNames.length) {
      log('bench: bare oidc-provider (in-memory adapter) started alongside; each scenario alternates Latch, bare, bare, Latch');
      const bare = await startBare(opts.scenarios.includes('code_flow') ? opts.connections : 1, PROFILE_ARGS);
      try {
        const pairs = await runPairs({ target, pid: latch.child.pid }, { target: bare.target, pid: bare.child.pid }, httpNames, opts, db.kind === 'postgres');
        latchResults = pairs.latch;
        for (const [name, m] of pairs.bare) bareResults.set(name, m);
      } finally {
        await bare.child.stop();
      }
    }
    await latch.child.stop();

    const seeded = new Map<ScenarioName, Measurement>();
    if (opts.seedRows && httpNames.length) {
      log(`bench: seeding ${SEED.expired.toLocaleString('en')} expired + ${SEED.live.toLocaleString('en')} live provider_state rows and ${SEED.accounts.toLocaleString('en')} accounts (Latch stopped)`);
      const s = await seedRows(db, log);
      log(`  seeded in ${s.seconds} s; Latch restarted on the seeded database`);
      latch = await startLatch(le);
      const before = await countState(db);
      for (const [name, m] of await runScenarios(target, latch.child.pid, httpNames, opts, db.kind === 'postgres')) seeded.set(name, m);
      await latch.child.stop();
      const after = await countState(db);
      log(`  provider_state: ${before.expired.toLocaleString('en')} expired / ${before.live.toLocaleString('en')} live before the seeded measurements, ${after.expired.toLocaleString('en')} / ${after.live.toLocaleString('en')} after${after.expired < before.expired ? ' (the purge ran during the measurements)' : ' (no purge ran during the measurements)'}`);
    }

    let scaling: { workers_1_rps: number; workers_2_rps: number; factor: number } | undefined;
    if (opts.scaling) {
      // One worker and two, side by side on their own ports (same database), measured in
      // alternating segments as Latch and the bare server are: measured one after the other, a
      // drift of the host's speed between the two runs would be read as scaling.
      log('bench: scaling, client_credentials_es256 with WEB_CONCURRENCY=1 and 2 side by side, alternating');
      const started: Started[] = [];
      const sideBySide = async (workers: number) => {
        const port = await freePort();
        const url = `http://127.0.0.1:${port}`;
        const s = await startLatch({ url, env: { ...le.env, PORT: String(port), WEB_CONCURRENCY: String(workers) } });
        started.push(s);
        return { run: await prepare('client_credentials_es256', { ...target, url }, opts.connections, log), pid: s.child.pid };
      };
      try {
        const one = await sideBySide(1);
        const two = await sideBySide(2);
        const [m1, m2] = await measurePair(one, two, opts, db.kind === 'postgres');
        log(`  1 worker: ${fmtMeasurement(m1)}`);
        log(`  2 workers: ${fmtMeasurement(m2)}`);
        scaling = { workers_1_rps: m1.rps, workers_2_rps: m2.rps, factor: Math.round((m2.rps / m1.rps) * 100) / 100 };
      } finally {
        for (const s of started) await s.child.stop();
      }
    }
    await db.drop();
    databases.delete(db);


    let password: Measurement | undefined;
    if (opts.scenarios.includes('password_verify')) {
      log(`bench: password_verify (argon2id m=${BENCH_ARGON2.memoryCost} KiB, t=${BENCH_ARGON2.timeCost}, p=${BENCH_ARGON2.parallelism}) in-process, ${opts.connections} at a time`);
      password = await passwordVerify(opts);
      log(`  password_verify: ${fmtMeasurement(password)}`);
    }

    const rows: Row[] = [];
    const row = (name: ScenarioName, db: string, m: Measurement, bareM: Measurement | undefined): Row => ({
      name,
      db,
      latch_rps: m.rps,
      bare_rps: bareM ? bareM.rps : null,
      ratio: bareM && bareM.rps > 0 ? Math.round((m.rps / bareM.rps) * 100) / 100 : null,
      p50_ms: m.p50,
      p99_ms: m.p99,
      errors: m.errors,
      cpu: { latch: m.cpuMsPerOp, bare: bareM?.cpuMsPerOp },
    });
    for (const name of opts.scenarios) {
      if (name === 'password_verify') {
        if (password) rows.push(row(name, 'none', password, undefined));
        continue;
      }
      rows.push(row(name, dbLabel, latchResults.get(name)!, bareResults.get(name)));
      const s = seeded.get(name);
      if (s) rows.push(row(name, `${dbLabel}+seeded`, s, bareResults.get(name)));
    }
    const bareErrors = new Map([...bareResults].map(([k, v]) => [k, v.errors]));

    const result = { machine: m, scenarios: rows.map(({ cpu: _cpu, ...r }) => r), startup_ms: startup.median, idle_rss_mb: idleRss, ...(scaling ? { scaling } : {}) };
    if (opts.json) {
      process.stdout.write(`${JSON.stringify(result)}\n`);
    } else {
      const out = [
        `machine: ${m.cpu}, ${m.cores} cores, ${m.memory_gb} GB RAM, node ${m.node} (${m.platform}); load average ${m.loadavg_1m_at_start} at start`,
        `load: ${opts.duration} s per scenario after a ${warmupSeconds(opts)} s warm-up, ${opts.connections} connections, loopback; Latch${opts.workers > 1 ? ` WEB_CONCURRENCY=${opts.workers}` : ''} on ${dbLabel}; p50/p99 are Latch's; CPU ms/op = server CPU time (all threads${dbLabel === 'postgres' ? '; Latch\'s includes PostgreSQL\'s' : ''}) per completed operation (password_verify: this process); CPU ratio = bare CPU ÷ Latch CPU per operation`,
        '',
        table(rows, bareErrors),
        '',
        `startup_ms: ${startup.median} (spawn to /readyz 200 on an existing SQLite database; median of ${startup.all.join(', ')})`,
        `idle_rss_mb: ${idleRss}${opts.workers > 1 ? ` (primary + ${opts.workers} workers)` : ''}`,
      ];
      if (scaling) out.push(`scaling: client_credentials_es256 ${scaling.workers_1_rps} req/s with 1 worker, ${scaling.workers_2_rps} req/s with 2 → factor ${scaling.factor}`);
      if (seeded.size) {
        for (const [name, s] of seeded) {
          const e = latchResults.get(name)!;
          out.push(`seeded vs empty: ${name} ${s.rps} vs ${e.rps} req/s (${e.rps > 0 ? (((s.rps - e.rps) / e.rps) * 100).toFixed(1) : '—'}%)`);
        }
      }
      if (password && latchResults.get('code_flow')) {
        const cf = latchResults.get('code_flow')!;
        const more = cf.cpuMsPerOp !== undefined && password.cpuMsPerOp !== undefined ? `; Latch CPU per flow ${cf.cpuMsPerOp} ms vs ${password.cpuMsPerOp} ms per verify (${(cf.cpuMsPerOp - password.cpuMsPerOp).toFixed(2)} ms more)` : '';
        out.push(`code_flow vs password_verify: ${(1000 / cf.rps).toFixed(2)} vs ${(1000 / password.rps).toFixed(2)} ms of wall time per operation at saturation (${(1000 / cf.rps - 1000 / password.rps).toFixed(2)} ms more)${more}; p50 ${cf.p50} vs ${password.p50} ms`);
      }
      process.stdout.write(`${out.join('\n')}\n`);
    }
    if (opts.short) {
      // CI's check: every measured request of both servers answered as expected.
      const failed = [...rows.map((r) => ({ who: `Latch ${r.name} (${r.db})`, errors: r.errors, ok: r.latch_rps > 0 })), ...[...bareResults].map(([name, b]) => ({ who: `bare ${name}`, errors: b.errors, ok: b.ok > 0 }))].filter((f) => f.errors > 0 || !f.ok);
      if (failed.length) {
        log(`bench: failed: ${failed.map((f) => `${f.who}: ${f.errors} errors${f.ok ? '' : ', nothing completed'}`).join('; ')}`);
        return 1;
      }
    }
    return 0;
  } finally {
    await cleanup();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: failed: ${(err instanceof Error ? (err.stack ?? err.message) : String(err)).slice(0, 2000)}\n`);
    process.exit(1);
  },
);
