// The web page in headless Chromium (Debian's /usr/bin/chromium) driven by playwright-core.
// Run by tests/test_browser.py, which starts the local server and sets:
//   VARIA_URL        the server, e.g. http://127.0.0.1:54321
//   VARIA_IMAGE      a PNG the test generated
//   VARIA_BROKEN_IMAGE  the same PNG cut short
//   VARIA_ARTIFACTS  where screenshots go (test-artifacts/)
//   VARIA_N          how many variations to ask for
// The tests share one page and run in order: a job that succeeds, one that is refused, a reload, a failure.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { BASE, IMAGE, N, launch, open } from './chromium.mjs';

const BROKEN_IMAGE = process.env.VARIA_BROKEN_IMAGE; // a PNG cut short: its header is fine, its pixels are not
const ARTIFACTS = process.env.VARIA_ARTIFACTS || 'test-artifacts';
const STAGE_ORDER = ['queued', 'preparing', 'captioning', 'composing', 'generating', 'saving', 'done'];
const PROMPT_OK = 'as a soft watercolour painting with gentle washes of colour'; // the watercolor preset
const PROMPT_REFUSED = 'with a bloody sword';

let browser;
let page;
const problems = []; // uncaught page errors and console errors (CSP violations show up there)
const stages = []; // every stage the page showed, as the page set it

