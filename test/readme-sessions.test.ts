import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';

import { expect } from 'chai';

import { fencedBlocks, markdownFiles, readMarkdown, ROOT, type FencedBlock } from './helpers/markdown.js';
import { startTestServer, type TestServer } from './helpers/server.js';

/** Where the docs say a fresh `npm start` listens. */
const DOCUMENTED_URL = 'http://localhost:3000';

/** The README blocks that start or test Latch itself: the only ones the README may leave unrun. */
const STARTS_OR_TESTS = /^(?:(?:[A-Z_]+=\S+ )*npm (?:install && npm start|start|test)|npm install @latch\/verify|pip install \.\/packages\/python)$/;

interface BlockRun {
  block: FencedBlock;
  stdout: string;
  stderr: string;
}

/**
 * Runs one page's sh blocks in order, as one bash session (`set -euo pipefail`, so variables set
 * by a block are there for the next), the way a reader pastes them into one terminal. A marker
 * line on stdout and stderr before each block splits the output per block; the session stops at
 * the first command that fails, and the last marker names its block.
 */
async function runSession(file: string, blocks: FencedBlock[], server: TestServer): Promise<BlockRun[]> {
  const marker = `@@latch-block-${randomBytes(6).toString('hex')}@@`;
  const script = ['set -euo pipefail', `cd ${JSON.stringify(ROOT)}`];
  blocks.forEach((b, i) => {
    script.push(`printf '\\n${marker} %d\\n' ${i}; printf '\\n${marker} %d\\n' ${i} >&2`);
    script.push(b.code.replaceAll(DOCUMENTED_URL, server.url));
  });
  script.push(`printf '\\n${marker} end\\n'`);
  // The environment of a terminal next to `npm start`: the server's database, data folder and
  // issuer (the one it recorded), nothing else of the test's.
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? '/tmp',
    LANG: 'C.UTF-8',
    DATABASE_URL: server.env.DATABASE_URL!,
    DATA_DIR: server.env.DATA_DIR!,
    LATCH_SECRET: server.env.LATCH_SECRET!,
    ISSUER: server.url,
  };
  const child = spawn('bash', ['-c', script.join('\n')], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  const split = (text: string) => {
    const parts = new Map<string, string>();
    const pieces = text.split(new RegExp(`\\n${marker} (\\d+|end)\\n`));
    for (let i = 1; i < pieces.length; i += 2) parts.set(pieces[i]!, pieces[i + 1] ?? '');
    return parts;
  };
  const out = split(stdout);
  const err = split(stderr);
  if (code !== 0 || !out.has('end')) {
    const reached = [...out.keys()].filter((k) => k !== 'end').pop() ?? '0';
    const b = blocks[Number(reached)]!;
    expect.fail(`${file}:${b.line}: the sh block exited with ${code}\n--- block ---\n${b.code}\n--- stdout ---\n${out.get(reached) ?? ''}\n--- stderr ---\n${err.get(reached) ?? stderr}`);
  }
  return blocks.map((block, i) => ({ block, stdout: out.get(String(i))!.trim(), stderr: err.get(String(i))?.trim() ?? '' }));
}

/** The run of the block containing `text`; failing when no block contains it, so the test follows the docs. */
function runOf(runs: BlockRun[], text: string): BlockRun {
  const run = runs.find((r) => r.block.code.includes(text));
  expect(run, `an sh block containing ${JSON.stringify(text)}`).to.not.equal(undefined);
  return run!;
}

