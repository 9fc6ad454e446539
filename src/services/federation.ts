import { createHash, randomBytes } from 'node:crypto';

import type { RegistrationMode } from '../config/schema.js';
import type { AccountRecord } from '../repositories/accounts.js';
import type { AccountTokensRepository } from '../repositories/account-tokens.js';
import type { ProviderStateRepository } from '../repositories/provider-state.js';
import { DuplicateEmailError, type AccountService } from './accounts.js';
import type { AuditActor, AuditService, RequestOrigin } from './audit.js';
import { ConflictError } from './errors.js';
import type { FederatedIdentityService } from './federated-identities.js';
import { emailDomainAllowed, type SignInProvider } from './identity-providers.js';
import type { Secrets } from './secrets.js';

/** Who signed in upstream, as the decisions need it (the protocol client's UpstreamIdentity). */
export interface SignedInUpstream {
  subject: string;
  email: string | null;
  email_verified: boolean;
  name: string | null;
}

/** Why an upstream sign-in was refused (`federation.refused` details.reason). */
export type RefusalReason = 'never' | 'unverified_email' | 'domain' | 'registration_closed' | 'disabled' | 'upstream_error';

export type FederationDecision =
  /** Signed in to `account`: through its link, a new automatic link, or a new account. */
  | { kind: 'signed_in'; account: AccountRecord; method: 'linked' | 'auto' | 'registration' }
  /** Policy `ask`: the account's password (and second factor) before linking. */
  | { kind: 'ask'; account: AccountRecord }
  | { kind: 'refused'; reason: RefusalReason }
  /** The linked (or matched) account may not sign in: the password login's reasons. */
  | { kind: 'account_refused'; reason: 'inactive' | 'unverified'; account: AccountRecord };

/** What the callback needs of the browser's start: kept server-side, single use. */
export interface PendingUpstream {
  purpose: 'login' | 'link';
  /** purpose login: the interaction uid. */
  uid?: string | undefined;
  /** purpose link: the signed-in account the identity is linked to. */
  accountId?: string | undefined;
  provider: string;
  /** The protocol client's transaction (holds the PKCE code_verifier): encrypted at rest. */
  transaction: unknown;
}

/** Where a refusal happened, for its audit event; `upstream`: the upstream failure's reason. */
export interface RefusalContext {
  origin?: RequestOrigin | undefined;
  clientId?: string | null | undefined;
  subject?: string | undefined;
  accountId?: string | null | undefined;
  upstream?: string | undefined;
}

/** The browser has this long between the button and the callback. */
export const PENDING_TTL_SECONDS = 600;
const PENDING_MODEL = 'FederationPending';
const IDP_MODEL = 'FederationLogin';
const HANDOFF_MODEL = 'FederationHandoff';
/** The callback hands an identity to the account page within this many seconds. */
const HANDOFF_TTL_SECONDS = 120;

/** Refusal pages: what the person reads, by reason. */
export const REFUSAL_MESSAGES: Record<RefusalReason, string> = {
  never: 'An account with this email address exists already. Sign in with its password, then link this provider from your account page.',
  unverified_email: 'The provider did not confirm that this email address is yours, so it cannot be used to sign in here. Sign in another way.',
  domain: 'Accounts with this email address may not sign in through this provider.',
  registration_closed: 'There is no account with this email address, and new accounts cannot be created here. Ask an administrator for an invitation.',
  disabled: 'Signing in through this provider is switched off.',
  upstream_error: 'Signing in through this provider did not work.',
};

/**
 * The decisions of a sign-in through an upstream provider, with no HTTP in them: which local
 * account an upstream identity is, whether to link, ask, create or refuse, and the single-use
 * state kept between the button and the callback. Every upstream sign-in is audited as
 * `federation.login`, every refusal as `federation.refused` (details.reason).
 */
