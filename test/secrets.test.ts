import { randomBytes } from 'node:crypto';

import { expect } from 'chai';

import { createSecrets } from '../src/services/secrets.js';

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
