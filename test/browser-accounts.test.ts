/**
 * The self-service journeys in a real headless Chromium (playwright-core), with mail delivered
 * over real SMTP to an in-process server: sign up from the login page → verification mail link →
 * verify → sign in; and forgot password → mail link → new password → sign in. Screenshots of
 * every page go to test/artifacts/.
 *
 * Needs Debian's chromium at /usr/bin/chromium (apt-get install chromium). Without it the suite
 * is skipped with a warning, except on CI (CI set) where it fails.
 */

import { expect } from 'chai';
import * as oidc from 'openid-client';
import type { Browser, Page } from 'playwright-core';

import { startMailbox, type Mailbox } from './helpers/mailbox.js';
import { backgroundOf, launchChromium, pageFactory, requireChromium, shot, startCallbackServer } from './helpers/browser.js';
import { startTestServer, type TestServer } from './helpers/server.js';

const USER = { email: 'katherine.johnson@example.test', name: 'Katherine Johnson', password: 'orbital mechanics by hand 1962', newPassword: 'friendship seven re-entry path' };

/** A stand-in relying party: answers its redirect_uri with a small page. */
describe('Account self-service in a real browser (headless Chromium, real SMTP)', function () {
  this.timeout(90_000);

  let srv: TestServer | undefined;
  let mailbox: Mailbox | undefined;
  let callback: Awaited<ReturnType<typeof startCallbackServer>> | undefined;
  let browser: Browser | undefined;
  let redirectUri: string;
  let clientId: string;
  const pageProblems: string[] = [];

  const newPage = pageFactory(() => browser, pageProblems);


  /** Every form POSTs with a CSRF field; no page ships a script; the stylesheet applies. */
  async function expectSafePage(page: Page) {
    const forms = page.locator('form');
    for (let i = 0; i < (await forms.count()); i++) {
      expect(await forms.nth(i).locator('input[type=hidden][name=_csrf]').count(), `form #${i} has _csrf on ${page.url()}`).to.equal(1);
      expect(await forms.nth(i).getAttribute('method'), `form #${i} method`).to.match(/^post$/i);
    }
    expect(await page.locator('script').count(), 'no <script> in pages').to.equal(0);
    const bg = await backgroundOf(page, 'button.primary, a.button');
    expect(bg, 'primary action styled by latch.css').to.match(/^rgb/).and.not.match(/^rgba?\(0, 0, 0(, 0)?\)$|^transparent$/);
  }

  /** Opens a new authorization request: the login page of a new interaction. */
  async function openLogin(page: Page): Promise<string> {
    const url = new URL(`${srv!.url}/auth`);
    url.search = new URLSearchParams({
      response_type: 'code',
      client_id: clientId,
      redirect_uri: redirectUri,
      scope: 'openid email profile',
      state: oidc.randomState(),
      code_challenge: await oidc.calculatePKCECodeChallenge(oidc.randomPKCECodeVerifier()),
      code_challenge_method: 'S256',
    }).toString();
    await page.goto(url.toString(), { waitUntil: 'load' });
    const path = new URL(page.url()).pathname;
    expect(path).to.match(/^\/interaction\/[^/]+$/);
    return path;
  }

  async function click(page: Page, target: ReturnType<Page['locator']>, until: (u: URL) => boolean) {
    await Promise.all([page.waitForURL(until, { waitUntil: 'load' }), target.click()]);
  }

  async function signIn(page: Page, loginPath: string, password: string) {
    expect(new URL(page.url()).pathname.startsWith(loginPath), page.url()).to.equal(true);
    const form = page.locator('form').first();
    await form.locator('input[name=email]').fill(USER.email);
    await form.locator('input[name=password]').fill(password);
    await click(page, form.locator('button[type=submit]'), (u) => u.toString().startsWith(redirectUri));
    const cb = new URL(page.url());
    expect(cb.searchParams.get('error'), cb.toString()).to.equal(null);
    expect(cb.searchParams.get('code')).to.be.a('string').and.not.equal('');
  }

  before(async function () {
    requireChromium(this, 'browser-accounts.test');
    mailbox = await startMailbox();
    callback = await startCallbackServer();
    redirectUri = `${callback.url}/callback`;
    srv = await startTestServer({ env: { REGISTRATION: 'open', REQUIRE_VERIFIED_EMAIL: 'true', SMTP_URL: mailbox.url } });
    const created = await srv.cli('clients', 'create', '--name', 'Journey App', '--redirect-uri', redirectUri, '--first-party');
    expect(created.code, created.stderr).to.equal(0);
    clientId = created.json.client_id;
    browser = await launchChromium();
  });

  after(async () => {
    const errors = srv?.errors() ?? [];
    try {
      expect(pageProblems, pageProblems.join('\n')).to.deep.equal([]);
      expect(errors, JSON.stringify(errors)).to.deep.equal([]);
    } finally {
      await browser?.close().catch(() => undefined);
      await callback?.close();
      await mailbox?.close();
      await srv?.close();
    }
  });

  it('signs up from the login page, follows the verification mail link, verifies and signs in', async () => {
    const { context, page } = await newPage();
    try {
      const loginPath = await openLogin(page);
      await click(page, page.getByRole('link', { name: 'Create an account' }), (u) => u.pathname === '/register');
      expect(await page.locator('h1').textContent()).to.contain('Create your account');
      await expectSafePage(page);
      await shot(page, 'register.png');

      // A guessable password: the message is next to the field, the rest is kept.
      const form = page.locator('form').first();
      await form.locator('input[name=email]').fill(USER.email);
      await form.locator('input[name=name]').fill(USER.name);
      await form.locator('input[name=password]').fill('password123456');
      await click(page, form.locator('button[type=submit]'), (u) => u.pathname === '/register');
      expect(await page.locator('#password-error').textContent()).to.contain('harder to guess');
      expect(await page.locator('input[name=email]').inputValue()).to.equal(USER.email);
      expect(await page.evaluate('document.activeElement && document.activeElement.name'), 'focus on the field to fix').to.equal('password');
      await expectSafePage(page);
      await shot(page, 'register-error.png');

      await page.locator('input[name=password]').fill(USER.password);
      await click(page, page.locator('form').first().locator('button[type=submit]'), (u) => u.pathname === '/register');
      expect(await page.locator('h1').textContent()).to.contain('Check your mail');
      await shot(page, 'register-check-mail.png');

      // Before verification the sign-in is refused (REQUIRE_VERIFIED_EMAIL=true).
      await click(page, page.getByRole('link', { name: 'Back to sign in' }), (u) => u.pathname === loginPath);
      const login = page.locator('form').first();
      await login.locator('input[name=email]').fill(USER.email);
      await login.locator('input[name=password]').fill(USER.password);
      await click(page, login.locator('button[type=submit]'), (u) => u.pathname === `${loginPath}/login`);
      expect(await page.locator('[role=alert]').textContent()).to.contain('Verify your email address first');
      await expectSafePage(page);
      await shot(page, 'login-unverified.png');

      // The link from the mail, opened in the browser.
      const mail = await mailbox!.waitFor(USER.email);
      const link = mail.links.find((l) => l.startsWith(`${srv!.url}/verify-email?token=`));
      expect(link, mail.text).to.be.a('string');
      await page.goto(link!, { waitUntil: 'load' });
      expect(await page.locator('h1').textContent()).to.contain('Confirm your email address');
      expect(await page.locator('main').innerText()).to.contain(USER.email);
      await expectSafePage(page);
      await shot(page, 'verify-email.png');
      await click(page, page.locator('form').first().locator('button[type=submit]'), (u) => u.pathname === '/verify-email');
      expect(await page.locator('h1').textContent()).to.contain('Email address confirmed');
      await expectSafePage(page);
      await shot(page, 'email-verified.png');

      // Back to the very sign-in the journey started from.
      await click(page, page.getByRole('link', { name: 'Continue to sign in' }), (u) => u.pathname === loginPath);
      await signIn(page, loginPath, USER.password);
    } finally {
      await context.close();
    }
  });

  it('resets a forgotten password through the mailed link and signs in with the new one', async () => {
    const { context, page } = await newPage();
    try {
      const loginPath = await openLogin(page);
      await click(page, page.getByRole('link', { name: 'Forgot your password?' }), (u) => u.pathname === '/forgot-password');
      expect(await page.locator('h1').textContent()).to.contain('Reset your password');
      await expectSafePage(page);
      await shot(page, 'forgot-password.png');

      const before = mailbox!.to(USER.email).length;
      await page.locator('input[name=email]').fill(USER.email);
      await click(page, page.locator('form').first().locator('button[type=submit]'), (u) => u.pathname === '/forgot-password');
      expect(await page.locator('h1').textContent()).to.contain('Check your mail');
      await shot(page, 'forgot-password-sent.png');

      const mail = await mailbox!.waitFor(USER.email, before + 1);
      const link = mail.links.find((l) => l.startsWith(`${srv!.url}/reset-password?token=`));
      expect(link, mail.text).to.be.a('string');
      await page.goto(link!, { waitUntil: 'load' });
      expect(await page.locator('h1').textContent()).to.contain('Choose a new password');
      await expectSafePage(page);
      await shot(page, 'reset-password.png');

      await page.locator('input[name=password]').fill(USER.newPassword);
      await click(page, page.locator('form').first().locator('button[type=submit]'), (u) => u.pathname === '/reset-password');
      expect(await page.locator('h1').textContent()).to.contain('Password changed');
      await expectSafePage(page);
      await shot(page, 'password-changed.png');

      await click(page, page.getByRole('link', { name: 'Sign in' }), (u) => u.pathname === loginPath);
      // The old password no longer works; the new one does.
      const login = page.locator('form').first();
      await login.locator('input[name=email]').fill(USER.email);
      await login.locator('input[name=password]').fill(USER.password);
      await click(page, login.locator('button[type=submit]'), (u) => u.pathname === `${loginPath}/login`);
      expect((await page.locator('[role=alert]').textContent())?.trim()).to.equal('Invalid email or password.');
      await signIn(page, loginPath, USER.newPassword);
    } finally {
      await context.close();
    }
  });
});