describe('the Varia page', { concurrency: false }, () => {
  before(async () => {
    assert.ok(BASE && IMAGE && BROKEN_IMAGE, 'VARIA_URL and the VARIA_*IMAGE paths must be set (tests/test_browser.py does it)');
    browser = await launch();
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    page = await context.newPage();
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
    });
    await page.exposeFunction('reportStage', (stage) => stages.push(stage));
    await open(page, `${BASE}/api/ui`);
  });

  after(async () => {
    await browser?.close();
  });


  async function watchStages() {
    stages.length = 0;
    await page.evaluate(() => {
      const progress = document.getElementById('progress');
      new MutationObserver(() => window.reportStage(progress.dataset.stage))
        .observe(progress, { attributes: true, attributeFilter: ['data-stage'] });
    });
  }

  async function renderedVariations() {
    return page.$$eval('#gallery img.variation', (imgs) => imgs.map((img) => ({
      alt: img.alt, width: img.naturalWidth, complete: img.complete,
    })));
  }

  async function downloaded(link) {
    const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
    return { name: download.suggestedFilename(), bytes: readFileSync(await download.path()) };
  }

  async function waitForImages(count) {
    await page.waitForFunction((n) => {
      const imgs = [...document.querySelectorAll('#gallery img')];
      return document.querySelectorAll('#gallery img.variation').length === n
        && imgs.every((img) => img.complete && img.naturalWidth > 0);
    }, count, { timeout: 15000 });
  }

  test('a first visit shows the form, the ideas and an empty history', async () => {
    assert.equal(await page.locator('#welcome').isVisible(), true);
    assert.equal(await page.locator('#history-empty').isVisible(), true);
    const presets = await page.locator('#presets button').count();
    assert.ok(presets >= 5, `expected the preset buttons, found ${presets}`);
    assert.equal(await page.locator('#counts input').count(), 4); // VARIA_MAX_VARIATIONS default
  });

  test('upload an image, watch the stages, see every variation rendered', { timeout: 40000 }, async () => {
    await page.setInputFiles('#file', IMAGE);
    await page.waitForFunction(() => {
      const preview = document.getElementById('preview');
      return !preview.hidden && preview.complete && preview.naturalWidth > 0;
    });

    // Keyboard: a preset button works with Enter and fills the prompt.
    await page.focus('#presets button[data-preset="watercolor"]');
    await page.keyboard.press('Enter');
    assert.equal(await page.inputValue('#prompt'), PROMPT_OK);
    assert.equal(await page.getAttribute('#presets button[data-preset="watercolor"]', 'aria-pressed'), 'true');

    await page.click(`label[for="n-${N}"]`);
    await watchStages();
    await page.click('#go');
    await page.waitForSelector('#progress:not([hidden])[data-stage="generating"]', { timeout: 20000 });
    await page.locator('#job').screenshot({ path: join(ARTIFACTS, 'progress.png') });
    await page.waitForSelector('#result:not([hidden])[data-status="succeeded"]', { timeout: 30000 });

    const seen = stages.filter((stage, i) => stage !== stages[i - 1]);
    const order = seen.map((stage) => STAGE_ORDER.indexOf(stage));
    assert.ok(seen.includes('generating'), `the page never showed 'generating': ${seen}`);
    assert.ok(new Set(seen).size >= 3, `the page showed too few stages: ${seen}`);
    assert.deepEqual(order, [...order].sort((a, b) => a - b), `stages went backwards: ${seen}`);

    await waitForImages(N);
    const variations = await renderedVariations();
    assert.equal(variations.length, N);
    const caption = (await page.textContent('#facts dd[data-fact="caption"]')).trim();
    assert.ok(caption.length > 10, 'the caption is shown');
    for (const image of variations) {
      assert.ok(image.width > 0, 'the variation image is rendered');
      assert.ok(image.alt.includes(caption), `alt text carries the caption: ${image.alt}`);
    }
    const sources = await page.$$eval('#gallery img.source', (imgs) => imgs.map((img) => img.alt));
    assert.equal(sources.length, 1, 'the source is shown once, first in the grid, not repeated beside each result');
    assert.equal(await page.getAttribute('#about', 'open'), null, 'what was done and why is folded away');
    assert.match(await page.textContent('#facts'), /watercolour/i); // output prompt and sub-tasks
    assert.ok(await page.locator('#subtasks li').count() >= 1, 'the sub-tasks are listed');

    // Every download link points at its stored file (no key here: the API's own address), and downloads it under
    // the name the server gives it: what the picture is, not "0".
    await page.waitForFunction((count) => {
      const links = [...document.querySelectorAll('#result a[download]')];
      return links.length === count && links.every((a) => new URL(a.href).pathname.startsWith('/api/variations/'));
    }, N + 2);
    const picture = await downloaded(page.locator('#gallery a.download').first());
    assert.match(picture.name, /^varia-as-a-soft-watercolour[a-z-]*-[0-9a-f]{8}-1\.png$/);
    assert.deepEqual([...picture.bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'a PNG');
    const manifest = JSON.parse((await downloaded(page.locator('#downloads a[download]').last())).bytes.toString());
    assert.equal(manifest.status, 'succeeded');

    await page.locator('#job').screenshot({ path: join(ARTIFACTS, 'gallery.png') });

    // Phone-sized: nothing spills sideways, and the gallery still shows every image.
    await page.setViewportSize({ width: 390, height: 844 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than a phone screen`);
    await page.screenshot({ path: join(ARTIFACTS, 'page-phone.png'), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  test('a disallowed prompt in the kids profile is refused in plain words', { timeout: 30000 }, async () => {
    // Drag and drop this time: the page reads the dropped file.
    const data = readFileSync(IMAGE).toString('base64');
    const transfer = await page.evaluateHandle((b64) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], 'dropped.png', { type: 'image/png' }));
      return dt;
    }, data);
    await page.dispatchEvent('#drop', 'dragenter', { dataTransfer: transfer });
    await page.dispatchEvent('#drop', 'drop', { dataTransfer: transfer });
    assert.equal((await page.textContent('#drop .file-name')).trim(), 'dropped.png');

    await page.fill('#prompt', PROMPT_REFUSED);
    await page.click('label[for="profile-kids"]');
    await page.click('#go');
    await page.waitForSelector('#result:not([hidden])[data-status="refused"]', { timeout: 20000 });

    assert.match(await page.textContent('#result-title'), /can't make this one/);
    const reason = await page.textContent('#notice-text');
    assert.match(reason, /bloody|blood/);
    assert.match(reason, /not allowed for children/);
    assert.equal(await page.locator('#gallery img').count(), 0);
    await page.locator('#job').screenshot({ path: join(ARTIFACTS, 'refused.png') });
  });

  test('after a reload the past jobs are still there and open again', { timeout: 30000 }, async () => {
    await page.reload();
    await page.waitForSelector('html[data-ready="true"]');
    const items = page.locator('#history .history-item');
    assert.equal(await items.count(), 2);
    assert.match(await items.nth(0).textContent(), /bloody sword/);
    assert.match(await items.nth(0).textContent(), /Not allowed/);
    assert.match(await items.nth(1).textContent(), /watercolour/);
    // The job that was open is shown again, and the form is as it was left, except the profile: it starts from
    // the server's default on every load, so a choice left on a shared computer is not the next person's.
    await page.waitForSelector('#result:not([hidden])[data-status="refused"]', { timeout: 10000 });
    assert.equal(await page.inputValue('#prompt'), PROMPT_REFUSED);
    assert.equal(await page.isChecked('#profile-general'), true);
    assert.equal(await page.isChecked(`#n-${N}`), true);

    // Open the earlier job with the keyboard.
    await items.nth(1).locator('.history-open').focus();
    await page.keyboard.press('Enter');
    await page.waitForSelector('#result:not([hidden])[data-status="succeeded"]', { timeout: 10000 });
    await waitForImages(N);
    assert.equal((await renderedVariations()).length, N);
  });

  test('a damaged picture fails with a message that says what to do', { timeout: 30000 }, async () => {
    await page.setInputFiles('#file', BROKEN_IMAGE);
    await page.fill('#prompt', 'as a pencil sketch');
    await page.click('label[for="profile-general"]');
    await page.click('#go');
    await page.waitForSelector('#result:not([hidden])[data-status="failed"]', { timeout: 20000 });
    assert.match(await page.textContent('#notice-text'), /damaged|truncated/);
    assert.doesNotMatch(await page.textContent('#notice-text'), /[0-9a-f]{64}/, 'no internal blob names');
    // The advice is the one of the job's code (a damaged image), from the table config.json carries.
    const { codes } = await (await fetch(`${BASE}/api/ui/config.json`)).json();
    assert.equal(await page.getAttribute('#notice-help', 'data-codes'), 'image_invalid');
    assert.ok((await page.textContent('#notice-help')).includes(codes.image_invalid.advice));
    assert.equal(await page.isVisible('#retry'), false, 'sending the same damaged file again cannot help');
    assert.match(await page.textContent('#history .history-item:first-child'), /Failed/);
  });

  test('the page raised no errors and broke no Content-Security-Policy rule', () => {
    assert.deepEqual(problems, []);
  });
});
