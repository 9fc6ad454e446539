import { createHash, randomBytes, randomUUID } from 'node:crypto';

import bcrypt from 'bcrypt';

import type { Logger } from '../lib/logger.js';
import type { OrganizationsRepository } from '../repositories/organizations.js';
import type { PersonalAccessTokenRecord, PersonalAccessTokensRepository } from '../repositories/personal-access-tokens.js';
import type { ResourceRecord } from '../repositories/resources.js';
import type { AccessService, SubjectAccess } from './access.js';
import type { AuditService, RequestOrigin } from './audit.js';
import { ACCOUNT_CLIENT_ID } from './clients.js';
import { ValidationError } from './errors.js';
import type { ResourceService } from './resources.js';
import { permissionCandidates } from './roles.js';
import type { PageOf, PageRequest } from '../repositories/keyset.js';

/** Every personal access token starts with this, so scanners and people can recognise one. */
export const PAT_PREFIX = 'lat_';
/** Lifetime when none is chosen (capped by PAT_MAX_TTL_DAYS). */
export const PAT_DEFAULT_TTL_DAYS = 90;
/** Live (unrevoked, unexpired) tokens one account may hold. */
export const PAT_MAX_LIVE = 50;
export const PAT_NAME_MAX = 100;
/** last_used_at is written at most this often (and at close): never a write per introspection. */
const FLUSH_INTERVAL_MS = 30_000;

/** `lat_` + 32 random bytes in base64url (43 characters). */
const TOKEN_SHAPE = /^lat_[A-Za-z0-9_-]{43}$/;
/**
 * An API key imported from an app keeps its old value, whatever its shape: printable ASCII
 * without spaces, bounded. A compact JWS (Latch's own access tokens) is never one.
 */
const IMPORTED_SHAPE = /^[\x21-\x7e]{8,512}$/;
const JWS_SHAPE = /^[\w-]+\.[\w-]+\.[\w-]*$/;
/** Whether a presented token may be an imported API key (introspection looks it up then). */
export const mayBeImportedKey = (token: string) => IMPORTED_SHAPE.test(token) && !JWS_SHAPE.test(token) && !token.startsWith(PAT_PREFIX);
/** Longest stored prefix an imported bcrypt key is looked up by. */
const PREFIX_MAX = 64;
const DAY_MS = 86_400_000;

/**
 * The stored hash. SHA-256 suffices: the token is 256 bits of randomness, so a leaked table
 * cannot be brute-forced back into tokens (secrets.mac's purposes are a closed list that does
 * not include this one). Looked up through a unique index, so no constant-time compare is needed.
 */
export const hashToken = (token: string) => createHash('sha256').update(token).digest('hex');

/**
 * The token's id shows its first 4 random characters ("lat_AbCd…" on the account page), so a
 * person can tell which token is which; 24 bits of 256, no help to a guesser.
 */
const newId = (token: string) => `${token.slice(PAT_PREFIX.length, PAT_PREFIX.length + 4)}-${randomUUID()}`;
/** The first 8 characters of the token, as its id recorded them. */
export const prefixHint = (id: string) => (/^[A-Za-z0-9_-]{4}-/.test(id) ? `${PAT_PREFIX}${id.slice(0, 4)}` : PAT_PREFIX);
/** What a person recognises a token by: Latch's `lat_…` hint, or an imported key's own prefix. */
const shownPrefix = (r: PersonalAccessTokenRecord) => (r.format ? (r.prefix ?? '') : prefixHint(r.id));

const epoch = (iso: string) => Math.floor(new Date(iso).getTime() / 1000);

/** A resource server and the scopes of it a user may put in a token. */
export interface HoldableResource {
  identifier: string;
  name: string | null;
  scopes: string[];
}

export interface CreatePersonalAccessTokenInput {
  name: string;
  /** `RESOURCE_URI:SCOPE`, split at the last colon. */
  scopes: string[];
  organizationId?: string | null | undefined;
  /** Default PAT_DEFAULT_TTL_DAYS (or the maximum when shorter). */
  expiresInDays?: number | undefined;
  origin?: RequestOrigin | undefined;
}

/** RFC 7662 §2.2 introspection response for a live personal access token. */
export interface PersonalAccessTokenIntrospection {
  active: true;
  iss: string;
  sub: string;
  scope: string;
  client_id: string;
  token_type: 'Bearer';
  exp: number;
  iat: number;
  aud: string[];
  jti: string;
  org_id?: string;
  org_role?: string;
}

