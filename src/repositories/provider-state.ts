import { createHash } from 'node:crypto';

import type { Db } from '../db/knex.js';
import { isStorableKey } from '../db/knex.js';
import { createStatements } from '../db/statements.js';
import { epochSeconds } from '../lib/time.js';
import type { Transaction } from './transaction.js';

export type Payload = Record<string, unknown>;

const words = (v: unknown) => String(v ?? '').split(' ').filter(Boolean);

/** Every scope a stored Grant payload grants: its OpenID Connect scopes and each resource's. */
export function grantScopes(g: Payload): string[] {
  const scopes = new Set(words((g.openid as { scope?: string } | undefined)?.scope));
  for (const scope of Object.values((g.resources as Record<string, string> | undefined) ?? {})) for (const s of words(scope)) scopes.add(s);
  return [...scopes].sort();
}

export interface ConsumeResult {
  /** True when this call consumed the row; false when it was already consumed (or gone). */
  consumed: boolean;
  grantId: string | null;
  /** When it was consumed (epoch seconds), when this call did not consume it. */
  consumedAt?: number | null;
}

/*
 * The adapter's hot statements as fixed SQL (valid on SQLite and PostgreSQL), run straight on the
 * driver (db/statements.ts): every token request runs several, and the query builder and Knex's
 * runner cost more than running them. Unexpired rows only; the upsert is one statement (no read
 * first).
 */
const ALIVE = '(expires_at is null or expires_at > ?)';
const FIND_BY_ID = `select payload, consumed_at from provider_state where model = ? and id = ? and ${ALIVE} limit 1`;
// Oldest first, through the expires_at index: ORDER BY makes the index the plan whatever the
// statistics (planned without any, PostgreSQL's generic plan filtered a sequential scan, which
// grows slower with every batch as dead rows pile up at the table's start).
const expired = (columns: string) => `select ${columns} from provider_state where expires_at is not null and expires_at <= ? order by expires_at limit ?`;
const PURGE_SQLITE = `delete from provider_state where rowid in (${expired('rowid')})`;
const PURGE_PG = `delete from provider_state where (model, id) in (${expired('model, id')})`;
const FIND_BY_UID = `select id, payload, consumed_at from provider_state where model = ? and uid = ? and ${ALIVE} limit 1`;
const FIND_BY_USER_CODE = `select id, payload, consumed_at from provider_state where model = ? and user_code = ? and ${ALIVE} limit 1`;
// RFC 6749 §4.1.2 / §10.5 (codes) and RFC 9700 §4.14.2 (refresh tokens): single use. One
// conditional UPDATE, so of two concurrent redemptions exactly one changes the row.
const CONSUME = 'update provider_state set consumed_at = ? where model = ? and id = ? and consumed_at is null';
const DESTROY = 'delete from provider_state where model = ? and id = ?';

// A token with its grant, in one statement: the grant is what every use of a token checks next
// (token endpoint, introspection, userinfo). The token is looked up under one or more models (an
// opaque value presented for introspection may be an access, client-credentials or refresh
// token). Every probe is a primary-key lookup.
const findWithGrant = (models: number) => `select t.model, t.payload, t.consumed_at, t.grant_id, g.payload as grant_payload, g.consumed_at as grant_consumed_at
  from provider_state t left join provider_state g on g.model = 'Grant' and g.id = t.grant_id and (g.expires_at is null or g.expires_at > ?)
  where t.model in (${Array(models).fill('?').join(', ')}) and t.id = ? and (t.expires_at is null or t.expires_at > ?)`;
