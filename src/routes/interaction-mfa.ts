import Router from '@koa/router';
import type Koa from 'koa';

import type { Logger } from '../lib/logger.js';
import type { Render } from '../lib/views.js';
import { originOf } from '../lib/request-origin.js';
import { readForm } from '../middleware/body.js';
import type { Csrf } from '../middleware/csrf.js';
import type { Oidc } from '../oidc/provider.js';
import type { AccountRecord } from '../repositories/accounts.js';
import type { AccountService } from '../services/accounts.js';
import type { CompletedLogin, LoginContext, LoginService, SecondStep } from '../services/login.js';
import { tooManyAttemptsMessage } from '../services/login-guard.js';
import type { MfaService } from '../services/mfa.js';
import { completeInteraction, createPages, interactionLoader } from './self-service.js';

type Details = Awaited<ReturnType<Oidc['provider']['interactionDetails']>>;

export type { SecondStep };

/**
 * The second sign-in step, kept server-side on the oidc-provider Interaction (never in a form
 * field): which account gave the right password, when, and how far the step has come.
 */
interface Pending {
  accountId: string;
  /** The address the account signs in with: the login guard counts failures per address + IP. */
  email: string;
  mode: SecondStep | 'enrolled';
  /** Epoch seconds of the correct password. */
  at: number;
  /** Wrong codes in this step. */
  failures: number;
  /** The first factor's methods (RFC 8176): ['pwd'] when absent, ['fed'] after an upstream sign-in. */
  amr?: string[];
  /** The upstream provider of the first factor: the ID token's `idp`. */
  idp?: string;
  /** Policy `ask`: the upstream identity linked once the second factor passes. */
  link?: PendingLink;
}

/** An upstream identity waiting to be linked to the account that proves itself. */
export interface PendingLink {
  provider: string;
  subject: string;
  email: string | null;
  email_verified: boolean;
  name: string | null;
}

/** What the second step's end needs of the federation flow. */
export interface FederatedFinish {
  /** Links a pending identity (policy `ask`) once the account has proven itself. */
  linkAfterPassword(account: AccountRecord, provider: string, identity: PendingLink, at: LoginContext): Promise<void>;
  /** Saves the result with `idp` remembered for the session's ID tokens; returns where to go. */
  complete(details: Details, login: CompletedLogin): Promise<string>;
}

const PENDING_KEY = 'latch_mfa';
/** The code must follow the password within this many seconds. */
const PENDING_SECONDS = 300;
/** Wrong codes after which the password must be given again. */
const MAX_FAILURES = 5;

const epoch = () => Math.floor(Date.now() / 1000);

/**
 * After a correct password: an account with MFA enters a TOTP or recovery code
 * (POST /interaction/:uid/mfa, field `code`); a client insisting on urn:latch:loa:2 makes an
 * account without MFA enrol first. The login then finishes with amr ["pwd","otp","mfa"] and
 * acr urn:latch:loa:2 (RFC 8176).
 */