export function createFederationService(deps: {
  accounts: AccountService;
  identities: FederatedIdentityService;
  tokens: Pick<AccountTokensRepository, 'findLiveByEmail' | 'consume'>;
  state: ProviderStateRepository;
  secrets: Secrets;
  audit: AuditService;
  registration: RegistrationMode;
  requireVerifiedEmail: boolean;
  /** How long a grant (and so its refresh tokens) lives: the `idp` of its sign-in is kept as long. */
  grantTtlSeconds: number;
}) {
  const { accounts, identities, audit, state, secrets } = deps;

  // The state travels in URLs: only its hash is a storage key.
  const keyOf = (upstreamState: string) => createHash('sha256').update(upstreamState).digest('base64url');

  async function refused(reason: RefusalReason, provider: string, at: RefusalContext): Promise<FederationDecision> {
    await audit.record({ type: 'federation.refused', subjectId: at.accountId ?? null, clientId: at.clientId ?? null, ...(at.origin ? { origin: at.origin } : {}), details: { reason, provider, ...(at.subject ? { upstream_subject: at.subject } : {}), ...(at.upstream ? { upstream: at.upstream } : {}) } });
    return { kind: 'refused', reason };
  }

  async function signedIn(account: AccountRecord, provider: string, identity: SignedInUpstream, method: 'linked' | 'auto' | 'registration' | 'ask', at: { origin?: RequestOrigin; clientId?: string | null }): Promise<void> {
    if (method !== 'ask') await accounts.recordLogin(account.id);
    await audit.record({ type: 'federation.login', actorId: account.id, subjectId: account.id, clientId: at.clientId ?? null, ...(at.origin ? { origin: at.origin } : {}), details: { provider, upstream_subject: identity.subject, method } });
  }

  /** The account may not sign in at all: recorded as a failed login, as a password login's would be. */
  async function accountRefused(reason: 'inactive' | 'unverified', account: AccountRecord, provider: string, at: { origin?: RequestOrigin; clientId?: string | null }): Promise<FederationDecision> {
    await audit.record({ type: 'login.failure', actorId: account.id, subjectId: account.id, clientId: at.clientId ?? null, ...(at.origin ? { origin: at.origin } : {}), details: { reason, via: 'federation', provider } });
    return { kind: 'account_refused', reason, account };
  }

  /** A pending invitation for the address (invite mode): the account invitation mailed to it. */
  const invitationFor = (email: string) => deps.tokens.findLiveByEmail('invitation', email);

  return {
    /**
     * Keeps what the callback needs under the upstream `state` for PENDING_TTL_SECONDS, and
     * returns the browser binding (an HMAC of the state) the callback must be presented with.
     */
    async savePending(upstreamState: string, pending: PendingUpstream): Promise<string> {
      const payload = { ...pending, transaction: secrets.encrypt(JSON.stringify(pending.transaction)) };
      await state.upsert(PENDING_MODEL, keyOf(upstreamState), payload, PENDING_TTL_SECONDS);
      return this.binding(upstreamState);
    },

    /** The value of the browser-binding cookie for a state. */
    binding: (upstreamState: string) => secrets.mac('federation-state', upstreamState),

    /** Whether the cookie presented at the callback belongs to this state (constant time). */
    bound: (upstreamState: string, cookie: string | undefined) => typeof cookie === 'string' && secrets.equal(cookie, secrets.mac('federation-state', upstreamState)),

    /**
     * The pending record of a state, removed as it is read: of two callbacks with one state (a
     * replay), exactly one gets it — the conditional consume decides.
     */
    async takePending(upstreamState: string): Promise<PendingUpstream | undefined> {
      if (!upstreamState || upstreamState.length > 512) return undefined;
      const key = keyOf(upstreamState);
      const { consumed } = await state.consume(PENDING_MODEL, key);
      if (!consumed) return undefined;
      const payload = await state.find(PENDING_MODEL, key);
      await state.destroy(PENDING_MODEL, key);
      if (!payload || typeof payload.transaction !== 'string' || typeof payload.provider !== 'string') return undefined;
      let transaction: unknown;
      try {
        transaction = JSON.parse(secrets.decrypt(payload.transaction)) as unknown;
      } catch {
        return undefined;
      }
      return {
        purpose: payload.purpose === 'link' ? 'link' : 'login',
        uid: typeof payload.uid === 'string' ? payload.uid : undefined,
        accountId: typeof payload.accountId === 'string' ? payload.accountId : undefined,
        provider: payload.provider,
        transaction,
      };
    },

    /**
     * The account page's link: the callback (which cannot see the account-page cookie) leaves the
     * identity under a random single-use id for the account page to take, for the account that
     * started it only.
     */
    async handOff(accountId: string, provider: string, identity: SignedInUpstream): Promise<string> {
      const id = randomBytes(24).toString('base64url');
      const { subject, email, email_verified: verified, name } = identity;
      await state.upsert(HANDOFF_MODEL, keyOf(id), { accountId, provider, identity: secrets.encrypt(JSON.stringify({ subject, email, email_verified: verified, name })) }, HANDOFF_TTL_SECONDS);
      return id;
    },

    async takeHandOff(id: string): Promise<{ accountId: string; provider: string; identity: SignedInUpstream } | undefined> {
      if (!id || id.length > 128) return undefined;
      const key = keyOf(id);
      if (!(await state.consume(HANDOFF_MODEL, key)).consumed) return undefined;
      const payload = await state.find(HANDOFF_MODEL, key);
      await state.destroy(HANDOFF_MODEL, key);
      if (!payload || typeof payload.accountId !== 'string' || typeof payload.provider !== 'string' || typeof payload.identity !== 'string') return undefined;
      try {
        return { accountId: payload.accountId, provider: payload.provider, identity: JSON.parse(secrets.decrypt(payload.identity)) as SignedInUpstream };
      } catch {
        return undefined;
      }
    },

    /** Audits a refusal decided outside `decide` (a disabled provider, an upstream failure). */
    refuse: (reason: RefusalReason, provider: string, at: RefusalContext) => refused(reason, provider, at),

    /**
     * Which account an upstream identity signs in to. The provider's domain list is checked
     * before any account is read; an identity linked already signs in whatever its email says
     * now; otherwise the same address (case-insensitive, verified upstream) links by the
     * provider's policy, or a new account is made when registration allows it.
     */
    async decide(provider: SignInProvider, identity: SignedInUpstream, at: { origin?: RequestOrigin; clientId?: string | null } = {}): Promise<FederationDecision> {
      const ctx = { ...at, subject: identity.subject };
      if (!provider.enabled) return refused('disabled', provider.name, ctx);
      const email = identity.email?.trim() || null;
      if (!emailDomainAllowed(provider, email ?? '')) return refused('domain', provider.name, ctx);

      const link = await identities.findBySubject(provider.name, identity.subject);
      const linked = link ? await accounts.findById(link.accountId) : undefined;
      if (link && linked) {
        if (!linked.active) return accountRefused('inactive', linked, provider.name, at);
        if (deps.requireVerifiedEmail && !linked.emailVerified) return accountRefused('unverified', linked, provider.name, at);
        await identities.recordLogin(link.id, email);
        await signedIn(linked, provider.name, identity, 'linked', at);
        return { kind: 'signed_in', account: linked, method: 'linked' };
      }

      // Without an address nothing can be matched or created.
      if (!email) return refused('unverified_email', provider.name, ctx);
      for (let attempt = 0; attempt < 2; attempt++) {
        const existing = await accounts.findByEmail(email);
        if (existing) {
          // An unverified upstream address proves nothing about who owns the local account.
          if (!identity.email_verified) return refused('unverified_email', provider.name, { ...ctx, accountId: existing.id });
          if (provider.linkPolicy === 'never' || (provider.linkPolicy === 'ask' && existing.passwordHash === null)) return refused('never', provider.name, { ...ctx, accountId: existing.id });
          if (!existing.active) return accountRefused('inactive', existing, provider.name, at);
          // The account is linked to another identity of this provider already (one link per
          // provider): this one cannot be added by policy; the account page can replace it.
          if (await identities.findByAccount(existing.id, provider.name)) return refused('never', provider.name, { ...ctx, accountId: existing.id });
          if (provider.linkPolicy === 'ask') return { kind: 'ask', account: existing };
          const by: AuditActor = { actorId: existing.id, clientId: at.clientId ?? null, origin: at.origin, via: 'federation' };
          try {
            await identities.link({ accountId: existing.id, provider: provider.name, subject: identity.subject, email, method: 'auto' }, by);
          } catch (err) {
            // Linked by a concurrent callback of the same identity: sign in through that link. Any
            // other conflict (a concurrent link of another identity to this account) is answered as is.
            if (err instanceof ConflictError && attempt === 0 && (await identities.findBySubject(provider.name, identity.subject))) return this.decide(provider, identity, at);
            throw err;
          }
          const account = existing.emailVerified ? existing : await accounts.update(existing.id, { emailVerified: true }, by);
          await signedIn(account, provider.name, identity, 'auto', at);
          return { kind: 'signed_in', account, method: 'auto' };
        }

        const invitation = deps.registration === 'invite' ? await invitationFor(email) : undefined;
        if (deps.registration !== 'open' && !invitation) return refused('registration_closed', provider.name, ctx);
        // An unverified address may make an account only where unverified accounts may sign in;
        // where they may not, the account would be stuck: refused before anything is written.
        if (!identity.email_verified && (deps.requireVerifiedEmail || invitation)) return refused('unverified_email', provider.name, ctx);
        let account: AccountRecord;
        try {
          account = await accounts.createPasswordless({ email, name: identity.name, emailVerified: identity.email_verified });
        } catch (err) {
          if (err instanceof DuplicateEmailError) continue;
          throw err;
        }
        if (invitation) await deps.tokens.consume(invitation.id, 'invitation');
        const by: AuditActor = { actorId: account.id, clientId: at.clientId ?? null, origin: at.origin, via: 'federation' };
        await audit.record({ type: 'account.register', actorId: account.id, subjectId: account.id, clientId: at.clientId ?? null, ...(at.origin ? { origin: at.origin } : {}), details: { via: invitation ? 'invitation' : 'open', provider: provider.name } });
        await identities.link({ accountId: account.id, provider: provider.name, subject: identity.subject, email, method: 'registration' }, by);
        await signedIn(account, provider.name, identity, 'registration', at);
        return { kind: 'signed_in', account, method: 'registration' };
      }
      return refused('registration_closed', provider.name, ctx);
    },

    /** Policy `ask`, after the account's password (and code): the link, audited, and the sign-in. */
    async linkAfterPassword(account: AccountRecord, provider: string, identity: SignedInUpstream, at: { origin?: RequestOrigin; clientId?: string | null }): Promise<void> {
      const by: AuditActor = { actorId: account.id, clientId: at.clientId ?? null, origin: at.origin, via: 'federation' };
      await identities.link({ accountId: account.id, provider, subject: identity.subject, email: identity.email, method: 'ask' }, by);
      if (identity.email_verified && !account.emailVerified && identity.email?.toLowerCase() === account.email.toLowerCase()) await accounts.update(account.id, { emailVerified: true }, by);
      await signedIn(account, provider, identity, 'ask', at);
    },

    /**
     * The account page's "link": the identity joins the signed-in account. ConflictError when it
     * is linked to an account already (this one or another), or the account has this provider.
     */
    async linkFromAccountPage(accountId: string, provider: string, identity: SignedInUpstream, origin: RequestOrigin): Promise<void> {
      await identities.link({ accountId, provider, subject: identity.subject, email: identity.email, method: 'account' }, { actorId: accountId, origin, via: 'account' });
    },

    /**
     * Remembers through which provider the sign-in of `accountId` at `authTime` came, for the ID
     * tokens of that session (`idp`). Kept as long as its grant (and refresh tokens) can live.
     */
    async rememberIdp(accountId: string, authTime: number, provider: string): Promise<void> {
      await state.upsert(IDP_MODEL, `${accountId}:${authTime}`, { accountId, idp: provider }, deps.grantTtlSeconds);
    },

    async idpOf(accountId: string, authTime: number): Promise<string | undefined> {
      const found = await state.find(IDP_MODEL, `${accountId}:${authTime}`);
      return typeof found?.idp === 'string' ? found.idp : undefined;
    },
  };
}

export type FederationService = ReturnType<typeof createFederationService>;
