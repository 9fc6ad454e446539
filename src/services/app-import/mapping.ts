import { parse as parseYaml } from 'yaml';

import { ImportError } from '../../errors/index.js';

/**
 * What `latch import app` reads, and from where: the mapping file's format (docs/import.md).
 * Values are the app's column names, a dotted path into a jsonl document (`_id.$oid`), or the
 * fixed settings below (`hash_format`, `role_map`, `scopes`, `org_role`, `where`).
 */
export interface UsersSection {
  table: string;
  id: string;
  email: string;
  password_hash: string;
  name?: string | undefined;
  active?: string | undefined;
  superuser?: string | undefined;
  verified?: string | undefined;
  created_at?: string | undefined;
  where?: string | undefined;
}

export interface RolesSection {
  table: string;
  user_id: string;
  role: string;
  where?: string | undefined;
}

export interface OrganizationsSection {
  table: string;
  id: string;
  name?: string | undefined;
  slug?: string | undefined;
  where?: string | undefined;
}

export interface MembershipsSection {
  table: string;
  user_id: string;
  organization_id: string;
  role?: string | undefined;
  role_map?: Record<string, string> | undefined;
  id?: string | undefined;
  where?: string | undefined;
}

export interface InvitationsSection {
  table: string;
  organization_id: string;
  email: string;
  role?: string | undefined;
  expires_at?: string | undefined;
  id?: string | undefined;
  where?: string | undefined;
}

export const KEY_HASH_FORMATS = ['sha256-hex', 'bcrypt', 'plain'] as const;

export interface ApiKeysSection {
  table: string;
  user_id: string;
  hash: string;
  /** Any string: a format other than KEY_HASH_FORMATS makes each key a problem, not an error. */
  hash_format: string;
  prefix?: string | undefined;
  name?: string | undefined;
  scopes?: string[] | undefined;
  expires_at?: string | undefined;
  organization_id?: string | undefined;
  id?: string | undefined;
  where?: string | undefined;
}

export interface ClientsSection {
  table: string;
  id: string;
  secret: string;
  name?: string | undefined;
  organization_id?: string | undefined;
  org_role?: string | undefined;
  scopes?: string[] | undefined;
  where?: string | undefined;
}

/** fastapi-users' `oauth_account`: links to an upstream identity provider of that name. */
export interface OAuthAccountsSection {
  table: string;
  user_id: string;
  oauth_name: string;
  account_id: string;
  account_email?: string | undefined;
  id?: string | undefined;
  where?: string | undefined;
  /** Read only when the source has the table (the presets). */
  optional?: boolean | undefined;
}

export interface Mapping {
  users: UsersSection;
  roles?: RolesSection | undefined;
  organizations?: OrganizationsSection | undefined;
  memberships?: MembershipsSection | undefined;
  invitations?: InvitationsSection | undefined;
  api_keys?: ApiKeysSection | undefined;
  clients?: ClientsSection | undefined;
  oauth_accounts?: OAuthAccountsSection | undefined;
}

type Kind = 'column' | 'sql' | 'text' | 'list' | 'map';
interface Shape {
  required: string[];
  keys: Record<string, Kind>;
}

const SHAPES: Record<keyof Mapping, Shape> = {
  users: { required: ['table', 'id', 'email', 'password_hash'], keys: { table: 'text', id: 'column', email: 'column', password_hash: 'column', name: 'column', active: 'column', superuser: 'column', verified: 'column', created_at: 'column', where: 'sql' } },
  roles: { required: ['table', 'user_id', 'role'], keys: { table: 'text', user_id: 'column', role: 'column', where: 'sql' } },
  organizations: { required: ['table', 'id'], keys: { table: 'text', id: 'column', name: 'column', slug: 'column', where: 'sql' } },
  memberships: { required: ['table', 'user_id', 'organization_id'], keys: { table: 'text', id: 'column', user_id: 'column', organization_id: 'column', role: 'column', role_map: 'map', where: 'sql' } },
  invitations: { required: ['table', 'organization_id', 'email'], keys: { table: 'text', id: 'column', organization_id: 'column', email: 'column', role: 'column', expires_at: 'column', where: 'sql' } },
  api_keys: { required: ['table', 'user_id', 'hash', 'hash_format'], keys: { table: 'text', id: 'column', user_id: 'column', hash: 'column', hash_format: 'text', prefix: 'column', name: 'column', scopes: 'list', expires_at: 'column', organization_id: 'column', where: 'sql' } },
  clients: { required: ['table', 'id', 'secret'], keys: { table: 'text', id: 'column', secret: 'column', name: 'column', organization_id: 'column', org_role: 'text', scopes: 'list', where: 'sql' } },
  oauth_accounts: { required: ['table', 'user_id', 'oauth_name', 'account_id'], keys: { table: 'text', id: 'column', user_id: 'column', oauth_name: 'column', account_id: 'column', account_email: 'column', where: 'sql' } },
};

