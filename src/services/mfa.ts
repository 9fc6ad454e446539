import { randomInt } from 'node:crypto';

import { Secret, TOTP } from 'otpauth';
import QRCode from 'qrcode';

import type { MfaRepository } from '../repositories/mfa.js';
import type { RecoveryCodesRepository } from '../repositories/recovery-codes.js';
import type { AuditActor, AuditService, RequestOrigin } from './audit.js';
import type { Secrets } from './secrets.js';

/** RFC 8176 authentication method references and Latch's levels of assurance. */
export const AMR_PASSWORD = ['pwd'];
export const AMR_PASSWORD_OTP = ['pwd', 'otp', 'mfa'];
export const ACR_PASSWORD = 'urn:latch:loa:1';
export const ACR_MFA = 'urn:latch:loa:2';
export const ACR_VALUES = [ACR_PASSWORD, ACR_MFA];

/** RFC 6238 parameters every authenticator app understands: SHA-1, 6 digits, 30-second steps. */
const PERIOD = 30;
const DIGITS = 6;
/** RFC 6238 §5.2: one step of clock drift either way. */
const WINDOW = 1;
const RECOVERY_CODE_COUNT = 10;
/** 32 symbols without look-alikes (no l, o, 0, 1): 12 of them are 60 bits. */
const RECOVERY_ALPHABET = 'abcdefghijkmnpqrstuvwxyz23456789';

export interface Enrolment {
  /** The shared secret, base32 (RFC 4648), as typed into an authenticator app. */
  secret: string;
  /** The otpauth:// URI the QR code encodes. */
  uri: string;
  /** The QR code as a PNG data: URL (pages carry no JavaScript). */
  qrDataUrl: string;
}

export interface MfaStatus {
  enabled: boolean;
  enabledAt: string | null;
  recoveryCodesLeft: number;
}

/** What a verified second-factor code was. */
export type SecondFactor = 'totp' | 'recovery_code';

interface Actor {
  actorId: string;
  origin?: RequestOrigin | undefined;
}

/** A recovery code as shown: xxxx-xxxx-xxxx. */
function newRecoveryCode(): string {
  let s = '';
  for (let i = 0; i < 12; i++) s += RECOVERY_ALPHABET[randomInt(RECOVERY_ALPHABET.length)];
  return `${s.slice(0, 4)}-${s.slice(4, 8)}-${s.slice(8)}`;
}

/** The canonical form of a typed recovery code (case, spaces and dashes do not matter), or undefined. */
function canonicalRecoveryCode(input: string): string | undefined {
  const s = input.toLowerCase().replace(/[\s-]/g, '');
  return s.length === 12 && [...s].every((c) => RECOVERY_ALPHABET.includes(c)) ? s : undefined;
}

/**
 * TOTP second factor (RFC 6238) and one-time recovery codes. Secrets are stored encrypted,
 * recovery codes as HMACs; each TOTP step and each recovery code is accepted once, enforced by
 * conditional UPDATEs so that two concurrent uses of one code cannot both succeed.
 */
