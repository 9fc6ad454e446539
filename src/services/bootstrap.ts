import type { Db } from '../db/knex.js';
import { AppError } from '../errors/index.js';
import type { ResourcesRepository } from '../repositories/resources.js';
import type { SettingsRepository } from '../repositories/settings.js';
import { SYSTEM_ACTOR } from './audit.js';
import type { ChangeFeed } from './change-feed.js';
import { ACCOUNT_CLIENT_ID, type ClientService } from './clients.js';
import { ConflictError } from './errors.js';
import type { KeyService } from './keys.js';
import type { ResourceService } from './resources.js';

/** Latch's own API as a resource server: `${ISSUER}/api`. */
export const apiAudience = (issuer: string) => `${issuer}/api`;

/** Its scopes: administration (superusers and machine clients) and the signed-in user's own account. */
export const API_RESOURCE_SCOPES = ['admin:read', 'admin:write', 'account'];

/**
 * Registers the API's resource server when missing, so a client can be given
 * `--resource ${ISSUER}/api` before the server ever started. Scopes added later are kept.
 */
export async function ensureApiResource(resources: Pick<ResourceService, 'findByIdentifier' | 'create'>, issuer: string): Promise<void> {
  const identifier = apiAudience(issuer);
  if (await resources.findByIdentifier(identifier)) return;
  try {
    await resources.create({ identifier, name: 'Latch admin API', scopes: API_RESOURCE_SCOPES }, SYSTEM_ACTOR);
  } catch (err) {
    // Another process starting at the same moment created it first (ConflictError, or the
    // unique index when both checked before either inserted).
    if (!(err instanceof ConflictError) && !(await resources.findByIdentifier(identifier))) throw err;
  }
}

/**
 * The account page is an OIDC client of this server: public (PKCE), first-party (no consent
 * page), authorization_code only; registered, or re-pointed when the issuer changed.
 */
export async function ensureAccountClient(clients: Pick<ClientService, 'ensureBuiltIn'>, issuer: string): Promise<void> {
  await clients.ensureBuiltIn(ACCOUNT_CLIENT_ID, {
    name: 'Your Latch account',
    grants: ['authorization_code'],
    redirectUris: [`${issuer}/account/callback`],
    postLogoutRedirectUris: [`${issuer}/account`],
    scopes: ['openid', 'profile', 'email'],
    isPublic: true,
    firstParty: true,
  });
}

/** Issuers are compared without a trailing slash (ISSUER is stored that way). */
const normalise = (issuer: string) => issuer.replace(/\/+$/, '');

/**
 * ISSUER names another issuer than the one this database was set up for. Tokens, the admin
 * API's audience and mailed links all derive from the issuer, so acting under a second one
 * would split the deployment in two; it is changed only on purpose (`latch issuer set`).
 */
export class IssuerMismatchError extends AppError {
  constructor(
    readonly configured: string,
    readonly recorded: string,
  ) {
    // 500: an operator's misconfiguration, stopping start-up or a command, never a client's error.
    super(500, 'issuer_mismatch', `ISSUER is ${configured} but this database belongs to issuer ${recorded}: set ISSUER=${recorded}, or change the recorded issuer with \`latch issuer set ${configured}\``);
  }
}

export interface IssuerChange {
  issuer: string;
  previous: string | undefined;
  /** The admin API's resource identifier, `${issuer}/api`. */
  api_resource: string;
}

/**
 * What the server and the CLI do before serving or running a command: settle the issuer against
 * the one recorded in the database, check that LATCH_SECRET opens the stored keys, and register
 * the built-in API resource and account client for that issuer.
 */
export function createBootstrap(deps: { settings: SettingsRepository; resourcesRepo: ResourcesRepository; resources: ResourceService; clients: ClientService; keys: KeyService; feed: ChangeFeed }) {
  const { settings } = deps;
  async function seed(issuer: string): Promise<void> {
    await ensureAccountClient(deps.clients, issuer);
    await ensureApiResource(deps.resources, issuer);
  }
  return {
    /** The issuer recorded in the database; undefined before the first start or command. */
    recordedIssuer: () => settings.get('issuer'),

    /**
     * Answers the issuer to act for. `configured` is ISSUER when it was set (or the server's
     * issuer, which is always its own): it is recorded when nothing is, and must equal the
     * recorded one otherwise. Without it the recorded issuer is used, else `fallback` is recorded.
     */
    async settleIssuer(configured: string | undefined, fallback: string): Promise<string> {
      const wanted = normalise(configured ?? fallback);
      const recorded = normalise((await settings.get('issuer')) ?? (await settings.setIfAbsent('issuer', wanted)));
      if (configured !== undefined && recorded !== wanted) throw new IssuerMismatchError(wanted, recorded);
      return recorded;
    },

    /** Fails with a message naming LATCH_SECRET when it cannot decrypt the stored signing keys. */
    verifySecret: () => deps.keys.verifySecret(),

    /** The API resource and the account client of `issuer` exist (idempotent; several processes may race). */
    seed,

    /**
     * Records `to` as the issuer and moves the admin API resource from `${previous}/api` to
     * `${to}/api` (with the clients and personal access tokens that name it) in one transaction,
     * so the API resource exists exactly once, for the recorded issuer.
     */
    async changeIssuer(to: string): Promise<IssuerChange> {
      const issuer = normalise(to);
      const previous = await settings.transaction(async (repo, trx: Db) => {
        const before = await repo.get('issuer');
        await repo.set('issuer', issuer);
        if (before !== undefined) await deps.resourcesRepo.moveIdentifier(trx, apiAudience(normalise(before)), apiAudience(issuer));
        return before;
      });
      await deps.feed.publish('resources');
      await deps.feed.publish('clients');
      await deps.feed.publish('rbac');
      await seed(issuer);
      return { issuer, previous, api_resource: apiAudience(issuer) };
    },
  };
}

export type Bootstrap = ReturnType<typeof createBootstrap>;
