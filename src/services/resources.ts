import { randomUUID } from 'node:crypto';

import { absoluteUri, scopeToken, unique } from '../lib/validate.js';
import type { ResourceRecord, ResourcesRepository, SigningAlg } from '../repositories/resources.js';
import type { ChangeFeed } from './change-feed.js';
import { ConflictError, ValidationError } from './errors.js';

export const RESOURCE_ALGS: SigningAlg[] = ['RS256', 'ES256', 'EdDSA'];

export interface CreateResourceInput {
  identifier: string;
  name?: string | undefined;
  scopes?: string[] | undefined;
  ttl?: number | undefined;
  alg?: string | undefined;
  rbac?: boolean | undefined;
}

/** Resource servers (RFC 8707 audiences), cached in memory for the token hot path. */
export function createResourceService(deps: { resources: ResourcesRepository; feed?: ChangeFeed }) {
  const { resources } = deps;
  let cache: Promise<Map<string, ResourceRecord>> | undefined;
  deps.feed?.on('resources', () => {
    cache = undefined;
  });

  const load = async () => new Map((await resources.list()).map((r) => [r.identifier, r]));

  return {
    async create(input: CreateResourceInput): Promise<ResourceRecord> {
      const identifier = absoluteUri('identifier', input.identifier?.trim() ?? '');
      const alg = (input.alg ?? 'RS256') as SigningAlg;
      if (!RESOURCE_ALGS.includes(alg)) throw new ValidationError('alg', `must be one of ${RESOURCE_ALGS.join(', ')} (got "${input.alg}")`);
      if (input.ttl !== undefined && (!Number.isInteger(input.ttl) || input.ttl < 1 || input.ttl > 31_536_000)) {
        throw new ValidationError('ttl', 'must be a whole number of seconds between 1 and 31536000');
      }
      const scopes = unique((input.scopes ?? []).flatMap((s) => s.split(/\s+/)).filter(Boolean).map((s) => scopeToken('scope', s)));
      if (await resources.findByIdentifier(identifier)) throw new ConflictError(`resource ${identifier} already exists`);
      const created = await resources.insert({ id: randomUUID(), identifier, name: input.name ?? null, scopes, accessTokenTtl: input.ttl ?? null, signingAlg: alg, rbac: input.rbac ?? false });
      await deps.feed?.publish('resources');
      return created;
    },
    list: () => resources.list(),
    findByIdentifier: (identifier: string) => resources.findByIdentifier(identifier),
    /** Cached lookup by identifier. */
    async get(identifier: string): Promise<ResourceRecord | undefined> {
      cache ??= load().catch((err: unknown) => {
        cache = undefined;
        throw err;
      });
      return (await cache).get(identifier);
    },
  };
}

export type ResourceService = ReturnType<typeof createResourceService>;
