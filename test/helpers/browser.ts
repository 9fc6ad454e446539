import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

/** Debian's Chromium (`apt-get install chromium`); .ci/run installs it. */
export const CHROMIUM = '/usr/bin/chromium';
export const ARTIFACTS = fileURLToPath(new URL('../artifacts/', import.meta.url));

/**
 * Call first in a browser suite's before(): without Chromium the suite fails in CI and is
 * skipped, visibly, elsewhere.
 */
export function requireChromium(ctx: Mocha.Context, suite: string): void {
  if (!existsSync(CHROMIUM)) {
    const help = `${CHROMIUM} not found: install it with "apt-get install chromium" to run the browser tests.`;
    if (process.env.CI) throw new Error(help);
    console.warn(`\n  [${suite}] SKIPPED: ${help}\n`);
    ctx.skip();
  }
  mkdirSync(ARTIFACTS, { recursive: true });
}

/** Headless Chromium with the flags this machine's closed network needs. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'],
  });
}

/**
 * A page factory whose pages report script errors and CSP refusals into `problems` (a 4xx page
 * and a missing favicon are logged by Chromium as failed loads; those are not problems).
 */
export function pageFactory(browser: () => Browser | undefined, problems: string[]) {
  return async (options: Parameters<Browser['newContext']>[0] = {}): Promise<{ context: BrowserContext; page: Page }> => {
    const context = await browser()!.newContext({ viewport: { width: 1024, height: 768 }, ...options });
    context.setDefaultTimeout(15000);
    context.setDefaultNavigationTimeout(15000);
    const page = await context.newPage();
    page.on('pageerror', (err) => problems.push(`pageerror on ${page.url()}: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error' && /Content Security Policy|Refused to/i.test(msg.text())) problems.push(`console on ${page.url()}: ${msg.text()}`);
    });
    return { context, page };
  };
}

/** A full-page screenshot under test/artifacts/. */
export const shot = (page: Page, name: string) => page.screenshot({ path: join(ARTIFACTS, name), fullPage: true });

/** The computed background colour of the first element matching `selector` ('' when none). */
export async function backgroundOf(page: Page, selector: string): Promise<string> {
  // Page functions are strings: the project compiles without the DOM lib.
  return (await page.evaluate(`(() => { const el = document.querySelector(${JSON.stringify(selector)}); return el ? getComputedStyle(el).backgroundColor : ''; })()`)) as string;
}