/** The sections in the order they are imported: what a row points at is imported before it. */
export const SECTION_ORDER = ['users', 'roles', 'organizations', 'memberships', 'invitations', 'oauth_accounts', 'api_keys', 'clients'] as const satisfies readonly (keyof Mapping)[];

const isPlainObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * Checks a parsed mapping; every refusal is one line naming the key (`users.email is required`).
 * `sqlSource`: `where:` is SQL, which a jsonl source cannot run.
 */
export function checkMapping(raw: unknown, options: { sqlSource: boolean }): Mapping {
  if (!isPlainObject(raw)) throw new ImportError('the mapping must be a YAML mapping of sections (users:, organizations:, ...)');
  for (const section of Object.keys(raw)) {
    if (!(section in SHAPES)) throw new ImportError(`${section} is not a section of the mapping (${Object.keys(SHAPES).join(', ')})`);
  }
  if (raw.users === undefined) throw new ImportError('users is required');
  const out: Record<string, unknown> = {};
  for (const [section, shape] of Object.entries(SHAPES)) {
    const value = raw[section];
    if (value === undefined || value === null) continue;
    if (!isPlainObject(value)) throw new ImportError(`${section} must be a mapping of keys (table:, ...)`);
    for (const key of shape.required) if (value[key] === undefined || value[key] === null || value[key] === '') throw new ImportError(`${section}.${key} is required`);
    const checked: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(value)) {
      const kind = shape.keys[key];
      const name = `${section}.${key}`;
      if (!kind) throw new ImportError(`${name} is not a known key (${Object.keys(shape.keys).join(', ')})`);
      if (kind === 'list') {
        if (!Array.isArray(v) || v.some((s) => typeof s !== 'string' || !s.trim())) throw new ImportError(`${name} must be a list of RESOURCE_URI:SCOPE strings`);
        checked[key] = v.map((s: string) => s.trim());
      } else if (kind === 'map') {
        if (!isPlainObject(v) || Object.values(v).some((s) => typeof s !== 'string' || !s.trim())) throw new ImportError(`${name} must map the app's values to Latch's (owner: owner, ...)`);
        checked[key] = Object.fromEntries(Object.entries(v).map(([k, s]) => [k, (s as string).trim()]));
      } else {
        if (typeof v !== 'string' || !v.trim()) throw new ImportError(`${name} must be a non-empty string`);
        if (kind === 'sql' && !options.sqlSource) throw new ImportError(`${name}: where is for SQL sources only (sqlite:, postgres://), not jsonl`);
        if (kind === 'text' && key === 'table' && /\p{Cc}/u.test(v)) throw new ImportError(`${name} must be a table name`);
        checked[key] = v.trim();
      }
    }
    out[section] = checked;
  }
  const keys = out.api_keys as ApiKeysSection | undefined;
  if (keys?.hash_format === 'bcrypt' && !keys.prefix) throw new ImportError('api_keys.prefix is required with hash_format bcrypt: a key is found by its prefix, then verified');
  if (keys && !keys.scopes?.length) throw new ImportError('api_keys.scopes is required: a key without a scope is never active');
  const clients = out.clients as ClientsSection | undefined;
  if (clients?.org_role && !clients.organization_id) throw new ImportError('clients.org_role needs clients.organization_id');
  return out as unknown as Mapping;
}

/** Reads and checks a mapping file. */
export function parseMapping(text: string, options: { sqlSource: boolean }): Mapping {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new ImportError(`the mapping is not YAML: ${(err instanceof Error ? err.message : String(err)).split('\n')[0]}`);
  }
  return checkMapping(raw, options);
}

/** `--preset`: the mappings of the apps most often migrated. */
export const PRESETS: Record<string, Mapping> = {
  // fastapi-users on SQLAlchemy (SQLAlchemyBaseUserTableUUID, SQLAlchemyBaseOAuthAccountTableUUID).
  'fastapi-users': {
    users: { table: 'user', id: 'id', email: 'email', password_hash: 'hashed_password', active: 'is_active', superuser: 'is_superuser', verified: 'is_verified' },
    oauth_accounts: { table: 'oauth_account', id: 'id', user_id: 'user_id', oauth_name: 'oauth_name', account_id: 'account_id', account_email: 'account_email', optional: true },
  },
  // fastapi-users on MongoDB (Beanie), exported with `mongoexport --collection User`.
  'fastapi-users-beanie': {
    users: { table: 'User', id: '_id', email: 'email', password_hash: 'hashed_password', name: 'display_name', active: 'is_active', superuser: 'is_superuser', verified: 'is_verified' },
  },
};
