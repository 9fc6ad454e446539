/**
 * `node dist/bench/compare.js --baseline DIR`: this build of Latch against another one, for a
 * change to the hot path. Both run side by side on one fresh SQLite database (same clients,
 * users and keys), each warms up, then they take turns in one-second segments (this, baseline,
 * baseline, this, …) under the same load, so the host's drift affects both alike. Repeat it:
 * on a shared 2-core host one comparison moves by up to ±4 % between runs.
 *
 *   npm run build && node dist/bench/compare.js --baseline ../latch-main [--scenario NAME]...
 *                                               [--duration SECONDS] [--connections N]
 *
 * DIR is another checkout with its `dist/` built (`npm run build`) and its dependencies
 * installed (or `node_modules` linked to these); it must have the same migrations as this one.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { cpuMs, freePort, killAllSync, sleep, spawnNode, stopAll, waitReady, type Child } from './procs.js';
import { HTTP_SCENARIOS, prepare, type Runner, type ScenarioName } from './scenarios.js';
import { freshDatabase, latchEnv, ROOT, setupLatch } from './servers.js';

const USAGE = 'usage: node dist/bench/compare.js --baseline DIR [--scenario NAME]... [--duration SECONDS] [--connections N]';

type Scenario = Exclude<ScenarioName, 'password_verify'>;

function options(argv: string[]): { baseline: string; scenarios: Scenario[]; duration: number; connections: number } {
  const { values } = parseArgs({ args: argv, strict: true, options: { baseline: { type: 'string' }, scenario: { type: 'string', multiple: true }, duration: { type: 'string' }, connections: { type: 'string' } } });
  if (!values.baseline) throw new Error(`--baseline is required (${USAGE})`);
  const baseline = resolve(values.baseline);
  if (!existsSync(join(baseline, 'dist/src/index.js'))) throw new Error(`${baseline}/dist/src/index.js does not exist: run npm run build there first`);
  const scenarios = (values.scenario ?? ['client_credentials_es256']) as Scenario[];
  for (const s of scenarios) if (!(HTTP_SCENARIOS as readonly string[]).includes(s)) throw new Error(`unknown --scenario "${s}" (one of ${HTTP_SCENARIOS.join(', ')})`);
  const int = (v: string | undefined, flag: string, fallback: number) => {
    if (v === undefined) return fallback;
    if (!/^\d+$/.test(v) || Number(v) < 1) throw new Error(`--${flag} must be a positive whole number (got "${v}")`);
    return Number(v);
  };
  return { baseline, scenarios, duration: int(values.duration, 'duration', 20), connections: int(values.connections, 'connections', 10) };
}

async function main(): Promise<void> {
  const opts = options(process.argv.slice(2));
  const tmp = mkdtempSync(join(tmpdir(), 'latch-compare-'));
  process.once('exit', () => {
    killAllSync();
    rmSync(tmp, { recursive: true, force: true });
  });
  const db = await freshDatabase(tmp, true);
  const le = await latchEnv(db, join(tmp, 'data'));
  const target = await setupLatch(le, opts.scenarios.includes('code_flow') ? opts.connections : 1);
  // Same database, same ISSUER (the database records it); each build on a port of its own.
  const start = async (root: string): Promise<{ child: Child; url: string }> => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const child = spawnNode([join(root, 'dist/src/index.js')], { ...le.env, PORT: String(port) }, { cwd: root });
    await waitReady(`${url}/readyz`, child, performance.now());
    return { child, url };
  };
  const builds = [
    { name: 'this', ...(await start(ROOT)) },
    { name: 'baseline', ...(await start(opts.baseline)) },
  ];
  process.stdout.write(`compare: this build (${ROOT}) against ${opts.baseline}, SQLite, ${opts.connections} connections, ${opts.duration} one-second turns each\n`);
  for (const scenario of opts.scenarios) {
    const runs: Runner[] = [];
    for (const b of builds) runs.push(await prepare(scenario, { ...target, url: b.url }, opts.connections, () => undefined));
    for (const run of runs) await run(8);
    const total = builds.map(() => ({ ok: 0, errors: 0, cpu: 0, seconds: 0 }));
    for (let turn = 0; turn < opts.duration; turn++) {
      const order = turn % 2 === 0 ? [0, 1] : [1, 0];
      for (const i of order) {
        const before = cpuMs(builds[i]!.child.pid);
        const m = await runs[i]!(1);
        total[i]!.cpu += cpuMs(builds[i]!.child.pid) - before;
        total[i]!.ok += m.ok;
        total[i]!.errors += m.errors;
        total[i]!.seconds += m.seconds;
        await sleep(50);
      }
    }
    const [mine, base] = total as [(typeof total)[0], (typeof total)[0]];
    const line = (t: typeof mine) => `${(t.ok / t.seconds).toFixed(1)} req/s, ${((t.cpu / Math.max(1, t.ok)) * 1000).toFixed(1)} µs CPU/op, ${t.errors} errors`;
    process.stdout.write(`${scenario}: this ${line(mine)} | baseline ${line(base)} | this ÷ baseline: req/s ${(mine.ok / mine.seconds / (base.ok / base.seconds)).toFixed(3)}, CPU/op ${(mine.cpu / mine.ok / (base.cpu / base.ok)).toFixed(3)}\n`);
  }
  await stopAll();
  await db.drop();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`compare: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
