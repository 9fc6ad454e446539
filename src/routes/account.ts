import Router from '@koa/router';
import type Koa from 'koa';

import type { Config } from '../config/index.js';
import type { Logger } from '../lib/logger.js';
import type { Render } from '../lib/views.js';
import type { Csrf } from '../middleware/csrf.js';
import type { Oidc } from '../oidc/provider.js';
import type { AccountService } from '../services/accounts.js';
import type { AuditService } from '../services/audit.js';
import type { ClientService } from '../services/clients.js';
import type { LoginGuard } from '../services/login-guard.js';
import type { MailQueue } from '../services/mail-queue.js';
import type { MfaService } from '../services/mfa.js';
import type { OrganizationService } from '../services/organizations.js';
import type { PasswordHasher } from '../services/passwords.js';
import type { Secrets } from '../services/secrets.js';
import type { SessionService } from '../services/sessions.js';
import { createAccountKit, type AccountExtension } from './account-kit.js';
import { accountMfaPages } from './account-mfa.js';
import { accountOverviewPages, type SignInMethods } from './account-overview.js';
import { createAccountCookies } from './account-session.js';
import { createAccountSignIn, type Loopback } from './account-sign-in.js';

export type { AccountExtension, AccountKit, SignedIn } from './account-kit.js';
export type { Loopback } from './account-sign-in.js';

/**
 * The account area under /account: its sign-in through Latch (routes/account-sign-in.ts), the
 * overview (account-overview.ts), two-step verification (account-mfa.ts), and the page groups
 * of other modules (`extensions`), each registered with the shared kit (account-kit.ts).
 */
export function accountRoutes(deps: {
  config: Config;
  oidc: Oidc;
  secrets: Secrets;
  accounts: AccountService;
  passwords: PasswordHasher;
  mfa: MfaService;
  sessions: SessionService;
  clients: ClientService;
  audit: AuditService;
  csrf: Csrf;
  render: Render;
  logger: Logger;
  loopback: Loopback;
  loginGuard: LoginGuard;
  /** Organizations: the overview lists the account's memberships and pending invitations. */
  organizations: OrganizationService;
  /** The mail queue: the overview shows whether the verification mail is still pending. */
  mail: Pick<MailQueue, 'delivery'>;
  /** The "Sign-in methods" section (upstream providers linked to the account). */
  signInMethods?: SignInMethods | undefined;
  /** More pages under /account, registered with the shared kit. */
  extensions?: AccountExtension[];
}): Router {
  const router = new Router();
  const cookies = createAccountCookies(deps.secrets);
  const problem = (ctx: Koa.Context, status: number, title: string, description: string, error = 'account_sign_in_failed') => kit.page(ctx, 'account-problem', { title, description, error }, status);
  const signIn = createAccountSignIn({ issuer: deps.config.issuer, oidc: deps.oidc, secrets: deps.secrets, accounts: deps.accounts, sessions: deps.sessions, cookies, logger: deps.logger, loopback: deps.loopback, problem });
  const kit = createAccountKit({ router, csrf: deps.csrf, render: deps.render, cookies, signIn, passwords: deps.passwords, mfa: deps.mfa, audit: deps.audit, loginGuard: deps.loginGuard });

  router.get('/account/callback', (ctx) => signIn.callback(ctx));
  const groups: AccountExtension[] = [
    accountOverviewPages({ accounts: deps.accounts, sessions: deps.sessions, clients: deps.clients, mfa: deps.mfa, organizations: deps.organizations, mail: deps.mail, signIn, signInMethods: deps.signInMethods }),
    accountMfaPages({ mfa: deps.mfa }),
    ...(deps.extensions ?? []),
  ];
  for (const register of groups) register(kit);
  return router;
}
