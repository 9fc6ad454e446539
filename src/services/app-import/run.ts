import { createHash, randomBytes, randomUUID } from 'node:crypto';

import type { Db } from '../../db/knex.js';
import type { Snapshot } from '../../db/snapshot.js';
import { ImportError, ValidationError } from '../../errors/index.js';
import { isEntityId } from '../../lib/ids.js';
import { nowIso } from '../../lib/time.js';
import { createAccountsRepository, type AccountRecord } from '../../repositories/accounts.js';
import { createBackchannelLogoutsRepository } from '../../repositories/backchannel-logouts.js';
import { createClientsRepository, type ClientRecord } from '../../repositories/clients.js';
import { createFederatedIdentitiesRepository } from '../../repositories/federated-identities.js';
import { createIdentityProvidersRepository } from '../../repositories/identity-providers.js';
import { createOrganizationsRepository } from '../../repositories/organizations.js';
import { createPersonalAccessTokensRepository } from '../../repositories/personal-access-tokens.js';
import { createProviderStateRepository } from '../../repositories/provider-state.js';
import { createResourcesRepository } from '../../repositories/resources.js';
import { createRolesRepository, type RoleRecord } from '../../repositories/roles.js';
import type { Transaction } from '../../repositories/transaction.js';
import { checkEmail } from '../accounts.js';
import type { AuditActor, AuditService } from '../audit.js';
import { logoutEntriesOf } from '../backchannel-logout.js';
import type { ChangeFeed } from '../change-feed.js';
import type { ClientService } from '../clients.js';
import { checkSlug, INVITATION_TTL } from '../organizations.js';
import { hashFormat } from '../passwords.js';
import { hashToken } from '../personal-access-tokens.js';
import { checkRoleName, permissionCandidates } from '../roles.js';
import { endAccountSessions } from '../sessions.js';
import type { Secrets } from '../secrets.js';
import { KEY_HASH_FORMATS, SECTION_ORDER, type Mapping } from './mapping.js';
import { UNREADABLE, type Source } from './sources.js';
import { boolValue, column, idValue, textValue, timeValue, type SourceRow } from './values.js';

export interface Counts {
  imported: number;
  skipped: number;
  unchanged: number;
}

/** `id`: the row's id, or its 1-based row number in its table when it has none. */
export interface Problem {
  table: string;
  id: string | number;
  reason: string;
}

/** The summary `latch import app` prints (the same for a dry run, counting what would happen). */
export interface ImportSummary {
  users: Counts;
  organizations: Counts;
  memberships: Counts;
  api_keys: Counts;
  clients: Counts;
  problems: Problem[];
}

export interface ImportOptions {
  source: Source;
  mapping: Mapping;
  /**
   * Runs every write in one transaction that is rolled back: exact counts, nothing changed. On
   * SQLite, on a private copy of the database (`snapshot`), so the live file's one write lock is
   * never held for the run.
   */
  dryRun: boolean;
  /** Refreshes rows the app changed since the last run (never a password hash Latch upgraded). */
  update: boolean;
  by: AuditActor;
  /** Rows read so far, per table (a progress bar). */
  progress?: ((table: string, rows: number) => void) | undefined;
}

const ROLLBACK = Symbol('dry run');
const NAME_MAX = 255;
const KEY_NAME_MAX = 100;
const DAY_MS = 86_400_000;

const repositoriesOf = (trx: Transaction) => {
  const db = trx as unknown as Db;
  return {
    accounts: createAccountsRepository(db),
    roles: createRolesRepository(db),
    orgs: createOrganizationsRepository(db),
    tokens: createPersonalAccessTokensRepository(db),
    clients: createClientsRepository(db),
    identities: createFederatedIdentitiesRepository(db),
    providers: createIdentityProvidersRepository(db),
    state: createProviderStateRepository(db),
    backchannelLogouts: createBackchannelLogoutsRepository(db),
    trx,
  };
};
type Repositories = ReturnType<typeof repositoriesOf>;

