import { join } from 'node:path';

import type { Config } from '../config/index.js';
import type { Db } from '../db/knex.js';
import { openSqliteSnapshot } from '../db/snapshot.js';
import type { Logger } from '../lib/logger.js';
import { createAccountTokensRepository } from '../repositories/account-tokens.js';
import { createBackchannelLogoutsRepository } from '../repositories/backchannel-logouts.js';
import { createAccountsRepository } from '../repositories/accounts.js';
import { createAuditEventsRepository } from '../repositories/audit-events.js';
import { createChangesRepository } from '../repositories/changes.js';
import { createClientsRepository } from '../repositories/clients.js';
import { createMailQueueRepository } from '../repositories/mail-queue.js';
import { createFederatedIdentitiesRepository } from '../repositories/federated-identities.js';
import { createIdentityProvidersRepository } from '../repositories/identity-providers.js';
import { createMfaRepository } from '../repositories/mfa.js';
import { createOrganizationsRepository } from '../repositories/organizations.js';
import { createPersonalAccessTokensRepository } from '../repositories/personal-access-tokens.js';
import { createProviderStateRepository } from '../repositories/provider-state.js';
import { createRecoveryCodesRepository } from '../repositories/recovery-codes.js';
import { createResourcesRepository } from '../repositories/resources.js';
import { createRolesRepository } from '../repositories/roles.js';
import { createSettingsRepository } from '../repositories/settings.js';
import { createSigningKeysRepository } from '../repositories/signing-keys.js';
import { createTransact } from '../repositories/transaction.js';
import { createAccessService } from './access.js';
import { createAccountMail } from './account-mail.js';
import { createAccountRecovery } from './account-recovery.js';
import { createAppImport } from './app-import/run.js';
import { createMailLinkService } from './mail-links.js';
import { createAccountService } from './accounts.js';
import { createAuditService } from './audit.js';
import { createBackchannelLogout } from './backchannel-logout.js';
import { createBootstrap } from './bootstrap.js';
import { createChangeFeed } from './change-feed.js';
import { createClientService } from './clients.js';
import { createFederatedIdentityService } from './federated-identities.js';
import { createFederationService } from './federation.js';
import { createIdentityProviderService } from './identity-providers.js';
import { createKeyService } from './keys.js';
import { createMailTransport } from './mail.js';
import { createMailQueue } from './mail-queue.js';
import { createMfaService } from './mfa.js';
import { createPasswordHasher } from './passwords.js';
import { createRegistration } from './registration.js';
import { createLoginGuard, guardSettings } from './login-guard.js';
import { createRateLimiting } from './rate-limits.js';
import { createOrganizationService } from './organizations.js';
import { createPersonalAccessTokenService } from './personal-access-tokens.js';
import { createResourceService } from './resources.js';
import { createRoleService } from './roles.js';
import { createSecrets } from './secrets.js';
import { createSessionService } from './sessions.js';

