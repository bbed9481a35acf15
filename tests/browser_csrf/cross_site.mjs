// A page on another origin tries to start a Varia job, in headless Chromium (Debian's /usr/bin/chromium)
// driven by playwright-core. Run by tests/test_browser_csrf.py, which serves the page and checks afterwards
// that no job started. Environment:
//   EVIL_URL        the attacking page, e.g. http://localhost:54322/attack.html
//   VARIA_CHROMIUM  the browser (default /usr/bin/chromium)
// The page itself sends the requests (two forms, three fetches) and sets data-done when all have ended.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { chromium } from 'playwright-core';

const EVIL_URL = process.env.EVIL_URL;
const CHROMIUM = process.env.VARIA_CHROMIUM || '/usr/bin/chromium';

test('a page on another origin sends its requests to Varia', async () => {
  assert.ok(EVIL_URL, 'EVIL_URL must be set (tests/test_browser_csrf.py does it)');
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--no-first-run', '--disable-sync', '--disable-quic',
    ],
  });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (error) => errors.push(error.message));
    await page.goto(EVIL_URL);
    await page.waitForSelector('html[data-done="true"]', { timeout: 30_000 });
    const report = JSON.parse(await page.evaluate(() => document.documentElement.dataset.report));
    assert.deepEqual(errors, []);
    // Each request left the browser: the forms' frames loaded an answer, no-cors fetches resolved opaquely.
    assert.deepEqual(report, {
      plainForm: 'loaded', multipartForm: 'loaded', noCorsForm: 'opaque', noCorsText: 'opaque', corsJson: 'blocked',
    });
  } finally {
    await browser.close();
  }
});