/** A unique, foreign-key or check violation: that row is refused, the import goes on. */
function isConstraintViolation(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  return /^23/.test(e.code ?? '') || /^SQLITE_CONSTRAINT/.test(e.code ?? '') || /constraint failed/i.test(e.message ?? '');
}

const zero = (): Counts => ({ imported: 0, skipped: 0, unchanged: 0 });
const cleanName = (raw: string | undefined, max: number) => {
  // Control characters have no place in a label (and PostgreSQL text cannot hold U+0000).
  const name = raw?.replace(/\p{Cc}/gu, ' ').trim();
  return name ? name.slice(0, max) : null;
};

/** Resolves `RESOURCE_URI:SCOPE` entries against Latch's resources: what a key or client is given. */
async function resolveScopes(db: Db, key: string, entries: string[]): Promise<{ scopes: string[]; audience: string[] }> {
  const resources = createResourcesRepository(db);
  const scopes = new Set<string>();
  const audience = new Set<string>();
  for (const entry of entries) {
    let found = false;
    let candidates;
    try {
      candidates = permissionCandidates(entry);
    } catch {
      throw new ImportError(`${key}: "${entry}" must be RESOURCE_URI:SCOPE`);
    }
    for (const c of candidates) {
      const rs = await resources.findByIdentifier(c.resource);
      if (rs?.scopes.includes(c.scope)) {
        scopes.add(c.scope);
        audience.add(c.resource);
        found = true;
        break;
      }
    }
    if (!found) throw new ImportError(`${key}: "${entry}" is not a scope of a registered resource (latch resources create)`);
  }
  return { scopes: [...scopes], audience: [...audience] };
}

/**
 * `latch import app`: an app's users, roles, organizations, memberships, invitations, upstream
 * links, API keys and machine credentials, keeping their ids (lib/ids.ts), password hashes
 * (rewritten as argon2id at each user's first sign-in) and key values. Batches of rows, one
 * transaction each; every row checks what Latch already has, so a second run changes nothing
 * and an interrupted one is simply run again. Writes go through the repositories on the batch's
 * transaction, each row in a savepoint: a row the database refuses is reported, the rest go on.
 */
