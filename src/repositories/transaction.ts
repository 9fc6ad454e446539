import type { Knex } from 'knex';

import type { Db } from '../db/knex.js';

/**
 * A database transaction, passed explicitly to the repository methods of a change that must not
 * be half-done (an erase, ending a session): they all run in it or none does.
 */
export type Transaction = Knex.Transaction;

/** Runs `work` in one transaction: committed when it resolves, rolled back when it throws. */
export type Transact = <T>(work: (trx: Transaction) => Promise<T>) => Promise<T>;

export const createTransact = (db: Db): Transact => (work) => db.transaction(work);
