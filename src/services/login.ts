import type { AccountRecord } from '../repositories/accounts.js';
import type { AccountService, LoginResult } from './accounts.js';
import type { AuditService, RequestOrigin } from './audit.js';
import type { LoginGuard } from './login-guard.js';
import type { Metrics } from './metrics.js';
import { ACR_MFA, ACR_PASSWORD, AMR_PASSWORD, type MfaService } from './mfa.js';

/** RFC 8176 §2 `fed`: the first factor was a sign-in at a federated (upstream) identity provider. */
export const AMR_FEDERATED = 'fed';
/** The methods a second factor adds to the first factor's (RFC 8176 §2 `otp`, `mfa`). */
const SECOND_FACTOR = ['otp', 'mfa'];

/** What the second step needs: a code from an enrolled factor, or an enrolment first. */
export type SecondStep = 'code' | 'enrol';

/** The acr_values a client asked for (OIDC Core §3.1.2.1), in order of preference. */
export const requestedAcrValues = (params: Record<string, unknown>): string[] => (typeof params.acr_values === 'string' ? params.acr_values.split(' ').filter(Boolean) : []);

/**
 * True when the client insists on the MFA level: it asked for urn:latch:loa:2 and did not
 * offer the password-only level as an alternative.
 */
export const insistsOnMfa = (params: Record<string, unknown>): boolean => {
  const acr = requestedAcrValues(params);
  return acr.includes(ACR_MFA) && !acr.includes(ACR_PASSWORD);
};

/** Where a sign-in step happens: the request's address (the login guard's key), client and origin. */
export interface LoginContext {
  ip: string;
  clientId: string;
  origin: RequestOrigin;
  /** The authorization request's parameters (`acr_values` decides whether MFA is insisted on). */
  params: Record<string, unknown>;
}

/** The login the interaction finishes with (RFC 8176 amr, OIDC Core acr). */
export type CompletedLogin = {
  accountId: string;
  amr: string[];
  acr: string;
  /** The upstream provider of a federated sign-in: the ID token's `idp`. */
  idp?: string | undefined;
};

/** After an upstream sign-in: the second step still to pass, or the finished login. */
export type FederatedStep = { kind: 'second_step'; step: SecondStep } | { kind: 'signed_in'; login: CompletedLogin };

export type PasswordStep =
  | { kind: 'locked'; retryAfterSeconds: number }
  | { kind: 'refused'; reason: Exclude<LoginResult, { ok: true }>['reason'] }
  | { kind: 'second_step'; account: AccountRecord; step: SecondStep }
  | { kind: 'signed_in'; login: CompletedLogin };

export type CodeStep = { kind: 'locked'; retryAfterSeconds: number } | { kind: 'wrong' } | { kind: 'signed_in'; login: CompletedLogin };

/**
 * The sign-in steps behind the login and MFA pages: the login guard (brute-force locks), the
 * password check, the decision whether a second factor is needed, the code check, the audit
 * trail and the login metrics. Every dependency is required: no wiring can skip the guard, the
 * audit or the second step, so an account with MFA never signs in by password alone.
 */