/** Each JSON document printed one after another (pretty or not) in a block's output. */
function jsonValues(stdout: string): unknown[] {
  const values: unknown[] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  for (let i = 0; i < stdout.length; i++) {
    const c = stdout[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"' && depth > 0) inString = true;
    else if (c === '{' || c === '[') {
      if (depth++ === 0) start = i;
    } else if ((c === '}' || c === ']') && depth > 0 && --depth === 0) values.push(JSON.parse(stdout.slice(start, i + 1)));
  }
  return values;
}

/** Every page with sh blocks to run, and the promises its sessions make, checked on their output. */
const PAGES: Record<string, (runs: BlockRun[], server: TestServer) => void> = {
  'README.md': (runs, server) => {
    const user = jsonValues(runOf(runs, 'users create').stdout)[0] as Record<string, unknown>;
    expect(user).to.include({ email: 'ada@example.com', name: 'Ada' });

    const web = runOf(runs, "--name 'My web app'").stdout;
    expect(web).to.match(/^CLIENT_ID=[\w-]{8,} CLIENT_SECRET=[\w-]{20,}$/m);

    expect(runOf(runs, 'openid-configuration').stdout).to.equal(`${server.url}/auth`);

    const spa = runOf(runs, "--name 'My SPA'");
    expect(spa.stdout).to.match(/^SPA_ID=[\w-]{8,}$/m);

    const machine = jsonValues(runOf(runs, '--name worker').stdout);
    const tokenResponse = machine.find((v) => (v as { access_token?: string }).access_token) as Record<string, unknown>;
    expect(tokenResponse, 'the token response').to.include({ token_type: 'Bearer', scope: 'orders:read' });
    expect(tokenResponse.access_token).to.match(/^eyJ[\w-]+\.[\w-]+\.[\w-]+$/);

    const decoded = runOf(runs, 'base64url');
    const [claims] = jsonValues(decoded.stdout) as Record<string, unknown>[];
    expect(claims).to.include({ iss: server.url, aud: 'https://api.example.com', scope: 'orders:read' });
    expect(decoded.stdout).to.match(/^\S+ RS256$/m);

    const introspection = jsonValues(runOf(runs, '/token/introspection').stdout)[0] as Record<string, unknown>;
    expect(introspection).to.include({ active: true, scope: 'orders:read' });
    expect([introspection.aud].flat()).to.deep.equal(['https://api.example.com']);

    expect(runOf(runs, '/api/v1/users').stdout.split('\n')).to.include('ada@example.com active=true');

    // DPoP: the machine client now requires proofs.
    expect(jsonValues(runOf(runs, '--require-dpop').stdout)[0]).to.include({ name: 'worker', dpop_bound_access_tokens: true });

    // Upstream providers: the callbacks to register at Google and GitHub.
    expect(runOf(runs, 'idps create').stdout.split('\n')).to.include.members([`${server.url}/federation/callback/google`, `${server.url}/federation/callback/github`]);

    // Logout everywhere: the registered back-channel logout URI.
    expect(runOf(runs, '--backchannel-logout-uri').stdout.trim()).to.equal('"https://shop.example.com/backchannel-logout"');
  },
  'docs/logout.md': (runs) => {
    const [client] = jsonValues(runOf(runs, '--backchannel-logout-uri').stdout) as Record<string, unknown>[];
    expect(client).to.include({ backchannel_logout_uri: 'https://shop.example.com/backchannel-logout', backchannel_logout_session_required: true });
  },
  'docs/api.md': (runs) => {
    const run = runOf(runs, '/api/v1/organizations');
    const values = jsonValues(run.stdout) as Record<string, unknown>[];
    expect(values.find((v) => v.role === 'owner'), 'the owner membership').to.not.equal(undefined);
    expect(values.find((v) => v.email === 'bob@example.com'), 'the invitation').to.include({ role: 'member', status: 'pending' });
    // The new secret, printed by jq as a JSON string, then the audit trail's event types.
    const lines = run.stdout.split('\n');
    expect(lines.some((l) => /^"[\w-]{20,}"$/.test(l)), 'the rotated secret').to.equal(true);
    expect(lines).to.include('account.create');
  },
  'docs/claims.md': (runs) => {
    // RBAC: the role's one permitted scope, not the other one asked for; the role itself as a claim.
    expect(runOf(runs, 'roles assign').stdout.split('\n')).to.include('{"scope":"reports:read","roles":["reporter"]}');
  },
  'docs/cli.md': (runs) => {
    expect(runOf(runs, 'users import').stdout.split('\n')).to.include('{"imported":2,"skipped":0}');
  },
  'docs/dpop.md': (runs) => {
    // `clients update` prints the client: the flag set at creation, then turned off.
    expect(jsonValues(runOf(runs, '--no-require-dpop').stdout)[0]).to.include({ name: 'Phone app', public: true, dpop_bound_access_tokens: false });
  },
  'docs/import.md': (runs) => {
    // Dry run and import count the same; the second run changes nothing.
    expect(runOf(runs, 'import app').stdout.split('\n')).to.deep.equal(['{"imported":1,"skipped":0,"unchanged":0}', '{"imported":1,"skipped":0,"unchanged":0}', '{"imported":0,"skipped":0,"unchanged":1}']);
  },
  'docs/operations.md': (runs) => {
    const run = runOf(runs, '/metrics');
    expect(run.stdout).to.match(/^latch_http_requests_total\{[^}]*route="[^"]+"[^}]*\} \d+$/m);
  },
};

describe('README and docs shell sessions, run in order against one fresh server', function () {
  this.timeout(600_000);

  it('leaves no sh block unrun but those marked <!-- not run -->, and the README only its npm start/test blocks', () => {
    for (const file of markdownFiles()) {
      const blocks = fencedBlocks(readMarkdown(file)).filter((b) => b.lang === 'sh');
      for (const b of blocks.filter((x) => x.notRun)) {
        if (file === 'README.md') expect(b.code.trim(), `README.md:${b.line} is marked not run`).to.match(STARTS_OR_TESTS);
        else expect(b.notRun, `${file}:${b.line} says why it is not run`).to.match(/^not run: \S/);
      }
      const toRun = blocks.filter((b) => !b.notRun);
      if (toRun.length > 0) expect(Object.keys(PAGES), `${file} has sh sessions: list it in PAGES with what they promise`).to.include(file);
    }
  });

  // One server for every page, README first: a reader runs the pages one after another against
  // the same `npm start`, so a page must not conflict with an earlier one. Each page is its own
  // terminal session: it sets every variable it uses.
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server?.close();
  });

  for (const [file, promises] of Object.entries(PAGES)) {
    it(`${file}: every sh block exits 0 in order, and prints what the page promises`, async () => {
      const blocks = fencedBlocks(readMarkdown(file)).filter((b) => b.lang === 'sh' && !b.notRun);
      expect(blocks.length, `sh blocks in ${file}`).to.be.greaterThan(0);
      const runs = await runSession(file, blocks, server);
      // A jq path that misses prints null: a session that silently lost a value.
      for (const r of runs) expect(r.stdout, `${file}:${r.block.line} printed a null`).not.to.match(/(^|=)null$/m);
      promises(runs, server);
      expect(server.errors(), 'errors logged by the server').to.deep.equal([]);
    });
  }
});
