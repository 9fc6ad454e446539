import Router from '@koa/router';
import type Koa from 'koa';
import type { InteractionResults } from 'oidc-provider';

import type { RegistrationMode } from '../config/schema.js';
import type { Logger } from '../lib/logger.js';
import type { Render } from '../lib/views.js';
import { originOf } from '../lib/request-origin.js';
import { readForm } from '../middleware/body.js';
import type { Csrf } from '../middleware/csrf.js';
import type { Oidc } from '../oidc/provider.js';
import { isFirstParty } from '../oidc/provider.js';
import type { AccountService } from '../services/accounts.js';
import type { AuditService } from '../services/audit.js';
import { tooManyAttemptsMessage, type LoginGuard } from '../services/login-guard.js';
import type { Metrics } from '../services/metrics.js';
import { ACR_PASSWORD, AMR_PASSWORD } from '../services/mfa.js';
import type { MfaStep } from './interaction-mfa.js';
import { completeInteraction, createPages, interactionLoader } from './self-service.js';

const SCOPE_DESCRIPTIONS: Record<string, string> = {
  openid: 'Sign you in with your account',
  profile: 'See your name',
  email: 'See your email address and whether it is verified',
  offline_access: 'Stay connected when you are not using it (refresh tokens)',
};

type Details = Awaited<ReturnType<Oidc['provider']['interactionDetails']>>;
type ClientLike = { clientId: string; clientName?: string; clientAuthMethod: string; [k: string]: unknown };

/**
 * The login and consent pages (OIDC Core §3.1.2.3-4), server-rendered, no JavaScript.
 * oidc-provider sends the browser here with an interaction uid; we answer with the result.
 */