export function createMfaService(deps: { mfa: MfaRepository; recoveryCodes: RecoveryCodesRepository; secrets: Secrets; audit: AuditService; issuer: string; now?: () => number }) {
  const { mfa, recoveryCodes, secrets } = deps;
  const issuerLabel = `Latch (${new URL(deps.issuer).host})`;
  const now = () => deps.now?.() ?? Date.now();

  const totpFor = (base32: string, label = 'account') => new TOTP({ issuer: issuerLabel, label, algorithm: 'SHA1', digits: DIGITS, period: PERIOD, secret: Secret.fromBase32(base32) });

  /** The time step a code belongs to (within ±WINDOW of now), or undefined. */
  function matchStep(base32: string, code: string): number | undefined {
    const token = code.replace(/\s/g, '');
    if (!/^\d{6}$/.test(token)) return undefined;
    const timestamp = now();
    const delta = totpFor(base32).validate({ token, timestamp, window: WINDOW });
    if (delta === null) return undefined;
    return Math.floor(timestamp / 1000 / PERIOD) + delta;
  }

  const hashRecoveryCode = (canonical: string) => secrets.mac('recovery-code', canonical);

  async function issueRecoveryCodes(accountId: string): Promise<string[]> {
    const codes = new Set<string>();
    while (codes.size < RECOVERY_CODE_COUNT) codes.add(newRecoveryCode());
    const list = [...codes];
    await recoveryCodes.replace(
      accountId,
      list.map((c) => hashRecoveryCode(canonicalRecoveryCode(c)!)),
    );
    return list;
  }

  async function isEnabled(accountId: string): Promise<boolean> {
    return Boolean((await mfa.find(accountId))?.enabledAt);
  }

  return {
    isEnabled,

    async status(accountId: string): Promise<MfaStatus> {
      const record = await mfa.find(accountId);
      const enabled = Boolean(record?.enabledAt);
      return { enabled, enabledAt: record?.enabledAt ?? null, recoveryCodesLeft: enabled ? await recoveryCodes.countUnused(accountId) : 0 };
    },

    /**
     * The pending enrolment of an account (a new secret, or the one already waiting for its
     * first code, so a reload shows the same QR code); undefined when MFA is already on.
     */
    async beginEnrolment(account: { id: string; email: string }): Promise<Enrolment | undefined> {
      const existing = await mfa.find(account.id);
      if (existing?.enabledAt) return undefined;
      let base32 = existing ? secrets.decrypt(existing.totpSecret) : undefined;
      if (!base32) {
        base32 = new Secret({ size: 20 }).base32;
        if (!(await mfa.savePending(account.id, secrets.encrypt(base32)))) return undefined;
      }
      const uri = totpFor(base32, account.email).toString();
      const qrDataUrl = await QRCode.toDataURL(uri, { errorCorrectionLevel: 'M', margin: 2, width: 220 });
      return { secret: base32, uri, qrDataUrl };
    },

    /**
     * Confirms the pending enrolment with a first code; returns the new recovery codes (shown
     * once), or undefined when the code is wrong or nothing was pending.
     */
    async confirmEnrolment(accountId: string, code: string, by: Actor): Promise<string[] | undefined> {
      const record = await mfa.find(accountId);
      if (!record || record.enabledAt) return undefined;
      const step = matchStep(secrets.decrypt(record.totpSecret), code);
      if (step === undefined) return undefined;
      if (!(await mfa.enable(accountId, step))) return undefined;
      const codes = await issueRecoveryCodes(accountId);
      await deps.audit.record({ type: 'mfa.enable', actorId: by.actorId, subjectId: accountId, origin: by.origin, details: { method: 'totp' } });
      await deps.audit.record({ type: 'mfa.recovery_codes', actorId: by.actorId, subjectId: accountId, origin: by.origin, details: { count: codes.length, reason: 'enrolment' } });
      return codes;
    },

    /**
     * Checks a second-factor code: a TOTP code (each time step accepted once) or an unused
     * recovery code (then used up). Undefined when it is neither.
     */
    async verify(accountId: string, code: string): Promise<SecondFactor | undefined> {
      const input = (code ?? '').trim();
      if (!input || input.length > 64) return undefined;
      const record = await mfa.find(accountId);
      if (!record?.enabledAt) return undefined;
      if (/^\d[\d\s]*$/.test(input)) {
        const step = matchStep(secrets.decrypt(record.totpSecret), input);
        return step !== undefined && (await mfa.acceptStep(accountId, step)) ? 'totp' : undefined;
      }
      const canonical = canonicalRecoveryCode(input);
      if (!canonical) return undefined;
      return (await recoveryCodes.consume(accountId, hashRecoveryCode(canonical))) ? 'recovery_code' : undefined;
    },

    /** Turns MFA off: the secret and every recovery code are deleted. */
    async disable(accountId: string, by: Actor): Promise<boolean> {
      const had = await isEnabled(accountId);
      await mfa.delete(accountId);
      await recoveryCodes.deleteAll(accountId);
      if (had) await deps.audit.record({ type: 'mfa.disable', actorId: by.actorId, subjectId: accountId, origin: by.origin });
      return had;
    },

    /** An administrator turns the account's MFA off (its owner lost the device): `account.mfa_reset`. */
    async reset(accountId: string, by: AuditActor): Promise<boolean> {
      const had = await this.disable(accountId, by);
      await deps.audit.recordBy('account.mfa_reset', accountId, by, { had_mfa: had });
      return had;
    },

    /** New recovery codes replacing all older ones (shown once); undefined without MFA. */
    async regenerateRecoveryCodes(accountId: string, by: Actor): Promise<string[] | undefined> {
      if (!(await isEnabled(accountId))) return undefined;
      const codes = await issueRecoveryCodes(accountId);
      await deps.audit.record({ type: 'mfa.recovery_codes', actorId: by.actorId, subjectId: accountId, origin: by.origin, details: { count: codes.length, reason: 'regenerated' } });
      return codes;
    },
  };
}

export type MfaService = ReturnType<typeof createMfaService>;