export function createLoginService(deps: { accounts: AccountService; mfa: MfaService; loginGuard: LoginGuard; audit: AuditService; metrics: Pick<Metrics, 'recordLogin'> }) {
  const { accounts, mfa, loginGuard, audit } = deps;

  /** Whether this sign-in needs the second step after a correct password, and which. */
  async function secondStepFor(accountId: string, params: Record<string, unknown>): Promise<SecondStep | undefined> {
    if (await mfa.isEnabled(accountId)) return 'code';
    return insistsOnMfa(params) ? 'enrol' : undefined;
  }

  async function signedIn(account: Pick<AccountRecord, 'id'>, at: LoginContext, login: Omit<CompletedLogin, 'accountId'>, details: Record<string, unknown> = {}): Promise<CompletedLogin> {
    await audit.record({ type: 'login.success', actorId: account.id, subjectId: account.id, clientId: at.clientId, origin: at.origin, details: { amr: login.amr, acr: login.acr, ...details } });
    return { accountId: account.id, ...login };
  }

  return {
    secondStepFor,

    /**
     * The password step. A locked account+IP pair or IP is refused before the password is
     * looked at, so even the right one is refused until the lock ends.
     */
    async password(email: string, password: string, at: LoginContext, base: string[] = []): Promise<PasswordStep> {
      const attempt = await loginGuard.begin(email, at.ip);
      if (!attempt.allowed) return { kind: 'locked', retryAfterSeconds: attempt.retryAfterSeconds };
      let result: LoginResult;
      let secondStep: SecondStep | undefined;
      try {
        result = await accounts.authenticate(email, password);
        secondStep = result.ok ? await secondStepFor(result.account.id, at.params) : undefined;
      } catch (err) {
        await attempt.release();
        throw err;
      }
      // Only a wrong password (or an unknown address) is a failure: inactive and unverified
      // accounts gave the right one. With a second step to come, the right password is not yet
      // a successful login, so the pair's failure count is kept (released, not cleared) and
      // wrong codes keep adding to it.
      if (secondStep) {
        await attempt.release();
      } else if (result.ok || result.reason !== 'invalid_credentials') {
        await attempt.succeed();
      } else {
        for (const lock of await attempt.fail()) {
          await audit.record({ type: 'login.lockout', subjectId: result.account?.id ?? null, clientId: at.clientId, origin: at.origin, details: { ...lock } });
        }
      }
      deps.metrics.recordLogin(result.ok ? 'success' : result.reason);
      if (!result.ok) {
        await audit.record({ type: 'login.failure', actorId: result.account?.id ?? null, subjectId: result.account?.id ?? null, clientId: at.clientId, origin: at.origin, details: { reason: result.reason } });
        return { kind: 'refused', reason: result.reason };
      }
      if (secondStep) return { kind: 'second_step', account: result.account, step: secondStep };
      return { kind: 'signed_in', login: await signedIn(result.account, at, { amr: [...base, ...AMR_PASSWORD], acr: ACR_PASSWORD }) };
    },

    /**
     * A TOTP or recovery code after the right password. A wrong code counts as a failed login
     * for the lockout, exactly like a wrong password: one reservation per attempt, so parallel
     * guesses get no more tries. `email` is the address as typed at the password step.
     */
    async code(account: AccountRecord, email: string, code: string, at: LoginContext, firstFactor: string[] = AMR_PASSWORD): Promise<CodeStep> {
      const attempt = await loginGuard.begin(email, at.ip);
      if (!attempt.allowed) return { kind: 'locked', retryAfterSeconds: attempt.retryAfterSeconds };
      let method: Awaited<ReturnType<MfaService['verify']>>;
      try {
        method = await mfa.verify(account.id, code);
      } catch (err) {
        await attempt.release();
        throw err;
      }
      if (method) {
        await attempt.succeed();
        return { kind: 'signed_in', login: await signedIn(account, at, { amr: [...firstFactor, ...SECOND_FACTOR], acr: ACR_MFA }, { method }) };
      }
      for (const lock of await attempt.fail()) {
        await audit.record({ type: 'login.lockout', subjectId: account.id, clientId: at.clientId, origin: at.origin, details: { ...lock } });
      }
      await audit.record({ type: 'login.failure', actorId: account.id, subjectId: account.id, clientId: at.clientId, origin: at.origin, details: { reason: 'invalid_mfa_code' } });
      return { kind: 'wrong' };
    },

    /** The sign-in of an account that has just enrolled a second factor (its code was checked). */
    async enrolled(account: AccountRecord, email: string, at: LoginContext, firstFactor: string[] = AMR_PASSWORD): Promise<CompletedLogin> {
      await loginGuard.recordSuccess(email, at.ip);
      return signedIn(account, at, { amr: [...firstFactor, ...SECOND_FACTOR], acr: ACR_MFA }, { method: 'totp_enrolment' });
    },

    /**
     * The first factor was an upstream sign-in (the federation service decided the account):
     * the account's second factor still applies, exactly as after a password.
     */
    async federated(account: AccountRecord, provider: string, at: LoginContext): Promise<FederatedStep> {
      const step = await secondStepFor(account.id, at.params);
      // Counted like the password step: the first factor succeeded, a second step may follow.
      deps.metrics.recordLogin('success');
      if (step) return { kind: 'second_step', step };
      return { kind: 'signed_in', login: { ...(await signedIn(account, at, { amr: [AMR_FEDERATED], acr: ACR_PASSWORD }, { idp: provider })), idp: provider } };
    },
  };
}

export type LoginService = ReturnType<typeof createLoginService>;
