import { createCipheriv, createDecipheriv, createHmac, createSecretKey, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';


/**
 * Everything derived from LATCH_SECRET. Each purpose gets its own HKDF-derived key, so a key
 * used to sign cookies can never be used to forge a client-secret hash or decrypt a signing key.
 */
export interface Secrets {
  /** HMAC-SHA-256 of a client secret, hex: what the clients table stores. */
  hashClientSecret(secret: string): string;
  /** Constant-time check of a presented client secret against the stored HMAC. */
  verifyClientSecret(presented: string, storedHash: string): boolean;
  /** AES-256-GCM encryption for data at rest (signing keys). */
  encrypt(plaintext: string): string;
  decrypt(ciphertext: string): string;
  /**
   * AES-256-GCM under a key derived for `purpose` alone, bound to `context` (authenticated, not
   * stored): a ciphertext moved to another row does not open.
   */
  seal(purpose: 'mail-queue' | 'device-code', plaintext: string, context: string): string;
  open(purpose: 'mail-queue' | 'device-code', ciphertext: string, context: string): string;
  /** Keys for oidc-provider's signed cookies. */
  cookieKeys: string[];
  /** HMAC for CSRF tokens bound to a browser cookie. */
  csrfToken(binding: string): string;
  /** Constant-time comparison of two strings. */
  equal(a: string, b: string): boolean;
  /**
   * HMAC-SHA-256 (base64url) under a key derived for `purpose` alone: recovery-code hashes,
   * the account page's signed cookies, the id of the refresh token that succeeds a rotated one.
   */
  mac(purpose: 'recovery-code' | 'account-cookie' | 'federation-state' | 'refresh-successor', data: string): string;
}

function derive(secret: string, purpose: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, 'latch', purpose, 32));
}

export function constantTimeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a);
  const bb = Buffer.from(b);
  // Compare equal-length buffers so the time does not depend on where they differ.
  if (ab.length !== bb.length) {
    timingSafeEqual(ab, ab);
    return false;
  }
  return timingSafeEqual(ab, bb);
}

export function createSecrets(masterSecret: string): Secrets {
  // A KeyObject made once: the client-secret HMAC runs on every token request.
  const clientKey = createSecretKey(derive(masterSecret, 'client-secret-hmac'));
  const encKey = derive(masterSecret, 'at-rest-encryption');
  const csrfKey = createSecretKey(derive(masterSecret, 'csrf'));
  const cookieKey = derive(masterSecret, 'cookies').toString('base64url');

  const macKeys = new Map<string, Buffer>();
  const macKey = (purpose: string) => {
    let key = macKeys.get(purpose);
    if (!key) macKeys.set(purpose, (key = derive(masterSecret, `mac:${purpose}`)));
    return key;
  };

  const sealKeys = new Map<string, Buffer>();
  const sealKey = (purpose: string) => {
    let key = sealKeys.get(purpose);
    if (!key) sealKeys.set(purpose, (key = derive(masterSecret, `seal:${purpose}`)));
    return key;
  };

  const encryptWith = (key: Buffer, plaintext: string, aad?: string) => {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    if (aad !== undefined) cipher.setAAD(Buffer.from(aad, 'utf8'));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return ['v1', iv.toString('base64url'), cipher.getAuthTag().toString('base64url'), body.toString('base64url')].join('.');
  };
  const decryptWith = (key: Buffer, ciphertext: string, aad?: string) => {
    const [version, iv, tag, body] = ciphertext.split('.');
    if (version !== 'v1' || !iv || !tag || body === undefined) throw new Error('unrecognised ciphertext format');
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
    if (aad !== undefined) decipher.setAAD(Buffer.from(aad, 'utf8'));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]).toString('utf8');
  };

  const hashClientSecret = (secret: string) => createHmac('sha256', clientKey).update(secret).digest('hex');

  return {
    hashClientSecret,
    verifyClientSecret(presented, storedHash) {
      if (typeof presented !== 'string' || typeof storedHash !== 'string') return false;
      return constantTimeEqual(hashClientSecret(presented), storedHash);
    },
    encrypt: (plaintext) => encryptWith(encKey, plaintext),
    decrypt: (ciphertext) => decryptWith(encKey, ciphertext),
    seal: (purpose, plaintext, context) => encryptWith(sealKey(purpose), plaintext, `${purpose}:${context}`),
    open: (purpose, ciphertext, context) => decryptWith(sealKey(purpose), ciphertext, `${purpose}:${context}`),
    cookieKeys: [cookieKey],
    csrfToken(binding) {
      return createHmac('sha256', csrfKey).update(binding).digest('base64url');
    },
    equal: constantTimeEqual,
    mac(purpose, data) {
      return createHmac('sha256', macKey(purpose)).update(data).digest('base64url');
    },
  };
}

/** A new high-entropy secret (256 bits), base64url. */
export function randomSecret(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}