export function interactionRoutes(deps: { oidc: Oidc; accounts: AccountService; csrf: Csrf; render: Render; logger: Logger; metrics?: Pick<Metrics, 'recordLogin'>; audit?: AuditService; registration?: RegistrationMode; loginGuard?: LoginGuard; mfaStep?: MfaStep }): Router {
  const { oidc, accounts, csrf, render } = deps;
  const router = new Router();

  const pages = createPages({ csrf, render });
  const { page, checkCsrf } = pages;
  const load = interactionLoader(oidc, pages);

  async function finish(ctx: Koa.Context, details: Details, result: InteractionResults) {
    const url = await completeInteraction(details, result);
    ctx.status = 303;
    ctx.redirect(url);
  }

  async function clientOf(details: Details): Promise<ClientLike | undefined> {
    const clientId = details.params.client_id;
    return typeof clientId === 'string' ? ((await oidc.provider.Client.find(clientId)) as unknown as ClientLike | undefined) : undefined;
  }

  /** Grants what the consent prompt asks for and finishes the interaction. */
  async function approve(ctx: Koa.Context, details: Details) {
    const { prompt, params, session, grantId } = details;
    const accountId = session?.accountId;
    if (!accountId) {
      await finish(ctx, details, { error: 'login_required', error_description: 'no signed-in account' });
      return;
    }
    const grant = (grantId ? await oidc.provider.Grant.find(grantId) : undefined) ?? new oidc.provider.Grant({ accountId, clientId: params.client_id as string });
    const missing = prompt.details as { missingOIDCScope?: string[]; missingOIDCClaims?: string[]; missingResourceScopes?: Record<string, string[]> };
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) grant.addResourceScope(indicator, scopes.join(' '));
    const savedId = await grant.save();
    await finish(ctx, details, { consent: { grantId: savedId } });
  }

  router.get('/interaction/:uid', async (ctx) => {
    const details = await load(ctx);
    if (!details) return;
    const client = await clientOf(details);
    const clientName = client?.clientName ?? client?.clientId ?? 'an application';
    if (details.prompt.name === 'login') {
      await page(ctx, 'login', { title: 'Sign in', uid: details.uid, clientName, email: typeof details.params.login_hint === 'string' ? details.params.login_hint : '', error: null, registration: deps.registration ?? 'closed' });
      return;
    }
    if (details.prompt.name === 'consent') {
      if (client && isFirstParty(client)) {
        await approve(ctx, details);
        return;
      }
      const missing = details.prompt.details as { missingOIDCScope?: string[]; missingResourceScopes?: Record<string, string[]> };
      const scopes = (missing.missingOIDCScope ?? []).map((s) => ({ name: s, description: SCOPE_DESCRIPTIONS[s] ?? s }));
      const resources = Object.entries(missing.missingResourceScopes ?? {}).map(([resource, list]) => ({ resource, scopes: list }));
      await page(ctx, 'consent', { title: 'Authorize access', uid: details.uid, clientName, scopes, resources });
      return;
    }
    await finish(ctx, details, { error: 'invalid_request', error_description: `unsupported prompt ${details.prompt.name}` });
  });

  // A reload or bookmark of a form's target goes back to the interaction's page.
  router.get(['/interaction/:uid/login', '/interaction/:uid/confirm', '/interaction/:uid/abort'], (ctx) => {
    ctx.status = 303;
    ctx.redirect(`/interaction/${encodeURIComponent(ctx.params.uid!)}`);
  });

  router.post('/interaction/:uid/login', async (ctx) => {
    const form = await readForm(ctx);
    if (!(await checkCsrf(ctx, form))) return;
    const details = await load(ctx);
    if (!details) return;
    if (details.prompt.name !== 'login') {
      ctx.redirect(`/interaction/${details.uid}`);
      return;
    }
    const email = (form.email ?? '').trim();
    // Brute-force protection (services/login-guard.ts): a locked account+IP pair or IP is refused
    // before the password is looked at, so even the right one is refused until the lock ends.
    const attempt = await deps.loginGuard?.begin(email, ctx.ip);
    if (attempt && !attempt.allowed) {
      const client = await clientOf(details);
      ctx.set('Retry-After', String(attempt.retryAfterSeconds));
      await page(ctx, 'login', { title: 'Sign in', uid: details.uid, clientName: client?.clientName ?? client?.clientId ?? 'an application', email, error: tooManyAttemptsMessage(attempt.retryAfterSeconds), registration: deps.registration ?? 'closed', unverified: false }, 429);
      return;
    }
    let result: Awaited<ReturnType<AccountService['authenticate']>>;
    try {
      result = await accounts.authenticate(email, form.password ?? '');
    } catch (err) {
      await attempt?.release();
      throw err;
    }
    // Only a wrong password (or an unknown address) is a failure: inactive and unverified
    // accounts gave the right one.
    // MFA (routes/interaction-mfa.ts): with a second step to come, the right password is not yet
    // a successful login, so the pair's failure count is kept (released, not cleared) and wrong
    // codes keep adding to it.
    const secondStep = result.ok ? await deps.mfaStep?.needed(details, result.account.id) : undefined;
    if (secondStep) {
      await attempt?.release();
    } else if (result.ok || result.reason !== 'invalid_credentials') {
      await attempt?.succeed();
    } else {
      for (const lock of (await attempt?.fail()) ?? []) {
        await deps.audit?.record({ type: 'login.lockout', subjectId: result.account?.id ?? null, clientId: details.params.client_id as string, origin: originOf(ctx), details: { ...lock } });
      }
    }
    deps.metrics?.recordLogin(result.ok ? 'success' : result.reason);
    if (!result.ok) {
      const client = await clientOf(details);
      // The same message for an unknown email and a wrong password: no user enumeration.
      const error = {
        invalid_credentials: 'Invalid email or password.',
        inactive: 'This account is disabled. Contact your administrator.',
        unverified: 'Verify your email address first: follow the link in the mail we sent you.',
      }[result.reason];
      await deps.audit?.record({ type: 'login.failure', actorId: result.account?.id ?? null, subjectId: result.account?.id ?? null, clientId: details.params.client_id as string, origin: originOf(ctx), details: { reason: result.reason } });
      await page(ctx, 'login', { title: 'Sign in', uid: details.uid, clientName: client?.clientName ?? client?.clientId ?? 'an application', email, error, registration: deps.registration ?? 'closed', unverified: result.reason === 'unverified' }, 401);
      return;
    }
    if (secondStep) {
      await deps.mfaStep!.start(ctx, details, result.account, secondStep, email);
      return;
    }
    await deps.audit?.record({ type: 'login.success', actorId: result.account.id, subjectId: result.account.id, clientId: details.params.client_id as string, origin: originOf(ctx), details: { amr: AMR_PASSWORD, acr: ACR_PASSWORD } });
    await finish(ctx, details, { login: { accountId: result.account.id, amr: AMR_PASSWORD, acr: ACR_PASSWORD } });
  });

  router.post('/interaction/:uid/confirm', async (ctx) => {
    const form = await readForm(ctx);
    if (!(await checkCsrf(ctx, form))) return;
    const details = await load(ctx);
    if (!details) return;
    if (details.prompt.name !== 'consent') {
      ctx.redirect(`/interaction/${details.uid}`);
      return;
    }
    await approve(ctx, details);
  });

  router.post('/interaction/:uid/abort', async (ctx) => {
    const form = await readForm(ctx);
    if (!(await checkCsrf(ctx, form))) return;
    const details = await load(ctx);
    if (!details) return;
    // OIDC Core §3.1.2.6: the user refused.
    await finish(ctx, details, { error: 'access_denied', error_description: 'the user denied the request' });
  });

  return router;
}