export function createAppImport(deps: {
  db: Db;
  clients: Pick<ClientService, 'validateRegistration'>;
  secrets: Pick<Secrets, 'hashClientSecret' | 'verifyClientSecret'>;
  feed: Pick<ChangeFeed, 'publish'>;
  audit: AuditService;
  patMaxTtlDays: number;
  /** SQLite: a private copy of the database (db/snapshot.ts) for a dry run to write to. */
  snapshot?: (() => Promise<Snapshot>) | undefined;
}) {
  return {
    async run(options: ImportOptions): Promise<ImportSummary> {
      if (options.dryRun && deps.snapshot) {
        // The whole run's rolled-back transaction would hold SQLite's write lock for as long as
        // the run takes, and every sign-in would wait behind it: the copy takes it instead.
        const snapshot = await deps.snapshot();
        try {
          return await createAppImport({ ...deps, db: snapshot.db, snapshot: undefined }).run(options);
        } finally {
          await snapshot.dispose();
        }
      }
      const { source, mapping, update } = options;
      const summary: ImportSummary = { users: zero(), organizations: zero(), memberships: zero(), api_keys: zero(), clients: zero(), problems: [] };
      const extra = { roles: zero(), invitations: zero(), oauth_accounts: zero() };

      // Everything that can make the whole run impossible is checked before the first write.
      const sections: (typeof SECTION_ORDER)[number][] = [];
      for (const name of SECTION_ORDER) {
        const section = mapping[name];
        if (!section) continue;
        if (!(await source.hasTable(section.table))) {
          if ('optional' in section && section.optional) continue;
          throw new ImportError(`cannot read ${name}.table ${section.table}: no such ${source.kind === 'jsonl' ? 'file' : 'table'} in ${source.label}`);
        }
        sections.push(name);
      }
      const roles = createRolesRepository(deps.db);
      const orgRoleNamed = async (key: string, name: string) => {
        const role = await roles.find('organization', name);
        if (!role) throw new ImportError(`${key}: ${name} is not an organization role (owner, admin, member, viewer or one made with latch roles create --org)`);
        return role;
      };
      for (const [from, to] of Object.entries(mapping.memberships?.role_map ?? {})) await orgRoleNamed(`memberships.role_map.${from}`, to);
      const keyScopes = mapping.api_keys ? await resolveScopes(deps.db, 'api_keys.scopes', mapping.api_keys.scopes ?? []) : undefined;
      const clientScopes = mapping.clients ? await resolveScopes(deps.db, 'clients.scopes', mapping.clients.scopes ?? []) : undefined;
      const clientRole = mapping.clients?.org_role ? await orgRoleNamed('clients.org_role', mapping.clients.org_role) : mapping.clients?.organization_id ? await orgRoleNamed('clients.org_role', 'member') : undefined;
      let clientRegistration: Awaited<ReturnType<ClientService['validateRegistration']>> | undefined;
      if (mapping.clients && clientScopes) {
        try {
          // A client with an organization may ask for `organizations`, so its token can name its
          // membership without the caller knowing the organization's id (latch_auth's legacy_client).
          const scopes = mapping.clients.organization_id ? [...clientScopes.scopes, 'organizations'] : clientScopes.scopes;
          clientRegistration = await deps.clients.validateRegistration({ name: 'imported', grants: ['client_credentials'], resources: clientScopes.audience, scopes });
        } catch (err) {
          if (err instanceof ValidationError) throw new ImportError(`clients.scopes: ${err.message}`);
          throw err;
        }
      }

      // Per run: case-folded emails already taken by a row of this run, and org roles by name.
      const emails = new Map<string, string>();
      const orgRoles = new Map<string, RoleRecord | undefined>();
      const globalRoles = new Map<string, RoleRecord>();

      const body = async (batch: <T>(work: (trx: Transaction) => Promise<T>) => Promise<T>) => {
        for (const name of sections) {
          const section = mapping[name]!;
          const table = section.table;
          const where = 'where' in section ? section.where : undefined;
          const idColumn = 'id' in section ? section.id : undefined;
          // The users' order decides which of two emails differing only in case is imported.
          const orderBy = name === 'users' && source.kind !== 'jsonl' ? idColumn : undefined;
          let rowNumber = 0;
          for await (const rows of source.batches(table, { where, orderBy })) {
            await batch(async (trx) => {
              for (const row of rows) {
                rowNumber++;
                const rawId = idColumn ? column(row, idColumn) : undefined;
                const shownId = rawId === undefined || rawId === null ? rowNumber : (idValue(rawId) ?? String(textValue(rawId) ?? rowNumber).slice(0, 100));
                const counts = name in summary ? (summary[name as keyof Omit<ImportSummary, 'problems'>] as Counts) : extra[name as keyof typeof extra];
                const problem = (reason: string) => summary.problems.push({ table, id: shownId, reason });
                const skip = (reason: string) => {
                  counts.skipped++;
                  problem(reason);
                };
                if ((row as Record<symbol, unknown>)[UNREADABLE]) {
                  skip('not a JSON object');
                  continue;
                }
                try {
                  await trx.transaction(async (savepoint) => {
                    await IMPORTERS[name](repositoriesOf(savepoint), row, { counts, problem, skip, rawId });
                  });
                } catch (err) {
                  if (!isConstraintViolation(err)) throw err;
                  skip(`refused by the database (${String((err as Error).message).split('\n')[0]!.slice(0, 200)})`);
                }
              }
            });
            options.progress?.(table, rowNumber);
          }
        }
      };

      type RowContext = { counts: Counts; problem: (reason: string) => void; skip: (reason: string) => void; rawId: unknown };
      type Importer = (r: Repositories, row: SourceRow, ctx: RowContext) => Promise<void>;

      const accountOf = async (r: Repositories, raw: unknown): Promise<AccountRecord | undefined> => {
        const id = idValue(raw);
        return id ? r.accounts.findById(id) : undefined;
      };
      const orgOf = async (r: Repositories, raw: unknown) => {
        const id = idValue(raw);
        return id ? r.orgs.findById(id) : undefined;
      };
      const orgRole = async (r: Repositories, name: string) => {
        if (!orgRoles.has(name)) orgRoles.set(name, await r.roles.find('organization', name));
        return orgRoles.get(name);
      };

      const IMPORTERS: Record<(typeof SECTION_ORDER)[number], Importer> = {
        async users(r, row, { counts, problem, skip, rawId }) {
          const m = mapping.users;
          const id = idValue(rawId);
          if (!id) return skip('id is not a UUID, a 24-hex ObjectId or a decimal integer');
          let email: string;
          try {
            email = checkEmail(textValue(column(row, m.email)) ?? '');
          } catch {
            return skip('email is missing or not a valid address');
          }
          const active = boolValue(column(row, m.active), true);
          const superuser = boolValue(column(row, m.superuser), false);
          const verified = boolValue(column(row, m.verified), false);
          if (active === undefined || superuser === undefined || verified === undefined) return skip('active, superuser and verified must be true or false');
          const name = cleanName(textValue(column(row, m.name)), NAME_MAX);
          const createdAt = timeValue(column(row, m.created_at)) ?? undefined;
          const hash = textValue(column(row, m.password_hash));
          const usable = hash !== undefined && hashFormat(hash) !== undefined;

          const folded = email.toLowerCase();
          const earlier = emails.get(folded);
          if (earlier !== undefined && earlier !== id) return skip(`conflict: the email differs only in case from user ${earlier}'s (not merged)`);
          emails.set(folded, id);

          const existing = await r.accounts.findById(id);
          if (existing) {
            if (existing.email.toLowerCase() !== folded) return skip(`conflict: id ${id} belongs to the account of another email`);
            if (!update) return void counts.unchanged++;
            const patch: Parameters<Repositories['accounts']['update']>[1] = {};
            if (existing.email !== email) patch.email = email;
            if (existing.displayName !== name && name !== null) patch.displayName = name;
            if (existing.active !== active) patch.active = active;
            if (existing.superuser !== superuser) patch.superuser = superuser;
            if (existing.emailVerified !== verified) patch.emailVerified = verified;
            // Only a missing hash is filled: any other one is the app's unchanged or one Latch upgraded.
            if (existing.passwordHash === null && usable) patch.passwordHash = hash;
            if (Object.keys(patch).length === 0) return void counts.unchanged++;
            if ((patch.active === false || patch.superuser === false) && existing.active && existing.superuser) {
              const superusers = await r.accounts.lockActiveSuperusers();
              if (superusers.length === 1 && superusers[0] === id) return skip('the last active superuser cannot be deactivated or demoted: make another account a superuser first');
            }
            await r.accounts.update(id, patch);
            // A deactivated account's sessions and refresh tokens end with it and its applications
            // are told (back-channel logout, delivered by the running server), as in accounts.update.
            if (patch.active === false) await endAccountSessions({ state: r.state, enqueueForSessions: (sessions, trx) => r.backchannelLogouts.enqueue(logoutEntriesOf(sessions), trx) }, id, r.trx);
            return void counts.imported++;
          }
          const holder = await r.accounts.findByEmail(email);
          if (holder) return skip(holder.email === email ? `conflict: an account with this email already exists (id ${holder.id})` : `conflict: the email differs only in case from account ${holder.id}'s (not merged)`);
          await r.accounts.insert({ id, email, passwordHash: usable ? hash : null, displayName: name, emailVerified: verified, active, superuser, createdAt });
          counts.imported++;
          if (!usable) problem(hash === undefined ? 'no password hash: imported without a password (password reset or an upstream provider)' : 'password hash in an unknown format: imported without a password (password reset or an upstream provider)');
        },

        async roles(r, row, { counts, skip }) {
          const m = mapping.roles!;
          const account = await accountOf(r, column(row, m.user_id));
          if (!account) return skip('user not imported');
          let roleName: string;
          try {
            roleName = checkRoleName(textValue(column(row, m.role)) ?? '');
          } catch {
            return skip('role must be 1-64 letters, digits, "_", ".", ":" or "-"');
          }
          let role = globalRoles.get(roleName) ?? (await r.roles.find('global', roleName));
          if (!role) {
            await r.roles.insert({ id: randomUUID(), kind: 'global', name: roleName, description: 'imported' });
            role = (await r.roles.find('global', roleName))!;
          }
          globalRoles.set(roleName, role);
          if (await r.roles.assign(role.id, { kind: 'account', id: account.id })) counts.imported++;
          else counts.unchanged++;
        },

        async organizations(r, row, { counts, skip, rawId }) {
          const m = mapping.organizations!;
          const id = idValue(rawId);
          if (!id) return skip('id is not a UUID, a 24-hex ObjectId or a decimal integer');
          const rawSlug = textValue(column(row, m.slug));
          const name = cleanName(textValue(column(row, m.name)), NAME_MAX) ?? rawSlug ?? `Organization ${id}`;
          let slug: string;
          if (rawSlug !== undefined) {
            try {
              slug = checkSlug(rawSlug);
            } catch (err) {
              return skip(`slug ${err instanceof ValidationError ? err.detail : 'is not valid'}`);
            }
          } else {
            slug = name.toLowerCase().normalize('NFKD').replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 48).replace(/-+$/, '');
            if (!slug || isEntityId(slug)) slug = 'org';
          }
          const existing = await r.orgs.findById(id);
          const holder = await r.orgs.findBySlug(slug);
          if (holder && holder.id !== id) {
            if (rawSlug !== undefined) return skip(`conflict: slug ${slug} belongs to another organization`);
            // A slug made from the name: the id's first characters tell two of the same name apart.
            slug = `${slug.slice(0, 48)}-${id.replace(/-/g, '').slice(0, 12)}`;
          }
          if (existing) {
            const wantSlug = rawSlug !== undefined ? slug : existing.slug;
            if (!update || (existing.name === name && existing.slug === wantSlug)) return void counts.unchanged++;
            await r.orgs.update(id, { name, slug: wantSlug });
            return void counts.imported++;
          }
          await r.orgs.insert({ id, name, slug, createdBy: options.by.actorId });
          counts.imported++;
        },

        async memberships(r, row, { counts, skip }) {
          const m = mapping.memberships!;
          const account = await accountOf(r, column(row, m.user_id));
          if (!account) return skip('user not imported');
          const org = await orgOf(r, column(row, m.organization_id));
          if (!org) return skip('organization not imported');
          const appRole = textValue(column(row, m.role));
          const roleName = appRole === undefined ? 'member' : (m.role_map?.[appRole] ?? appRole);
          const role = await orgRole(r, roleName);
          if (!role) return skip(`role ${appRole} is not an organization role (map it with memberships.role_map)`);
          const subject = { kind: 'account' as const, id: account.id };
          const held = await r.orgs.membership(org.id, subject);
          if (held) {
            if (!update || held.roleId === role.id) return void counts.unchanged++;
            await r.orgs.setMemberRole(org.id, subject, role.id);
            return void counts.imported++;
          }
          await r.orgs.addMember(org.id, subject, role.id);
          counts.imported++;
        },

        async invitations(r, row, { counts, skip }) {
          const m = mapping.invitations!;
          const org = await orgOf(r, column(row, m.organization_id));
          if (!org) return skip('organization not imported');
          let email: string;
          try {
            email = checkEmail(textValue(column(row, m.email)) ?? '');
          } catch {
            return skip('email is missing or not a valid address');
          }
          const appRole = textValue(column(row, m.role));
          const roleName = appRole === undefined ? 'member' : (mapping.memberships?.role_map?.[appRole] ?? appRole);
          const role = await orgRole(r, roleName);
          if (!role) return skip(`role ${appRole} is not an organization role (map it with memberships.role_map)`);
          const expires = timeValue(column(row, m.expires_at));
          if (expires === undefined) return skip('expires_at is not a time');
          if (expires !== null && Date.parse(expires) <= Date.now()) return skip('expired: not imported');
          if (await r.orgs.pendingInvitation(org.id, email)) return void counts.unchanged++;
          // The app's link cannot be carried over: nobody holds this token. The invitation waits
          // on the invitee's account page (or is mailed anew with latch orgs invite).
          await r.orgs.insertInvitation({ id: randomUUID(), organizationId: org.id, email, roleId: role.id, tokenHash: hashToken(randomBytes(32).toString('base64url')), invitedBy: options.by.actorId, expiresAt: expires ?? new Date(Date.now() + INVITATION_TTL * 1000).toISOString() });
          counts.imported++;
        },

        async oauth_accounts(r, row, { counts, skip }) {
          const m = mapping.oauth_accounts!;
          const account = await accountOf(r, column(row, m.user_id));
          if (!account) return skip('user not imported');
          const provider = textValue(column(row, m.oauth_name));
          const subject = textValue(column(row, m.account_id));
          if (!provider || !subject) return skip('oauth_name and account_id are required');
          if (!(await r.providers.find(provider))) return skip(`no identity provider named ${provider} in Latch (latch idps create): not linked`);
          const linked = await r.identities.findBySubject(provider, subject);
          if (linked) {
            if (linked.accountId === account.id) return void counts.unchanged++;
            return skip(`conflict: ${provider} account ${subject} is linked to another account`);
          }
          if (await r.identities.findByAccount(account.id, provider)) return skip(`conflict: the user is linked to another ${provider} account`);
          const result = await r.identities.insert({ id: randomUUID(), provider, subject, accountId: account.id, email: textValue(column(row, m.account_email))?.slice(0, 320) ?? null });
          if (typeof result === 'string') return skip(`conflict: the link was refused (${result})`);
          counts.imported++;
        },

        async api_keys(r, row, { counts, skip }) {
          const m = mapping.api_keys!;
          const account = await accountOf(r, column(row, m.user_id));
          if (!account) return skip('user not imported');
          const format = m.hash_format;
          if (!(KEY_HASH_FORMATS as readonly string[]).includes(format)) return skip(`hash_format ${format} is not supported (${KEY_HASH_FORMATS.join(', ')}): not imported`);
          const value = textValue(column(row, m.hash))?.trim();
          if (!value) return skip(`the key hash does not fit hash_format ${format}`);
          let tokenHash: string;
          let stored: 'sha256' | 'bcrypt' = 'sha256';
          const prefix = textValue(column(row, m.prefix))?.trim();
          if (format === 'sha256-hex') {
            if (!/^[0-9a-f]{64}$/i.test(value)) return skip('the key hash does not fit hash_format sha256-hex');
            tokenHash = value.toLowerCase();
          } else if (format === 'plain') {
            tokenHash = hashToken(value);
          } else {
            if (!/^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/.test(value)) return skip('the key hash does not fit hash_format bcrypt');
            if (!prefix || prefix.length > 64) return skip('a bcrypt key needs its prefix (1-64 characters) to be found');
            tokenHash = value;
            stored = 'bcrypt';
          }
          let organizationId: string | null = null;
          if (m.organization_id) {
            const rawOrg = column(row, m.organization_id);
            if (rawOrg !== null && rawOrg !== undefined && rawOrg !== '') {
              const org = await orgOf(r, rawOrg);
              if (!org) return skip('organization not imported');
              organizationId = org.id;
            }
          }
          const expires = timeValue(column(row, m.expires_at));
          if (expires === undefined) return skip('expires_at is not a time');
          const name = cleanName(textValue(column(row, m.name)), KEY_NAME_MAX) ?? 'Imported API key';
          const { scopes, audience } = keyScopes!;
          // The same key always gets the same id: how a re-run finds it, even once a bcrypt key
          // has moved to SHA-256 at its first use.
          const id = `imported_${createHash('sha256').update(`${format}:${tokenHash}`).digest('hex').slice(0, 40)}`;
          const existing = await r.tokens.findWithHash(id);
          if (existing) {
            const same = existing.name === name && existing.organizationId === organizationId && existing.scopes.join(' ') === scopes.join(' ') && JSON.stringify(existing.audience) === JSON.stringify(audience) && (expires === null || existing.expiresAt === expires);
            if (!update || same) return void counts.unchanged++;
            await r.tokens.updateImported(id, { name, scopes, audience, organizationId, expiresAt: expires ?? existing.expiresAt });
            return void counts.imported++;
          }
          const createdAt = nowIso();
          // A key without an expiry gets Latch's longest lifetime (PAT_MAX_TTL_DAYS) from now.
          const expiresAt = expires ?? new Date(Date.now() + deps.patMaxTtlDays * DAY_MS).toISOString();
          await r.tokens.insert({ id, accountId: account.id, name, tokenHash, scopes, audience, organizationId, createdAt, expiresAt, format: stored, prefix: prefix?.slice(0, 64) ?? null });
          counts.imported++;
        },

        async clients(r, row, { counts, problem, skip, rawId }) {
          const m = mapping.clients!;
          const text = textValue(rawId)?.trim();
          const id = Buffer.isBuffer(rawId) ? idValue(rawId) : text;
          // A client_id is an HTTP header value and a CLI argument: printable, without a leading dash.
          if (!id || !/^[\x21-\x7e]{1,128}$/.test(id) || id.startsWith('-')) return skip('id must be 1-128 printable characters, not starting with "-"');
          const secret = textValue(column(row, m.secret));
          if (!secret) return skip('no plain-text secret: a client cannot be made without one');
          const name = cleanName(textValue(column(row, m.name)), NAME_MAX) ?? `Imported client ${id}`;
          let org = undefined;
          if (m.organization_id) {
            const rawOrg = column(row, m.organization_id);
            if (rawOrg !== null && rawOrg !== undefined && rawOrg !== '') {
              org = await orgOf(r, rawOrg);
              if (!org) return skip('organization not imported');
            }
          }
          const registration = clientRegistration!;
          const existing = await r.clients.findById(id);
          let changed = false;
          let sameSecret = false;
          if (existing) {
            sameSecret = existing.secretHash !== null && deps.secrets.verifyClientSecret(secret, existing.secretHash);
            const same = existing.name === name && sameSecret && existing.scopes.join(' ') === registration.scopes.join(' ') && JSON.stringify(existing.resources) === JSON.stringify(registration.resources);
            if (update && !same) {
              await r.clients.update(id, { ...registration, name, secretHash: deps.secrets.hashClientSecret(secret) } as Partial<ClientRecord>);
              changed = true;
            }
          } else {
            await r.clients.insert({ id, ...registration, name, secretHash: deps.secrets.hashClientSecret(secret), enabled: true });
            changed = true;
          }
          if (org && clientRole) {
            const subject = { kind: 'client' as const, id };
            const held = await r.orgs.membership(org.id, subject);
            if (!held) {
              await r.orgs.addMember(org.id, subject, clientRole.id);
              changed = true;
            } else if (update && held.roleId !== clientRole.id) {
              await r.orgs.setMemberRole(org.id, subject, clientRole.id);
              changed = true;
            }
          }
          if (changed) counts.imported++;
          else counts.unchanged++;
          if (existing && !update && !changed && existing.secretHash && !sameSecret) problem('the client exists with another secret: kept (--update replaces it)');
        },
      };

      if (options.dryRun) {
        // One transaction around everything, rolled back: the counts are those of a real run.
        try {
          await deps.db.transaction(async (outer) => {
            await body((work) => outer.transaction(work));
            throw ROLLBACK;
          });
        } catch (err) {
          if (err !== ROLLBACK) throw err;
        }
        return summary;
      }
      await body((work) => deps.db.transaction(work));
      // Every process drops what it cached about accounts, roles, organizations and clients.
      for (const topic of ['accounts', 'rbac', 'clients'] as const) await deps.feed.publish(topic);
      const count = (c: Counts) => ({ ...c });
      await deps.audit.recordBy('import.app', null, options.by, {
        source: source.kind,
        update,
        users: count(summary.users),
        organizations: count(summary.organizations),
        memberships: count(summary.memberships),
        api_keys: count(summary.api_keys),
        clients: count(summary.clients),
        roles: count(extra.roles),
        invitations: count(extra.invitations),
        oauth_accounts: count(extra.oauth_accounts),
        problems: summary.problems.length,
      });
      return summary;
    },
  };
}

export type AppImport = ReturnType<typeof createAppImport>;
