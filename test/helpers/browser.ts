import { existsSync, mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
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

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/**
 * The relying party's redirect target: a local page showing the query it received, each value
 * in a cell with id `param-NAME`, so the browser really lands somewhere.
 */
export async function startCallbackServer(): Promise<{ server: Server; url: string; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const rows = [...url.searchParams].map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td id="param-${escapeHtml(k)}">${escapeHtml(v)}</td></tr>`).join('');
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(`<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Callback</title></head><body><h1>Callback ${escapeHtml(url.pathname)}</h1><table>${rows}</table></body></html>`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return { server, url: `http://127.0.0.1:${port}`, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}
