/**
 * Registration (open, invite, closed), email verification and password reset, end to end: real
 * servers, a real SMTP server in-process (Latch sends with nodemailer through SMTP_URL), links
 * followed from the received mails over real HTTP, and the OIDC flow through openid-client.
 */
import { createHash } from 'node:crypto';

import { expect } from 'chai';
import * as oidc from 'openid-client';

import { Agent, authorize, parseForms, type PageResponse } from './helpers/agent.js';
import { startMailbox, type Mailbox, type ReceivedMail } from './helpers/mailbox.js';
import { startTestServer, type TestServer } from './helpers/server.js';

const REDIRECT = 'http://127.0.0.1:9/cb';
const GOOD_PASSWORD = 'violet kettle orbit 42';
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
const epoch = () => Math.floor(Date.now() / 1000);

/** The body with the per-browser CSRF value blanked, to compare two answers for equality. */
const normalized = (page: PageResponse) => page.body.replace(/name="_csrf" value="[^"]*"/g, 'name="_csrf" value=""');

/** The text of the element with this id (a field's error message). */
const byId = (html: string, id: string) => new RegExp(`id="${id}"[^>]*>([^<]*)<`).exec(html)?.[1]?.trim();

/** The one link of a mail, checked to be a full URL under ISSUER on its own line of the plain text. */
function linkIn(mail: ReceivedMail, issuer: string, path: string): string {
  const links = mail.links.filter((l) => l.startsWith(`${issuer}${path}`));
  expect(links, `${path} link in: ${mail.text}`).to.have.length(1);
  expect(mail.text.split(/\r?\n/).map((l) => l.trim())).to.include(links[0]);
  for (const l of mail.links) expect(l.startsWith(`${issuer}/`), `every link under ISSUER: ${l}`).to.equal(true);
  return links[0]!;
}

const tokenOf = (link: string) => new URL(link).searchParams.get('token') ?? new URL(link).searchParams.get('invitation')!;

/** Posts a page's form `index` (with its hidden fields, CSRF included) plus `values`. */
async function post(agent: Agent, page: PageResponse, index: number, values: Record<string, string> = {}) {
  return agent.submit(page, index, values);
}

