import Router from '@koa/router';
import type Koa from 'koa';

import { UpstreamError, type UpstreamClient, type UpstreamIdentity, type UpstreamProvider, type UpstreamTransaction } from '../federation/upstream.js';
import type { Logger } from '../lib/logger.js';
import { originOf } from '../lib/request-origin.js';
import { epochSeconds } from '../lib/time.js';
import { readForm } from '../middleware/body.js';
import type { Oidc } from '../oidc/provider.js';
import type { AccountService } from '../services/accounts.js';
import { REFUSAL_MESSAGES, PENDING_TTL_SECONDS, type FederationService, type PendingUpstream } from '../services/federation.js';
import { callbackUri, emailDomainAllowed, type IdentityProviderService, type SignInProvider } from '../services/identity-providers.js';
import { tooManyAttemptsMessage } from '../services/login-guard.js';
import { AMR_FEDERATED, type CompletedLogin, type LoginContext, type LoginService } from '../services/login.js';
import type { MfaService } from '../services/mfa.js';
import type { MfaStep, PendingLink } from './interaction-mfa.js';
import { completeInteraction, interactionLoader, type Pages } from './self-service.js';

type Details = Awaited<ReturnType<Oidc['provider']['interactionDetails']>>;

/**
 * The browser-binding cookie, one per started sign-in (two tabs may start two): its name carries
 * a prefix of the state's HMAC, its value the whole HMAC. Only the callback path sees it.
 */
export const STATE_COOKIE = 'latch_federation';
const cookieName = (binding: string) => `${STATE_COOKIE}_${binding.slice(0, 12)}`;
const COOKIE_PATH = '/federation';
/** The identity an upstream callback brought, on the interaction's result until its page takes it. */
const RESULT_KEY = 'latch_federation';
/** Policy `ask`: the identity waiting for the account's password, on the interaction's result. */
const LINK_KEY = 'latch_federation_link';

interface StoredIdentity extends PendingLink {
  /** Epoch seconds of the callback. */
  at: number;
}
interface StoredLink extends StoredIdentity {
  accountId: string;
}

/**
 * Saves a finished login and returns where the browser goes; an upstream sign-in's provider is
 * remembered under the session's auth_time for its ID tokens' `idp` (oidc/account.ts).
 */
export async function completeLogin(federation: Pick<FederationService, 'rememberIdp'>, details: Details, login: CompletedLogin): Promise<string> {
  const { idp, ...rest } = login;
  if (!idp) return completeInteraction(details, { login: rest });
  // oidc-provider takes the session's auth_time from `ts`.
  const ts = epochSeconds();
  await federation.rememberIdp(login.accountId, ts, idp);
  return completeInteraction(details, { login: { ...rest, ts } });
}

/** The protocol client's view of a configured provider. */
export const upstreamProvider = (p: SignInProvider): UpstreamProvider => ({
  name: p.name,
  kind: p.kind,
  display_name: p.displayName,
  issuer: p.issuer,
  client_id: p.clientId,
  client_secret: p.clientSecret,
  scopes: p.scopes,
  api_url: p.apiUrl,
  web_url: p.webUrl,
});

const identityOf = (provider: string, i: UpstreamIdentity): PendingLink => ({ provider, subject: i.subject, email: i.email, email_verified: i.email_verified, name: i.name });

export interface FederationRouteDeps {
  oidc: Oidc;
  issuer: string;
  federation: FederationService;
  providers: Pick<IdentityProviderService, 'forSignIn'>;
  accounts: Pick<AccountService, 'findById'>;
  mfa: Pick<MfaService, 'isEnabled'>;
  login: LoginService;
  mfaStep: MfaStep;
  upstream: UpstreamClient;
  pages: Pages;
  logger: Logger;
}

/**
 * Sign-in through an upstream provider: the login page's buttons start it, the upstream sends the
 * browser back to /federation/callback/{name}, and the sign-in ends on the interaction's pages
 * (the interaction cookie is scoped to /interaction/{uid}, so the callback hands over through the
 * interaction's server-side result). The state is single use and bound to the browser that
 * started it (RFC 6749 §10.12); every failure ends on a page with a way back, never a 500.
 */