// PostgreSQL: the same as one primary-key probe per model and one for the grant, written so that
// no plan can be anything else. A prepared statement's generic plan is built once per connection
// from the statistics of that moment (none on a new database while autovacuum has not analyzed
// it, and never with autovacuum off): planned as a join and an IN list on a new table, this
// lookup scanned every grant.
const pgFindWithGrant = (models: number) => `select t.model, t.payload, t.consumed_at, t.grant_id, g.payload as grant_payload, g.consumed_at as grant_consumed_at
  from (values ${Array(models).fill('(?::varchar)').join(', ')}) as m(model)
  join lateral (select model, payload, consumed_at, grant_id from provider_state where model = m.model and id = ?::varchar and (expires_at is null or expires_at > ?::bigint) limit 1) t on true
  left join lateral (select payload, consumed_at from provider_state where model = 'Grant' and id = t.grant_id and (expires_at is null or expires_at > ?::bigint) limit 1) g on true`;

const COLUMNS = 'model, id, payload, grant_id, user_code, uid, account_id, expires_at, consumed_at';
const ON_CONFLICT = `on conflict (model, id) do update set payload = excluded.payload, grant_id = excluded.grant_id, user_code = excluded.user_code, uid = excluded.uid,
  account_id = excluded.account_id, expires_at = excluded.expires_at, consumed_at = excluded.consumed_at`;
// PostgreSQL: a request's writes as ONE statement (one round trip, one commit, atomic): the
// consume, the deletes and the upserts are data-modifying CTEs, each run once; with a consume,
// the others only if it changed its row, which the statement returns. Typed placeholders: a
// VALUES list in a subquery does not take its types from the target columns.
const PG_ROW = '(?::varchar, ?::varchar, ?::text, ?::varchar, ?::varchar, ?::varchar, ?::varchar, ?::bigint, ?::bigint)';
function pgCommit(consume: boolean, deletes: number, upserts: number): string {
  const ifConsumed = consume ? 'exists (select 1 from consumed)' : 'true';
  const parts: string[] = [];
  if (consume) parts.push('consumed as (update provider_state set consumed_at = ?::bigint where model = ?::varchar and id = ?::varchar and consumed_at is null returning 1)');
  // One primary-key delete each (an OR of keys may be planned as a scan).
  for (let i = 0; i < deletes; i++) parts.push(`gone${i} as (delete from provider_state where model = ?::varchar and id = ?::varchar and ${ifConsumed})`);
  if (upserts) {
    parts.push(`stored as (insert into provider_state (${COLUMNS}) select v.* from (values ${Array(upserts).fill(PG_ROW).join(', ')}) as v(${COLUMNS}) where ${ifConsumed} ${ON_CONFLICT})`);
  }
  return `with ${parts.join(', ')} select ${ifConsumed} as consumed`;
}
const UPSERT = `insert into provider_state (${COLUMNS}) values (?, ?, ?, ?, ?, ?, ?, ?, ?) ${ON_CONFLICT}`;
// Insert-if-absent in one statement: a row left behind expired (not yet purged) is taken over,
// a live one is left alone; the changed-row count says which. Never read-then-write.
const INSERT_IF_ABSENT = `insert into provider_state (${COLUMNS}) values (?, ?, ?, ?, ?, ?, ?, ?, ?) ${ON_CONFLICT} where provider_state.expires_at is not null and provider_state.expires_at <= ?`;

type StateRow = { payload: string; consumed_at: number | null; id?: string };
type StateWithGrantRow = StateRow & { model: string; grant_id: string | null; grant_payload: string | null; grant_consumed_at: number | null };

/** A token found with its grant (`grant.payload` undefined: the grant it names is gone or expired). */
export interface FoundWithGrant {
  model: string;
  payload: Payload;
  grant?: { id: string; payload: Payload | undefined };
}

/** One upsert of an oidc-provider model instance. */
export interface StateWrite {
  model: string;
  id: string;
  payload: Payload;
  expiresIn: number | undefined;
}

/** A single-use artifact to consume. */
export interface StateKey {
  model: string;
  id: string;
}

