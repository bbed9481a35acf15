// What the browser test files share: Debian's Chromium launched headless by playwright-core, a page in a fresh
// context that records its errors, and the helpers that fill the form and download a link. Not a test file
// itself (no .test.mjs).

import { readFileSync } from 'node:fs';

import { chromium } from 'playwright-core';

export const BASE = process.env.VARIA_URL;
export const IMAGE = process.env.VARIA_IMAGE;
export const N = Number(process.env.VARIA_N || '2');
const CHROMIUM = process.env.VARIA_CHROMIUM || '/usr/bin/chromium';

export function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--no-first-run', '--disable-sync', '--disable-quic',
    ],
  });
}

// Uncaught errors and console errors, except the ones Chromium logs for each refused request (the tests refuse
// some on purpose). A Content-Security-Policy violation is a console error, so it is kept.
export function recordProblems(page) {
  const problems = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) {
      problems.push(`console error: ${message.text()}`);
    }
  });
  return problems;
}

export async function open(page, address) {
  await page.goto(address);
  await page.waitForSelector('html[data-ready="true"]');
}

// A page in a fresh context of `browser` (no jobs remembered), its problems recorded; not opened yet, so that
// routes, init scripts and listeners can be added to the context or the page before it is.
export async function newPage(browser, options = {}) {
  const context = await browser.newContext(options);
  const page = await context.newPage();
  const problems = recordProblems(page);
  return { context, page, problems };
}

// A new page (as newPage) opened at `address`: the page itself unless said.
export async function openPage(browser, options = {}, address = `${BASE}/api/ui`) {
  const opened = await newPage(browser, options);
  await open(opened.page, address);
  return opened;
}

export async function fillForm(page, prompt, n = N) {
  await page.setInputFiles('#file', IMAGE);
  await page.fill('#prompt', prompt);
  await page.click(`label[for="n-${n}"]`);
}

// Every picture of the results grid (`count` results, and the source when the job has one) decoded and shown.
export async function waitForImages(page, count) {
  await page.waitForFunction((n) => {
    const imgs = [...document.querySelectorAll('#gallery img')];
    const results = document.querySelectorAll('#gallery img.variation').length;
    return results === n && imgs.every((img) => img.complete && img.naturalWidth > 0);
  }, count, { timeout: 15000 });
}

// A POST that only asks what a job would cost (dry_run): the page sends one whenever the form or a result changes.
export function isDryRun(request) {
  const body = request.postDataBuffer();
  return Boolean(body && (body.includes('name="dry_run"') || body.includes('"dry_run":true')));
}

// A multipart field's value in a POST body, or null when the form did not send it.
export function field(body, name) {
  const match = body.toString('latin1').match(new RegExp(`name="${name}"\\r\\n\\r\\n([^\\r]*)\\r\\n`));
  return match ? match[1] : null;
}

// Clicks a download link; the file's suggested name and the bytes the browser saved.
export async function downloaded(page, link) {
  const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
  return { name: download.suggestedFilename(), bytes: readFileSync(await download.path()) };
}

export const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