export function federationRoutes(deps: FederationRouteDeps) {
  const { oidc, federation, pages, upstream } = deps;
  const router = new Router();
  const load = interactionLoader(oidc, pages);

  const back = (uid: string | undefined) => (uid ? { href: `/interaction/${encodeURIComponent(uid)}`, label: 'Try again' } : { href: '/account', label: 'Go to your account' });
  const problem = (ctx: Koa.Context, status: number, title: string, lead: string, uid: string | undefined, link = back(uid)) => pages.message(ctx, { title, lead, tone: 'alert', link }, status);
  const refusal = (ctx: Koa.Context, reason: keyof typeof REFUSAL_MESSAGES, uid: string | undefined) => problem(ctx, 403, 'Sign-in refused', REFUSAL_MESSAGES[reason], uid, uid ? { href: `/interaction/${encodeURIComponent(uid)}`, label: 'Sign in another way' } : back(undefined));

  const loginContext = (ctx: Koa.Context, details: Details): LoginContext => ({ ip: ctx.ip, clientId: details.params.client_id as string, origin: originOf(ctx), params: details.params });
  const cookieOptions = (ctx: Koa.Context) => ({ httpOnly: true, sameSite: 'lax' as const, secure: ctx.secure, path: COOKIE_PATH, overwrite: true, signed: false });

  /**
   * The upstream's failure as a page: its short message, its status (400-403, 502), audited.
   * The upstream client logged it already, with the detail the page does not show.
   */
  async function upstreamFailure(ctx: Koa.Context, err: UpstreamError, provider: string, uid: string | undefined, at: { clientId?: string | null; accountId?: string | null } = {}) {
    await federation.refuse('upstream_error', provider, { origin: originOf(ctx), ...at, upstream: err.reason });
    await problem(ctx, err.status, 'Sign-in did not work', err.message, uid);
  }

  /**
   * Sends the browser to the upstream: the transaction kept server-side under its state, the
   * browser bound to it by a cookie. Shared by the login page and the account page.
   */
  async function startUpstream(ctx: Koa.Context, provider: SignInProvider, pending: Omit<PendingUpstream, 'transaction' | 'provider'>): Promise<void> {
    let started: Awaited<ReturnType<UpstreamClient['start']>>;
    try {
      started = await upstream.start(upstreamProvider(provider), callbackUri(deps.issuer, provider.name));
    } catch (err) {
      if (!(err instanceof UpstreamError)) throw err;
      await upstreamFailure(ctx, err, provider.name, pending.uid, { accountId: pending.accountId ?? null });
      return;
    }
    const binding = await federation.savePending(started.transaction.state, { ...pending, provider: provider.name, transaction: started.transaction });
    ctx.cookies.set(cookieName(binding), binding, { ...cookieOptions(ctx), maxAge: PENDING_TTL_SECONDS * 1000 });
    ctx.set('Cache-Control', 'no-store');
    ctx.status = 303;
    ctx.redirect(started.url.toString());
  }

  /** A provider that may start or finish a sign-in: unknown → 404, disabled → 403 (audited). */
  async function usableProvider(ctx: Koa.Context, name: string, uid: string | undefined, at: { clientId?: string | null; accountId?: string | null } = {}): Promise<SignInProvider | undefined> {
    const provider = await deps.providers.forSignIn(name);
    if (!provider) {
      await problem(ctx, 404, 'Unknown sign-in provider', 'There is no such sign-in provider here.', uid);
      return undefined;
    }
    if (!provider.enabled) {
      await federation.refuse('disabled', provider.name, { origin: originOf(ctx), ...at });
      await refusal(ctx, 'disabled', uid);
      return undefined;
    }
    return provider;
  }

  const complete = (details: Details, login: CompletedLogin) => completeLogin(federation, details, login);

  async function storeOnResult(details: Details, key: string, value: unknown): Promise<void> {
    const result = { ...(details.result as Record<string, unknown> | undefined) };
    if (value === undefined) delete result[key];
    else result[key] = value;
    details.result = result;
    await details.persist();
  }

  const fresh = (v: unknown): v is StoredIdentity => {
    const s = v as Partial<StoredIdentity> | undefined;
    return !!s && typeof s.provider === 'string' && typeof s.subject === 'string' && typeof s.at === 'number' && epochSeconds() - s.at <= PENDING_TTL_SECONDS;
  };

  // The link page and the hand-over are matched before the provider-name route.
  router.get('/interaction/:uid/federation/link', async (ctx) => {
    const details = await load(ctx);
    if (!details) return;
    await linkPage(ctx, details);
  });

  async function pendingLinkOf(ctx: Koa.Context, details: Details) {
    const stored = (details.result as Record<string, unknown> | undefined)?.[LINK_KEY] as StoredLink | undefined;
    const account = details.prompt.name === 'login' && fresh(stored) && typeof stored.accountId === 'string' ? await deps.accounts.findById(stored.accountId) : undefined;
    if (!stored || !account?.active) {
      ctx.status = 303;
      ctx.redirect(`/interaction/${encodeURIComponent(details.uid)}`);
      return undefined;
    }
    return { stored, account };
  }

  async function clientName(details: Details): Promise<string> {
    const id = details.params.client_id;
    const client = typeof id === 'string' ? ((await oidc.provider.Client.find(id)) as { clientName?: string } | undefined) : undefined;
    return client?.clientName ?? (typeof id === 'string' ? id : 'an application');
  }

  async function linkPage(ctx: Koa.Context, details: Details, error: string | null = null, status = 200) {
    const found = await pendingLinkOf(ctx, details);
    if (!found) return;
    const provider = await deps.providers.forSignIn(found.stored.provider);
    await pages.page(
      ctx,
      'federation-link',
      { title: 'Link your sign-in', uid: details.uid, email: found.account.email, providerName: provider?.displayName ?? found.stored.provider, clientName: await clientName(details), code: await deps.mfa.isEnabled(found.account.id), error },
      status,
    );
  }

  router.post('/interaction/:uid/federation/link', async (ctx) => {
    const form = await readForm(ctx);
    if (!(await pages.checkCsrf(ctx, form))) return;
    const details = await load(ctx);
    if (!details) return;
    const found = await pendingLinkOf(ctx, details);
    if (!found) return;
    const { stored, account } = found;
    const at = loginContext(ctx, details);
    // Through the login guard and the password check of a password login, on the account's address.
    const step = await deps.login.password(account.email, form.password ?? '', at, [AMR_FEDERATED]);
    if (step.kind === 'locked') {
      ctx.set('Retry-After', String(step.retryAfterSeconds));
      await linkPage(ctx, details, tooManyAttemptsMessage(step.retryAfterSeconds), 429);
      return;
    }
    if (step.kind === 'refused') {
      if (step.reason === 'invalid_credentials') await linkPage(ctx, details, 'That password is not right.', 401);
      else await problem(ctx, 403, 'Sign-in refused', step.reason === 'inactive' ? 'This account is disabled. Contact your administrator.' : 'Verify your email address first: follow the link in the mail we sent you.', details.uid);
      return;
    }
    const link: PendingLink = { provider: stored.provider, subject: stored.subject, email: stored.email, email_verified: stored.email_verified, name: stored.name };
    if (step.kind === 'second_step') {
      if (step.step === 'code') {
        const checked = await deps.login.code(account, account.email, (form.code ?? '').slice(0, 64), at, [AMR_FEDERATED, 'pwd']);
        if (checked.kind === 'locked') {
          ctx.set('Retry-After', String(checked.retryAfterSeconds));
          await linkPage(ctx, details, tooManyAttemptsMessage(checked.retryAfterSeconds), 429);
          return;
        }
        if (checked.kind === 'wrong') {
          await linkPage(ctx, details, 'That code is not valid. Enter the current code from your app, or one of your recovery codes.', 401);
          return;
        }
        await federation.linkAfterPassword(account, link.provider, link, at);
        ctx.status = 303;
        ctx.redirect(await complete(details, { ...checked.login, idp: link.provider }));
        return;
      }
      // The client insists on MFA and the account has none yet: enrol first, link after.
      await storeOnResult(details, LINK_KEY, undefined);
      await deps.mfaStep.start(ctx, details, account, step.step, account.email, { amr: [AMR_FEDERATED, 'pwd'], idp: link.provider, link });
      return;
    }
    await federation.linkAfterPassword(account, link.provider, link, at);
    ctx.status = 303;
    ctx.redirect(await complete(details, { ...step.login, idp: link.provider }));
  });

  // The callback's hand-over: the interaction cookie is sent again here, so the identity meets
  // the interaction of this very browser.
  router.get('/interaction/:uid/federation-return', async (ctx) => {
    const details = await load(ctx);
    if (!details) return;
    const stored = (details.result as Record<string, unknown> | undefined)?.[RESULT_KEY];
    if (details.prompt.name !== 'login' || !fresh(stored)) {
      ctx.status = 303;
      ctx.redirect(`/interaction/${encodeURIComponent(details.uid)}`);
      return;
    }
    // Taken once: a reload cannot sign in twice.
    await storeOnResult(details, RESULT_KEY, undefined);
    const at = loginContext(ctx, details);
    const provider = await usableProvider(ctx, stored.provider, details.uid, { clientId: at.clientId });
    if (!provider) return;
    const decision = await federation.decide(provider, stored, { origin: at.origin, clientId: at.clientId });
    if (decision.kind === 'refused') {
      await refusal(ctx, decision.reason, details.uid);
      return;
    }
    if (decision.kind === 'account_refused') {
      await problem(ctx, 403, 'Sign-in refused', decision.reason === 'inactive' ? 'This account is disabled. Contact your administrator.' : 'Verify your email address first: follow the link in the mail we sent you, then sign in again.', details.uid);
      return;
    }
    if (decision.kind === 'ask') {
      await storeOnResult(details, LINK_KEY, { ...stored, accountId: decision.account.id } satisfies StoredLink);
      ctx.status = 303;
      ctx.redirect(`/interaction/${encodeURIComponent(details.uid)}/federation/link`);
      return;
    }
    const step = await deps.login.federated(decision.account, provider.name, at);
    if (step.kind === 'second_step') {
      await deps.mfaStep.start(ctx, details, decision.account, step.step, decision.account.email, { amr: [AMR_FEDERATED], idp: provider.name });
      return;
    }
    ctx.status = 303;
    ctx.redirect(await complete(details, step.login));
  });

  router.get('/interaction/:uid/federation/:name', async (ctx) => {
    const details = await load(ctx);
    if (!details) return;
    if (details.prompt.name !== 'login') {
      ctx.status = 303;
      ctx.redirect(`/interaction/${encodeURIComponent(details.uid)}`);
      return;
    }
    const provider = await usableProvider(ctx, ctx.params.name!, details.uid, { clientId: details.params.client_id as string });
    if (!provider) return;
    await startUpstream(ctx, provider, { purpose: 'login', uid: details.uid });
  });

  router.get('/federation/callback/:name', async (ctx) => {
    const name = ctx.params.name!;
    const rawState = ctx.query.state;
    const upstreamState = typeof rawState === 'string' ? rawState : '';
    const cookieKey = upstreamState ? cookieName(federation.binding(upstreamState)) : undefined;
    const cookie = cookieKey ? ctx.cookies.get(cookieKey) : undefined;
    if (cookieKey && cookie !== undefined) ctx.cookies.set(cookieKey, null, cookieOptions(ctx));
    // Destroyed before anything else is looked at: a replay finds nothing.
    const pending = upstreamState ? await federation.takePending(upstreamState) : undefined;
    if (!pending || pending.provider !== name) {
      // Not audited: anyone can send junk here, and the trail is no place to let them write to.
      // A found state (a real sign-in that failed) is.
      deps.logger.warn('upstream callback without a pending sign-in', { provider: name.slice(0, 64), found: Boolean(pending) });
      await problem(ctx, 400, 'Sign-in expired', 'This sign-in was already used, has expired or did not start here. Start again.', pending?.uid);
      return;
    }
    if (!federation.bound(upstreamState, cookie)) {
      await federation.refuse('upstream_error', name, { origin: originOf(ctx), upstream: 'browser_binding', accountId: pending.accountId ?? null });
      await problem(ctx, 400, 'Sign-in expired', 'This sign-in did not start in this browser. Start again.', pending.uid);
      return;
    }
    const provider = await usableProvider(ctx, name, pending.uid, { accountId: pending.accountId ?? null });
    if (!provider) return;
    let identity: UpstreamIdentity;
    try {
      identity = await upstream.finish(upstreamProvider(provider), pending.transaction as UpstreamTransaction, new URL(ctx.originalUrl, deps.issuer));
    } catch (err) {
      if (!(err instanceof UpstreamError)) throw err;
      await upstreamFailure(ctx, err, name, pending.uid, { accountId: pending.accountId ?? null });
      return;
    }
    if (pending.purpose === 'link' && pending.accountId) {
      // The provider's domain list holds for linking as for signing in.
      if (!emailDomainAllowed(provider, identity.email ?? '')) {
        await federation.refuse('domain', name, { origin: originOf(ctx), accountId: pending.accountId, subject: identity.subject });
        await refusal(ctx, 'domain', undefined);
        return;
      }
      const handOff = await federation.handOff(pending.accountId, name, identity);
      ctx.status = 303;
      ctx.redirect(`/account/federation/${encodeURIComponent(name)}/linked?handoff=${encodeURIComponent(handOff)}`);
      return;
    }
    const interaction = pending.uid ? await oidc.provider.Interaction.find(pending.uid) : undefined;
    if (!interaction) {
      await problem(ctx, 400, 'Sign-in expired', 'This sign-in request has expired. Go back to the application and start again.', undefined);
      return;
    }
    interaction.result = { ...(interaction.result as Record<string, unknown> | undefined), [RESULT_KEY]: { ...identityOf(name, identity), at: epochSeconds() } satisfies StoredIdentity };
    await interaction.save(interaction.exp - epochSeconds());
    ctx.status = 303;
    ctx.redirect(`/interaction/${encodeURIComponent(pending.uid!)}/federation-return`);
  });

  return { router, complete, startUpstream, usableProvider, upstreamFailure };
}

export type FederationRoutes = ReturnType<typeof federationRoutes>;