const str = (v: unknown) => (typeof v === 'string' ? v : null);
/** The bindings of one provider_state row, in COLUMNS order. */
function rowOf(write: StateWrite, now: number, sealer: DeviceCodeSealer | undefined): unknown[] {
  const { model, id, payload, expiresIn } = write;
  const rowId = storedStateId(model, id);
  let stored = payload;
  if (rowId !== id) {
    const { jti: _jti, ...rest } = payload;
    stored = model === 'DeviceCode' && sealer ? { ...rest, [SEALED_JTI]: sealer.seal(id, rowId) } : rest;
  }
  return [
    model,
    rowId,
    JSON.stringify(stored),
    str(payload.grantId),
    str(payload.userCode),
    str(payload.uid),
    str(payload.accountId),
    expiresIn ? now + expiresIn : null,
    typeof payload.consumed === 'number' ? payload.consumed : null,
  ];
}

/**
 * The models whose id IS the credential a client holds: an authorization code, a refresh token,
 * a device code, an opaque access token. They are stored under a SHA-256 of the id (and without
 * the `jti` copy in the payload), so a database dump or backup yields no usable token, as
 * personal access tokens and one-time links are stored. SHA-256 suffices: the ids are random
 * (at least 256 bits from oidc-provider), so a hash cannot be turned back into a token.
 */
const HASHED_MODELS: ReadonlySet<string> = new Set(['AuthorizationCode', 'RefreshToken', 'DeviceCode', 'AccessToken', 'ClientCredentials', 'BackchannelAuthenticationRequest']);
const HASHED = 'h.';

/** The primary key a model instance is stored under (exported for tests that read the table). */
export function storedStateId(model: string, id: string): string {
  return HASHED_MODELS.has(model) ? `${HASHED}${createHash('sha256').update(id).digest('base64url')}` : id;
}

/**
 * Keeps a device code (a hashed model) recoverable for the one lookup that does not know it:
 * finding it by its user code, when the user approves on another device and the library saves it
 * again under its id. Sealed under LATCH_SECRET, bound to the row.
 */
export interface DeviceCodeSealer {
  seal(id: string, rowId: string): string;
  open(sealed: string, rowId: string): string;
}
const SEALED_JTI = 'sealedJti';

