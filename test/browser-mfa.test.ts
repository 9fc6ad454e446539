/**
 * Two-step verification in a real headless Chromium (playwright-core): enrolment on the account
 * page by reading the secret from the page (as a person types it into an authenticator app),
 * then a sign-in to an application with a TOTP code, then one with a recovery code. Screenshots
 * go to test/artifacts/.
 *
 * Needs Debian's chromium at /usr/bin/chromium (apt-get install chromium). Without it the suite
 * is skipped with a warning, except on CI (CI set) where it fails.
 */

import { expect } from 'chai';
import * as oidc from 'openid-client';
import { Secret, TOTP } from 'otpauth';
import type { Browser, Page } from 'playwright-core';

import { launchChromium, pageFactory, requireChromium, shot, startCallbackServer } from './helpers/browser.js';
import { startTestServer, type TestServer } from './helpers/server.js';

const USER = { email: 'katherine.johnson@example.test', password: 'orbital mechanics by hand', name: 'Katherine Johnson' };
const SCOPE = 'openid profile email';

const totpCode = (secret: string, timestamp = Date.now()) => new TOTP({ secret: Secret.fromBase32(secret), algorithm: 'SHA1', digits: 6, period: 30 }).generate({ timestamp });

/** A stand-in relying party: answers its redirect_uri with a small page. */
describe('Two-step verification in a real browser (headless Chromium)', function () {
  this.timeout(60000);

  let srv: TestServer | undefined;
  let callback: Awaited<ReturnType<typeof startCallbackServer>> | undefined;
  let browser: Browser | undefined;
  let redirectUri: string;
  let config: oidc.Configuration;
  let secret: string;
  let recoveryCodes: string[];
  const pageProblems: string[] = [];

  const openPage = pageFactory(() => browser, pageProblems);
  const newPage = (options: Parameters<Browser['newContext']>[0] = {}) => openPage({ viewport: { width: 1024, height: 900 }, ...options });


  /** Every form of the page is POSTed with the CSRF field; no page ships a script. */
  async function expectSafeForms(page: Page) {
    const forms = page.locator('form');
    const n = await forms.count();
    expect(n, 'forms on the page').to.be.greaterThan(0);
    for (let i = 0; i < n; i++) {
      expect(await forms.nth(i).locator('input[type=hidden][name=_csrf]').count(), `form #${i} has _csrf`).to.equal(1);
      expect(await forms.nth(i).getAttribute('method'), `form #${i} method`).to.match(/^post$/i);
    }
    expect(await page.locator('script').count(), 'no <script> in pages').to.equal(0);
  }

  /** Submits the form holding `selector` and waits for the next page to load. */
  async function submitVia(page: Page, selector: string, until: (u: URL) => boolean) {
    await Promise.all([page.waitForURL(until, { waitUntil: 'load' }), page.locator(selector).locator('xpath=ancestor::form').locator('button[type=submit]').first().click()]);
  }

  async function signIn(page: Page, until: (u: URL) => boolean) {
    const form = page.locator('form').first();
    await form.locator('input[name=email]').fill(USER.email);
    await form.locator('input[name=password]').fill(USER.password);
    await Promise.all([page.waitForURL(until, { waitUntil: 'load' }), form.locator('button[type=submit]').click()]);
  }
  const atCodeStep = (u: URL) => /^\/interaction\/[^/]+\/mfa$/.test(u.pathname);

  /** An application's sign-in: the password, then the code page, then consent, then the callback; returns the ID token claims. */
  async function appSignIn(page: Page, code: string, screenshot: string) {
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const nonce = oidc.randomNonce();
    const url = oidc.buildAuthorizationUrl(config, { redirect_uri: redirectUri, scope: SCOPE, state, nonce, code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256' });
    await page.goto(url.toString(), { waitUntil: 'load' });
    expect(await page.locator('h1').textContent()).to.contain('Sign in');
    await signIn(page, atCodeStep);

    // The second step: one field, `code`.
    expect(new URL(page.url()).pathname).to.match(/^\/interaction\/[^/]+\/mfa$/);
    expect(await page.locator('h1').textContent()).to.contain('Two-step verification');
    expect(await page.locator('form').first().locator('input[name=code]').count()).to.equal(1);
    expect(await page.evaluate('document.activeElement && document.activeElement.name'), 'the code field has the focus').to.equal('code');
    await expectSafeForms(page);
    await shot(page, screenshot);
    await page.locator('input[name=code]').fill(code);
    await submitVia(page, 'input[name=code]', (u) => /^\/interaction\/[^/]+$/.test(u.pathname));

    // Consent (a third-party application), then the callback.
    expect(await page.locator('h1').textContent()).to.contain('Authorize');
    await Promise.all([page.waitForURL((u) => u.toString().startsWith(redirectUri), { waitUntil: 'load' }), page.locator('form').first().locator('button[type=submit]').click()]);
    const tokens = await oidc.authorizationCodeGrant(config, new URL(page.url()), { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce });
    return tokens.claims()!;
  }

  before(async function () {
    requireChromium(this, 'browser-mfa.test');
    callback = await startCallbackServer();
    redirectUri = `${callback.url}/callback`;
    srv = await startTestServer();
    const user = await srv.cli('users', 'create', '--email', USER.email, '--password', USER.password, '--name', USER.name);
    expect(user.code, user.stderr).to.equal(0);
    const created = await srv.cli('clients', 'create', '--name', 'Mission Control', '--redirect-uri', redirectUri, '--scope', SCOPE);
    expect(created.code, created.stderr).to.equal(0);
    config = await oidc.discovery(new URL(srv.url), created.json.client_id, created.json.client_secret, oidc.ClientSecretBasic(created.json.client_secret), { execute: [oidc.allowInsecureRequests] });
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
      await srv?.close();
    }
  });

  it('enrols from the account page by reading the secret from the page', async () => {
    const { context, page } = await newPage();
    try {
      await page.goto(`${srv!.url}/account`, { waitUntil: 'load' });
      // The account page signs in through Latch first.
      expect(new URL(page.url()).pathname).to.match(/^\/interaction\/[^/]+$/);
      expect(await page.locator('.lead').textContent()).to.contain('Your Latch account');
      await signIn(page, (u) => u.pathname === '/account');
      expect(page.url()).to.equal(`${srv!.url}/account`);
      expect(await page.locator('#account-email').textContent()).to.equal(USER.email);
      expect((await page.locator('#mfa-status').textContent())?.trim()).to.equal('Off');
      await expectSafeForms(page);
      await shot(page, 'account.png');

      await Promise.all([page.waitForURL(`${srv!.url}/account/mfa`, { waitUntil: 'load' }), page.locator('#mfa-link').click()]);
      // The QR code is a server-rendered PNG that the CSP lets load (img-src data:).
      const qr = page.locator('img.qr');
      expect(await qr.getAttribute('src')).to.match(/^data:image\/png;base64,/);
      // (A string given to locator.evaluate is an expression, not a function called with the element.)
      expect(await page.evaluate('document.querySelector("img.qr").naturalWidth'), 'the QR image decoded').to.be.greaterThan(100);
      secret = ((await page.locator('#totp-secret').textContent()) ?? '').trim();
      expect(secret).to.match(/^[A-Z2-7]{32}$/);
      await expectSafeForms(page);
      await shot(page, 'mfa-enrol.png');

      await page.locator('input[name=code]').fill(totpCode(secret));
      await submitVia(page, 'input[name=code]', (u) => u.pathname === '/account/mfa/enable');
      recoveryCodes = ((await page.locator('#recovery-codes').textContent()) ?? '').split('\n').map((s) => s.trim()).filter(Boolean);
      expect(recoveryCodes).to.have.length(10);
      await shot(page, 'mfa-recovery-codes.png');
      await Promise.all([page.waitForURL(`${srv!.url}/account/mfa`, { waitUntil: 'load' }), page.locator('a.button').click()]);
      expect((await page.locator('#mfa-status').textContent())?.trim()).to.equal('On');
      expect((await page.locator('#recovery-left').textContent())?.trim()).to.equal('10');
    } finally {
      await context.close();
    }
  });

  it('signs in to an application with a TOTP code: amr ["pwd","otp","mfa"], acr urn:latch:loa:2', async () => {
    const { context, page } = await newPage();
    try {
      // The next time step's code: the enrolment used this one (each is accepted once).
      const claims = await appSignIn(page, totpCode(secret, Date.now() + 30_000), 'mfa-code.png');
      expect(claims.amr).to.deep.equal(['pwd', 'otp', 'mfa']);
      expect(claims.acr).to.equal('urn:latch:loa:2');
    } finally {
      await context.close();
    }
  });

  it('signs in with a recovery code, which then stops working', async () => {
    const { context, page } = await newPage();
    try {
      const claims = await appSignIn(page, recoveryCodes[0]!, 'mfa-recovery-code.png');
      expect(claims.amr).to.deep.equal(['pwd', 'otp', 'mfa']);
    } finally {
      await context.close();
    }
    const again = await newPage();
    try {
      const url = oidc.buildAuthorizationUrl(config, { redirect_uri: redirectUri, scope: SCOPE, code_challenge: await oidc.calculatePKCECodeChallenge(oidc.randomPKCECodeVerifier()), code_challenge_method: 'S256' });
      await again.page.goto(url.toString(), { waitUntil: 'load' });
      await signIn(again.page, atCodeStep);
      await again.page.locator('input[name=code]').fill(recoveryCodes[0]!);
      await again.page.locator('form').first().locator('button[type=submit]').click();
      // The same page again (same address), now with the error.
      const alert = again.page.locator('[role=alert]');
      await alert.waitFor({ state: 'visible' });
      expect((await alert.textContent())?.trim()).to.contain('That code is not valid');
      expect(await again.page.locator('input[name=code]').getAttribute('aria-invalid')).to.equal('true');
      await shot(again.page, 'mfa-code-error.png');
    } finally {
      await again.context.close();
    }
  });
});