describe('registration, email verification and password reset (real SMTP)', function () {
  this.timeout(60_000);
  let mailbox: Mailbox;

  before(async () => {
    mailbox = await startMailbox();
  });
  after(async () => {
    await mailbox.close();
  });

  describe('REGISTRATION=open with REQUIRE_VERIFIED_EMAIL=true', () => {
    let srv: TestServer;
    let config: oidc.Configuration;

    const rowOf = async (email: string) => (await srv.running.db('accounts').whereRaw('lower(email) = ?', [email.toLowerCase()])) as { id: string; email: string; password_hash: string; email_verified: boolean | number; display_name: string | null }[];
    const auditTypes = async (subjectId: string) => ((await srv.running.db('audit_events').where({ subject_id: subjectId }).orderBy('id').select('type')) as { type: string }[]).map((r) => r.type);

    /** Opens the login page of a new authorization request. */
    async function loginPage(agent: Agent, extra: Record<string, string> = {}) {
      const verifier = oidc.randomPKCECodeVerifier();
      const url = oidc.buildAuthorizationUrl(config, { redirect_uri: REDIRECT, scope: 'openid email offline_access', prompt: 'consent', code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', ...extra });
      const page = await agent.follow(url.toString(), {}, REDIRECT);
      expect(page.status).to.equal(200);
      expect(new URL(page.url).pathname).to.match(/^\/interaction\/[^/]+$/);
      return { page, verifier };
    }

    async function signIn(email: string, password: string) {
      const verifier = oidc.randomPKCECodeVerifier();
      const url = oidc.buildAuthorizationUrl(config, { redirect_uri: REDIRECT, scope: 'openid email offline_access', prompt: 'consent', code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256' });
      const { callback } = await authorize(new Agent(), url.toString(), REDIRECT, { email, password });
      return oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier });
    }

    async function register(agent: Agent, values: Record<string, string>, query = '') {
      const form = await agent.request(`${srv.url}/register${query}`);
      expect(form.status, form.body.slice(0, 300)).to.equal(200);
      return post(agent, form, 0, values);
    }

    /** Registers and verifies an account, returning its id. */
    async function verifiedAccount(email: string, password = GOOD_PASSWORD) {
      const agent = new Agent();
      const before = mailbox.to(email).length;
      expect((await register(agent, { email, password, name: 'Test User' })).status).to.equal(200);
      const link = linkIn(await mailbox.waitFor(email, before + 1), srv.url, '/verify-email');
      const confirmed = await post(agent, await agent.request(link), 0);
      expect(confirmed.status, confirmed.body).to.equal(200);
      return (await rowOf(email))[0]!.id;
    }

    before(async () => {
      srv = await startTestServer({ env: { REGISTRATION: 'open', REQUIRE_VERIFIED_EMAIL: 'true', SMTP_URL: mailbox.url, SMTP_FROM: 'Latch Tests <auth@example.test>', REGISTRATIONS_PER_IP_PER_HOUR: '1000' } });
      const c = await srv.cli('clients', 'create', '--name', 'App', '--redirect-uri', REDIRECT, '--first-party');
      config = await oidc.discovery(new URL(srv.url), c.json.client_id, c.json.client_secret, undefined, { execute: [oidc.allowInsecureRequests] });
    });
    after(async () => {
      expect(srv.errors()).to.deep.equal([]);
      await srv.close();
    });

    it('links the login page to /forgot-password and /register, keeping the login form first', async () => {
      const { page } = await loginPage(new Agent());
      const uid = new URL(page.url).pathname.split('/')[2]!;
      const forms = parseForms(page.body, page.url);
      expect(forms[0]!.action).to.equal(`${srv.url}/interaction/${uid}/login`);
      expect(Object.keys(forms[0]!.fields)).to.include.members(['email', 'password', '_csrf']);
      expect(page.body).to.contain(`href="/forgot-password?return_to=%2Finteraction%2F${uid}"`);
      expect(page.body).to.contain(`href="/register?return_to=%2Finteraction%2F${uid}"`);
    });

    it('shows the registration form with CSRF; a POST without the CSRF token is refused', async () => {
      const agent = new Agent();
      const page = await agent.request(`${srv.url}/register`);
      expect(page.status).to.equal(200);
      expect(page.headers.get('cache-control')).to.equal('no-store');
      const form = parseForms(page.body, page.url)[0]!;
      expect(form.method).to.equal('post');
      expect(form.action).to.equal(`${srv.url}/register`);
      expect(Object.keys(form.fields)).to.include.members(['_csrf', 'email', 'password', 'name']);
      const forged = await agent.request(`${srv.url}/register`, { form: { email: 'csrf@example.test', password: GOOD_PASSWORD, name: 'x' } });
      expect(forged.status).to.equal(403);
      expect(forged.body).to.contain('invalid_csrf_token');
      expect(await rowOf('csrf@example.test')).to.have.length(0);
    });

    it('applies the password policy with messages next to the field', async () => {
      const agent = new Agent();
      const short = await register(agent, { email: 'policy@example.test', password: 'short1', name: 'Pat' });
      expect(short.status).to.equal(400);
      expect(byId(short.body, 'password-error')).to.equal('Use at least 10 characters.');
      expect(short.body).to.match(/id="password"[^>]*aria-invalid="true"/);
      expect(short.body, 'the email is kept').to.contain('value="policy@example.test"');

      const common = await register(agent, { email: 'policy@example.test', password: 'password123456', name: 'Pat' });
      expect(common.status).to.equal(400);
      expect(byId(common.body, 'password-error')).to.match(/commonly used password.*harder to guess/);

      const own = await register(agent, { email: 'patricia.policy@example.test', password: 'patricia.policy', name: 'Patricia Policy' });
      expect(own.status).to.equal(400);
      expect(byId(own.body, 'password-error')).to.match(/^It contains your name or email address\./);
      // The same password is fine for someone else: the account's own words are what made it weak.
      expect((await register(agent, { email: 'someone.else@example.test', password: 'patricia.policy', name: 'Sam' })).status).to.equal(200);

      const long = await register(agent, { email: 'policy@example.test', password: 'x'.repeat(1025), name: 'Pat' });
      expect(long.status).to.equal(400);
      expect(byId(long.body, 'password-error')).to.equal('Use at most 1024 characters.');

      const badEmail = await register(agent, { email: 'not-an-address', password: GOOD_PASSWORD, name: 'Pat' });
      expect(badEmail.status).to.equal(400);
      expect(byId(badEmail.body, 'email-error')).to.contain('valid email address');
      expect(byId(badEmail.body, 'password-error')).to.equal(undefined);

      expect(await rowOf('policy@example.test')).to.have.length(0);
      const ok = await register(agent, { email: 'policy@example.test', password: GOOD_PASSWORD, name: 'Pat' });
      expect(ok.status).to.equal(200);
      expect(ok.body).to.contain('Check your mail');
      expect(await rowOf('policy@example.test')).to.have.length(1);
    });

    it('signs up from the login page, mails a 24 h verification link that a GET does not use, verifies with a POST, and brings the user back to that sign-in', async () => {
      const email = 'ada@example.test';
      const agent = new Agent();
      const { page: login, verifier } = await loginPage(agent);
      const uid = new URL(login.url).pathname.split('/')[2]!;
      const registerHref = /href="(\/register\?[^"]+)"/.exec(login.body)![1]!.replace(/&amp;/g, '&');
      const form = await agent.request(new URL(registerHref, srv.url).toString());
      expect(form.status).to.equal(200);
      expect(parseForms(form.body, form.url)[0]!.fields.return_to).to.equal(`/interaction/${uid}`);
      const started = epoch();
      const done = await post(agent, form, 0, { email, password: GOOD_PASSWORD, name: 'Ada Lovelace' });
      expect(done.status).to.equal(200);
      expect(done.body).to.contain('Check your mail');
      expect(done.body).to.contain(`href="/interaction/${uid}"`);

      const [row] = await rowOf(email);
      expect(row!.display_name).to.equal('Ada Lovelace');
      expect(Boolean(row!.email_verified)).to.equal(false);
      expect(row!.password_hash).to.match(/^\$argon2id\$/);
      expect(await auditTypes(row!.id)).to.include('account.register');

      const mail = await mailbox.waitFor(email);
      expect(mail.from).to.contain('auth@example.test');
      expect(mail.subject).to.match(/confirm your email/i);
      expect(mail.html).to.be.a('string');
      const link = linkIn(mail, srv.url, '/verify-email');
      const token = await srv.running.db('account_tokens').where({ id: sha256(tokenOf(link)) }).first();
      expect(token.purpose).to.equal('verify_email');
      expect(Number(token.expires_at) - started).to.be.within(24 * 3600 - 5, 24 * 3600 + 5);

      // Unverified: the login is refused with a resend form (REQUIRE_VERIFIED_EMAIL=true).
      const refused = await agent.submit(login, 0, { email, password: GOOD_PASSWORD }, REDIRECT);
      expect(refused.status).to.equal(401);
      expect(refused.body).to.contain('Verify your email address first');

      // A mail scanner opening the link uses nothing.
      const browser = new Agent();
      for (let i = 0; i < 2; i++) {
        const shown = await browser.request(link);
        expect(shown.status).to.equal(200);
        expect(shown.body).to.contain(email);
        expect(parseForms(shown.body, shown.url)[0]!.action).to.equal(`${srv.url}/verify-email`);
      }
      expect(Boolean((await rowOf(email))[0]!.email_verified)).to.equal(false);
      const page = await browser.request(link);
      const confirmed = await post(browser, page, 0);
      expect(confirmed.status).to.equal(200);
      expect(confirmed.body).to.contain('Email address confirmed');
      expect(confirmed.body, 'back to the sign-in it started from').to.contain(`href="/interaction/${uid}"`);
      expect(Boolean((await rowOf(email))[0]!.email_verified)).to.equal(true);
      expect(await auditTypes(row!.id)).to.include('email.verify');

      // Reuse: the POST again, and the link again.
      const again = await post(browser, page, 0);
      expect(again.status).to.equal(400);
      expect(again.body).to.contain('expired or was already used');
      expect((await browser.request(link)).status).to.equal(400);

      // Back to the same sign-in: now it works, and the claim follows.
      const back = await agent.follow(`${srv.url}/interaction/${uid}`, {}, REDIRECT);
      const ok = await agent.submit(back, 0, { email, password: GOOD_PASSWORD }, REDIRECT);
      const callback = new URL(ok.url);
      expect(callback.searchParams.get('code'), ok.body.slice(0, 300)).to.be.a('string');
      const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier });
      const claims = await oidc.fetchUserInfo(config, tokens.access_token, tokens.claims()!.sub);
      expect(claims.email_verified).to.equal(true);
      expect(claims.email).to.equal(email);
    });

    it('refuses an expired verification link', async () => {
      const email = 'expired.verify@example.test';
      const agent = new Agent();
      await register(agent, { email, password: GOOD_PASSWORD, name: '' });
      const link = linkIn(await mailbox.waitFor(email), srv.url, '/verify-email');
      const page = await agent.request(link);
      expect(page.status).to.equal(200);
      await srv.running.db('account_tokens').where({ id: sha256(tokenOf(link)) }).update({ expires_at: epoch() - 1 });
      const posted = await post(agent, page, 0);
      expect(posted.status).to.equal(400);
      expect(posted.body).to.contain('expired');
      // The expired page offers a new link (a CSRF-protected form).
      expect(parseForms(posted.body, posted.url)[0]!.action).to.equal(`${srv.url}/verify-email/resend`);
      expect((await agent.request(link)).status).to.equal(400);
      expect(Boolean((await rowOf(email))[0]!.email_verified)).to.equal(false);
    });

    it('resends the verification link from the login page, answering the same for any address', async () => {
      const email = 'resend@example.test';
      const agent = new Agent();
      await register(agent, { email, password: GOOD_PASSWORD, name: 'Re Send' });
      await mailbox.waitFor(email, 1);
      const { page: login } = await loginPage(agent);
      const refused = await agent.submit(login, 0, { email, password: GOOD_PASSWORD }, REDIRECT);
      expect(refused.status).to.equal(401);
      const forms = parseForms(refused.body, refused.url);
      expect(forms[0]!.action, 'the login form stays first').to.match(/\/login$/);
      const index = forms.findIndex((f) => f.action.endsWith('/verify-email/resend'));
      expect(index).to.be.greaterThan(0);
      expect(forms[index]!.fields.email).to.equal(email);
      const sent = await agent.submit(refused, index);
      expect(sent.status).to.equal(200);
      expect(sent.body).to.contain('Check your mail');
      const link = linkIn(await mailbox.waitFor(email, 2), srv.url, '/verify-email');
      expect(link).to.not.equal(linkIn(mailbox.to(email)[0]!, srv.url, '/verify-email'));

      // An unknown address gets the same page, and no mail.
      const unknown = 'nobody.resend@example.test';
      const other = await agent.submit(refused, index, { email: unknown });
      expect(other.status).to.equal(sent.status);
      expect(normalized(other).replaceAll(unknown, email)).to.equal(normalized(sent));
      expect(await mailbox.settle(unknown)).to.equal(0);

      // The new link verifies; then login works.
      expect((await post(agent, await agent.request(link), 0)).status).to.equal(200);
      const tokens = await signIn(email, GOOD_PASSWORD);
      expect((await oidc.fetchUserInfo(config, tokens.access_token, tokens.claims()!.sub)).email_verified).to.equal(true);
    });

    it('answers a duplicate registration exactly like a fresh one, mails the owner, and creates nothing', async () => {
      const fresh = 'grace@example.test';
      const agent = new Agent();
      const first = await register(agent, { email: fresh, password: GOOD_PASSWORD, name: 'Grace' });
      await mailbox.waitFor(fresh, 1);
      const [before] = await rowOf(fresh);

      const second = await register(agent, { email: fresh, password: 'another fine passphrase 7', name: 'Mallory' });
      expect(second.status).to.equal(first.status);
      expect(second.headers.get('content-type')).to.equal(first.headers.get('content-type'));
      expect(normalized(second)).to.equal(normalized(first));

      const third = await register(agent, { email: 'GRACE@Example.TEST', password: 'another fine passphrase 7', name: 'Mallory' });
      expect(third.status).to.equal(first.status);
      expect(normalized(third).replaceAll('GRACE@Example.TEST', fresh)).to.equal(normalized(first));

      const owner = await mailbox.waitFor(fresh, 2);
      expect(owner.subject).to.match(/tried to register/i);
      expect(owner.text).to.contain('No new account was created');
      linkIn(owner, srv.url, '/forgot-password');
      await mailbox.waitFor(fresh, 3);

      const rows = await rowOf(fresh);
      expect(rows).to.have.length(1);
      expect(rows[0]!.password_hash, 'the password is unchanged').to.equal(before!.password_hash);
      expect(rows[0]!.display_name).to.equal('Grace');
    });

    it('forgot password: the same answer for an unknown address (no mail); a 1 h link a GET does not use; single use; ends sessions and refresh tokens', async () => {
      const email = 'reset.me@example.test';
      const accountId = await verifiedAccount(email, 'original passphrase 1842');
      const tokens = await signIn(email, 'original passphrase 1842');
      expect(tokens.refresh_token).to.be.a('string');

      const agent = new Agent();
      const form = await agent.request(`${srv.url}/forgot-password`);
      expect(form.status).to.equal(200);
      expect(Object.keys(parseForms(form.body, form.url)[0]!.fields)).to.include.members(['_csrf', 'email']);
      const mailsBefore = mailbox.to(email).length;
      const started = epoch();
      const known = await post(agent, form, 0, { email });
      const unknownAddress = 'no.such.user@example.test';
      const unknown = await post(agent, form, 0, { email: unknownAddress });
      expect(known.status).to.equal(200);
      expect(unknown.status).to.equal(known.status);
      expect(normalized(unknown).replaceAll(unknownAddress, email)).to.equal(normalized(known));
      expect(await mailbox.settle(unknownAddress)).to.equal(0);

      const mail = await mailbox.waitFor(email, mailsBefore + 1);
      expect(mail.subject).to.match(/reset your/i);
      const link = linkIn(mail, srv.url, '/reset-password');
      const stored = await srv.running.db('account_tokens').where({ id: sha256(tokenOf(link)) }).first();
      expect(stored.purpose).to.equal('reset_password');
      expect(Number(stored.expires_at) - started).to.be.within(3600 - 5, 3600 + 5);

      // GETs (a mail scanner, then the user) show the form and use nothing.
      expect((await new Agent().request(link)).status).to.equal(200);
      const page = await agent.request(link);
      expect(page.status).to.equal(200);
      const resetForm = parseForms(page.body, page.url)[0]!;
      expect(resetForm.action).to.equal(`${srv.url}/reset-password`);
      expect(Object.keys(resetForm.fields)).to.include.members(['_csrf', 'password', 'token']);

      // A weak password is refused next to the field, and the link still works.
      const weak = await post(agent, page, 0, { password: 'password123456' });
      expect(weak.status).to.equal(400);
      expect(byId(weak.body, 'password-error')).to.contain('harder to guess');

      const changed = await post(agent, page, 0, { password: 'a brand new passphrase 1900' });
      expect(changed.status, changed.body).to.equal(200);
      expect(changed.body).to.contain('Password changed');
      expect(changed.body).to.match(/href="[^"]+">Sign in</);

      const reuse = await post(agent, page, 0, { password: 'yet another passphrase 2001' });
      expect(reuse.status).to.equal(400);
      expect(reuse.body).to.contain('expired or was already used');
      expect((await agent.request(link)).status).to.equal(400);

      // Sessions and refresh tokens ended; the old password is gone, the new one works.
      const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token!).then(
        () => null,
        (e: unknown) => e as oidc.ResponseBodyError,
      );
      expect(refreshed?.error).to.equal('invalid_grant');
      expect((await oidc.tokenIntrospection(config, tokens.access_token)).active).to.equal(false);
      expect(await srv.running.db('provider_state').where({ account_id: accountId }).count({ n: '*' }).first()).to.satisfy((r: { n: number | string }) => Number(r.n) === 0);
      const loginAgent = new Agent();
      const { page: login } = await loginPage(loginAgent);
      expect((await loginAgent.submit(login, 0, { email, password: 'original passphrase 1842' }, REDIRECT)).status).to.equal(401);
      expect((await signIn(email, 'a brand new passphrase 1900')).claims()!.sub).to.equal(accountId);
      const types = await auditTypes(accountId);
      expect(types).to.include.members(['password.reset_request', 'password.reset']);
      expect(JSON.stringify(await srv.running.db('audit_events').where({ subject_id: accountId }))).to.not.contain('passphrase');
    });

    it('voids older reset links when one is used, and refuses an expired one', async () => {
      const email = 'two.links@example.test';
      await verifiedAccount(email);
      const agent = new Agent();
      const form = await agent.request(`${srv.url}/forgot-password`);
      const n = mailbox.to(email).length;
      await post(agent, form, 0, { email });
      const first = linkIn(await mailbox.waitFor(email, n + 1), srv.url, '/reset-password');
      await post(agent, form, 0, { email });
      const second = linkIn(await mailbox.waitFor(email, n + 2), srv.url, '/reset-password');
      expect(first).to.not.equal(second);
      const firstPage = await agent.request(first);
      expect((await post(agent, await agent.request(second), 0, { password: 'second link passphrase 77' })).status).to.equal(200);
      expect((await post(agent, firstPage, 0, { password: 'first link passphrase 88' })).status, 'older link voided').to.equal(400);

      await post(agent, form, 0, { email });
      const third = linkIn(await mailbox.waitFor(email, n + 3), srv.url, '/reset-password');
      const thirdPage = await agent.request(third);
      expect(thirdPage.status).to.equal(200);
      await srv.running.db('account_tokens').where({ id: sha256(tokenOf(third)) }).update({ expires_at: epoch() - 1 });
      const late = await post(agent, thirdPage, 0, { password: 'third link passphrase 99' });
      expect(late.status).to.equal(400);
      expect(late.body).to.contain('Link expired');
      expect((await agent.request(third)).status).to.equal(400);
      expect((await signIn(email, 'second link passphrase 77')).claims()!.sub).to.be.a('string');
    });

    it('sends at most MAILS_PER_ADDRESS_PER_HOUR (5) mails to one address, answering the same', async () => {
      const email = 'limited@example.test';
      await verifiedAccount(email);
      const base = mailbox.to(email).length; // the verification mail counted as 1 of the 5
      const agent = new Agent();
      const form = await agent.request(`${srv.url}/forgot-password`);
      const answers: PageResponse[] = [];
      for (let i = 0; i < 5; i++) answers.push(await post(agent, form, 0, { email: i % 2 ? email.toUpperCase() : email }));
      await mailbox.waitFor(email, base + 4);
      expect(await mailbox.settle(email, 1000)).to.equal(base + 4);
      for (const a of answers) {
        expect(a.status).to.equal(200);
        expect(normalized(a).replaceAll(email.toUpperCase(), email)).to.equal(normalized(answers[0]!));
      }
    });

    it('never redirects elsewhere through return_to', async () => {
      for (const evil of ['//evil.example/x', '/\\evil.example', '/\\/evil.example', 'https://evil.example/', '/\r\nLocation: http://evil.example', 'javascript:alert(1)//evil.example', ' //evil.example']) {
        const page = await new Agent().request(`${srv.url}/forgot-password?return_to=${encodeURIComponent(evil)}`);
        expect(page.status).to.equal(200);
        expect(page.body).to.not.contain('evil.example');
        expect(page.body).to.not.contain('name="return_to"');
      }
      const ok = await new Agent().request(`${srv.url}/forgot-password?return_to=${encodeURIComponent('/interaction/abc')}`);
      expect(parseForms(ok.body, ok.url)[0]!.fields.return_to).to.equal('/interaction/abc');
    });

    it('answers bad links and bad forms with pages, never a 500', async () => {
      const agent = new Agent();
      for (const path of ['/verify-email', '/verify-email?token=', '/verify-email?token=nope', `/verify-email?token=${'x'.repeat(5000)}`, '/reset-password', '/reset-password?token=nope', '/reset-password?token=a&token=b', '/register?invitation=nope', '/verify-email/resend']) {
        const res = await agent.request(`${srv.url}${path}`);
        expect(res.status, path).to.be.oneOf([200, 400]);
        expect(res.headers.get('content-type'), path).to.match(/^text\/html/);
      }
      const page = await agent.request(`${srv.url}/forgot-password`);
      const csrf = parseForms(page.body, page.url)[0]!.fields._csrf!;
      for (const [path, form] of [
        ['/verify-email', { _csrf: csrf }],
        ['/verify-email', { _csrf: csrf, token: 'x'.repeat(3000) }],
        ['/reset-password', { _csrf: csrf, token: 'nope', password: GOOD_PASSWORD }],
        ['/reset-password', { _csrf: csrf }],
        ['/forgot-password', { _csrf: csrf }],
        ['/forgot-password', { _csrf: csrf, email: 'x'.repeat(400) + '@example.test' }],
        ['/verify-email/resend', { _csrf: csrf, email: 'not an address' }],
        ['/register', { _csrf: csrf }],
        ['/register', { _csrf: csrf, invitation: 'nope', email: 'a@example.test', password: GOOD_PASSWORD }],
      ] as const) {
        const res = await agent.request(`${srv.url}${path}`, { form });
        expect(res.status, `${path} ${JSON.stringify(form).slice(0, 80)}`).to.be.oneOf([200, 400]);
      }
      for (const path of ['/register', '/forgot-password', '/reset-password', '/verify-email', '/verify-email/resend']) {
        const res = await agent.request(`${srv.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' } });
        expect(res.status, path).to.be.oneOf([403, 415]);
      }
    });
  });

  describe('REGISTRATION=invite', () => {
    let srv: TestServer;
    before(async () => {
      srv = await startTestServer({ env: { REGISTRATION: 'invite', SMTP_URL: mailbox.url } });
    });
    after(async () => {
      expect(srv.errors()).to.deep.equal([]);
      await srv.close();
    });

    it('refuses registration without an invitation', async () => {
      const agent = new Agent();
      const page = await agent.request(`${srv.url}/register`);
      expect(page.status).to.equal(403);
      expect(page.body).to.contain('invitation');
      const forgot = await agent.request(`${srv.url}/forgot-password`);
      const csrf = parseForms(forgot.body, forgot.url)[0]!.fields._csrf!;
      const posted = await agent.request(`${srv.url}/register`, { form: { _csrf: csrf, email: 'walkin@example.test', password: GOOD_PASSWORD, name: 'W' } });
      expect(posted.status).to.equal(403);
      expect(await srv.running.db('accounts').where({ email: 'walkin@example.test' })).to.have.length(0);
    });

    it('users invite prints and mails a link; it registers the invited address (verified) once', async () => {
      const email = 'invited@example.test';
      const r = await srv.cli('users', 'invite', '--email', email);
      expect(r.code, r.stderr).to.equal(0);
      expect(Object.keys(r.json).sort()).to.deep.equal(['email', 'expires_at', 'invitation_url']);
      expect(r.json.email).to.equal(email);
      expect(r.json.invitation_url.startsWith(`${srv.url}/register?invitation=`)).to.equal(true);
      const expires = Date.parse(r.json.expires_at);
      expect(expires - Date.now()).to.be.within(7 * 86400_000 - 60_000, 7 * 86400_000 + 60_000);
      const mail = await mailbox.waitFor(email);
      expect(linkIn(mail, srv.url, '/register')).to.equal(r.json.invitation_url);

      const agent = new Agent();
      const page = await agent.request(r.json.invitation_url);
      expect(page.status).to.equal(200);
      expect(page.body).to.match(/id="email"[^>]*value="invited@example.test"[^>]*readonly/);
      // The address is the invited one, whatever the form says.
      const done = await post(agent, page, 0, { email: 'someone.else@example.test', password: GOOD_PASSWORD, name: 'Invitee' });
      expect(done.status, done.body).to.equal(200);
      expect(done.body).to.contain('Your account is ready');
      const rows = (await srv.running.db('accounts').select('email', 'email_verified')) as { email: string; email_verified: boolean | number }[];
      expect(rows.map((x) => x.email)).to.deep.equal([email]);
      expect(Boolean(rows[0]!.email_verified)).to.equal(true);

      // Used: refused.
      const reused = await agent.request(r.json.invitation_url);
      expect(reused.status).to.equal(400);
      expect(reused.body).to.contain('expired or was already used');
      const again = await post(agent, page, 0, { password: GOOD_PASSWORD });
      expect(again.status).to.equal(400);

      // Invalid and expired invitations: refused.
      expect((await agent.request(`${srv.url}/register?invitation=not-a-real-token`)).status).to.equal(400);
      const other = await srv.cli('users', 'invite', '--email', 'late@example.test');
      await srv.running.db('account_tokens').where({ id: sha256(tokenOf(other.json.invitation_url)) }).update({ expires_at: epoch() - 1 });
      expect((await agent.request(other.json.invitation_url)).status).to.equal(400);

      // The CLI refuses an address that has an account, and a bad address.
      const dup = await srv.cli('users', 'invite', '--email', 'INVITED@example.test');
      expect(dup.code).to.equal(1);
      expect(dup.stderr).to.contain('already exists');
      const bad = await srv.cli('users', 'invite', '--email', 'nope');
      expect(bad.code).to.equal(1);
      expect(bad.stderr).to.match(/^latch: --email /);
    });

    it('does not link to /register from the login page', async () => {
      const c = await srv.cli('clients', 'create', '--name', 'Invite App', '--redirect-uri', REDIRECT);
      const config = await oidc.discovery(new URL(srv.url), c.json.client_id, c.json.client_secret, undefined, { execute: [oidc.allowInsecureRequests] });
      const url = oidc.buildAuthorizationUrl(config, { redirect_uri: REDIRECT, scope: 'openid', code_challenge: await oidc.calculatePKCECodeChallenge(oidc.randomPKCECodeVerifier()), code_challenge_method: 'S256' });
      const page = await new Agent().follow(url.toString(), {}, REDIRECT);
      expect(page.body).to.contain('href="/forgot-password?return_to=');
      expect(page.body).to.not.contain('href="/register');
    });
  });

  describe('REGISTRATION=closed', () => {
    let srv: TestServer;
    before(async () => {
      srv = await startTestServer({ env: { REGISTRATION: 'closed', SMTP_URL: mailbox.url } });
    });
    after(async () => {
      expect(srv.errors()).to.deep.equal([]);
      await srv.close();
    });

    it('says registration is closed (403), also with an invitation; the CLI will not invite', async () => {
      const agent = new Agent();
      const page = await agent.request(`${srv.url}/register`);
      expect(page.status).to.equal(403);
      expect(page.body).to.contain('Registration is closed');
      expect((await agent.request(`${srv.url}/register?invitation=whatever`)).status).to.equal(403);
      const forgot = await agent.request(`${srv.url}/forgot-password`);
      const csrf = parseForms(forgot.body, forgot.url)[0]!.fields._csrf!;
      const posted = await agent.request(`${srv.url}/register`, { form: { _csrf: csrf, email: 'closed@example.test', password: GOOD_PASSWORD } });
      expect(posted.status).to.equal(403);
      expect(await srv.running.db('accounts').select('id')).to.have.length(0);
      const r = await srv.cli('users', 'invite', '--email', 'closed@example.test');
      expect(r.code).to.not.equal(0);
      expect(r.stderr).to.contain('REGISTRATION is closed');
    });
  });

  describe('registration limit per IP', () => {
    let srv: TestServer;
    before(async () => {
      srv = await startTestServer({ env: { REGISTRATION: 'open', SMTP_URL: mailbox.url, REGISTRATIONS_PER_IP_PER_HOUR: '2' } });
    });
    after(async () => {
      expect(srv.errors()).to.deep.equal([]);
      await srv.close();
    });

    it('answers 429 with Retry-After and a clear message after REGISTRATIONS_PER_IP_PER_HOUR sign-ups', async () => {
      const agent = new Agent();
      const form = await agent.request(`${srv.url}/register`);
      // A form refused for its content does not count.
      expect((await post(agent, form, 0, { email: 'a1@example.test', password: 'short' })).status).to.equal(400);
      expect((await post(agent, form, 0, { email: 'a1@example.test', password: GOOD_PASSWORD })).status).to.equal(200);
      expect((await post(agent, form, 0, { email: 'a2@example.test', password: GOOD_PASSWORD })).status).to.equal(200);
      const third = await post(agent, form, 0, { email: 'a3@example.test', password: GOOD_PASSWORD });
      expect(third.status).to.equal(429);
      const retry = Number(third.headers.get('retry-after'));
      expect(retry).to.be.within(1, 3600);
      expect(third.body).to.contain('Too many accounts were created from your network');
      expect(await srv.running.db('accounts').where({ email: 'a3@example.test' })).to.have.length(0);
    });
  });
});
