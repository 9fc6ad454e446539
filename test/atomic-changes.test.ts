import { expect } from 'chai';

import type { Db } from '../src/db/knex.js';
import { startApiHarness, type ApiHarness } from './helpers/api.js';
import { onPostgres } from './helpers/server.js';

/**
 * Changes that must not be half-done (ARCHITECTURE.md, "Data"): erasing an account and ending a
 * session. A trigger makes the LAST statement of each fail; nothing of the change may remain.
 */
async function failOn(db: Db, name: string, table: string, event: 'UPDATE' | 'DELETE', when = 'true'): Promise<() => Promise<void>> {
  if (onPostgres) {
    await db.raw(`create or replace function ${name}() returns trigger language plpgsql as $$ begin raise exception 'forced failure'; end $$`);
    await db.raw(`create trigger ${name} before ${event} on ${table} for each row when (${when.replace(/\bold\./g, 'OLD.')}) execute function ${name}()`);
    return async () => {
      await db.raw(`drop trigger ${name} on ${table}`);
      await db.raw(`drop function ${name}()`);
    };
  }
  await db.raw(`create trigger ${name} before ${event} on ${table} when ${when} begin select raise(abort, 'forced failure'); end`);
  return async () => {
    await db.raw(`drop trigger ${name}`);
  };
}

describe('atomic changes: an erase and the end of a session are all or nothing', function () {
  this.timeout(60_000);
  let h: ApiHarness;
  let db: Db;

  before(async () => {
    h = await startApiHarness();
    db = h.srv.running.db;
  });

  after(async () => {
    await h?.close();
  });

  /** A user with a live session and grant (a real sign-in through the authorization endpoint). */
  async function signedInUser(email: string) {
    const user = { email, password: 'a quiet orchard by the sea' };
    const id = (await h.cli('users', 'create', '--email', email, '--password', user.password)).id as string;
    await h.userToken(user, 'account');
    return { ...user, id };
  }

  const rows = async (accountId: string) => ({
    account: (await db('accounts').where({ id: accountId }).count({ n: '*' }).first<{ n: number | string }>())!.n,
    state: (await db('provider_state').where({ account_id: accountId }).count({ n: '*' }).first<{ n: number | string }>())!.n,
    audit: (await db('audit_events').where({ subject_id: accountId }).count({ n: '*' }).first<{ n: number | string }>())!.n,
  });

  it('erasing an account: a failure while pseudonymising the audit trail leaves the account, its sessions, grants and audit rows as they were', async () => {
    const { services } = h.srv.running;
    const carol = await signedInUser('carol@example.test');
    const before = await rows(carol.id);
    expect(Number(before.account)).to.equal(1);
    expect(Number(before.state), 'a session and a grant').to.be.greaterThanOrEqual(2);
    expect(Number(before.audit), 'the sign-in was audited').to.be.greaterThan(0);

    const restore = await failOn(db, 'latch_test_fail_audit_update', 'audit_events', 'UPDATE');
    try {
      let failed: unknown;
      await services.accounts.erase(carol.id, { actorId: 'test' }).catch((err: unknown) => (failed = err));
      expect(String(failed)).to.match(/forced failure/);
    } finally {
      await restore();
    }
    expect(await rows(carol.id), 'nothing of the erase remains').to.deep.equal(before);
    expect((await services.accounts.findById(carol.id))?.email).to.equal(carol.email);
    expect(await services.sessions.sessionsOf(carol.id)).to.have.length.greaterThan(0);

    // Without the failure the same erase goes through, all of it.
    const erased = await services.accounts.erase(carol.id, { actorId: 'test' });
    expect(erased.pseudonym).to.match(/^erased:/);
    const after = await rows(carol.id);
    expect([Number(after.account), Number(after.state), Number(after.audit)]).to.deep.equal([0, 0, 0]);
    expect(Number((await db('audit_events').where({ subject_id: erased.pseudonym }).count({ n: '*' }).first<{ n: number | string }>())!.n)).to.be.greaterThanOrEqual(Number(before.audit));
  });

  it('ending a session: a failure while revoking its grants leaves the session and its grants as they were', async () => {
    const { services } = h.srv.running;
    const dave = await signedInUser('dave@example.test');
    const sessions = await services.sessions.sessionsOf(dave.id);
    expect(sessions).to.have.length(1);
    const uid = String(sessions[0]!.uid);
    const grants = (await services.sessions.grantsOf(dave.id)).map((g) => g.jti);
    expect(grants).to.have.length(1);
    const before = await rows(dave.id);

    const restore = await failOn(db, 'latch_test_fail_grant_delete', 'provider_state', 'DELETE', "old.model = 'Grant'");
    try {
      let failed: unknown;
      await services.sessions.end(dave.id, uid, { type: 'session.end', actorId: dave.id }).catch((err: unknown) => (failed = err));
      expect(String(failed)).to.match(/forced failure/);
    } finally {
      await restore();
    }
    expect(await rows(dave.id), 'nothing of the logout remains').to.deep.equal(before);
    expect((await services.sessions.sessionsOf(dave.id)).map((s) => s.uid)).to.deep.equal([uid]);
    expect((await services.sessions.grantsOf(dave.id)).map((g) => g.jti)).to.deep.equal(grants);

    expect(await services.sessions.end(dave.id, uid, { type: 'session.end', actorId: dave.id })).to.equal(true);
    expect(await services.sessions.sessionsOf(dave.id)).to.deep.equal([]);
    expect(await services.sessions.grantsOf(dave.id)).to.deep.equal([]);
  });
});