export function createMfaStep(deps: { oidc: Oidc; accounts: AccountService; mfa: MfaService; login: LoginService; csrf: Csrf; render: Render; logger: Logger; federated: FederatedFinish }) {
  const { oidc, mfa, csrf, render } = deps;
  const router = new Router();

  const pages = createPages({ csrf, render });
  const page = (ctx: Koa.Context, view: string, locals: Record<string, unknown> & { title: string }, status = 200) => pages.page(ctx, view, { error: null, ...locals }, status);
  const { checkCsrf } = pages;
  const load = interactionLoader(oidc, pages);

  function pendingOf(details: Details): Pending | undefined {
    if (details.prompt.name !== 'login') return undefined;
    const p = (details.result as Record<string, unknown> | undefined)?.[PENDING_KEY] as Pending | undefined;
    if (!p || typeof p.accountId !== 'string' || typeof p.at !== 'number') return undefined;
    return epoch() - p.at <= PENDING_SECONDS ? p : undefined;
  }

  async function savePending(details: Details, pending: Pending | undefined): Promise<void> {
    const result = { ...(details.result as Record<string, unknown> | undefined) };
    if (pending) result[PENDING_KEY] = pending;
    else delete result[PENDING_KEY];
    details.result = result;
    await details.persist();
  }

  async function clientName(details: Details): Promise<string> {
    const id = details.params.client_id;
    const client = typeof id === 'string' ? ((await oidc.provider.Client.find(id)) as { clientName?: string } | undefined) : undefined;
    return client?.clientName ?? (typeof id === 'string' ? id : 'an application');
  }

  /** The pending step and its account (still active), or an answer sent back to the login page. */
  async function current(ctx: Koa.Context, details: Details): Promise<{ pending: Pending; account: AccountRecord } | undefined> {
    const pending = pendingOf(details);
    const account = pending ? await deps.accounts.findById(pending.accountId) : undefined;
    if (!pending || !account?.active) {
      ctx.status = 303;
      ctx.redirect(`/interaction/${encodeURIComponent(details.uid)}`);
      return undefined;
    }
    return { pending, account };
  }

  const codePage = async (ctx: Koa.Context, details: Details, locals: { error?: string | null; locked?: boolean } = {}, status = 200) =>
    page(ctx, 'mfa', { title: 'Two-step verification', uid: details.uid, clientName: await clientName(details), error: locals.error ?? null, locked: locals.locked ?? false }, status);

  async function enrolPage(ctx: Koa.Context, details: Details, account: AccountRecord, error: string | null = null, status = 200): Promise<boolean> {
    const enrolment = await mfa.beginEnrolment(account);
    if (!enrolment) return false;
    await page(ctx, 'mfa-enrol', { title: 'Set up two-step verification', action: `/interaction/${details.uid}/mfa`, cancel: `/interaction/${details.uid}/abort`, clientName: await clientName(details), enrolment, error, signIn: true }, status);
    return true;
  }

  const loginContext = (ctx: Koa.Context, details: Details): LoginContext => ({ ip: ctx.ip, clientId: details.params.client_id as string, origin: originOf(ctx), params: details.params });

  /** Finishes the sign-in at the MFA level (linking a pending `ask` identity first). */
  async function finish(ctx: Koa.Context, details: Details, pending: Pending, account: AccountRecord, login: CompletedLogin) {
    if (pending.link) await deps.federated.linkAfterPassword(account, pending.link.provider, pending.link, loginContext(ctx, details));
    const url = pending.idp ? await deps.federated.complete(details, { ...login, idp: pending.idp }) : await completeInteraction(details, { login });
    ctx.status = 303;
    ctx.redirect(url);
  }

  router.get(['/interaction/:uid/mfa', '/interaction/:uid/mfa/continue'], async (ctx) => {
    const details = await load(ctx);
    if (!details) return;
    const step = await current(ctx, details);
    if (!step) return;
    const { pending, account } = step;
    if (pending.mode === 'enrol') {
      if (await enrolPage(ctx, details, account)) return;
      // Enrolled meanwhile (another tab): a code it is.
      await savePending(details, { ...pending, mode: 'code' });
    }
    if (pending.mode === 'enrolled') {
      await page(ctx, 'mfa-recovery-codes', { title: 'Two-step verification is on', codes: null, action: `/interaction/${details.uid}/mfa/continue`, clientName: await clientName(details) });
      return;
    }
    await codePage(ctx, details);
  });

  /** A CSRF-checked form POST on a pending second step; undefined once an error page was sent. */
  async function pendingForm(ctx: Koa.Context) {
    const form = await readForm(ctx);
    if (!(await checkCsrf(ctx, form))) return undefined;
    const details = await load(ctx);
    if (!details) return undefined;
    const step = await current(ctx, details);
    return step ? { form, details, step } : undefined;
  }

  router.post('/interaction/:uid/mfa', async (ctx) => {
    const posted = await pendingForm(ctx);
    if (!posted) return;
    const { form, details, step } = posted;
    const { pending, account } = step;
    const code = (form.code ?? '').slice(0, 64);

    if (pending.mode === 'enrol') {
      const codes = await mfa.confirmEnrolment(account.id, code, { actorId: account.id, origin: originOf(ctx) });
      if (!codes) {
        if (await enrolPage(ctx, details, account, 'That code is not valid. Enter the 6-digit code your app shows now.', 400)) return;
        await savePending(details, { ...pending, mode: 'code' });
        await codePage(ctx, details);
        return;
      }
      await savePending(details, { ...pending, mode: 'enrolled' });
      // Shown once: only their HMACs are stored.
      await page(ctx, 'mfa-recovery-codes', { title: 'Save your recovery codes', codes, action: `/interaction/${details.uid}/mfa/continue`, clientName: await clientName(details) });
      return;
    }
    if (pending.mode === 'enrolled') {
      ctx.status = 303;
      ctx.redirect(`/interaction/${encodeURIComponent(details.uid)}/mfa`);
      return;
    }

    const checked = await deps.login.code(account, pending.email, code, loginContext(ctx, details), pending.amr);
    if (checked.kind === 'locked') {
      ctx.set('Retry-After', String(checked.retryAfterSeconds));
      await codePage(ctx, details, { error: tooManyAttemptsMessage(checked.retryAfterSeconds) }, 429);
      return;
    }
    if (checked.kind === 'signed_in') {
      await finish(ctx, details, pending, account, checked.login);
      return;
    }
    const failures = (pending.failures ?? 0) + 1;
    if (failures >= MAX_FAILURES) {
      // Enough guesses on this password: start over from the password.
      await savePending(details, undefined);
      await codePage(ctx, details, { error: 'Too many wrong codes. Sign in again.', locked: true }, 401);
      return;
    }
    await savePending(details, { ...pending, failures });
    await codePage(ctx, details, { error: 'That code is not valid. Enter the current code from your app, or one of your recovery codes.' }, 401);
  });

  router.post('/interaction/:uid/mfa/continue', async (ctx) => {
    const posted = await pendingForm(ctx);
    if (!posted) return;
    const { details, step } = posted;
    if (step.pending.mode !== 'enrolled') {
      ctx.status = 303;
      ctx.redirect(`/interaction/${encodeURIComponent(details.uid)}/mfa`);
      return;
    }
    await finish(ctx, details, step.pending, step.account, await deps.login.enrolled(step.account, step.pending.email, loginContext(ctx, details), step.pending.amr));
  });

  return {
    router,

    /**
     * Keeps the step server-side on the interaction and sends the browser to its page. `email`
     * is the address as typed at the password step: the login guard's account+IP key.
     */
    async start(ctx: Koa.Context, details: Details, account: AccountRecord, mode: SecondStep, email: string, first: Pick<Pending, 'amr' | 'idp' | 'link'> = {}): Promise<void> {
      await savePending(details, { accountId: account.id, email, mode, at: epoch(), failures: 0, ...first });
      ctx.status = 303;
      ctx.redirect(`/interaction/${encodeURIComponent(details.uid)}/mfa`);
    },
  };
}

export type MfaStep = ReturnType<typeof createMfaStep>;
