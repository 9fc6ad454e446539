import type { AccountRecord } from '../repositories/accounts.js';
import type { AuditService, RequestOrigin } from './audit.js';
import type { LoginGuard } from './login-guard.js';
import type { MfaService } from './mfa.js';
import type { PasswordHasher } from './passwords.js';

export type ReauthenticationResult = { ok: true } | { ok: false; reason: 'missing' | 'wrong' } | { ok: false; reason: 'locked'; retryAfterSeconds: number };

/** Where a re-authentication happens: the request's origin and the client it came through. */
export interface ReauthenticationContext {
  ip: string;
  origin: RequestOrigin;
  clientId: string;
  /** Recorded on a failure (`account_page`, `api`). */
  context: string;
}

/**
 * Re-authentication of a signed-in user before a sensitive change (password change, second
 * factor off): the current password, or a code from the second factor. Counted by the login
 * guard like a sign-in, so a stolen session or token does not become a password oracle; a
 * failure is audited like a failed sign-in.
 */
export async function reauthenticate(
  deps: { passwords: Pick<PasswordHasher, 'verify'>; mfa: Pick<MfaService, 'verify'>; audit: AuditService; loginGuard: LoginGuard },
  account: AccountRecord,
  credential: { password?: string | undefined; code?: string | undefined },
  at: ReauthenticationContext,
): Promise<ReauthenticationResult> {
  const password = credential.password ?? '';
  const code = (credential.code ?? '').trim();
  if (!password && !code) return { ok: false, reason: 'missing' };
  const attempt = await deps.loginGuard.begin(account.email, at.ip);
  if (!attempt.allowed) return { ok: false, reason: 'locked', retryAfterSeconds: attempt.retryAfterSeconds };
  let ok: boolean;
  try {
    ok = password ? Boolean(account.passwordHash) && (await deps.passwords.verify(account.passwordHash!, password)) : Boolean(await deps.mfa.verify(account.id, code));
  } catch (err) {
    await attempt.release();
    throw err;
  }
  if (ok) {
    await attempt.succeed();
    return { ok: true };
  }
  for (const lock of await attempt.fail()) {
    await deps.audit.record({ type: 'login.lockout', subjectId: account.id, clientId: at.clientId, origin: at.origin, details: { ...lock } });
  }
  await deps.audit.record({ type: 'login.failure', actorId: account.id, subjectId: account.id, clientId: at.clientId, origin: at.origin, details: { reason: password ? 'invalid_credentials' : 'invalid_mfa_code', context: at.context } });
  return { ok: false, reason: 'wrong' };
}
