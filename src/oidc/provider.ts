
import type { JWTPayload } from 'jose';
import type Koa from 'koa';
import Provider, { errors, interactionPolicy, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';

import type { Config } from '../config/index.js';
import type { Logger } from '../lib/logger.js';
import type { Render } from '../lib/views.js';
import type { ProviderStateRepository } from '../repositories/provider-state.js';
import type { AccessService } from '../services/access.js';
import type { AccountService } from '../services/accounts.js';
import type { AuditService } from '../services/audit.js';
import type { BackchannelLogout } from '../services/backchannel-logout.js';
import { apiAudience } from '../services/bootstrap.js';
import type { ChangeFeed } from '../services/change-feed.js';
import type { ClientService } from '../services/clients.js';
import type { KeyRing, KeyService } from '../services/keys.js';
import { ACR_MFA, ACR_PASSWORD, ACR_VALUES } from '../services/mfa.js';
import type { ResourceService } from '../services/resources.js';
import type { Metrics } from '../services/metrics.js';
import type { PersonalAccessTokenService } from '../services/personal-access-tokens.js';
import type { Secrets } from '../services/secrets.js';
import { createCsrf } from '../middleware/csrf.js';
import type { Counter, CounterName } from '../services/rate-limits.js';
import { createAdapterClass } from './adapter.js';
import { deviceFlowFeature, deviceFlowGuard, devicePollGuard, type DeviceFlowDeps } from './device-flow.js';
import { withoutAdminScopesUnlessSuperuser } from './admin-scopes.js';
import type { FederationService } from '../services/federation.js';
import { findAccountFor } from './account.js';
import { allowedResourcesOf, allowedScopesOf, defaultResource, isFirstParty, isSignInOnly, mayIntrospect, type ClientLike } from './client-policy.js';
import { restoreOfflineAccess } from './offline-access.js';
import { answersJson } from './json-routes.js';
import { answerOutage, noteOutage, renderOutagePage } from './outage.js';
import { DpopProofError, DPOP_SIGNING_ALGS, REPLAY_MODEL, REPLAY_TTL, refuseStaleProof, replayId, verifyDpopProof, type VerifiedProof } from './dpop.js';
import { atomicReplayDetection, compareClientSecretsWith, deliverBackchannelLogoutsWith, deriveRotatedRefreshTokenIds, keepInGrantPayload, memoiseClientFind, providerHandler, sidInEveryIdToken } from './provider-internals.js';
import { createRefreshReuse } from './refresh-reuse.js';
import { personalAccessTokenIntrospection } from './personal-access-tokens.js';
import { createRbacIntegration, type GrantWithOrganization, type RbacIntegration } from './rbac.js';
import { createStructuredTokenHandler, GRANT_CLAIM } from './structured-tokens.js';
import { createTokenExchangeHandler, TOKEN_EXCHANGE_GRANT_TYPE, TOKEN_EXCHANGE_PARAMETERS } from './token-exchange.js';

export { isFirstParty } from './client-policy.js';

export interface OidcDeps {
  config: Config;
  logger: Logger;
  render: Render;
  secrets: Secrets;
  state: ProviderStateRepository;
  clients: ClientService;
  resources: ResourceService;
  accounts: AccountService;
  keys: KeyService;
  feed: ChangeFeed;
  /** Records `session.start` (session uid, IP, user agent): the account page lists devices from it. */
  audit?: AuditService;
  /** Counts successful token endpoint responses, once what they issued is stored. */
  metrics?: Pick<Metrics, 'recordTokenIssued'>;
  /** Answers introspection for personal access tokens (`lat_…`). */
  personalTokens?: Pick<PersonalAccessTokenService, 'introspect'>;
  /** Roles, organizations and RBAC permissions of subjects (claims and resource scopes). */
  access: AccessService;
  organizations: { findById(id: string): Promise<unknown> };
  /** Which upstream provider a sign-in came through: the ID token's `idp`. */
  federation?: Pick<FederationService, 'idpOf'>;
  /** The shared counters: wrong device user codes per address, device polling intervals. */
  rateLimits: { counter(name: CounterName): Counter };
  /** Where RP-initiated logout queues its back-channel logouts (services/backchannel-logout.ts). */
  backchannelLogout: Pick<BackchannelLogout, 'enqueue'>;
}

/** The OIDC scopes Latch knows; resource scopes come from resource servers. */
export const OIDC_SCOPES = ['openid', 'offline_access', 'profile', 'email', 'roles', 'organizations'];
const OIDC_SCOPE_SET: ReadonlySet<string> = new Set(OIDC_SCOPES);


/**
 * oidc-provider's default prompts, plus step-up: a client that asks for acr_values
 * urn:latch:loa:2 (without accepting urn:latch:loa:1) while the browser's session was only
 * password-authenticated gets the login prompt again, which ends with the second factor
 * (routes/interaction-mfa.ts). acr_values alone is only a wish to oidc-provider (OIDC Core §3.1.2.1).
 */
function interactionPolicyFor(rbac: RbacIntegration) {
  const policy = interactionPolicy.base();
  // An authorization request naming an organization the signed-in account does not belong to
  // ends with access_denied at the client's redirect_uri (RFC 6749 §4.1.2.1).
  policy.get('login')!.checks.add(
    new interactionPolicy.Check('organization_membership', 'the account must be a member of the requested organization', async (ctx) => {
      const accountId = ctx.oidc.session?.accountId;
      if (accountId && rbac.named(ctx)) await rbac.organizationFor(ctx, { kind: 'account', id: accountId });
      return interactionPolicy.Check.NO_NEED_TO_PROMPT;
    }),
  );
  policy.get('login')!.checks.add(
    new interactionPolicy.Check('acr_step_up', 'the requested authentication level requires two-step verification', 'login_required', (ctx) => {
      const { oidc } = ctx;
      if (!oidc.session?.accountId) return interactionPolicy.Check.NO_NEED_TO_PROMPT;
      const wanted = typeof oidc.params?.acr_values === 'string' ? oidc.params.acr_values.split(' ') : [];
      const insists = wanted.includes(ACR_MFA) && !wanted.includes(ACR_PASSWORD);
      return insists && oidc.session.acr !== ACR_MFA ? interactionPolicy.Check.REQUEST_PROMPT : interactionPolicy.Check.NO_NEED_TO_PROMPT;
    }),
  );
  return policy;
}

/** A grant lives as long as the longest thing that can use it. */
const grantTtl = (config: Config) => Math.max(config.ttl.refreshToken, config.ttl.session);

/** How long an expired device code still answers expired_token (RFC 8628 §3.5) rather than invalid_grant. */
const DEVICE_CODE_RETENTION = 3600;

function buildConfiguration(deps: OidcDeps, ring: KeyRing, rbac: RbacIntegration, adapter: Configuration['adapter'], deviceFlow: DeviceFlowDeps): Configuration {
  const { config, render, logger } = deps;
  const tokenIdentity = (accountId: string) => deps.accounts.findForTokens(accountId);
  const isSuperuser = async (accountId: string) => (await tokenIdentity(accountId))?.superuser === true;
  const adminApi = apiAudience(config.issuer);

  const renderPage = async (ctx: Koa.Context, view: string, locals: Record<string, unknown> & { title: string }) => {
    ctx.type = 'html';
    ctx.body = await render(view, locals);
  };

  return {
    adapter,
    clients: [],
    findAccount: findAccountFor(deps.accounts, deps.access, rbac, deps.federation),
    jwks: { keys: ring.privateJwks as NonNullable<Configuration['jwks']>['keys'] },
    scopes: OIDC_SCOPES,
    // RFC 8176 amr and Latch's acr (urn:latch:loa:1 password, urn:latch:loa:2 password + TOTP)
    // are in every ID token, not only when a client asks for them.
    acrValues: ACR_VALUES,
    claims: {
      // org_id/org_role: ID tokens of an authorization request that named an organization.
      // idp: ID tokens of a sign-in through an upstream provider (its name).
      openid: ['sub', 'acr', 'amr', 'org_id', 'org_role', 'idp'],
      email: ['email', 'email_verified'],
      profile: ['name', 'updated_at'],
      roles: ['roles', 'is_superuser'],
      organizations: ['organizations'],
    },
    // Claims released by a scope go into the ID token too (not only userinfo): an app reads
    // `roles` or `organizations` from the ID token without another request.
    conformIdTokenClaims: false,
    // OIDC Core §3.1.2.1 allows extension parameters: `organization` names the tenant the
    // grant and its tokens are for. A malformed or unknown id is invalid_request (RFC 6749 §4.1.2.1).
    extraParams: {
      // oidc-provider runs these validators on every authorization (and pushed) request once it has
      // filtered the scope and before it loads the grant: the place to restore offline_access.
      async organization(ctx, value) {
        restoreOfflineAccess(ctx);
        if (value === undefined || value === '') return;
        if (typeof value !== 'string') throw new errors.InvalidRequest('organization must be given once');
        await rbac.checkExists(value);
      },
    },
    // Identity, roles, organizations and the organization of the token (JWT payload, opaque-token introspection).
    extraTokenClaims: (ctx, token) => rbac.tokenClaims(ctx, token as never, tokenIdentity),
    // Only the authorization code flow (OAuth 2.0 Security BCP, RFC 9700 §2.1.2: no implicit).
    responseTypes: ['code'],
    // OIDC Core §3.1.2.1: redirect_uri is required; never guessed from the registration.
    allowOmittingSingleRegisteredRedirectUri: false,
    pkce: {
      // RFC 7636 + RFC 9700 §2.1.1: PKCE is required for public clients; only S256 is offered.
      required: (_ctx, client) => client.clientAuthMethod === 'none',
    },
    cookies: {
      keys: deps.secrets.cookieKeys,
      long: { signed: true, httpOnly: true, sameSite: 'lax' },
      short: { signed: true, httpOnly: true, sameSite: 'lax' },
    },
    ttl: {
      // A resource server's own access-token lifetime wins (getResourceServerInfo), else ACCESS_TOKEN_TTL.
      AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? config.ttl.accessToken,
      ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? config.ttl.accessToken,
      IdToken: config.ttl.idToken,
      RefreshToken: config.ttl.refreshToken,
      AuthorizationCode: 60,
      Interaction: 3600,
      Session: config.ttl.session,
      Grant: grantTtl(config),
      DeviceCode: config.ttl.deviceCode,
      BackchannelAuthenticationRequest: 600,
    },
    // Rotate on every use; presenting a used refresh token revokes the grant (RFC 9700 §4.14.2),
    // except a retry within REFRESH_REUSE_WINDOW (refresh-reuse.ts).
    rotateRefreshToken: true,
    extraClientMetadata: {
      properties: ['web_origins', 'first_party', 'allowed_resources', 'allowed_scopes', 'exchange_subject_audiences'],
    },
    // CORS on token, userinfo and revocation: only the client's registered web origins.
    clientBasedCORS(_ctx, origin, client) {
      const origins = (client as unknown as ClientLike).web_origins;
      return Array.isArray(origins) && origins.includes(origin);
    },
    interactions: {
      url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
      policy: interactionPolicyFor(rbac),
    },
    async loadExistingGrant(ctx) {
      const { oidc } = ctx;
      const client = oidc.client!;
      const organization = rbac.named(ctx)?.toLowerCase() ?? null;
      const consented = oidc.result?.consent?.grantId;
      const grantId = consented || oidc.session!.grantIdFor(client.clientId);
      let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
      const skipsConsent = isFirstParty(client as unknown as ClientLike) && Boolean(oidc.session?.accountId);
      if (grant && consented) {
        // The consent just given is for this request's organization (or none). A first-party
        // grant is saved below, with its scopes.
        if (skipsConsent) (grant as GrantWithOrganization).organizationId = organization;
        else await rbac.bindGrant(grant, organization);
      } else if (grant && ((await rbac.grantOrganization(grant)) ?? null) !== organization) {
        // A grant belongs to one organization: asking for another starts a new grant, so the
        // earlier one's refresh tokens keep theirs.
        grant = undefined;
      }
      if (!skipsConsent) return grant;
      // First-party clients skip consent: their grant simply covers what they ask for (the
      // client's registered scopes bound the request). RBAC applies when tokens are issued,
      // so a role granted later reaches the next refresh.
      const fresh = !grant;
      grant ??= new oidc.provider.Grant({ clientId: client.clientId, accountId: oidc.session!.accountId });
      const oidcScopes = [...oidc.requestParamOIDCScopes];
      if (oidcScopes.length) grant.addOIDCScope(oidcScopes.join(' '));
      const allowed = allowedScopesOf(client as unknown as ClientLike);
      for (const indicator of Object.keys(oidc.resourceServers ?? {})) {
        const rs = await deps.resources.get(indicator);
        const wanted = [...oidc.requestParamScopes].filter((s) => rs?.scopes.includes(s) && allowed.has(s));
        if (wanted.length) grant.addResourceScope(indicator, wanted.join(' '));
      }
      if (fresh) (grant as GrantWithOrganization).organizationId = organization;
      await grant.save();
      return grant;
    },
    // RFC 9449 §5.1 dpop_signing_alg_values_supported.
    enabledJWA: { dPoPSigningAlgValues: DPOP_SIGNING_ALGS as NonNullable<Configuration['enabledJWA']>['dPoPSigningAlgValues'] },
    features: {
      devInteractions: { enabled: false },
      // RFC 9449 (dpop.ts): a token request with a proof gets a bound access token (and a public
      // client a bound refresh token); no server nonce; a proof's jti is single use across
      // instances (atomicReplayDetection); `dpop_bound_access_tokens` is per client.
      dPoP: { enabled: true, requireNonce: refuseStaleProof, allowReplay: false },
      clientCredentials: { enabled: true },
      // RFC 9126 at /request: confidential clients authenticate as at the token endpoint, public
      // ones need PKCE as at /auth; require_pushed_authorization_requests is per client.
      pushedAuthorizationRequests: { enabled: true, requirePushedAuthorizationRequests: false },
      // RFC 8628 at /device/auth, the user's page at /device (device-flow.ts).
      deviceFlow: deviceFlowFeature(deviceFlow),
      introspection: {
        enabled: true,
        // Who may introspect what: see structured-tokens.ts mayIntrospect.
        allowedPolicy: (_ctx, client, token) => mayIntrospect(client as unknown as ClientLike, { clientId: token.clientId, aud: (token as { aud?: unknown }).aud, kind: token.kind }),
      },
      revocation: {
        enabled: true,
        // RFC 7009 §2.1: a client may revoke only tokens that were issued to it.
        allowedPolicy: (_ctx, client, token) => token.clientId === client.clientId,
      },
      userinfo: { enabled: true },
      // OIDC Back-Channel Logout 1.0: discovery and the client metadata; Latch's queue delivers
      // (deliverBackchannelLogoutsWith below).
      backchannelLogout: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // RFC 8707 §2: with no `resource` named, a client registered for one resource gets it, unless
        // the request is a sign-in asking only OpenID Connect scopes (its token is for userinfo).
        // What an authorization granted stays its resource at the token endpoint (useGrantedResource).
        defaultResource: (ctx, client, oneOf) => (oneOf || !isSignInOnly(ctx.oidc.params?.scope, OIDC_SCOPE_SET) ? defaultResource(client as unknown as ClientLike, oneOf)! : undefined!),
        useGrantedResource: () => true,
        async getResourceServerInfo(ctx, indicator, client) {
          const c = client as unknown as ClientLike;
          // RFC 8707 §2: invalid_target for a resource the client may not use.
          if (!allowedResourcesOf(c).includes(indicator)) throw new errors.InvalidTarget('resource indicator is not allowed for this client');
          const rs = await deps.resources.get(indicator);
          if (!rs) throw new errors.InvalidTarget('resource indicator is not registered');
          // A scope the client is not registered for is never granted.
          const clientScopes = allowedScopesOf(c);
          let scopes = rs.scopes.filter((s) => clientScopes.has(s));
          if (rs.rbac) {
            // RBAC resource: only what the subject's roles permit (the organization role alone for
            // an organization token). What is left out is simply not granted (RFC 6749 §3.3).
            const permitted = await rbac.permittedScopes(ctx, rs.identifier);
            if (permitted) scopes = scopes.filter((s) => permitted.has(s));
          }
          if (rs.identifier === adminApi) scopes = await withoutAdminScopesUnlessSuperuser(ctx, scopes, { rbac, isSuperuser });
          return {
            scope: scopes.join(' '),
            audience: rs.identifier,
            accessTokenTTL: rs.accessTokenTtl ?? config.ttl.accessToken,
            // RFC 9068 JWT access tokens, verifiable offline against the JWKS.
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: rs.signingAlg } },
          };
        },
      },
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(ctx, form) {
          const client = ctx.oidc.client;
          await renderPage(ctx, 'logout', { title: 'Sign out', form, clientName: client?.clientName ?? null });
        },
        async postLogoutSuccessSource(ctx) {
          const client = ctx.oidc.client;
          await renderPage(ctx, 'logged-out', { title: 'Signed out', clientName: client?.clientName ?? null });
        },
      },
    },
    formats: {
      customizers: {
        // Lets introspection tell whether the grant behind a JWT access token was revoked.
        jwt(_ctx, token, jwt) {
          const grantId = (token as unknown as { grantId?: string }).grantId;
          if (grantId) jwt.payload[GRANT_CLAIM] = grantId;
        },
      },
    },
    async renderError(ctx, out, error) {
      if (answersJson(ctx)) {
        // An outage is noted here and answered 503 by the post-hook, as JSON on these routes.
        const outage = noteOutage(ctx, error);
        ctx.status = (error as { statusCode?: number }).statusCode ?? 500;
        if (ctx.status >= 500 && !outage) logger.error('oidc error', { err: String((error as Error)?.stack ?? error) });
        ctx.type = 'json';
        ctx.body = out;
        return;
      }
      if (await renderOutagePage(ctx, error, render)) return;
      // An error without a statusCode is not an OAuth error but a failure of ours: 500, as
      // oidc-provider itself decides (err.statusCode || 500), never a 400 that hides it.
      ctx.status = (error as { statusCode?: number }).statusCode ?? 500;
      if (ctx.status >= 500) logger.error('oidc error page', { err: String((error as Error)?.stack ?? error) });
      await renderPage(ctx, 'error', { title: 'Something went wrong', error: out.error, description: out.error_description ?? null });
    },
  };
}

