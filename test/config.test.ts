import { readFileSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { expect } from 'chai';

import { ConfigError, loadConfig, VARIABLES } from '../src/config/index.js';

const dataDir = () => mkdtempSync(join(tmpdir(), 'latch-cfg-'));
const SECRET = 'x'.repeat(40);

describe('configuration', () => {
  it('has the documented defaults', () => {
    const c = loadConfig({ LATCH_SECRET: SECRET, DATA_DIR: dataDir() });
    expect(c.port).to.equal(3000);
    expect(c.issuer).to.equal('http://localhost:3000');
    expect(c.database.client).to.equal('sqlite');
    expect(c.ttl).to.deep.equal({ accessToken: 900, refreshToken: 604800, refreshReuseWindow: 30, idToken: 3600, session: 1209600, deviceCode: 600 });
    expect(c.trustProxy).to.equal(false);
    expect(Object.isFrozen(c)).to.equal(true);
  });

  it('derives the issuer from PORT and reads DATABASE_URL forms', () => {
    expect(loadConfig({ LATCH_SECRET: SECRET, PORT: '4100', DATA_DIR: dataDir() }).issuer).to.equal('http://localhost:4100');
    expect(loadConfig({ LATCH_SECRET: SECRET, DATABASE_URL: 'postgres://u@h:5432/db', DATA_DIR: dataDir() }).database).to.deep.equal({ client: 'pg', connectionString: 'postgres://u@h:5432/db', timeouts: { statementMs: 5000, connectMs: 3000 } });
    // Every wait on PostgreSQL is bounded; a statement limit of 0 turns it off.
    expect(loadConfig({ LATCH_SECRET: SECRET, DATABASE_URL: 'postgres://u@h/db', DB_STATEMENT_TIMEOUT_MS: '0', DB_CONNECT_TIMEOUT_MS: '500', DATA_DIR: dataDir() }).database).to.deep.include({ timeouts: { statementMs: 0, connectMs: 500 } });
    expect(() => loadConfig({ LATCH_SECRET: SECRET, DB_CONNECT_TIMEOUT_MS: '0', DATA_DIR: dataDir() })).to.throw(/DB_CONNECT_TIMEOUT_MS/);
    const s = loadConfig({ LATCH_SECRET: SECRET, DATABASE_URL: 'sqlite:/tmp/x.sqlite', DATA_DIR: dataDir() }).database;
    expect(s).to.deep.equal({ client: 'sqlite', filename: '/tmp/x.sqlite' });
  });

  const bad: [Record<string, string>, string][] = [
    [{ PORT: 'abc' }, 'PORT'],
    [{ PORT: '70000' }, 'PORT'],
    [{ ISSUER: 'not a url' }, 'ISSUER'],
    [{ ISSUER: 'ftp://x' }, 'ISSUER'],
    [{ DATABASE_URL: 'mysql://x' }, 'DATABASE_URL'],
    [{ ACCESS_TOKEN_TTL: '-5' }, 'ACCESS_TOKEN_TTL'],
    [{ REFRESH_TOKEN_TTL: '1.5' }, 'REFRESH_TOKEN_TTL'],
    [{ TRUST_PROXY: 'maybe' }, 'TRUST_PROXY'],
    [{ LATCH_SECRET: 'short' }, 'LATCH_SECRET'],
    [{ ADMIN_EMAIL: 'a@b.c' }, 'ADMIN_PASSWORD'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
  ];
  for (const [env, variable] of bad) {
    it(`rejects ${JSON.stringify(env)} naming ${variable}`, () => {
      try {
        loadConfig({ LATCH_SECRET: SECRET, DATA_DIR: dataDir(), ...env });
        expect.fail('should have thrown');
      } catch (err) {
        expect(err).to.be.instanceOf(ConfigError);
        expect((err as ConfigError).variable).to.equal(variable);
        expect((err as Error).message).to.match(new RegExp(`^${variable} `)).and.not.contain('\n');
      }
    });
  }

  it('in production requires LATCH_SECRET and an https issuer (localhost excepted)', () => {
    const prod = { NODE_ENV: 'production', DATA_DIR: dataDir() };
    expect(() => loadConfig(prod)).to.throw(ConfigError, /LATCH_SECRET/);
    expect(() => loadConfig({ ...prod, LATCH_SECRET: SECRET, ISSUER: 'http://auth.example.com' })).to.throw(ConfigError, /ISSUER/);
    for (const host of ['localhost', '127.0.0.1', '[::1]']) {
      expect(loadConfig({ ...prod, LATCH_SECRET: SECRET, ISSUER: `http://${host}:3000` }).production).to.equal(true);
    }
    expect(loadConfig({ ...prod, LATCH_SECRET: SECRET, ISSUER: 'https://auth.example.com' }).issuer).to.equal('https://auth.example.com');
  });

  it('generates a development secret once into the data folder and reuses it', () => {
    const dir = dataDir();
    const first = loadConfig({ DATA_DIR: dir });
    expect(first.secretGenerated).to.equal(true);
    expect(first.secret.length).to.be.at.least(32);
    expect(readFileSync(join(dir, 'latch-secret'), 'utf8').trim()).to.equal(first.secret);
    expect(loadConfig({ DATA_DIR: dir }).secret).to.equal(first.secret);
  });

  it('documents every variable in the docs/configuration.md table', () => {
    const docs = readFileSync(new URL('../docs/configuration.md', import.meta.url), 'utf8');
    for (const v of VARIABLES) {
      const row = docs.split('\n').find((l) => l.startsWith(`| \`${v.name}\``));
      expect(row, `docs/configuration.md row for ${v.name}`).to.be.a('string');
      expect(row).to.contain(v.default.replace(/\|/g, '\\|'));
    }
  });
});

describe('configuration declarations', () => {
  /** The docs/configuration.md table's rows: `| \`NAME\` | default | meaning |`. */
  function documentedRows(): Map<string, string> {
    const readme = readFileSync(new URL('../docs/configuration.md', import.meta.url), 'utf8').split('\n');
    const start = readme.findIndex((l) => /^\| Variable \| Default \| Meaning \|/.test(l));
    expect(start, 'the configuration table').to.be.above(-1);
    const rows = new Map<string, string>();
    for (const line of readme.slice(start + 2)) {
      if (!line.startsWith('|')) break;
      const name = /^\| `([A-Z0-9_]+)` \|/.exec(line)?.[1];
      expect(name, line).to.be.a('string');
      rows.set(name!, line);
    }
    return rows;
  }

  it('declares exactly the variables the docs/configuration.md table documents, with their defaults and meanings', () => {
    const rows = documentedRows();
    expect([...rows.keys()].sort()).to.deep.equal(VARIABLES.map((v) => v.name).sort());
    for (const v of VARIABLES) {
      const cells = rows.get(v.name)!.split(' | ');
      expect(cells[1], `default of ${v.name}`).to.equal(v.default.replace(/\|/g, '\\|'));
      expect(cells.slice(2).join(' | ').replace(/ \|$/, ''), `meaning of ${v.name}`).to.equal(v.doc.replace(/\|/g, '\\|'));
    }
  });

  it('declares each variable once', () => {
    const names = VARIABLES.map((v) => v.name);
    expect(new Set(names).size).to.equal(names.length);
  });

  it('validates every declared variable (a declaration loadConfig did not walk would accept anything)', () => {
    // Free-form values: any folder, any NODE_ENV other than production.
    const anything = new Set(['DATA_DIR', 'NODE_ENV']);
    const pairs: Record<string, string> = { ADMIN_EMAIL: 'ADMIN_PASSWORD', ADMIN_PASSWORD: 'ADMIN_EMAIL' };
    for (const v of VARIABLES.filter((x) => !anything.has(x.name))) {
      try {
        loadConfig({ LATCH_SECRET: SECRET, DATA_DIR: dataDir(), [v.name]: 'not valid' });
        expect.fail(`${v.name}=not valid was accepted`);
      } catch (err) {
        expect(err, v.name).to.be.instanceOf(ConfigError);
        expect((err as ConfigError).variable).to.equal(pairs[v.name] ?? v.name);
      }
    }
  });

  it('reads the admin API limits with their declared defaults', () => {
    const c = loadConfig({ LATCH_SECRET: SECRET, DATA_DIR: dataDir() });
    expect(c.limits.apiRequestsPerMinute).to.equal(600);
    expect(c.limits.apiAuthFailuresPerMinute).to.equal(30);
    expect(loadConfig({ LATCH_SECRET: SECRET, DATA_DIR: dataDir(), API_REQUESTS_PER_MINUTE: '7', API_AUTH_FAILURES_PER_MINUTE: '3' }).limits).to.include({ apiRequestsPerMinute: 7, apiAuthFailuresPerMinute: 3 });
    expect(() => loadConfig({ LATCH_SECRET: SECRET, DATA_DIR: dataDir(), API_AUTH_FAILURES_PER_MINUTE: '0' })).to.throw(ConfigError, /^API_AUTH_FAILURES_PER_MINUTE must be between 1 and 10000000 \(got 0\)$/);
  });
});
