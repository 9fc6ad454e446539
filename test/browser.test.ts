/**
 * Signs in through the login and consent pages in a real headless Chromium (playwright-core),
 * lands on a real callback server, and exchanges the code for tokens. Screenshots of every page
 * go to test/artifacts/ for a human to look at.
 *
 * Needs Debian's chromium at /usr/bin/chromium (apt-get install chromium). Without it the suite
 * is skipped with a warning, except on CI (CI set) where it fails.
 */

import { expect } from 'chai';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import * as oidc from 'openid-client';
import type { Browser, Page } from 'playwright-core';

import { launchChromium, pageFactory, requireChromium, shot, startCallbackServer } from './helpers/browser.js';
import { startTestServer, type TestServer } from './helpers/server.js';

const USER = { email: 'grace.hopper@example.test', password: 'a cobol compiler in 1959', name: 'Grace Hopper' };
const SCOPE = 'openid profile email';


/** A stand-in relying party: answers its redirect_uri with a page echoing the query. */
describe('Sign-in in a real browser (headless Chromium)', function () {
  this.timeout(60000);

  let srv: TestServer | undefined;
  let callback: Awaited<ReturnType<typeof startCallbackServer>> | undefined;
  let browser: Browser | undefined;
  let redirectUri: string;
  let client: { client_id: string; client_secret: string };
  let userId: string;
  let discovery: { issuer: string; authorization_endpoint: string; token_endpoint: string; jwks_uri: string };
  /** Problems the pages themselves reported: script errors, CSP violations. */
  const pageProblems: string[] = [];

  const newPage = pageFactory(() => browser, pageProblems);

  async function authorizationRequest(extra: Record<string, string> = {}) {
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const nonce = oidc.randomNonce();
    const url = new URL(discovery.authorization_endpoint);
    url.search = new URLSearchParams({
      response_type: 'code',
      client_id: client.client_id,
      redirect_uri: redirectUri,
      scope: SCOPE,
      state,
      nonce,
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      ...extra,
    }).toString();
    return { url: url.toString(), verifier, state, nonce };
  }


  /** Every form of the page carries the CSRF field and no page ships a script. */
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

  /** The stylesheet was loaded (not blocked by the CSP): the primary button is styled. */
  async function expectStyled(page: Page) {
    // Page functions are strings: the project compiles without the DOM lib.
    const bg = (await page.evaluate("getComputedStyle(document.querySelector('button.primary')).backgroundColor")) as string;
    expect(bg, 'primary button background from latch.css').to.be.a('string').and.match(/^rgb/);
    expect(bg).to.not.match(/^rgba?\(0, 0, 0(, 0)?\)$|^transparent$/);
  }

  before(async function () {
    requireChromium(this, 'browser.test');

    callback = await startCallbackServer();
    redirectUri = `${callback.url}/callback`;

    srv = await startTestServer();
    const user = await srv.cli('users', 'create', '--email', USER.email, '--password', USER.password, '--name', USER.name);
    expect(user.code, user.stderr).to.equal(0);
    userId = user.json.id;
    // Third-party (not --first-party), so the consent page is shown.
    const created = await srv.cli('clients', 'create', '--name', 'Browser Test App', '--redirect-uri', redirectUri, '--scope', SCOPE);
    expect(created.code, created.stderr).to.equal(0);
    client = created.json;
    expect(client.client_secret).to.be.a('string');

    const res = await fetch(`${srv.url}/.well-known/openid-configuration`);
    expect(res.status).to.equal(200);
    discovery = (await res.json()) as typeof discovery;

    browser = await launchChromium();
  });

  after(async () => {
    // Close everything even when an assertion below fails.
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

  it('signs in through the login and consent pages, lands on the callback and gets an ID token', async () => {
    const { context, page } = await newPage();
    try {
      const req = await authorizationRequest();
      const first = await page.goto(req.url, { waitUntil: 'load' });
      expect(first?.status()).to.equal(200);
      const loginUrl = new URL(page.url());
      expect(loginUrl.origin).to.equal(srv!.url);
      expect(loginUrl.pathname).to.match(/^\/interaction\/[^/]+$/);

      // Login page: the first form is the POSTed credentials form.
      expect(await page.locator('h1').textContent()).to.contain('Sign in');
      expect(await page.locator('.lead').textContent()).to.contain('Browser Test App');
      const loginForm = page.locator('form').first();
      expect(await loginForm.getAttribute('method')).to.match(/^post$/i);
      expect(await loginForm.locator('input[name=email]').count()).to.equal(1);
      expect(await loginForm.locator('input[name=password]').count()).to.equal(1);
      await expectSafeForms(page);
      await expectStyled(page);
      await shot(page, 'login.png');

      // A wrong password: the same page again with the error, nothing leaks about the account.
      await loginForm.locator('input[name=email]').fill(USER.email);
      await loginForm.locator('input[name=password]').fill('not the password');
      await Promise.all([page.waitForURL((u) => u.pathname === `${loginUrl.pathname}/login`, { waitUntil: 'load' }), loginForm.locator('button[type=submit]').click()]);
      const alert = page.locator('[role=alert]');
      await alert.waitFor({ state: 'visible' });
      expect((await alert.textContent())?.trim()).to.equal('Invalid email or password.');
      expect(await page.locator('input[name=email]').inputValue(), 'email kept').to.equal(USER.email);
      expect(await page.locator('input[name=password]').inputValue(), 'password not echoed').to.equal('');
      expect(await page.evaluate('document.activeElement && document.activeElement.name'), 'the password field has the focus on a retry').to.equal('password');
      await expectSafeForms(page);
      await shot(page, 'login-error.png');

      // The right password.
      const retry = page.locator('form').first();
      await retry.locator('input[name=email]').fill(USER.email);
      await retry.locator('input[name=password]').fill(USER.password);
      await Promise.all([page.waitForURL((u) => u.origin === srv!.url && /^\/interaction\/[^/]+$/.test(u.pathname), { waitUntil: 'load' }), retry.locator('button[type=submit]').click()]);

      // Consent page (a new interaction): names the client and every requested scope.
      expect(new URL(page.url()).pathname, 'a new interaction for consent').to.not.equal(loginUrl.pathname);
      expect(await page.locator('h1').textContent()).to.contain('Authorize');
      const scopes = (await page.locator('.scopes li code').allTextContents()).map((s) => s.trim());
      expect(scopes).to.have.members(SCOPE.split(' '));
      const consentText = await page.locator('main').innerText();
      expect(consentText).to.contain('Browser Test App');
      expect(consentText).to.contain('See your email address');
      await expectSafeForms(page);
      await expectStyled(page);
      await shot(page, 'consent.png');

      // Approve: the first form's submit button. The browser is sent to the callback server.
      await Promise.all([page.waitForURL((u) => u.toString().startsWith(redirectUri), { waitUntil: 'load' }), page.locator('form').first().locator('button[type=submit]').click()]);
      const cb = new URL(page.url());
      expect(cb.searchParams.get('error'), cb.toString()).to.equal(null);
      const code = cb.searchParams.get('code');
      expect(code).to.be.a('string').and.not.equal('');
      expect(cb.searchParams.get('state')).to.equal(req.state);
      expect(cb.searchParams.get('iss')).to.equal(srv!.url);
      // The callback page really rendered in the browser.
      expect(await page.locator('#param-code').textContent()).to.equal(code);
      await shot(page, 'callback.png');

      // Token exchange: client_secret_basic (RFC 6749 §2.3.1 form-encoding) + the PKCE verifier.
      const basic = Buffer.from(`${encodeURIComponent(client.client_id)}:${encodeURIComponent(client.client_secret)}`).toString('base64');
      const tokenRes = await fetch(discovery.token_endpoint, {
        method: 'POST',
        headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: new URLSearchParams({ grant_type: 'authorization_code', code: code!, redirect_uri: redirectUri, code_verifier: req.verifier }),
      });
      const tokens = (await tokenRes.json()) as Record<string, unknown>;
      expect(tokenRes.status, JSON.stringify(tokens)).to.equal(200);
      expect(tokens.token_type).to.match(/^bearer$/i);
      expect(tokens.access_token).to.be.a('string');
      expect(tokens.id_token).to.be.a('string');
      const { payload } = await jwtVerify(tokens.id_token as string, createRemoteJWKSet(new URL(discovery.jwks_uri)), { issuer: srv!.url, audience: client.client_id });
      expect(payload.sub).to.equal(userId);
      expect(payload.nonce).to.equal(req.nonce);

      // The code is single-use.
      const replay = await fetch(discovery.token_endpoint, {
        method: 'POST',
        headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'authorization_code', code: code!, redirect_uri: redirectUri, code_verifier: req.verifier }),
      });
      expect(replay.status).to.equal(400);
      expect(((await replay.json()) as { error: string }).error).to.equal('invalid_grant');
    } finally {
      await context.close();
    }
  });

  it('shows an HTML error page (no redirect) for an unknown client_id', async () => {
    const { context, page } = await newPage();
    try {
      const url = new URL(discovery.authorization_endpoint);
      url.search = new URLSearchParams({ client_id: 'nope', response_type: 'code', scope: 'openid', redirect_uri: redirectUri, state: 'abc' }).toString();
      const res = await page.goto(url.toString(), { waitUntil: 'load' });
      expect(res, 'a response').to.not.equal(null);
      expect(res!.status()).to.equal(400);
      expect(res!.request().redirectedFrom(), 'not reached through a redirect').to.equal(null);
      expect(res!.headers()['content-type']).to.match(/^text\/html/);
      // Never sent to the (unverified) redirect_uri.
      expect(page.url()).to.equal(url.toString());
      const text = await page.locator('main').innerText();
      expect(text).to.contain('invalid_client');
      expect(await page.locator('h1').textContent()).to.match(/went wrong/i);
      expect(await page.locator('script').count()).to.equal(0);
      await shot(page, 'error.png');
    } finally {
      await context.close();
    }
  });

  it('renders the login page for a phone (375x740) without horizontal scrolling', async () => {
    const { context, page } = await newPage({ viewport: { width: 375, height: 740 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    try {
      const req = await authorizationRequest({ login_hint: USER.email });
      await page.goto(req.url, { waitUntil: 'load' });
      expect(new URL(page.url()).pathname).to.match(/^\/interaction\/[^/]+$/);
      expect(await page.locator('input[name=email]').inputValue(), 'login_hint prefills the email').to.equal(USER.email);
      expect(await page.evaluate('document.activeElement && document.activeElement.name'), 'focus on the first empty field').to.equal('password');
      await expectStyled(page);
      const widths = (await page.evaluate('({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth })')) as { scroll: number; client: number };
      expect(widths.scroll, 'no horizontal overflow').to.be.at.most(widths.client);
      // Inputs and buttons are comfortably tappable.
      for (const sel of ['input[name=email]', 'input[name=password]', 'button.primary']) {
        const box = await page.locator(sel).first().boundingBox();
        expect(box, sel).to.not.equal(null);
        expect(box!.height, `${sel} height`).to.be.at.least(40);
        expect(box!.x, `${sel} inside the viewport`).to.be.at.least(0);
        expect(box!.x + box!.width, `${sel} inside the viewport`).to.be.at.most(375);
      }
      await shot(page, 'login-mobile.png');
    } finally {
      await context.close();
    }
  });
});