/** The generic table behind oidc-provider's adapter: one row per model instance. */
export function createProviderStateRepository(db: Db, sealer?: DeviceCodeSealer) {
  const sql = createStatements(db);
  const first = async (text: string, bindings: readonly unknown[]) => (await sql.all<StateRow>(text, bindings))[0];
  const table = () => db('provider_state');
  const alive = (now: number) => (q: ReturnType<typeof table>) => q.where((w) => void w.whereNull('expires_at').orWhere('expires_at', '>', now));

  /** A row's payload; for a hashed model the `jti` it was stored without is put back (`id`, when known). */
  function decode(row: StateRow | undefined, model?: string, id?: string): Payload | undefined {
    if (!row) return undefined;
    const payload = JSON.parse(row.payload) as Payload;
    if (row.consumed_at !== null && row.consumed_at !== undefined) payload.consumed = Number(row.consumed_at);
    if (model !== undefined && HASHED_MODELS.has(model)) {
      const sealed = payload[SEALED_JTI];
      delete payload[SEALED_JTI];
      if (id !== undefined) payload.jti = id;
      else if (typeof sealed === 'string' && sealer) payload.jti = sealer.open(sealed, row.id ?? '');
    }
    return payload;
  }

  /** Why a consume changed nothing: the grant of the artifact, if it is still there (reuse). */
  async function notConsumed(model: string, id: string): Promise<ConsumeResult> {
    const row = await table().select('grant_id', 'consumed_at').where({ model, id: storedStateId(model, id) }).first<{ grant_id: string | null; consumed_at: number | string | null } | undefined>();
    return { consumed: false, grantId: row?.grant_id ?? null, consumedAt: row?.consumed_at === null || row?.consumed_at === undefined ? null : Number(row.consumed_at) };
  }

  return {
    async upsert(model: string, id: string, payload: Payload, expiresIn: number | undefined): Promise<void> {
      await sql.run(UPSERT, rowOf({ model, id, payload, expiresIn }, epochSeconds(), sealer));
    },

    /**
     * Stores a row only when none is live under (model, id), atomically, so that of two
     * processes recording the same single-use value (a DPoP proof's `jti`) exactly one succeeds:
     * true when this call stored it.
     */
    async insertIfAbsent(model: string, id: string, payload: Payload, expiresIn: number): Promise<boolean> {
      const now = epochSeconds();
      return (await sql.run(INSERT_IF_ABSENT, [...rowOf({ model, id, payload, expiresIn }, now, sealer), now])) === 1;
    },

    async find(model: string, id: string): Promise<Payload | undefined> {
      if (!isStorableKey(id)) return undefined;
      return decode(await first(FIND_BY_ID, [model, storedStateId(model, id), epochSeconds()]), model, id);
    },

    /**
     * The live rows with this id under any of `models`, each with its grant as of the same
     * moment. Ids are random: at most one row in practice.
     */
    async findWithGrant(models: readonly string[], id: string): Promise<FoundWithGrant[]> {
      if (!isStorableKey(id) || !models.length) return [];
      // One id for every model probed: they must all be stored the same way (all hashed, or none).
      const hashed = HASHED_MODELS.has(models[0]!);
      if (models.some((m) => HASHED_MODELS.has(m) !== hashed)) throw new Error('findWithGrant: models stored under different ids');
      const rowId = storedStateId(models[0]!, id);
      const now = epochSeconds();
      const rows = sql.postgres
        ? await sql.all<StateWithGrantRow>(pgFindWithGrant(models.length), [...models, rowId, now, now])
        : await sql.all<StateWithGrantRow>(findWithGrant(models.length), [now, ...models, rowId, now]);
      return rows.map((row) => {
        const payload = decode(row, row.model, id)!;
        if (row.grant_id === null) return { model: row.model, payload };
        return { model: row.model, payload, grant: { id: row.grant_id, payload: row.grant_payload === null ? undefined : decode({ payload: row.grant_payload, consumed_at: row.grant_consumed_at }) } };
      });
    },

    async findBy(model: string, column: 'uid' | 'user_code', value: string): Promise<Payload | undefined> {
      if (!isStorableKey(value)) return undefined;
      return decode(await first(column === 'uid' ? FIND_BY_UID : FIND_BY_USER_CODE, [model, value, epochSeconds()]), model);
    },

    /**
     * Marks a single-use artifact consumed with ONE conditional UPDATE, so that of two concurrent
     * redemptions exactly one sees a changed row. Never read-then-write.
     */
    async consume(model: string, id: string): Promise<ConsumeResult> {
      const changed = await sql.run(CONSUME, [epochSeconds(), model, storedStateId(model, id)]);
      return changed === 1 ? { consumed: true, grantId: null } : notConsumed(model, id);
    },

    /**
     * A request's writes as ONE atomic write: the consume (if any) first, then the deletes and
     * the upserts. When the consume finds the artifact already consumed (or gone), nothing is
     * written and `consumed` is false. One commit instead of one per write. Each model and id at
     * most once across `deletes` and `upserts`.
     */
    async commit(consume: StateKey | undefined, deletes: readonly StateKey[], upserts: readonly StateWrite[]): Promise<ConsumeResult> {
      const now = epochSeconds();
      const rows = upserts.map((w) => rowOf(w, now, sealer));
      const key = (k: StateKey) => storedStateId(k.model, k.id);
      let consumed: boolean;
      if (!consume && !deletes.length && rows.length === 1) {
        await sql.run(UPSERT, rows[0]!);
        consumed = true;
      } else if (!sql.postgres) {
        consumed = await sql.sqliteTransaction((run) => {
          if (consume && run(CONSUME, [now, consume.model, key(consume)]) !== 1) return false;
          for (const d of deletes) run(DESTROY, [d.model, key(d)]);
          for (const row of rows) run(UPSERT, row);
          return true;
        });
      } else {
        const bindings = [...(consume ? [now, consume.model, key(consume)] : []), ...deletes.flatMap((d) => [d.model, key(d)]), ...rows.flat()];
        const [row] = await sql.all<{ consumed: boolean }>(pgCommit(Boolean(consume), deletes.length, rows.length), bindings);
        consumed = row?.consumed === true;
      }
      return consumed || !consume ? { consumed: true, grantId: null } : notConsumed(consume.model, consume.id);
    },

    async destroy(model: string, id: string): Promise<void> {
      await sql.run(DESTROY, [model, storedStateId(model, id)]);
    },

    /** Deletes every artifact of a grant, and the grant itself (in `trx` when given). */
    async revokeByGrantId(grantId: string, trx?: Transaction): Promise<number> {
      return (trx ?? db)('provider_state')
        .where('grant_id', grantId)
        .orWhere((w) => void w.where({ model: 'Grant', id: grantId }))
        .delete();
    },

    /**
     * Ends everything an account holds: sessions, grants, codes, opaque tokens and refresh
     * tokens (JWT access tokens die with their grant at introspection, and offline at expiry).
     */
    async revokeByAccountId(accountId: string, options: { exceptSessionUid?: string | undefined } = {}, trx?: Transaction): Promise<number> {
      // Two deletes, each served by an index (an OR of the two conditions is a sequential scan
      // on PostgreSQL): what hangs from the account's grants first, then the account's own rows
      // (its grants included). A password change keeps the session it was made from (and only
      // that one); sessions carry no grant id.
      const keep = options.exceptSessionUid;
      const run = async (t: Transaction) => {
        const grants = t('provider_state').select('id').where({ model: 'Grant', account_id: accountId });
        const fromGrants = await t('provider_state').whereIn('grant_id', grants).delete();
        const own = t('provider_state').where('account_id', accountId);
        if (keep && isStorableKey(keep)) void own.whereNot((w) => void w.where({ model: 'Session', uid: keep }));
        return fromGrants + (await own.delete());
      };
      return trx ? run(trx) : db.transaction(run);
    },

    /** The live rows of one model that belong to an account (its sessions, its grants), in `trx` when given. */
    async listByAccount(model: 'Session' | 'Grant', accountId: string, trx?: Transaction): Promise<Payload[]> {
      const rows = await alive(epochSeconds())((trx ?? db)('provider_state').select('payload', 'consumed_at').where({ model, account_id: accountId })).orderBy('id');
      return rows.map((r: { payload: string; consumed_at: number | null }) => decode(r)!);
    },

    /**
     * Ends one of the account's sessions as logout does: the session goes, and so do the grants
     * of the applications signed in through it, except those that outlive logout
     * (offline_access). All in `trx`: a session gone with its grants left behind would leave
     * applications signed in that the user just signed out. The session's payload when the
     * account had that session.
     */
    async endSession(accountId: string, uid: string, trx: Transaction): Promise<Payload | undefined> {
      if (!isStorableKey(uid)) return undefined;
      const session = () => trx('provider_state').where({ model: 'Session', uid, account_id: accountId });
      const row = await session().select('payload').first<{ payload: string } | undefined>();
      if (!row || !(await session().delete())) return undefined;
      const payload = JSON.parse(row.payload) as Payload;
      const authorizations = payload.authorizations;
      for (const auth of Object.values(authorizations && typeof authorizations === 'object' ? (authorizations as Record<string, { grantId?: string; persistsLogout?: boolean }>) : {})) {
        if (auth.grantId && !auth.persistsLogout) await this.revokeByGrantId(auth.grantId, trx);
      }
      return payload;
    },

    /** Deletes up to `batch` expired rows; returns how many. Call repeatedly until 0. */
    async purgeExpired(batch = 1000): Promise<number> {
      const limit = Math.max(1, Math.floor(batch));
      // The expires_at index finds the victims. SQLite deletes them by rowid (no primary-key
      // search per row, about a fifth less work); PostgreSQL by primary key (row-value IN).
      return sql.run(sql.postgres ? PURGE_PG : PURGE_SQLITE, [epochSeconds(), limit]);
    },
  };
}

export type ProviderStateRepository = ReturnType<typeof createProviderStateRepository>;
