import type Koa from 'koa';

import { originOf } from '../lib/request-origin.js';

import { ValidationError } from '../services/errors.js';
import { describePersonalAccessToken, PAT_NAME_MAX, type PersonalAccessTokenService } from '../services/personal-access-tokens.js';
import type { AccountExtension, AccountKit, SignedIn } from './account-kit.js';

const PATH = '/account/tokens';

/** Fixed notices after a form (Post/Redirect/Get): the query names one, never its text. */
const NOTICES: Record<string, string> = {
  'token-revoked': 'The token was revoked: it stops working at once.',
};

/** How each service field is named on the page. */
const LABELS: Record<string, string> = {
  name: 'The name',
  scopes: 'The scopes',
  organization_id: 'The organization',
  expires_in_days: 'The lifetime',
  tokens: '',
};

/** "The name is required." — or the detail alone, as a sentence, for a field without a label. */
function message(err: ValidationError): string {
  const label = LABELS[err.field] ?? err.field;
  return label ? `${label} ${err.detail}.` : `${err.detail.charAt(0).toUpperCase()}${err.detail.slice(1)}.`;
}

const queryString = (ctx: Koa.Context, name: string): string | undefined => {
  const v = ctx.query[name];
  const s = Array.isArray(v) ? v[0] : v;
  return typeof s === 'string' && s !== '' ? s : undefined;
};

/**
 * The scopes ticked on the form. Each checkbox has its own name (`scope.N`, value `URI:SCOPE`)
 * because form bodies keep one value per name; a single `scope` field may list several,
 * separated by spaces (resource identifiers are URIs: they hold no spaces).
 */
function scopesOf(fields: Record<string, string>): string[] {
  return Object.entries(fields)
    .filter(([k]) => k === 'scope' || /^scope\.\d{1,4}$/.test(k))
    .flatMap(([, v]) => v.split(/\s+/))
    .filter(Boolean);
}

/** A whole number of days, or NaN for anything else (refused by the service). */
const daysOf = (text: string | undefined): number | undefined => (text === undefined || text.trim() === '' ? undefined : /^\d{1,6}$/.test(text.trim()) ? Number(text.trim()) : Number.NaN);

/**
 * Personal access tokens on the account page: GET /account/tokens lists them with a form to
 * make one (the scopes offered are those the user holds, for the organization chosen with the
 * small GET form above it: no script needed), POST /account/tokens makes one and shows it once,
 * POST /account/tokens/revoke revokes one.
 */
export function accountAccessTokenPages(deps: { tokens: PersonalAccessTokenService }): AccountExtension {
  const { tokens } = deps;

  return (kit: AccountKit) => {
    const { router, guarded, form, page, done } = kit;

    async function tokensPage(ctx: Koa.Context, signed: SignedIn, organizationId: string | null, extra: { errors?: Record<string, string>; values?: Record<string, unknown> } = {}, status = 200) {
      const accountId = signed.account.id;
      const organizations = await tokens.organizations(accountId);
      // An organization the user does not belong to shows the personal scopes instead.
      const org = organizationId ? organizations.find((o) => o.id === organizationId) : undefined;
      const holdable = await tokens.holdableScopes(accountId, org?.id ?? null);
      const orgNames = new Map(organizations.map((o) => [o.id, o.name]));
      const now = new Date().toISOString();
      const list = (await tokens.list(accountId))
        .filter((t) => !t.revokedAt)
        .map((t) => ({ ...describePersonalAccessToken(t), organization: t.organizationId ? (orgNames.get(t.organizationId) ?? t.organizationId) : null, expired: t.expiresAt <= now }));
      const notice = queryString(ctx, 'done');
      await page(
        ctx,
        'account-tokens',
        {
          title: 'Personal access tokens',
          wide: true,
          tokens: list,
          organizations,
          organization: org ?? null,
          holdable,
          settings: tokens.settings,
          nameMax: PAT_NAME_MAX,
          notice: (notice && NOTICES[notice]) ?? null,
          errors: extra.errors ?? {},
          values: { name: '', expires_in_days: String(tokens.settings.defaultTtlDays), scopes: [], ...extra.values },
        },
        status,
      );
    }

    router.get(
      PATH,
      guarded(async (ctx, signed) => tokensPage(ctx, signed, queryString(ctx, 'organization') ?? null)),
    );

    router.post(
      PATH,
      form(async (ctx, signed, fields) => {
        const organizationId = (fields.organization_id ?? '').trim() || null;
        const scopes = scopesOf(fields);
        try {
          const { token, record } = await tokens.create(signed.account, { name: fields.name ?? '', scopes, organizationId, expiresInDays: daysOf(fields.expires_in_days), origin: originOf(ctx) });
          const organization = organizationId ? (await tokens.organizations(signed.account.id)).find((o) => o.id === organizationId) : undefined;
          await page(ctx, 'account-token-created', { title: 'Your new token', token, record: { ...describePersonalAccessToken(record), organization: organization?.name ?? null } });
        } catch (err) {
          if (!(err instanceof ValidationError)) throw err;
          await tokensPage(ctx, signed, organizationId, { errors: { [err.field in LABELS ? err.field : 'form']: message(err) }, values: { name: (fields.name ?? '').slice(0, PAT_NAME_MAX * 2), expires_in_days: (fields.expires_in_days ?? '').slice(0, 12), scopes } }, 400);
        }
      }),
    );

    router.post(
      `${PATH}/revoke`,
      form(async (ctx, signed, fields) => {
        const id = (fields.id ?? '').slice(0, 64);
        if (id && (await tokens.revoke(signed.account.id, id, originOf(ctx)))) {
          done(ctx, PATH, 'token-revoked');
          return;
        }
        // Not theirs, or already revoked: nothing to say.
        ctx.status = 303;
        ctx.redirect(PATH);
      }),
    );

    // A reload or bookmark of the revoke form's target goes back to the page.
    router.get(`${PATH}/revoke`, (ctx) => {
      ctx.redirect(PATH);
    });
  };
}
