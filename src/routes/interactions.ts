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
import type { IdentityProviderService } from '../services/identity-providers.js';
import type { LoginService } from '../services/login.js';
import { tooManyAttemptsMessage } from '../services/login-guard.js';
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

export function interactionRoutes(deps: { oidc: Oidc; login: LoginService; mfaStep: MfaStep; csrf: Csrf; render: Render; logger: Logger; registration: RegistrationMode; idps: Pick<IdentityProviderService, 'enabled'> }): Router {
  const { oidc, login, csrf, render, registration } = deps;
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
      await page(ctx, 'login', { providers: await deps.idps.enabled(), title: 'Sign in', uid: details.uid, clientName, email: typeof details.params.login_hint === 'string' ? details.params.login_hint : '', error: null, registration });
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
    const step = await login.password(email, form.password ?? '', { ip: ctx.ip, clientId: details.params.client_id as string, origin: originOf(ctx), params: details.params });
    if (step.kind === 'second_step') {
      await deps.mfaStep.start(ctx, details, step.account, step.step, email);
      return;
    }
    if (step.kind === 'signed_in') {
      await finish(ctx, details, { login: step.login });
      return;
    }
    const client = await clientOf(details);
    const clientName = client?.clientName ?? client?.clientId ?? 'an application';
    if (step.kind === 'locked') {
      ctx.set('Retry-After', String(step.retryAfterSeconds));
      await page(ctx, 'login', { providers: await deps.idps.enabled(), title: 'Sign in', uid: details.uid, clientName, email, error: tooManyAttemptsMessage(step.retryAfterSeconds), registration, unverified: false }, 429);
      return;
    }
    // The same message for an unknown email and a wrong password: no user enumeration.
    const error = {
      invalid_credentials: 'Invalid email or password.',
      inactive: 'This account is disabled. Contact your administrator.',
      unverified: 'Verify your email address first: follow the link in the mail we sent you.',
    }[step.reason];
    await page(ctx, 'login', { providers: await deps.idps.enabled(), title: 'Sign in', uid: details.uid, clientName, email, error, registration, unverified: step.reason === 'unverified' }, 401);
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