/** The JSON shape of a token (account page, `/api/v1/me/tokens`): never the token or its hash. */
export function describePersonalAccessToken(r: PersonalAccessTokenRecord) {
  return {
    id: r.id,
    name: r.name,
    prefix: shownPrefix(r),
    scopes: r.scopes,
    audience: r.audience,
    organization_id: r.organizationId,
    created_at: r.createdAt,
    expires_at: r.expiresAt,
    last_used_at: r.lastUsedAt,
    revoked_at: r.revokedAt,
  };
}

/**
 * Personal access tokens: long-lived bearer tokens a user makes for scripts, checked by resource
 * servers at the introspection endpoint. A token never carries more than its owner holds: at
 * creation every scope is checked against the owner's roles, and at each introspection the
 * stored scopes are narrowed to what the owner still holds (a role taken away takes its scopes
 * out of every token within a change-feed poll), the owner must be active and, for an
 * organization token, still a member.
 */
export function createPersonalAccessTokenService(deps: {
  tokens: PersonalAccessTokensRepository;
  orgs: Pick<OrganizationsRepository, 'membership'>;
  access: AccessService;
  resources: Pick<ResourceService, 'list' | 'get'>;
  issuer: string;
  maxTtlDays: number;
  audit?: AuditService | undefined;
  logger?: Logger | undefined;
  flushIntervalMs?: number | undefined;
}) {
  const { tokens, access } = deps;
  const defaultTtlDays = Math.min(PAT_DEFAULT_TTL_DAYS, deps.maxTtlDays);
  const flushIntervalMs = deps.flushIntervalMs ?? FLUSH_INTERVAL_MS;

  /** The scopes of `rs` the subject holds: RBAC resources by role, the others all of theirs. */
  const heldOn = (rs: ResourceRecord, held: SubjectAccess, organizationId: string | null): Set<string> =>
    rs.rbac ? access.permitted(held, rs.identifier, organizationId) : new Set(rs.scopes);

  async function holdableScopes(accountId: string, organizationId: string | null): Promise<HoldableResource[]> {
    const held = await access.of({ kind: 'account', id: accountId });
    const out: HoldableResource[] = [];
    for (const rs of await deps.resources.list()) {
      const set = heldOn(rs, held, organizationId);
      const scopes = rs.scopes.filter((s) => set.has(s));
      if (scopes.length) out.push({ identifier: rs.identifier, name: rs.name, scopes });
    }
    return out;
  }

  function checkName(raw: string): string {
    const name = raw.trim();
    if (!name) throw new ValidationError('name', 'is required');
    if (name.length > PAT_NAME_MAX) throw new ValidationError('name', `must be at most ${PAT_NAME_MAX} characters`);
    // Control characters have no place in a label (and PostgreSQL text cannot hold U+0000).
    if (/\p{Cc}/u.test(name)) throw new ValidationError('name', 'must not contain control characters');
    return name;
  }

  function checkDays(days: number | undefined): number {
    const value = days ?? defaultTtlDays;
    if (!Number.isInteger(value) || value < 1 || value > deps.maxTtlDays) throw new ValidationError('expires_in_days', `must be a whole number of days from 1 to ${deps.maxTtlDays}`);
    return value;
  }

  /** Parses `URI:SCOPE` entries and refuses any the account does not hold. */
  async function checkScopes(accountId: string, organizationId: string | null, entries: string[]): Promise<{ scopes: string[]; audience: string[] }> {
    const wanted = [...new Set(entries.map((e) => e.trim()).filter(Boolean))];
    if (wanted.length === 0) throw new ValidationError('scopes', 'must include at least one scope');
    const holdable = new Map((await holdableScopes(accountId, organizationId)).map((r) => [r.identifier, new Set(r.scopes)]));
    const scopes = new Set<string>();
    const audience = new Set<string>();
    for (const entry of wanted) {
      let candidates;
      try {
        candidates = permissionCandidates(entry);
      } catch {
        throw new ValidationError('scopes', `must be RESOURCE_URI:SCOPE (got "${entry.slice(0, 200)}")`);
      }
      const p = candidates.find((c) => holdable.has(c.resource)) ?? candidates[0]!;
      if (!holdable.get(p.resource)?.has(p.scope)) throw new ValidationError('scopes', `include ${entry.slice(0, 200)}, which you do not hold${organizationId ? ' in that organization' : ''}`);
      scopes.add(p.scope);
      audience.add(p.resource);
    }
    return { scopes: [...scopes], audience: [...audience] };
  }

  // ---- last use, batched ---------------------------------------------------------------------

  let pending = new Map<string, string>();
  let timer: NodeJS.Timeout | undefined;
  let flushing: Promise<void> = Promise.resolve();
  let closed = false;

  function recordUse(id: string): void {
    pending.set(id, new Date().toISOString());
    if (timer || closed) return;
    timer = setTimeout(() => {
      timer = undefined;
      void flush();
    }, flushIntervalMs);
    // The CLI builds this service too: a pending flush must not keep a process alive.
    timer.unref();
  }

  const withRecentUse = (r: PersonalAccessTokenRecord): PersonalAccessTokenRecord => {
    const recent = pending.get(r.id);
    return recent && (!r.lastUsedAt || recent > r.lastUsedAt) ? { ...r, lastUsedAt: recent } : r;
  };

  /** Writes the recorded last uses now (one UPDATE per token, one transaction). */
  function flush(): Promise<void> {
    flushing = flushing.then(async () => {
      if (pending.size === 0) return;
      const batch = pending;
      pending = new Map();
      try {
        await tokens.touch(batch);
      } catch (err) {
        // Keep them for the next flush (a later use of the same token wins).
        for (const [id, at] of batch) if (!pending.has(id)) pending.set(id, at);
        deps.logger?.warn('personal access tokens: last-use flush failed', { err: String(err), tokens: batch.size });
      }
    });
    return flushing;
  }

  /**
   * An imported key whose app kept a bcrypt hash: the rows whose stored prefix begins the key,
   * verified with bcrypt (on the thread pool); the one that matches moves to the SHA-256 lookup,
   * so bcrypt runs once per key, at its first use.
   */
  async function verifyBcryptKey(token: string, now: string): Promise<boolean> {
    const prefixes: string[] = [];
    for (let n = 1; n <= Math.min(PREFIX_MAX, token.length - 1); n++) prefixes.push(token.slice(0, n));
    for (const candidate of await tokens.bcryptCandidates(prefixes, now)) {
      const ok = await bcrypt.compare(token, candidate.tokenHash.replace(/^\$2y\$/, '$2b$')).catch(() => false);
      if (ok) {
        await tokens.upgradeToSha256(candidate.id, hashToken(token));
        return true;
      }
    }
    return false;
  }

  return {
    settings: { maxTtlDays: deps.maxTtlDays, defaultTtlDays, maxLive: PAT_MAX_LIVE },

    holdableScopes,

    /** The organizations the account belongs to, with its role there. */
    async organizations(accountId: string): Promise<{ id: string; name: string; slug: string; role: string }[]> {
      const held = await access.of({ kind: 'account', id: accountId });
      return [...held.organizations.values()].map(({ id, name, slug, role }) => ({ id, name, slug, role }));
    },

    /**
     * Makes a token. Returns the token itself, to be shown once: only its hash is stored.
     * Throws ValidationError naming the field for any bad input.
     */
    async create(account: { id: string }, input: CreatePersonalAccessTokenInput): Promise<{ token: string; record: PersonalAccessTokenRecord }> {
      const name = checkName(input.name ?? '');
      const days = checkDays(input.expiresInDays);
      const organizationId = input.organizationId || null;
      if (organizationId && !(await deps.orgs.membership(organizationId, { kind: 'account', id: account.id }))) {
        throw new ValidationError('organization_id', 'is not an organization you belong to');
      }
      const { scopes, audience } = await checkScopes(account.id, organizationId, input.scopes ?? []);
      const now = new Date();
      if ((await tokens.countLive(account.id, now.toISOString())) >= PAT_MAX_LIVE) {
        throw new ValidationError('tokens', `limit reached: at most ${PAT_MAX_LIVE} live tokens; revoke one first`);
      }
      const token = `${PAT_PREFIX}${randomBytes(32).toString('base64url')}`;
      const record = await tokens.insert({
        id: newId(token),
        accountId: account.id,
        name,
        tokenHash: hashToken(token),
        scopes,
        audience,
        organizationId,
        createdAt: now.toISOString(),
        expiresAt: new Date(now.getTime() + days * DAY_MS).toISOString(),
      });
      await deps.audit?.record({ type: 'pat.create', actorId: account.id, subjectId: account.id, origin: input.origin, details: { id: record.id, name, scopes, audience, organization_id: organizationId, expires_at: record.expiresAt } });
      return { token, record };
    },

    /** One page of the account's tokens not revoked, newest first, with last uses not yet flushed. */
    async page(accountId: string, request: PageRequest): Promise<PageOf<PersonalAccessTokenRecord>> {
      const page = await tokens.pageByAccount(accountId, request);
      return { items: page.items.map(withRecentUse), next: page.next };
    },

    /** Every token of the account, newest first, with last uses not yet flushed. */
    async list(accountId: string): Promise<PersonalAccessTokenRecord[]> {
      return (await tokens.listByAccount(accountId)).map(withRecentUse);
    },

    /** One token of the account (undefined when it is not theirs), with its last use not yet flushed. */
    async get(accountId: string, id: string): Promise<PersonalAccessTokenRecord | undefined> {
      const found = await tokens.find(accountId, id);
      return found && withRecentUse(found);
    },

    /** Revokes one of the account's tokens: introspection answers `active: false` from now on. */
    async revoke(accountId: string, id: string, origin?: RequestOrigin): Promise<boolean> {
      const revoked = await tokens.revoke(accountId, id, new Date().toISOString());
      if (revoked) await deps.audit?.record({ type: 'pat.revoke', actorId: accountId, subjectId: accountId, origin, details: { id } });
      return revoked;
    },

    /**
     * RFC 7662 §2.2 answer for a live token, or undefined (the caller answers `active: false`).
     * `allowed` decides whether the asking client may see it (structured-tokens.ts mayIntrospect);
     * only an answered introspection counts as a use.
     */
    async introspect(token: string, allowed: (answer: PersonalAccessTokenIntrospection) => boolean = () => true): Promise<PersonalAccessTokenIntrospection | undefined> {
      if (typeof token !== 'string') return undefined;
      const own = TOKEN_SHAPE.test(token);
      if (!own && !mayBeImportedKey(token)) return undefined;
      const now = new Date().toISOString();
      let found = await tokens.findLiveByHash(hashToken(token), now);
      if (!found && !own && (await verifyBcryptKey(token, now))) found = await tokens.findLiveByHash(hashToken(token), now);
      // A key that is not `lat_` is only ever an imported one.
      if (found && !own && !found.token.format) return undefined;
      if (!found?.ownerActive) return undefined;
      const { token: t, organizationRole } = found;
      if (t.organizationId && !organizationRole) return undefined;

      // Narrow to what the owner holds now (cached: no I/O on the hot path).
      const held = await access.of({ kind: 'account', id: t.accountId });
      const stored = new Set(t.scopes);
      const scopes = new Set<string>();
      const aud: string[] = [];
      for (const identifier of t.audience) {
        const rs = await deps.resources.get(identifier);
        if (!rs) continue;
        const here = [...heldOn(rs, held, t.organizationId)].filter((s) => stored.has(s));
        if (!here.length) continue;
        aud.push(identifier);
        for (const s of here) scopes.add(s);
      }
      if (!scopes.size) return undefined;

      const answer: PersonalAccessTokenIntrospection = {
        active: true,
        iss: deps.issuer,
        sub: t.accountId,
        scope: t.scopes.filter((s) => scopes.has(s)).join(' '),
        // A PAT is made on the account page, whose OIDC client this is.
        client_id: ACCOUNT_CLIENT_ID,
        token_type: 'Bearer',
        exp: epoch(t.expiresAt),
        iat: epoch(t.createdAt),
        aud,
        jti: t.id,
        ...(t.organizationId ? { org_id: t.organizationId, org_role: organizationRole! } : {}),
      };
      if (!allowed(answer)) return undefined;
      recordUse(t.id);
      return answer;
    },

    flush,

    /** Stops the flush timer and writes what is pending (server shutdown, before the pool closes). */
    async close(): Promise<void> {
      closed = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
      await flush();
    },
  };
}

export type PersonalAccessTokenService = ReturnType<typeof createPersonalAccessTokenService>;
