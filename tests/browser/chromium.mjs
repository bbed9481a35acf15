// What the browser test files share: Debian's Chromium launched headless by playwright-core, a page that records
// its errors, and the helpers that pick a picture and download a link. Not a test file itself (no .test.mjs).

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

export async function fillForm(page, prompt, n = N) {
  await page.setInputFiles('#file', IMAGE);
  await page.fill('#prompt', prompt);
  await page.click(`label[for="n-${n}"]`);
}

// Every picture of the gallery (before and after, `count` pairs) decoded and shown.
export async function waitForImages(page, count) {
  await page.waitForFunction((n) => {
    const imgs = [...document.querySelectorAll('#gallery img')];
    return imgs.length === 2 * n && imgs.every((img) => img.complete && img.naturalWidth > 0);
  }, count, { timeout: 15000 });
}

// Clicks a download link; the file's suggested name and the bytes the browser saved.
export async function downloaded(page, link) {
  const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
  return { name: download.suggestedFilename(), bytes: readFileSync(await download.path()) };
}

export const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
