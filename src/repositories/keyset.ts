import type { Knex } from 'knex';

import { isPostgres, type Db } from '../db/knex.js';

/** Where a page starts: after the row with this sort key (`created_at`, then the id). */
export interface PageCursor {
  at: string;
  id: string;
}

/** What a list asks of a repository: at most `limit` rows after `cursor` (none: from the newest). */
export interface PageRequest {
  limit: number;
  cursor?: PageCursor | undefined;
}

/** One page, newest first; `next` is the key of its last row when another page follows. */
export interface PageOf<T> {
  items: T[];
  next: PageCursor | null;
}

/**
 * One page of `query`, newest first on (`at`, `id`) — both stored as strings that compare in the
 * order they were written (ISO times of one length) — with a keyset instead of an offset: the
 * database seeks to the cursor on the (created_at, id) index and reads `limit + 1` rows, whatever
 * the table's size, and rows created meanwhile never shift later pages.
 *
 * PostgreSQL compares the row value `(at, id) < (?, ?)`, which its planner turns into an index
 * range. SQLite gets the portable expansion, with `at <= ?` in front so that its planner too has
 * a range on the index's first column to seek to (the OR alone would make it scan from the end).
 * `id` may be an expression (a member's `kind:id`), given as raw SQL.
 */
export async function keysetPage<Row, T>(db: Db, query: Knex.QueryBuilder, columns: { at: string; id: string | Knex.Raw }, request: PageRequest, map: (row: Row) => T, keyOf: (item: T) => PageCursor): Promise<PageOf<T>> {
  const { at, id } = columns;
  const idSql = typeof id === 'string' ? db.ref(id) : id;
  const { cursor } = request;
  if (cursor) {
    if (isPostgres(db)) void query.whereRaw('(??, ?) < (?, ?)', [at, idSql, cursor.at, cursor.id]);
    else void query.where(at, '<=', cursor.at).andWhere((w) => void w.where(at, '<', cursor.at).orWhere((x) => void x.where(at, '=', cursor.at).andWhereRaw('? < ?', [idSql, cursor.id])));
  }
  void query.orderBy([{ column: at, order: 'desc' }]).orderByRaw('? desc', [idSql]).limit(request.limit + 1);
  const rows = (await query) as Row[];
  const items = rows.slice(0, request.limit).map(map);
  const last = items[items.length - 1];
  return { items, next: rows.length > request.limit && last ? keyOf(last) : null };
}
