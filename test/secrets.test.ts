import { createHash, randomBytes } from 'node:crypto';

import Database from 'better-sqlite3';
import { expect } from 'chai';
import pg from 'pg';

import { createSecrets } from '../src/services/secrets.js';
import { dumpDatabase, encodings, findSecrets, recordFromResponse, secretsMark } from './helpers/secrets-registry.js';
import { freshDatabase, onPostgres, type TestDatabase } from './helpers/server.js';

describe('client secret verification', () => {
  const secrets = createSecrets('a-master-secret-for-the-secrets-test-0123456789');

  it('accepts the secret again and again, refuses others of the same length (before and after a match)', () => {
    const secret = randomBytes(32).toString('base64url');
    const other = randomBytes(32).toString('base64url');
    const stored = secrets.hashClientSecret(secret);
    expect(stored).to.not.include(secret);
    expect(secrets.verifyClientSecret(other, stored)).to.equal(false);
    for (let i = 0; i < 3; i++) expect(secrets.verifyClientSecret(secret, stored)).to.equal(true);
    expect(secrets.verifyClientSecret(other, stored)).to.equal(false);
    expect(secrets.verifyClientSecret(`${secret}x`, stored)).to.equal(false);
    expect(secrets.verifyClientSecret(secret.slice(1), stored)).to.equal(false);
  });

  it('a secret that matched one stored HMAC does not match another (rotation)', () => {
    const first = randomBytes(32).toString('base64url');
    const second = randomBytes(32).toString('base64url');
    expect(secrets.verifyClientSecret(first, secrets.hashClientSecret(first))).to.equal(true);
    const rotated = secrets.hashClientSecret(second);
    expect(secrets.verifyClientSecret(first, rotated)).to.equal(false);
    expect(secrets.verifyClientSecret(second, rotated)).to.equal(true);
  });

  it('another master secret gives other HMACs', () => {
    const secret = randomBytes(32).toString('base64url');
    const elsewhere = createSecrets('another-master-secret-for-the-secrets-test-987654');
    expect(elsewhere.verifyClientSecret(secret, secrets.hashClientSecret(secret))).to.equal(false);
  });
});

describe('sealed data at rest (the mail queue)', () => {
  const secrets = createSecrets('a-master-secret-for-the-secrets-test-0123456789');

  it('opens only with the same master secret and the same context, under a key of its own', () => {
    const text = 'https://auth.example.test/verify-email?token=one-time';
    const sealed = secrets.seal('mail-queue', text, 'row-1');
    expect(sealed).to.not.include('token');
    expect(secrets.open('mail-queue', sealed, 'row-1')).to.equal(text);
    // Moved to another row, or opened with the signing-key encryption or another LATCH_SECRET: refused.
    expect(() => secrets.open('mail-queue', sealed, 'row-2')).to.throw();
    expect(() => secrets.decrypt(sealed)).to.throw();
    expect(() => createSecrets('another-master-secret-for-the-secrets-test-987654').open('mail-queue', sealed, 'row-1')).to.throw();
    expect(secrets.seal('mail-queue', text, 'row-1')).to.not.equal(sealed);
  });
});

describe('secrets at rest: the scan of database dumps and logs (test/helpers/secrets-registry.ts)', () => {
  const planted = `planted-${randomBytes(18).toString('base64url')}`;
  let db: TestDatabase;
  let put: (text: string | Buffer) => Promise<void>;
  let close: () => Promise<void>;

  before(async () => {
    db = await freshDatabase();
    if (onPostgres) {
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      await client.query('create table planted (t text, b bytea)');
      put = async (v) => {
        await client.query('delete from planted');
        await client.query('insert into planted values ($1, $2)', typeof v === 'string' ? [v, null] : [null, v]);
      };
      close = () => client.end();
    } else {
      const file = db.url.replace(/^sqlite:/, '');
      const sqlite = new Database(file);
      sqlite.exec('create table planted (t text, b blob)');
      put = async (v) => {
        sqlite.exec('delete from planted');
        sqlite.prepare('insert into planted values (?, ?)').run(typeof v === 'string' ? v : null, typeof v === 'string' ? null : v);
      };
      close = async () => {
        sqlite.close();
      };
    }
  });

  after(async () => {
    await close?.();
    await db?.drop();
  });

  const scan = async () => [...(await dumpDatabase(db.url))].flatMap(([table, text]) => findSecrets(text, table, [{ kind: 'planted', value: planted }])).map((f) => f.encoding);

  it('finds a secret planted in a dump, in each encoding, inside other text', async () => {
    for (const [encoding, text] of encodings(planted)) {
      await put(`{"note":"x${text}y"}`);
      expect(await scan(), encoding).to.have.length(1);
    }
    await put(Buffer.from(`binary ${planted} column`));
    expect(await scan()).to.deep.equal(['raw']);
    await put(`{"token":"${Buffer.from(planted).toString('hex').toUpperCase()}"}`);
    expect(await scan()).to.deep.equal(['hex']);
  });

  it('finds nothing when only other values or a hash of the secret are stored', async () => {
    // The last character changed (to one it is not: a random value may already end in X).
    await put(`${planted.slice(0, -1)}${planted.endsWith('X') ? 'Y' : 'X'} ${createHash('sha256').update(planted).digest('hex')}`);
    expect(await scan()).to.deep.equal([]);
  });

  it('finds a secret in a log line, and the helpers record what tests handle', async () => {
    const link = `https://issuer.example/reset-password?token=${planted}`;
    const line = JSON.stringify({ level: 'info', msg: 'redirect', next: `/login?return_to=${encodeURIComponent(link)}` });
    expect(findSecrets(line, 'a log', [{ kind: 'planted', value: link }]).map((f) => f.encoding)).to.deep.equal(['url-encoded']);
    const before = secretsMark();
    recordFromResponse('http://127.0.0.1/token', 'http://127.0.0.1:9/cb?code=a-code-of-forty-three-characters-abcdefghij', '{"refresh_token":"a-refresh-token-of-some-length"}');
    expect(secretsMark() - before).to.equal(2);
  });
});
