import type Koa from 'koa';
import { errors, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';

import type { Render } from '../lib/views.js';
import { BodyError, discardUnreadBody, readBodyText } from '../middleware/body.js';
import type { Counter, CounterName } from '../services/rate-limits.js';
import { isUnstoredSessionSave } from './provider-internals.js';

/**
 * The device authorization grant (RFC 8628) around oidc-provider's `features.deviceFlow`: Latch's
 * pages for the verification URI, the wrong-code limit, and the polling interval (`slow_down`),
 * which oidc-provider leaves to the deployment.
 */

/** RFC 8628 §3.2: the `interval` every device authorization response carries (oidc-provider's fixed 5). */
export const DEVICE_POLL_INTERVAL = 5;
/** RFC 8628 §3.5: each slow_down adds 5 seconds to the interval the device must keep. */
const SLOW_DOWN_STEP = 5;
/** Wrong user codes one address may enter in the counter's window (15 minutes) before a 429. */
const WRONG_CODES_ALLOWED = 5;
/** The 8-character user code alphabet (no vowels, so no words) and its shape. */
export const USER_CODE_CHARSET = 'BCDFGHJKLMNPQRSTVWXZ';
export const USER_CODE_MASK = '****-****';

const SCOPE_DESCRIPTIONS: Record<string, string> = {
  openid: 'Sign you in with your account',
  profile: 'See your name',
  email: 'See your email address and whether it is verified',
  roles: 'See your roles',
  organizations: 'See the organizations you belong to',
  offline_access: 'Stay connected when you are not using it (refresh tokens)',
};

export interface DeviceFlowDeps {
  render: Render;
  /** Latch's form CSRF token and its check (middleware/csrf.ts), on top of oidc-provider's own session-bound xsrf. */
  csrf: { token(ctx: Koa.Context): string; verify(ctx: Koa.Context, submitted: string | undefined): boolean };
  counter: (name: CounterName) => Counter;
  /** The path of the verification page (`/device` under the issuer's path). */
  pagePath: string;
}

type Ctx = KoaContextWithOIDC & Koa.Context;

async function page(ctx: Koa.Context, render: Render, view: string, locals: Record<string, unknown> & { title: string }) {
  ctx.type = 'html';
  // The pages carry a user code and form tokens: never cached.
  ctx.set('Cache-Control', 'no-store');
  ctx.body = await render(view, locals);
}

const message = (ctx: Koa.Context, render: Render, title: string, lead: string, tone: 'plain' | 'alert' = 'plain') =>
  page(ctx, render, 'message', { title, lead, notes: [], link: null, resend: null, tone, csrfToken: '' });

/** What to tell the user about a failed code entry (oidc-provider's ReRenderError names). */
function inputError(err: (Error & { name: string }) | undefined): string | null {
  switch (err?.name) {
    case undefined:
      return null;
    case 'NoCodeError':
      return 'Enter the code shown on your device.';
    case 'NotFoundError':
      return 'That code is not valid. Check it on your device and try again.';
    case 'ExpiredError':
      return 'That code has expired. Start again on your device to get a new one.';
    case 'AlreadyUsedError':
      return 'That code has already been used. Start again on your device to get a new one.';
    default:
      return 'Something went wrong with this code. Start again on your device.';
  }
}

const WRONG = new Set(['NotFoundError', 'NoCodeError']);

/** `features.deviceFlow` of the provider configuration. */
export function deviceFlowFeature(deps: DeviceFlowDeps): NonNullable<Configuration['features']>['deviceFlow'] {
  const { render, csrf } = deps;
  return {
    enabled: true,
    charset: 'base-20',
    mask: USER_CODE_MASK,
    async userCodeInputSource(ctx, _form, _out, err) {
      const c = ctx as Ctx;
      const failure = err as (Error & { name: string; userCode?: string }) | undefined;
      if (c.oidc.route === 'device_resume') {
        // oidc-provider shows the code form for a failed `/device/:uid` (an unknown, stale or
        // replayed resume link: 400). There is no code to enter again there: the device has to
        // start over.
        await message(c, render, 'Device sign-in expired', 'This device sign-in has expired or was already used. Start again on your device.', 'alert');
        return;
      }
      if (failure?.name === 'AbortedError') {
        await message(c, render, 'Device not connected', 'You denied the request. The device was not given access to your account.');
        return;
      }
      if (failure && WRONG.has(failure.name)) await deps.counter('device_code_ip').add(c.ip);
      const prefill = failure?.userCode ?? (c.state as { deviceUserCode?: string }).deviceUserCode ?? '';
      await page(c, render, 'device', {
        title: 'Connect a device',
        action: c.oidc.urlFor('code_verification'),
        csrfToken: csrf.token(c),
        xsrf: c.oidc.session?.state?.secret ?? '',
        userCode: prefill,
        error: inputError(failure),
      });
    },
    async userCodeConfirmSource(ctx, _form, client, _deviceInfo, userCode) {
      const c = ctx as Ctx;
      const params = (c.oidc.entities.DeviceCode as unknown as { params?: { scope?: string; resource?: string | string[] } } | undefined)?.params ?? {};
      const scopes = (params.scope ?? '').split(' ').filter(Boolean);
      const resources = [params.resource ?? []].flat().filter(Boolean);
      await page(c, render, 'device-confirm', {
        title: `Connect ${client.clientName ?? client.clientId}`,
        action: c.oidc.urlFor('code_verification'),
        csrfToken: csrf.token(c),
        xsrf: c.oidc.session?.state?.secret ?? '',
        clientName: client.clientName ?? client.clientId,
        userCode,
        scopes: scopes.map((name) => ({ name, description: SCOPE_DESCRIPTIONS[name] ?? 'Use this permission' })),
        resources,
      });
    },
    async successSource(ctx) {
      const client = (ctx as Ctx).oidc.client;
      await message(ctx, render, 'Device connected', `${client?.clientName ?? 'The device'} is now signed in. You can return to your device.`);
    },
  };
}

/**
 * Runs before oidc-provider on the verification page:
 * - GET with `user_code` (RFC 8628 §3.3.1 verification_uri_complete): the code is shown filled in
 *   on Latch's page instead of oidc-provider's auto-submitting script, which the Content Security
 *   Policy blocks; the user still confirms on the next page.
 * - POST: refused with a 429 page after too many wrong codes from the address (RFC 8628 §5.1: user
 *   codes are short, so guessing must be rate-limited), and with a 403 page without Latch's CSRF token.
 */
export function deviceFlowGuard(deps: DeviceFlowDeps): (ctx: Koa.Context, next: Koa.Next) => Promise<unknown> | unknown {
  const { render, csrf, pagePath } = deps;
  const authorizationPath = `${pagePath}/auth`;
  const under = `${pagePath}/`;
  const guard = async (ctx: Koa.Context, next: Koa.Next): Promise<unknown> => {
    if (ctx.path === authorizationPath && ctx.method === 'POST') {
      await next();
      // RFC 8628 §3.2 makes `interval` optional (default 5): Latch always sends it, so a device
      // never has to know the default.
      const body = ctx.body as Record<string, unknown> | undefined;
      if (ctx.status === 200 && body && typeof body === 'object' && typeof body.device_code === 'string' && body.interval === undefined) body.interval = DEVICE_POLL_INTERVAL;
      return undefined;
    }
    if (ctx.path.startsWith(under)) {
      // `/device/:uid` resumes a device sign-in. A failed one (unknown, stale or replayed link)
      // is rendered as a 400 page (userCodeInputSource) on a session oidc-provider changed but
      // never stored, whose save then throws (isUnstoredSessionSave): the page stands, without
      // the cookie of a session that does not exist.
      try {
        await next();
      } catch (err) {
        if (!isUnstoredSessionSave(err)) throw err;
        ctx.status = 400;
        ctx.remove('Set-Cookie');
      }
      return undefined;
    }
    if (ctx.path !== pagePath) return next();
    if (ctx.method === 'GET' && typeof ctx.query.user_code === 'string') {
      (ctx.state as { deviceUserCode?: string }).deviceUserCode = ctx.query.user_code.slice(0, 32);
      const rest = new URLSearchParams(ctx.querystring);
      rest.delete('user_code');
      ctx.querystring = rest.toString();
      return next();
    }
    if (ctx.method !== 'POST') return next();
    const wrong = await deps.counter('device_code_ip').get(ctx.ip);
    if (wrong && wrong.count >= WRONG_CODES_ALLOWED) {
      ctx.status = 429;
      ctx.set('Retry-After', String(Math.max(1, Math.ceil(wrong.msLeft / 1000))));
      await message(ctx, render, 'Too many attempts', 'Too many wrong codes were entered from your network. Wait a few minutes and try again.', 'alert');
      ctx.status = 429;
      return undefined;
    }
    // The body is read here only to check the CSRF field; oidc-provider reads it again from ctx.request.body.
    let form: Record<string, string>;
    try {
      form = await readUrlencoded(ctx);
    } catch (err) {
      if (!(err instanceof BodyError)) throw err;
      discardUnreadBody(ctx.req);
      ctx.status = err.status;
      await message(ctx, render, err.status === 413 ? 'Form too large' : 'Form incomplete', err.status === 413 ? 'The form sent was too large.' : 'The form arrived incomplete. Try again.', 'alert');
      ctx.status = err.status;
      return undefined;
    }
    if (!csrf.verify(ctx, form._csrf)) {
      ctx.status = 403;
      await page(ctx, render, 'error', { title: 'Form expired', error: 'invalid_csrf_token', description: 'This form has expired. Go back, reload the page and try again.' });
      ctx.status = 403;
      return undefined;
    }
    return next();
  };
  // Every other path (the token endpoint's included) goes straight on, without an async frame.
  return (ctx, next) => (ctx.path.startsWith(pagePath) ? guard(ctx, next) : next());
}

/**
 * Reads a urlencoded form (at most 16 KiB) for the CSRF check and leaves its text on
 * ctx.request.body, which oidc-provider parses itself (duplicates and all) when the stream was read.
 */
async function readUrlencoded(ctx: Koa.Context): Promise<Record<string, string>> {
  if (!ctx.is('application/x-www-form-urlencoded')) return {};
  const text = await readBodyText(ctx, 16 * 1024, { tooLarge: 'form too large', incomplete: 'incomplete form submission' });
  (ctx.request as unknown as { body: unknown }).body = text;
  const form: Record<string, string> = {};
  for (const [k, v] of new URLSearchParams(text)) if (!(k in form)) form[k] = v;
  return form;
}

/**
 * RFC 8628 §3.5: a device polling sooner than its interval after its previous poll gets
 * `slow_down`, and its interval grows by 5 seconds for every later poll. The last poll's window
 * (its length the current interval) and the number of slow_downs are counters in the shared
 * store, keyed by the (hashed) device code, so instances behind one load balancer agree.
 */
export function devicePollGuard(deps: Pick<DeviceFlowDeps, 'counter'>): (deviceCode: string) => Promise<void> {
  return async (deviceCode) => {
    const poll = deps.counter('device_poll');
    const slowDowns = deps.counter('device_slow_down');
    const previous = await poll.get(deviceCode);
    if (previous) {
      const count = (await slowDowns.add(deviceCode)).count;
      await poll.set(deviceCode, 1, DEVICE_POLL_INTERVAL + SLOW_DOWN_STEP * count);
      throw new errors.SlowDown();
    }
    const count = (await slowDowns.get(deviceCode))?.count ?? 0;
    await poll.set(deviceCode, 1, DEVICE_POLL_INTERVAL + SLOW_DOWN_STEP * count);
  };
}
