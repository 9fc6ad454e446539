/**
 * Sign-in through an upstream provider in a real headless Chromium (playwright-core): the
 * application's authorization request, Latch's login page, the "Sign in with GitHub" button, the
 * (stand-in) GitHub Authorize page, and back through Latch to the application's callback.
 *
 * Needs Debian's chromium at /usr/bin/chromium. Without it the suite is skipped with a warning,
 * except on CI (CI set) where it fails.
 */

import { expect } from 'chai';
import * as oidc from 'openid-client';
import type { Browser } from 'playwright-core';

import { launchChromium, pageFactory, requireChromium, shot, startCallbackServer } from './helpers/browser.js';
import { startGithubStub, type GithubStub } from './helpers/github-stub.js';
import { startTestServer, type TestServer } from './helpers/server.js';

describe('Sign-in with an upstream provider in a real browser (headless Chromium)', function () {
  this.timeout(60000);

  let srv: TestServer | undefined;
  let gh: GithubStub | undefined;
  let callback: Awaited<ReturnType<typeof startCallbackServer>> | undefined;
  let browser: Browser | undefined;
  let redirectUri: string;
  let config: oidc.Configuration;
  const pageProblems: string[] = [];
  const newPage = pageFactory(() => browser, pageProblems);

  before(async function () {
    requireChromium(this, 'browser-federation.test');
    callback = await startCallbackServer();
    redirectUri = `${callback.url}/callback`;
    srv = await startTestServer({ env: { REGISTRATION: 'open' } });
    gh = await startGithubStub({ redirectUris: [`${srv.url}/federation/callback/github`] });
    const idp = await srv.cli('idps', 'create', '--name', 'github', '--kind', 'github', '--client-id', gh.clientId, '--client-secret', gh.clientSecret, '--display-name', 'GitHub', '--api-url', gh.apiUrl, '--web-url', gh.webUrl);
    expect(idp.code, idp.stderr).to.equal(0);
    const created = await srv.cli('clients', 'create', '--name', 'Octo Shop', '--first-party', '--redirect-uri', redirectUri, '--scope', 'openid email');
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
      await gh?.close();
      await srv?.close();
    }
  });

  it('clicks "Sign in with GitHub" on the login page through to the application callback', async () => {
    const { context, page } = await newPage();
    try {
      const verifier = oidc.randomPKCECodeVerifier();
      const state = oidc.randomState();
      const nonce = oidc.randomNonce();
      const url = oidc.buildAuthorizationUrl(config, { redirect_uri: redirectUri, scope: 'openid email', state, nonce, code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256' });
      await page.goto(url.toString(), { waitUntil: 'load' });
      expect(await page.locator('h1').textContent()).to.contain('Sign in');
      const button = page.locator('a[data-idp="github"]');
      expect((await button.textContent())?.trim()).to.equal('Sign in with GitHub');
      await shot(page, 'federation-login.png');

      // To the upstream's Authorize page, then back through Latch to the application.
      await Promise.all([page.waitForURL((u) => u.toString().startsWith(gh!.webUrl), { waitUntil: 'load' }), button.click()]);
      await page.locator('input[name=login]').fill('octocat');
      await Promise.all([page.waitForURL((u) => u.toString().startsWith(redirectUri), { waitUntil: 'load' }), page.locator('button[type=submit]').first().click()]);

      expect(await page.locator('#param-code').count()).to.equal(1);
      const tokens = await oidc.authorizationCodeGrant(config, new URL(page.url()), { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce });
      const claims = tokens.claims()!;
      expect(claims).to.include({ email: 'octocat@upstream.test', email_verified: true, idp: 'github', acr: 'urn:latch:loa:1' });
      expect(claims.amr).to.deep.equal(['fed']);
    } finally {
      await context.close();
    }
  });
});
