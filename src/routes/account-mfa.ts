import type Koa from 'koa';

import { originOf } from '../lib/request-origin.js';
import type { MfaService } from '../services/mfa.js';
import type { AccountExtension, SignedIn } from './account-kit.js';

/** Two-step verification on the account page (GET /account/mfa): enrol, turn off, new recovery codes. */
export function accountMfaPages(deps: { mfa: MfaService }): AccountExtension {
  const { mfa } = deps;
  return ({ router, guarded, form, page, done, notice, reauthenticate }) => {
    async function mfaPage(ctx: Koa.Context, signed: SignedIn, extra: Record<string, unknown> = {}, status = 200) {
      const current = await mfa.status(signed.account.id);
      const enrolment = current.enabled ? undefined : await mfa.beginEnrolment(signed.account);
      await page(ctx, 'account-mfa', { title: 'Two-step verification', wide: true, mfa: current, enrolment: enrolment ?? null, notice: notice(ctx), ...extra }, status);
    }

    router.get('/account/mfa', guarded(async (ctx, signed) => mfaPage(ctx, signed)));

    // A reload or bookmark of a form's target goes back to its page.
    router.get(['/account/mfa/enable', '/account/mfa/disable', '/account/mfa/recovery-codes'], (ctx) => {
      ctx.redirect('/account/mfa');
    });

    router.post(
      '/account/mfa/enable',
      form(async (ctx, signed, fields) => {
        const codes = await mfa.confirmEnrolment(signed.account.id, (fields.code ?? '').slice(0, 64), { actorId: signed.account.id, origin: originOf(ctx) });
        if (!codes) {
          await mfaPage(ctx, signed, { error: 'That code is not valid. Enter the 6-digit code your app shows now.' }, 400);
          return;
        }
        await page(ctx, 'mfa-recovery-codes', { title: 'Save your recovery codes', codes, next: '/account/mfa' });
      }),
    );

    router.post(
      '/account/mfa/disable',
      form(async (ctx, signed, fields) => {
        const check = await reauthenticate(ctx, signed.account, { password: fields.password, code: fields.code });
        if (!check.ok) {
          await mfaPage(ctx, signed, { error: check.message }, check.status);
          return;
        }
        await mfa.disable(signed.account.id, { actorId: signed.account.id, origin: originOf(ctx) });
        done(ctx, '/account/mfa', 'mfa-off');
      }),
    );

    router.post(
      '/account/mfa/recovery-codes',
      form(async (ctx, signed, fields) => {
        const check = await reauthenticate(ctx, signed.account, { password: fields.password, code: fields.code });
        if (!check.ok) {
          await mfaPage(ctx, signed, { error: check.message }, check.status);
          return;
        }
        const codes = await mfa.regenerateRecoveryCodes(signed.account.id, { actorId: signed.account.id, origin: originOf(ctx) });
        if (!codes) {
          ctx.status = 303;
          ctx.redirect('/account/mfa');
          return;
        }
        await page(ctx, 'mfa-recovery-codes', { title: 'Your new recovery codes', codes, next: '/account/mfa' });
      }),
    );
  };
}
