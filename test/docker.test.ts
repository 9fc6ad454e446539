import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { expect } from 'chai';
import { parse } from 'yaml';

import { VARIABLES } from '../src/config/index.js';
import { freePort, freshDatabase, TEST_SECRET } from './helpers/server.js';

const ROOT = new URL('..', import.meta.url).pathname;
const run = promisify(execFile);

interface Instruction {
  op: string;
  args: string;
}

/** Dockerfile instructions, with line continuations joined and comments dropped. */
function instructions(text: string): Instruction[] {
  return text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const [op, ...rest] = l.split(/\s+/);
      return { op: op!.toUpperCase(), args: rest.join(' ') };
    });
}

describe('container files (no Docker engine here: parsed and their start command run directly)', () => {
  const dockerfile = instructions(readFileSync(join(ROOT, 'docker/Dockerfile'), 'utf8'));
  const stages = dockerfile.reduce<Instruction[][]>((acc, i) => (i.op === 'FROM' ? [...acc, [i]] : (acc[acc.length - 1]!.push(i), acc)), []);
  const runtime = stages[stages.length - 1]!;

  it('Dockerfile: multi-stage, production dependencies, non-root, healthcheck on /healthz', () => {
    expect(stages.length).to.be.at.least(2);
    expect(dockerfile.some((i) => i.op === 'RUN' && /npm ci --omit=dev/.test(i.args))).to.equal(true);
    expect(runtime.find((i) => i.op === 'USER')?.args).to.equal('node');
    expect(runtime.find((i) => i.op === 'HEALTHCHECK')?.args).to.contain('/healthz');
    expect(runtime.find((i) => i.op === 'CMD')?.args).to.equal('["node", "dist/src/index.js"]');
    // Every file the build copies from the context exists.
    for (const i of dockerfile.filter((x) => x.op === 'COPY' && !x.args.startsWith('--from'))) {
      const sources = i.args.split(/\s+/).slice(0, -1);
      for (const src of sources) expect(existsSync(join(ROOT, src)), `COPY ${src}`).to.equal(true);
    }
    // What the compiled server reads at run time besides dist/: the views, and openapi.yaml (served,
    // and the source of the admin API's request-body schemas).
    for (const file of ['views', 'openapi.yaml']) expect(runtime.some((i) => i.op === 'COPY' && !i.args.startsWith('--from') && i.args.split(/\s+/).slice(0, -1).includes(file)), `runtime COPY ${file}`).to.equal(true);
    // The start command is the one npm start runs after building.
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts.start).to.equal('node dist/src/index.js');
  });

  it('compose.yaml: two Latch instances behind a TLS proxy, PostgreSQL and Redis, only known variables', () => {
    const compose = parse(readFileSync(join(ROOT, 'docker/compose.yaml'), 'utf8')) as { services: Record<string, { environment?: Record<string, string>; image?: string; build?: unknown; volumes?: string[] }> };
    const names = Object.keys(compose.services);
    expect(names).to.include.members(['latch-1', 'latch-2', 'postgres', 'redis', 'proxy']);
    const known = new Set(VARIABLES.map((v) => v.name));
    for (const n of ['latch-1', 'latch-2']) {
      const env = compose.services[n]!.environment!;
      for (const key of Object.keys(env)) expect(known.has(key), `${n} sets unknown variable ${key}`).to.equal(true);
      expect(env.ISSUER).to.match(/^https:\/\//);
      expect(env.TRUST_PROXY).to.equal('true');
      expect(env.DATABASE_URL).to.match(/^postgres:\/\/.*@postgres:5432\//);
    }
    const caddy = readFileSync(join(ROOT, 'docker/Caddyfile'), 'utf8');
    expect(caddy).to.contain('latch-1:3000').and.contain('latch-2:3000').and.contain('/readyz');
    expect(compose.services.proxy!.volumes!.some((v) => v.startsWith('./Caddyfile:'))).to.equal(true);
  });

  it("the image's command serves in production mode and passes its own healthcheck", async function () {
    this.timeout(30_000);
    const db = await freshDatabase();
    const port = await freePort();
    const { spawn } = await import('node:child_process');
    const child = spawn(process.execPath, ['dist/src/index.js'], {
      cwd: ROOT,
      env: { ...process.env, NODE_ENV: 'production', PORT: String(port), ISSUER: `http://localhost:${port}`, DATABASE_URL: db.url, LATCH_SECRET: TEST_SECRET, DATA_DIR: '/tmp' },
      stdio: 'ignore',
    });
    try {
      const check = JSON.parse(runtime.find((i) => i.op === 'HEALTHCHECK')!.args.replace(/^.*?CMD\s+/, '')) as string[];
      let ok = false;
      for (let i = 0; i < 100 && !ok; i++) {
        await new Promise((r) => setTimeout(r, 150));
        ok = await run(check[0] === 'node' ? process.execPath : check[0]!, check.slice(1), { env: { ...process.env, PORT: String(port) } }).then(
          () => true,
          () => false,
        );
      }
      expect(ok, 'HEALTHCHECK command succeeds against the running container command').to.equal(true);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      await db.drop();
    }
  });
});
