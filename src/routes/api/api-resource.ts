import { ConflictError } from '../../services/errors.js';
import type { ResourceService } from '../../services/resources.js';

/** Latch's own API as a resource server: `${ISSUER}/api`. */
export const apiAudience = (issuer: string) => `${issuer}/api`;

/** Its scopes: administration (superusers and machine clients) and the signed-in user's own account. */
export const API_RESOURCE_SCOPES = ['admin:read', 'admin:write', 'account'];

/**
 * Registers the API's resource server when missing (at server start), so a client can be given
 * `--resource ${ISSUER}/api` once the server has started. Scopes added later are kept.
 */
export async function ensureApiResource(resources: Pick<ResourceService, 'findByIdentifier' | 'create'>, issuer: string): Promise<void> {
  const identifier = apiAudience(issuer);
  if (await resources.findByIdentifier(identifier)) return;
  try {
    await resources.create({ identifier, name: 'Latch admin API', scopes: API_RESOURCE_SCOPES });
  } catch (err) {
    // Another instance starting at the same moment created it first (ConflictError, or the
    // unique index when both checked before either inserted).
    if (!(err instanceof ConflictError) && !(await resources.findByIdentifier(identifier))) throw err;
  }
}
