import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

import { expect } from 'chai';
import knexFactory, { type Knex } from 'knex';

import { migrateLatest } from '../../src/db/migrate.js';
import { createMailQueueRepository } from '../../src/repositories/mail-queue.js';
import { createMailTransport } from '../../src/services/mail.js';
import { createMailQueue, RETRY_DELAYS, RETRY_FOR_SECONDS, retryDelay } from '../../src/services/mail-queue.js';
import { createSecrets } from '../../src/services/secrets.js';
import { Agent, parseForms, type PageResponse } from '../helpers/agent.js';
import { startMailbox, type Mailbox, type ReceivedMail } from '../helpers/mailbox.js';
import { spawnLatch, type LatchProcess } from '../helpers/process.js';
import { freePort, freshDatabase, onPostgres, recordingLogger, TEST_SECRET, type TestDatabase } from '../helpers/server.js';

/**
 * An SMTP outage as users see it (docs/operations.md, "Running in production"): the relay
 * (a real SMTP server, smtp-server) is stopped; sign-up, password reset and a new verification
 * link are asked for; every page answers as usual and the account page says the verification
 * mail is pending. Latch is restarted (a real process) while the relay is still down, then the
 * relay comes back on the same port and the mails arrive by themselves, with working links.
 * Meanwhile no link is in the database in the clear (a dump of the SQLite file or pg_dump).
 */

const PASSWORD = 'correct horse battery staple 42';
const SMTP_FROM = 'Latch Tests <auth@example.test>';
const ADA = 'ada@example.test';
const BOB = 'bob@example.test';

const sqliteFileOf = (url: string) => url.replace(/^sqlite:/, '');

