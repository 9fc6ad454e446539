import Koa from 'koa';

import type { Config } from './config/index.js';
import type { Db } from './db/knex.js';
import { databaseOutage } from './db/outage.js';
import type { Logger } from './lib/logger.js';
import type { Render } from './lib/views.js';
import { createCsrf } from './middleware/csrf.js';
import { errorHandler } from './middleware/errors.js';
import { everyRequest } from './middleware/request.js';
import { escapedErrorListener, type Oidc } from './oidc/provider.js';
import { publishedDocuments } from './oidc/published-documents.js';
import { accountRoutes, type Loopback } from './routes/account.js';
import { accountFederationPages, signInMethods } from './routes/account-federation.js';
import { accountInvitationPages } from './routes/account-invitations.js';
import { accountOrganizationPages } from './routes/account-organizations.js';
import { accountRecoveryRoutes } from './routes/account-recovery.js';
import { accountAccessTokenPages } from './routes/account-access-tokens.js';
import { apiRoutes } from './routes/api/index.js';
import { healthRoutes } from './routes/health.js';
import { createUpstreamClient } from './federation/upstream.js';
import { completeLogin, federationRoutes } from './routes/federation.js';
import { createMfaStep } from './routes/interaction-mfa.js';
import { interactionRoutes } from './routes/interactions.js';
import { createInvitationLookup, invitationRoutes } from './routes/invitations.js';
import { metricsRoutes } from './routes/metrics.js';
import { registrationRoutes } from './routes/registration.js';
import { createPages } from './routes/self-service.js';
import { staticRoutes } from './routes/static.js';
import type { Services } from './services/index.js';
import { createLoginService } from './services/login.js';
import { createMetrics, type Metrics } from './services/metrics.js';

/**
 * The Koa application: Latch's own routes first, then oidc-provider for everything else
 * (discovery, authorization, token, userinfo, JWKS, introspection, revocation, logout).
 */
export function createApp(deps: { config: Config; db: Db; logger: Logger; render: Render; services: Services; oidc: Oidc; metrics?: Metrics; lifecycle?: { draining: boolean }; loopback?: Loopback }): Koa {
  const { config, logger, render, services, oidc } = deps;
  // Behind the one trusted proxy, the client address is the LAST X-Forwarded-For entry (the one
  // the proxy appended); earlier entries are whatever the client sent, and per-IP rate limits
  // keyed on them could be dodged by sending a different one each time.
  const app = new Koa({ proxy: config.trustProxy, maxIpsCount: 1 });
  app.keys = services.secrets.cookieKeys;
  app.silent = true;
  app.on('error', escapedErrorListener(logger));

  const lifecycle = deps.lifecycle ?? { draining: false };
  const csrf = createCsrf(services.secrets);
  const metrics = deps.metrics ?? createMetrics({ db: deps.db });
  // Self-service pages: registration, email verification, password reset.
  const pages = createPages({ csrf, render });
  const mail = services.accountMail;
  // The second sign-in step (TOTP / recovery code) and the account page (an OIDC client of
  // Latch whose codes are redeemed over loopback: the port is filled in once listening).
  const login = createLoginService({ accounts: services.accounts, mfa: services.mfa, loginGuard: services.loginGuard, audit: services.audit, metrics });
  const federation = services.federation;
  const mfaStep = createMfaStep({
    oidc,
    accounts: services.accounts,
    mfa: services.mfa,
    login,
    csrf,
    render,
    logger,
    federated: { linkAfterPassword: (account, provider, identity, at) => federation.linkAfterPassword(account, provider, identity, at), complete: (details, done) => completeLogin(federation, details, done) },
  });
  // Sign-in through upstream providers (GitHub, Google, any OpenID Connect provider). A changed
  // provider (its issuer, say) is discovered again: its cached discovery is dropped.
  const upstream = createUpstreamClient({ logger });
  services.feed.on('identity_providers', async () => {
    for (const p of await services.identityProviders.list()) upstream.forget(p.name);
  });
  const fed = federationRoutes({ oidc, issuer: config.issuer, federation, providers: services.identityProviders, accounts: services.accounts, mfa: services.mfa, login, mfaStep, upstream, pages, logger });
  const loopback = deps.loopback ?? { host: '127.0.0.1', port: config.port || undefined };
  // Organization invitation links: GET/POST /invitation, and their signed-in view under /account.
  const invitationLookup = createInvitationLookup({ organizations: services.organizations });
  const routers = [
    healthRoutes({ db: deps.db, lifecycle }),
    staticRoutes(),
    interactionRoutes({ oidc, login, mfaStep, csrf, render, logger, registration: config.registration, idps: services.identityProviders }),
    mfaStep.router,
    fed.router,
    accountRoutes({ config, oidc, signInMethods: signInMethods({ identities: services.federatedIdentities, providers: services.identityProviders }), secrets: services.secrets, accounts: services.accounts, passwords: services.passwords, mfa: services.mfa, sessions: services.sessions, clients: services.clients, audit: services.audit, csrf, render, logger, loopback, loginGuard: services.loginGuard, organizations: services.organizations, mail: services.mailer, extensions: [accountFederationPages({ federation, flow: fed }), accountAccessTokenPages({ tokens: services.personalTokens }), accountInvitationPages({ organizations: services.organizations, lookup: invitationLookup }), accountOrganizationPages({ organizations: services.organizations, roles: services.roles, accounts: services.accounts })] }),
    registrationRoutes({ mode: config.registration, registration: services.registration, mail, limits: services.limits, pages, logger }),
    accountRecoveryRoutes({ accounts: services.accounts, recovery: services.accountRecovery, mail, pages, logger }),
    invitationRoutes({ mode: config.registration, accounts: services.accounts, registration: services.registration, pages, lookup: invitationLookup, logger }),
    metricsRoutes({ metrics, token: config.metricsToken }),
    // The admin/account REST API, its OpenAPI contract and docs (/api).
    apiRoutes({ config, db: deps.db, logger, services, oidc, outage: databaseOutage }),
  ];

  // First: request id, security headers, the log line and HTTP metrics, draining (request.ts).
  app.use(everyRequest({ logger, lifecycle, observe: (o) => metrics.observeRequest(o) }));
  // Everything outside Latch's own first path segments is oidc-provider's: hand it over at
  // once, so the token endpoint's hot path does not try every router first. The JWKS and
  // discovery are answered from bytes kept per Provider (oidc/published-documents.ts).
  const ownSegments = new Set(routers.flatMap((r) => r.stack.map((layer) => `/${String(layer.path).split('/')[1] ?? ''}`)));
  const providerRoutes = publishedDocuments(oidc);
  app.use((ctx, next) => (ownSegments.has(`/${ctx.path.split('/')[1] ?? ''}`) ? next() : providerRoutes(ctx, next)));
  app.use(errorHandler({ logger, render, outage: databaseOutage }));
  for (const router of routers) {
    app.use(router.routes());
    app.use(router.allowedMethods());
  }
  app.use(oidc.middleware);
  return app;
}