/** Every service over one database: what the server and the CLI share. */
export function createServices(deps: { db: Db; config: Config; logger: Logger; changePollMs?: number }) {
  const { db, config, logger } = deps;
  const secrets = createSecrets(config.secret);
  const feed = createChangeFeed({ changes: createChangesRepository(db), logger, ...(deps.changePollMs ? { intervalMs: deps.changePollMs } : {}) });
  // A device code is stored hashed; sealed beside it for the lookup by user code (see the repository).
  const state = createProviderStateRepository(db, { seal: (id, rowId) => secrets.seal('device-code', id, rowId), open: (sealed, rowId) => secrets.open('device-code', sealed, rowId) });
  const transact = createTransact(db);
  const resourcesRepo = createResourcesRepository(db);
  const passwords = createPasswordHasher(config.argon2);
  const audit = createAuditService({ events: createAuditEventsRepository(db), logger });
  // Counters in RATE_LIMIT_STORE (memory, the database, or Redis); closed by the server.
  const rateLimits = createRateLimiting({ config, db, logger });
  // Every mail is queued in the database, then sent; the server's sender loop retries it.
  const transport = createMailTransport({ smtpUrl: config.mail.smtpUrl, from: config.mail.from, outboxDir: join(config.dataDir, 'outbox'), logger });
  const mailer = createMailQueue({ repo: createMailQueueRepository(db), transport, secrets, logger });
  const rolesRepo = createRolesRepository(db);
  const orgsRepo = createOrganizationsRepository(db);
  const roles = createRoleService({ roles: rolesRepo, resources: resourcesRepo, audit, feed });
  // Built once: the personal access tokens use the same caches (invalidated by the feed).
  const resources = createResourceService({ resources: resourcesRepo, audit, feed });
  const access = createAccessService({ roles: rolesRepo, orgs: orgsRepo, feed });
  const clients = createClientService({ clients: createClientsRepository(db), resources: resourcesRepo, secrets, audit, feed, production: config.production });
  const keys = createKeyService({ keys: createSigningKeysRepository(db), secrets, audit, feed });
  const limits = rateLimits.limits;
  const accountTokens = createAccountTokensRepository(db);
  const mailLinks = createMailLinkService({ tokens: accountTokens });
  const organizations = createOrganizationService({ orgs: orgsRepo, roles, issuer: config.issuer, mailer, audit, feed });
  const accountMail = createAccountMail({ issuer: config.issuer, mailer, tokens: mailLinks, limits, audit });
  // Back-channel logouts are queued in the transaction that ends the sessions (accounts, sessions, end_session).
  const backchannelLogout = createBackchannelLogout({ queue: createBackchannelLogoutsRepository(db), logger });
  const accountsRepo = createAccountsRepository(db);
  const identitiesRepo = createFederatedIdentitiesRepository(db);
  const accounts = createAccountService({ accounts: accountsRepo, passwords, roles, mail: accountMail, state, identities: identitiesRepo, audit, transact, backchannelLogout, requireVerifiedEmail: config.requireVerifiedEmail, feed });
  const federatedIdentities = createFederatedIdentityService({ identities: identitiesRepo, accounts: accountsRepo, transact, audit });
  return {
    secrets,
    audit,
    rateLimits,
    limits,
    loginGuard: createLoginGuard({ counter: rateLimits.counter, settings: guardSettings(config.limits), onRejection: rateLimits.rejected }),
    mailLinks,
    mailer,
    // The self-service mails (verification, reset, invitation): one object for server and CLI.
    accountMail,
    feed,
    state,
    passwords,
    accounts,
    accountRecovery: createAccountRecovery({ accounts, links: mailLinks, audit }),
    registration: createRegistration({ accounts, passwords, links: mailLinks, mail: accountMail, audit, organizations }),
    sessions: createSessionService({ state, audit, transact, backchannelLogout }),
    backchannelLogout,
    clients,
    resources,
    keys,
    // The issuer recorded in the database, the secret check and the built-in registrations.
    bootstrap: createBootstrap({ settings: createSettingsRepository(db), resourcesRepo, resources, clients, keys, feed }),
    mfa: createMfaService({ mfa: createMfaRepository(db), recoveryCodes: createRecoveryCodesRepository(db), secrets, audit, issuer: config.issuer }),
    changes: createChangesRepository(db),
    roles,
    organizations,
    access,
    // Its last-use times are flushed by the server's close().
    // Upstream identity providers (cached for sign-in, refreshed through the feed) and the
    // identities linked through them.
    identityProviders: createIdentityProviderService({ providers: createIdentityProvidersRepository(db), secrets, audit, feed, issuer: config.issuer }),
    federatedIdentities,
    // Sign-in through those providers: which account, link, ask, create or refuse.
    federation: createFederationService({ accounts, identities: federatedIdentities, tokens: accountTokens, state, secrets, audit, registration: config.registration, requireVerifiedEmail: config.requireVerifiedEmail, grantTtlSeconds: Math.max(config.ttl.refreshToken, config.ttl.session) }),
    // `latch import app`: an app's users, organizations, keys and machine clients, ids kept.
    appImport: createAppImport({
      db,
      clients,
      secrets,
      feed,
      audit,
      patMaxTtlDays: config.patMaxTtlDays,
      snapshot: config.database.client === 'sqlite' ? openSqliteSnapshot.bind(undefined, db, config.database.filename) : undefined,
    }),
    personalTokens: createPersonalAccessTokenService({ tokens: createPersonalAccessTokensRepository(db), orgs: orgsRepo, access, resources, issuer: config.issuer, maxTtlDays: config.patMaxTtlDays, audit, logger }),
  };
}

export type Services = ReturnType<typeof createServices>;