/**
 * RFC 6749 §5.2: a client asking for a grant type it is not registered for gets
 * `unauthorized_client`; oidc-provider answers `invalid_request`. Rewritten only when that is
 * provably the cause: the client authenticated and sent one grant_type it may not use (an
 * unknown grant type is `unsupported_grant_type`, a repeated one an array, both left alone).
 */
function unauthorizedClientForGrantType(ctx: KoaContextWithOIDC): undefined {
  if (ctx.oidc?.route !== 'token' || ctx.status !== 400) return undefined;
  const body = ctx.body as { error?: string } | undefined;
  const client = ctx.oidc.client;
  const grantType = (ctx.oidc.params as { grant_type?: unknown } | undefined)?.grant_type;
  if (body?.error === 'invalid_request' && client && typeof grantType === 'string' && !client.grantTypeAllowed(grantType)) {
    ctx.body = { ...body, error: 'unauthorized_client' };
  }
  return undefined;
}

/**
 * RFC 9449 §7.1 (RFC 6750 §3.1): at userinfo, `Authorization: DPoP` without a `DPoP` proof header
 * (or a proof with Bearer) is refused by oidc-provider as invalid_request (400); the token cannot
 * be used as presented, which is invalid_token with a DPoP challenge (401).
 */
function dpopSchemeWithoutProof(ctx: KoaContextWithOIDC): undefined {
  if (ctx.oidc?.route !== 'userinfo' || ctx.status !== 400) return undefined;
  const body = ctx.body as { error?: string; error_description?: string } | undefined;
  if (body?.error !== 'invalid_request' || !/dpop/i.test(body.error_description ?? '')) return undefined;
  ctx.status = 401;
  ctx.body = { error: 'invalid_token', error_description: body.error_description };
  ctx.set('WWW-Authenticate', `DPoP realm="${ctx.oidc.issuer}", error="invalid_token", error_description="${body.error_description!.replace(/["\\]/g, '')}", algs="${DPOP_SIGNING_ALGS.join(' ')}"`);
  return undefined;
}

