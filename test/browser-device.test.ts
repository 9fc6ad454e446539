/**
 * The device verification page (RFC 8628 §3.3) in a real headless Chromium: the code typed as a
 * user would (lower case, no dash), the confirm page, the sign-in, the success page; the device
 * polls with openid-client meanwhile. Screenshots go to test/artifacts/.
 */

import { expect } from 'chai';
import * as oidc from 'openid-client';
import type { Browser, Page } from 'playwright-core';

import { launchChromium, pageFactory, requireChromium, shot } from './helpers/browser.js';
import { startTestServer, type TestServer } from './helpers/server.js';

const USER = { email: 'katherine@example.test', password: 'orbital mechanics by hand' };

describe('Device verification page in a real browser (headless Chromium)', function () {
  this.timeout(60_000);
  let srv: TestServer | undefined;
  let browser: Browser | undefined;
  let tv: { client_id: string };
  const problems: string[] = [];
  const newPage = pageFactory(() => browser, problems);

  /** Every form posts with both CSRF fields; no page ships a script (CSP). */
  async function expectSafeForms(page: Page) {
    const forms = page.locator('form');
    const n = await forms.count();
    expect(n).to.be.greaterThan(0);
    for (let i = 0; i < n; i++) {
      expect(await forms.nth(i).locator('input[type=hidden][name=_csrf]').count(), `form #${i} has _csrf`).to.equal(1);
      expect(await forms.nth(i).getAttribute('method')).to.match(/^post$/i);
    }
    expect(await page.locator('script').count()).to.equal(0);
  }

  before(async function () {
    requireChromium(this, 'browser-device.test');
    srv = await startTestServer();
    expect((await srv.cli('users', 'create', '--email', USER.email, '--password', USER.password, '--email-verified')).code).to.equal(0);
    const r = await srv.cli('clients', 'create', '--name', 'Kitchen Display', '--grant', 'device_code', '--grant', 'refresh_token');
    expect(r.code, r.stderr).to.equal(0);
    tv = r.json;
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    if (srv) expect(srv.errors()).to.deep.equal([]);
    await srv?.close();
  });

  it('enter the code, confirm, sign in: the device gets its tokens', async () => {
    const config = await oidc.discovery(new URL(srv!.url), tv.client_id, undefined, oidc.None(), { execute: [oidc.allowInsecureRequests] });
    const da = await oidc.initiateDeviceAuthorization(config, { scope: 'openid profile offline_access' });
    const polling = oidc.pollDeviceAuthorizationGrant(config, da);

    const { context, page } = await newPage();
    try {
      await page.goto(da.verification_uri);
      expect(await page.title()).to.match(/Connect a device/);
      await expectSafeForms(page);
      await shot(page, 'device-1-enter-code.png');
      await page.fill('input[name=user_code]', da.user_code.replace('-', '').toLowerCase());
      await Promise.all([page.waitForLoadState('load'), page.click('button[type=submit]')]);

      expect(await page.textContent('#page-title')).to.contain('Connect Kitchen Display');
      expect(await page.textContent('#device-user-code')).to.equal(da.user_code);
      expect(await page.locator('ul.scopes code').allTextContents()).to.deep.equal(['openid', 'profile', 'offline_access']);
      await expectSafeForms(page);
      await shot(page, 'device-2-confirm.png');
      await Promise.all([page.waitForURL(/\/interaction\//), page.click('button:has-text("Approve")')]);

      await page.fill('#email', USER.email);
      await page.fill('#password', USER.password);
      await Promise.all([page.waitForLoadState('load'), page.click('button[type=submit].primary')]);
      if (await page.locator('form[action$="/confirm"]').count()) {
        await shot(page, 'device-3-consent.png');
        await Promise.all([page.waitForLoadState('load'), page.click('form[action$="/confirm"] button')]);
      }
      await page.waitForSelector('#page-title');
      expect(await page.textContent('#page-title')).to.equal('Device connected');
      await shot(page, 'device-4-connected.png');
    } finally {
      await context.close();
    }
    const tokens = await polling;
    expect(tokens.access_token).to.be.a('string');
    expect(tokens.refresh_token).to.be.a('string');
    expect(problems).to.deep.equal([]);
  });
});
