import type Koa from 'koa';

import type { Config } from '../../config/index.js';
import type { Db } from '../../db/knex.js';
import type { Logger } from '../../lib/logger.js';
import { originOf } from '../../lib/request-origin.js';
import { actorOf, principalOf } from '../../middleware/api-auth.js';
import type { BodyValidators } from '../../middleware/api-body.js';
import { invalid } from '../../middleware/api-problem.js';
import type { Oidc } from '../../oidc/provider.js';
import type { AccountMail } from '../../services/account-mail.js';
import type { AuditService } from '../../services/audit.js';
import { ValidationError } from '../../services/errors.js';
import type { Services } from '../../services/index.js';

/** What every admin API route file receives. */
export interface ApiDeps {
  config: Config;
  db: Db;
  logger: Logger;
  services: Services;
  oidc: Oidc;
  mail: AccountMail;
  /** Audit queries with filters and the GDPR pseudonymisation (beyond AuditService's list). */
  auditEvents: Pick<AuditService, 'list' | 'get'>;
  /** The request-body schemas of openapi.yaml, compiled once. */
  bodies: BodyValidators;
}

/** The caller of an admin API request as the audit actor of the change a service makes for it. */
export const byPrincipal = (ctx: Koa.Context) => ({ ...actorOf(principalOf(ctx)), origin: originOf(ctx), via: 'api' });

/** Answers 201 with Location and the created resource (with its ETag). */
export const locationOf = (deps: ApiDeps, path: string) => `${deps.config.issuer}/api/v1/${path}`;

/** epoch seconds or ISO → ISO, or null. */
export function isoOf(v: unknown): string | null {
  if (typeof v === 'number' && Number.isFinite(v)) return new Date(v * 1000).toISOString();
  if (typeof v === 'string' && !Number.isNaN(Date.parse(v))) return new Date(v).toISOString();
  return null;
}

/**
 * Runs a service call, answering its ValidationError as a 422 on the field's API name (`names`
 * maps the service's names, which are the CLI's flags, to the API's).
 */
export async function withApiFields<T>(names: Record<string, string>, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof ValidationError) throw invalid([{ field: names[err.field] ?? err.field, message: err.detail }]);
    throw err;
  }
}