/** Holds the current Provider; rebuilt when the signing keys change (rotation by any process). */
export interface Oidc {
  readonly provider: Provider;
  /** Koa middleware handing the request to oidc-provider. */
  middleware: Koa.Middleware;
  /** Reloads keys and rebuilds the provider if they changed. */
  reloadKeys(): Promise<boolean>;
  keyRing(): KeyRing;
  /** The verified payload of a live JWT access token of ours (signature, expiry, revocation, client, grant), or undefined. */
  verifyAccessToken(token: string): Promise<JWTPayload | undefined>;
  /**
   * A DPoP proof presented to one of Latch's own resource endpoints with a token of `clientId`
   * (RFC 9449 §7.1): valid for this request and this token, and never seen before (its jti is
   * remembered across instances). Throws DpopProofError.
   */
  checkDpopProof(proof: string, expected: { method: string; url: string; accessToken: string; clientId: string }): Promise<VerifiedProof>;
}

export async function createOidc(deps: OidcDeps): Promise<Oidc> {
  let ring = await deps.keys.loadKeyRing();
  const structured = createStructuredTokenHandler({
    issuer: deps.config.issuer,
    state: deps.state,
    clients: deps.clients,
    keyRing: () => ring,
  });

  const rbac = createRbacIntegration({ access: deps.access, state: deps.state, organizationExists: async (id) => Boolean(await deps.organizations.findById(id)) });

  const deviceFlow: DeviceFlowDeps = {
    render: deps.render,
    csrf: createCsrf(deps.secrets),
    counter: (name) => deps.rateLimits.counter(name),
    pagePath: `${new URL(deps.config.issuer).pathname.replace(/\/$/, '')}/device`,
  };
  const reuse = createRefreshReuse({ windowSeconds: deps.config.ttl.refreshReuseWindow, secrets: deps.secrets, state: deps.state });
  /** A proof's jti, stored once for all instances: false when it was seen already. */
  const rememberJti = (id: string, payload: Record<string, unknown>, expiresIn: number) => deps.state.insertIfAbsent(REPLAY_MODEL, id, payload, expiresIn);
  async function checkDpopProof(proof: string, expected: { method: string; url: string; accessToken?: string; clientId: string }): Promise<VerifiedProof> {
    const verified = await verifyDpopProof(proof, expected);
    const id = replayId(expected.clientId, verified.jti);
    if (!(await rememberJti(id, { jti: id, iss: expected.clientId, kind: REPLAY_MODEL }, REPLAY_TTL))) throw new DpopProofError('DPoP proof JWT Replay detected');
    return verified;
  }
  const storage = createAdapterClass({ state: deps.state, clients: deps.clients, deviceCodes: { retainSeconds: DEVICE_CODE_RETENTION, onPoll: devicePollGuard(deviceFlow) }, reuse });
  const deviceGuard = deviceFlowGuard(deviceFlow);
  const tokenExchange = createTokenExchangeHandler({
    issuer: deps.config.issuer,
    verifyJwt: (token) => structured.verify(token),
    personalTokens: deps.personalTokens,
    resources: deps.resources,
    access: deps.access,
    accounts: deps.accounts,
    keyRing: () => ring,
    adminApi: apiAudience(deps.config.issuer),
    defaultAccessTokenTtl: deps.config.ttl.accessToken,
    // The token endpoint's proof (RFC 9449 §5), checked as oidc-provider checks it for its own grants.
    async dpopProofOf(ctx) {
      const proof = ctx.get('DPoP');
      if (!proof) return undefined;
      try {
        return await checkDpopProof(proof, { method: ctx.method, url: ctx.oidc.urlFor('token'), clientId: ctx.oidc.client!.clientId });
      } catch (err) {
        if (err instanceof DpopProofError) throw new errors.InvalidDpopProof(err.message);
        throw err;
      }
    },
  });
  const build = (): { provider: Provider; handler: (ctx: Koa.Context) => Promise<unknown> } => {
    const provider = new Provider(deps.config.issuer, buildConfiguration(deps, ring, rbac, storage.Adapter, deviceFlow));
    provider.proxy = deps.config.trustProxy;
    // RFC 8693 token exchange (token-exchange.ts); listed in discovery's grant_types_supported.
    provider.registerGrantType(TOKEN_EXCHANGE_GRANT_TYPE, tokenExchange, TOKEN_EXCHANGE_PARAMETERS);
    // A grant's organization is kept in its own payload (see rbac.ts), before any Grant is built.
    keepInGrantPayload(provider, 'organizationId');
    atomicReplayDetection(provider, rememberJti, replayId);
    // REFRESH_REUSE_WINDOW: a rotation's new refresh token can be issued again (refresh-reuse.ts).
    if (reuse) deriveRotatedRefreshTokenIds(provider, reuse.successorOf);
    // As the outer app (app.ts): behind the one trusted proxy, the client is the LAST X-Forwarded-For entry.
    (provider as Koa).maxIpsCount = 1;
    // Client secrets are stored as HMAC-SHA-256 (see services/secrets.ts): compare the HMAC of
    // the presented secret, in constant time.
    compareClientSecretsWith(provider, (presented, stored) => deps.clients.verifySecret(presented, stored));
    // The client service hands out the same cached metadata object until a change clears its
    // cache (change feed): no hash of the metadata per lookup.
    memoiseClientFind(provider, (id) => deps.clients.findMetadata(id));
    // RP-initiated logout hands each back-channel logout to the durable queue, before the
    // session is removed: a failure after it tells a relying party too much, never too little.
    deliverBackchannelLogoutsWith(provider, (clientId, sub, sid) => deps.backchannelLogout.enqueue([{ clientId, sub, sid: sid ?? null }]));
    // The library catches what the hook throws and carries on with the logout: say so loudly.
    provider.on('backchannel.error', (_ctx: unknown, err: Error, client: { clientId?: string } | undefined) => {
      deps.logger.error('back-channel logout could not be queued', { client_id: client?.clientId, err: String(err?.stack ?? err) });
    });
    // A relying party matches a logout token's sid against the ID token's.
    sidInEveryIdToken(provider);
    // RP-initiated logout (OIDC RP-Initiated Logout §2) ends the session: on the audit trail.
    provider.on('end_session.success', (ctx: KoaContextWithOIDC) => {
      const accountId = ctx.oidc.session?.accountId;
      if (!accountId) return;
      void deps.audit?.record({ type: 'logout', actorId: accountId, subjectId: accountId, clientId: ctx.oidc.client?.clientId ?? null, ip: ctx.ip || null, userAgent: ctx.get('user-agent') || null });
    });

    // What Latch adds once oidc-provider has answered, in this order. Each step returns at once,
    // without a promise, when the response is not its business: one post-hook for all of them
    // keeps the token endpoint's hot path to a single extra middleware.
    const after: ((ctx: KoaContextWithOIDC) => Promise<void> | undefined)[] = [
      // A token endpoint success, counted once its tokens are stored.
      (ctx) => {
        const { oidc } = ctx;
        if (oidc?.route === 'token' && ctx.status === 200) deps.metrics?.recordTokenIssued((oidc.params as { grant_type?: unknown } | undefined)?.grant_type, oidc.client?.clientId);
        return undefined;
      },
      // Unknown paths: the friendly page for browsers, RFC 6749-style JSON for programs.
      (ctx) => {
        if (ctx.status !== 404 || ctx.body !== undefined) return undefined;
        ctx.status = 404;
        if (ctx.accepts('json', 'html') !== 'html') {
          ctx.body = { error: 'not_found', error_description: 'unknown endpoint' };
          return undefined;
        }
        ctx.type = 'html';
        return deps.render('error', { title: 'Page not found', error: 'not_found', description: 'There is nothing at this address.' }).then((html) => void (ctx.body = html));
      },
      // A refresh that named an organization switched the grant to it: later refreshes stay there.
      (ctx) => {
        const { oidc } = ctx;
        if (oidc?.route !== 'token' || ctx.status !== 200 || (oidc.params as { grant_type?: string }).grant_type !== 'refresh_token') return undefined;
        const organization = rbac.named(ctx);
        const grant = oidc.entities.Grant;
        return organization && grant ? rbac.bindGrant(grant, organization.toLowerCase()) : undefined;
      },
      unauthorizedClientForGrantType,
      dpopSchemeWithoutProof,
      ...(deps.personalTokens ? [personalAccessTokenIntrospection({ tokens: deps.personalTokens, mayIntrospect })] : []),
      structured.afterResponse,
      // A sign-in just completed in this browser session (interaction result applied): remember
      // where from, so the account page can show each session's device.
      (ctx) => {
        const { oidc } = ctx;
        const login = (oidc?.result as { login?: { accountId?: string; amr?: string[]; acr?: string } } | undefined)?.login;
        if (oidc?.route !== 'resume' || !login?.accountId || !oidc.session?.uid) return undefined;
        return deps.audit?.record({ type: 'session.start', actorId: login.accountId, subjectId: login.accountId, clientId: oidc.client?.clientId ?? null, ip: ctx.ip || null, userAgent: ctx.get('user-agent') || null, details: { session: oidc.session.uid, amr: login.amr ?? null, acr: login.acr ?? null } });
      },
    ];
    /**
     * The request's writes did not happen (adapter.ts): the response oidc-provider made must not
     * leave. A redemption that lost to a concurrent one is invalid_grant (RFC 6749 §5.2); a
     * database failure is server_error, as JSON or as the error page, with no redirect and no
     * cookie that would point at what was not stored. An error response stays as it was.
     */
    const unwritten = async (ctx: KoaContextWithOIDC, err: unknown) => {
      if (await answerOutage(ctx, deps, err)) return;
      const lostRace = err instanceof errors.InvalidGrant;
      if (!lostRace) deps.logger.error('oidc server error', { route: ctx.oidc?.route, err: String((err as Error)?.stack ?? err) });
      if (ctx.status >= 400) return;
      ctx.remove('Location');
      ctx.remove('Set-Cookie');
      if (lostRace) {
        ctx.status = 400;
        ctx.body = { error: err.error, error_description: err.error_description };
      } else if (!answersJson(ctx) && ctx.accepts('json', 'html') === 'html') {
        ctx.status = 500;
        ctx.type = 'html';
        ctx.body = await deps.render('error', { title: 'Something went wrong', error: 'server_error', description: 'The server could not complete this request.' });
      } else {
        ctx.status = 500;
        ctx.body = { error: 'server_error', error_description: 'oops! something went wrong' };
      }
    };
    provider.use(deviceGuard);
    provider.use(async (ctx, next) => {
      await next();
      const writing = storage.finishProviderRequest(ctx as unknown as KoaContextWithOIDC);
      if (writing) {
        const failure = await writing;
        if (failure !== undefined) return unwritten(ctx as unknown as KoaContextWithOIDC, failure);
      }
      if (ctx.status >= 500 && (await answerOutage(ctx as unknown as KoaContextWithOIDC, deps))) return;
      for (const step of after) {
        const pending = step(ctx as unknown as KoaContextWithOIDC);
        if (pending) await pending;
      }
    });
    provider.on('server_error', (ctx: KoaContextWithOIDC, err: Error) => {
      // A database outage is answered 503 by the post-hook above and logged there.
      if (noteOutage(ctx, err)) return;
      deps.logger.error('oidc server error', { route: ctx.oidc?.route, err: String(err.stack ?? err) });
    });
    // oidc-provider's middleware runs on Latch's own Koa context (same cookie keys, proxy
    // settings and Koa): no second context per request, and Latch's Koa writes the response.
    return { provider, handler: providerHandler(provider) };
  };

  let current = build();

  return {
    get provider() {
      return current.provider;
    },
    middleware: (ctx) => current.handler(ctx),
    async reloadKeys() {
      const next = await deps.keys.loadKeyRing();
      if (next.fingerprint === ring.fingerprint) return false;
      ring = next;
      current = build();
      deps.logger.info('signing keys reloaded', { kids: ring.fingerprint });
      return true;
    },
    keyRing: () => ring,
    verifyAccessToken: (token) => structured.verify(token),
    checkDpopProof,
  };
}

/**
 * Listener for the outer Koa app's 'error' event: errors that escaped oidc-provider's own error
 * handling (its middleware runs on Latch's context). Connection-level errors (a client aborting
 * mid-body, a malformed request) are the client's doing: a warning without a stack. Anything
 * else is a server error.
 */
export function escapedErrorListener(logger: Logger): (err: Error & { code?: string }, ctx?: Koa.Context) => void {
  return (err, ctx) => {
    const code = err.code ?? '';
    const route = (ctx as KoaContextWithOIDC | undefined)?.oidc?.route;
    if (code.startsWith('HPE_') || ['ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ERR_STREAM_PREMATURE_CLOSE'].includes(code) || err.message === 'aborted') {
      logger.warn('oidc connection error', { route, err: err.message, code });
    } else {
      logger.error('oidc server error', { route, err: String(err.stack ?? err) });
    }
  };
}