describe('SMTP outage (durable mail queue)', function () {
  this.timeout(120_000);
  let db: TestDatabase;
  let knex: Knex;
  let mailbox: Mailbox | undefined;
  let smtpPort: number;
  let latch: LatchProcess | undefined;
  let env: Record<string, string>;
  const logs: string[] = [];

  /** Every byte the database holds: the SQLite file and its WAL, or a pg_dump. */
  function dump(): string {
    if (onPostgres) return execFileSync('pg_dump', ['--data-only', '--no-owner', db.url], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
    const file = sqliteFileOf(db.url);
    return [file, `${file}-wal`]
      .filter((f) => existsSync(f))
      .map((f) => readFileSync(f).toString('latin1'))
      .join('\n');
  }

  async function post(agent: Agent, page: PageResponse, action: RegExp, values: Record<string, string> = {}): Promise<PageResponse> {
    const index = parseForms(page.body, page.url).findIndex((f) => action.test(new URL(f.action).pathname));
    expect(index, `a form posting to ${action} on ${page.url}: ${page.body.slice(0, 300)}`).to.be.at.least(0);
    return agent.submit(page, index, values);
  }

  async function register(agent: Agent, email: string): Promise<PageResponse> {
    const page = await agent.request(`${latch!.base}/register`);
    return post(agent, page, /^\/register$/, { email, password: PASSWORD, name: 'Test User' });
  }

  /** The account page (/account), signed in through Latch's own login page. */
  async function accountPage(agent: Agent, email: string): Promise<PageResponse> {
    let page = await agent.follow(`${latch!.base}/account`);
    for (let i = 0; i < 3 && /name="password"/.test(page.body); i++) page = await post(agent, page, /\/login$/, { email, password: PASSWORD });
    expect(page.status, page.body.slice(0, 300)).to.equal(200);
    expect(new URL(page.url).pathname).to.equal('/account');
    return page;
  }

  const statusOf = (page: PageResponse) => /id="verification-mail-status">([^<]*)</.exec(page.body)?.[1];

  const linkIn = (mail: ReceivedMail, path: string) => {
    const link = mail.links.find((l) => new URL(l).pathname === path);
    expect(link, `a ${path} link in: ${mail.text}`).to.be.a('string');
    return link!;
  };

  async function metric(name: string): Promise<number> {
    const text = await (await fetch(`${latch!.base}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${name} `));
    return line ? Number(line.split(' ')[1]) : NaN;
  }

  async function restartLatch(): Promise<void> {
    logs.push(latch!.log());
    expect(await latch!.stop()).to.equal(0);
    latch = await spawnLatch(env, { readyTimeoutMs: 30_000 });
  }

  before(async () => {
    db = await freshDatabase();
    mailbox = await startMailbox();
    smtpPort = Number(new URL(mailbox.url).port);
    // Restarts keep the port: the issuer, and the links in queued mails, name it.
    env = { DATABASE_URL: db.url, PORT: String(await freePort()), SMTP_URL: mailbox.url, SMTP_FROM, REGISTRATION: 'open', LOG_LEVEL: 'info' };
    latch = await spawnLatch(env, { readyTimeoutMs: 30_000 });
    knex = knexFactory(onPostgres ? { client: 'pg', connection: db.url } : { client: 'better-sqlite3', connection: { filename: sqliteFileOf(db.url) }, useNullAsDefault: true });
  });

  after(async () => {
    await knex?.destroy();
    if (latch) await latch.stop();
    await mailbox?.close();
    await db?.drop();
  });

  it('sends at once while SMTP is up', async () => {
    const agent = new Agent();
    const page = await register(agent, BOB);
    expect(page.status).to.equal(200);
    expect(page.body).to.contain('queued for sending');
    // Before the sender loop's first retry could: the first attempt is made at once.
    const mail = await mailbox!.waitFor(BOB, 1, RETRY_DELAYS[0]! * 1000);
    await post(agent, await agent.request(linkIn(mail, '/verify-email')), /^\/verify-email$/);
    // Sent: the mail itself is gone from the queue, its delivery record stays.
    const rows = (await knex('mail_queue').select('payload', 'sent_at')) as { payload: string | null; sent_at: unknown }[];
    expect(rows).to.have.length(1);
    expect(rows[0]!.payload).to.equal(null);
    expect(rows[0]!.sent_at).to.not.equal(null);
    expect(await metric('latch_mails_total{event="sent"}')).to.equal(1);
  });

  it('keeps mails queued (encrypted) through an outage and a restart, and sends them when SMTP is back', async () => {
    await mailbox!.close();
    mailbox = undefined;

    // Sign-up, password reset and a new verification link, with the relay down: every page answers as usual.
    const ada = new Agent();
    const signedUp = await register(ada, ADA);
    expect(signedUp.status).to.equal(200);
    expect(signedUp.body).to.contain('Check your mail').and.contain('queued for sending');
    const bob = new Agent();
    const forgot = await post(bob, await bob.request(`${latch!.base}/forgot-password`), /^\/forgot-password$/, { email: BOB });
    expect(forgot.status).to.equal(200);
    expect(forgot.body).to.contain('queued for sending');
    const resend = await post(ada, await ada.request(`${latch!.base}/verify-email/resend`), /^\/verify-email\/resend$/, { email: ADA });
    expect(resend.status).to.equal(200);

    // The mails are sent after the answer: wait until each first attempt has failed.
    for (let i = 0; ; i++) {
      const failed = (await knex('mail_queue').whereNotNull('payload').whereNotNull('last_error').count<{ n: number | string }[]>({ n: '*' }))[0]!;
      if (Number(failed.n) === 3) break;
      expect(i, 'three mails queued after a failed attempt').to.be.below(100);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(await metric('latch_mails_total{event="retried"}')).to.equal(3);
    expect(await metric('latch_mail_queue_pending')).to.equal(3);
    expect(latch!.log()).to.contain('mail not sent; it stays queued and is retried');

    // The account page tells the truth: the verification mail is pending, not sent.
    const page = await accountPage(ada, ADA);
    expect(statusOf(page)).to.equal('Pending');
    expect(page.body).to.contain('queued and not sent yet');

    // Nothing of the mails is readable at rest: no link, no subject, no recipient in the payloads.
    const queued = dump();
    for (const secret of ['/verify-email?token=', '/reset-password?token=', 'Confirm your email address', 'Reset your Latch password']) expect(queued).to.not.contain(secret);

    await restartLatch();
    // Still down after the restart: the mails stay queued.
    expect(Number((await knex('mail_queue').whereNotNull('payload').count<{ n: number | string }[]>({ n: '*' }))[0]!.n)).to.equal(3);

    // The relay is back on the same port: the new process sends the queued mails by itself.
    mailbox = await startMailbox({ port: smtpPort });
    const bound = RETRY_DELAYS[1]! * 1000 + 20_000;
    const [verification, again, reset] = await Promise.all([mailbox.waitFor(ADA, 1, bound), mailbox.waitFor(ADA, 2, bound), mailbox.waitFor(BOB, 1, bound)]);
    expect(verification!.subject).to.contain('Confirm your email address');
    expect(again!.subject).to.contain('Confirm your email address');
    expect(reset!.subject).to.contain('Reset your Latch password');
    expect(reset!.from).to.contain('auth@example.test');

    // The links work: the reset link opens its form, the verification link confirms the address.
    const resetPage = await new Agent().request(linkIn(reset!, '/reset-password'));
    expect(resetPage.status).to.equal(200);
    expect(resetPage.body).to.contain('name="password"');
    const browser = new Agent();
    const confirmed = await post(browser, await browser.request(linkIn(verification!, '/verify-email')), /^\/verify-email$/);
    expect(confirmed.status).to.equal(200);
    expect(confirmed.body).to.contain('confirmed');
    const after = await accountPage(ada, ADA);
    expect(after.body).to.contain('id="email-status">Verified');

    // Sent mails leave no content behind: no link token in the database, none in the logs.
    for (let i = 0; Number((await knex('mail_queue').whereNotNull('payload').count<{ n: number | string }[]>({ n: '*' }))[0]!.n) !== 0; i++) {
      expect(i, 'every payload deleted once sent').to.be.below(50);
      await new Promise((r) => setTimeout(r, 100));
    }
    const sent = dump();
    const allLogs = [...logs, latch!.log()].join('\n');
    for (const mail of [verification!, again!, reset!]) {
      for (const link of mail.links) {
        const token = new URL(link).searchParams.get('token');
        if (!token) continue;
        expect(sent).to.not.contain(token);
        expect(allLogs).to.not.contain(token);
      }
    }
    expect(allLogs).to.not.contain('?token=');
    expect(await metric('latch_mails_total{event="sent"}')).to.be.at.least(1);
    expect(await metric('latch_mail_queue_pending')).to.equal(0);
  });

  it('gives a mail up (content deleted, logged, counted) when it is an hour old and still not sent', async () => {
    const other = await freshDatabase();
    const store = knexFactory(onPostgres ? { client: 'pg', connection: other.url } : { client: 'better-sqlite3', connection: { filename: sqliteFileOf(other.url) }, useNullAsDefault: true });
    try {
      await migrateLatest(store);
      const logger = recordingLogger();
      // A relay that is not there: the port is free and nothing listens on it.
      const transport = createMailTransport({ smtpUrl: `smtp://127.0.0.1:${await freePort()}`, from: SMTP_FROM, outboxDir: '/nonexistent', logger });
      const queue = createMailQueue({ repo: createMailQueueRepository(store), transport, secrets: createSecrets(TEST_SECRET), logger });
      const events: string[] = [];
      queue.onEvent((e) => events.push(e));
      await queue.send({ to: ADA, subject: 'Hello', text: 'https://example.test/verify-email?token=secret-token\n' }, { kind: 'other' });
      expect(events).to.deep.equal(['queued', 'retried']);
      // An hour of failed attempts later (the clock moved by rewriting the row).
      await store('mail_queue').update({ created_at: Math.floor(Date.now() / 1000) - RETRY_FOR_SECONDS, next_attempt_at: 0 });
      expect(await queue.sendDue()).to.equal(1);
      expect(events).to.deep.equal(['queued', 'retried', 'failed']);
      const row = (await store('mail_queue').first()) as { payload: string | null; failed_at: unknown; last_error: string; attempts: number | string };
      expect(row.payload).to.equal(null);
      expect(row.failed_at).to.not.equal(null);
      expect(row.last_error).to.match(/ECONNREFUSED/);
      expect(Number(row.attempts)).to.equal(2);
      expect(logger.lines.some((l) => l.level === 'error' && l.msg === 'mail given up after retrying')).to.equal(true);
      expect(JSON.stringify(logger.lines)).to.not.contain('secret-token');
      expect(await queue.sendDue()).to.equal(0);
    } finally {
      await store.destroy();
      await other.drop();
    }
  });

  it('retries for at least an hour before it gives up', () => {
    let at = 0;
    let attempts = 1;
    // The queue gives up at the first failed attempt at or after RETRY_FOR_SECONDS.
    while (at < RETRY_FOR_SECONDS) at += retryDelay(attempts++);
    expect(at).to.be.at.least(3600);
    expect(attempts).to.be.above(RETRY_DELAYS.length);
    expect(retryDelay(1)).to.equal(10);
    expect(retryDelay(1000)).to.equal(900);
  });
});
