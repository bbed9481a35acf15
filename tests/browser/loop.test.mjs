// The draft-then-final loop in headless Chromium, against the real local server (offline providers): cheap drafts,
// Vary on one result, Refine, Download, on a touch phone (390x844) and on a desktop (1440x900). Along the way: the
// cost before a job starts (a dry run) and once it has (the 202's estimate), the live previews when the status
// API has some, the enlarged picture (a dialog that Esc closes, focus back on the picture) and its before/after
// slider, the lineage trail, the remix dialog, the page in French (chosen with the switch and remembered), and an
// axe-core scan of the new controls with no serious or critical violation.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { BASE, IMAGE, PNG_SIGNATURE, downloaded, field, isDryRun, launch, newPage, open, waitForImages } from './chromium.mjs';

const ARTIFACTS = process.env.VARIA_ARTIFACTS || 'test-artifacts';
const AXE = readFileSync(new URL('../../node_modules/axe-core/axe.min.js', import.meta.url), 'utf8');
const PHONE = { viewport: { width: 390, height: 844 }, hasTouch: true, isMobile: true, deviceScaleFactor: 2 };
const DESKTOP = { viewport: { width: 1440, height: 900 } };

let browser;

// A page whose job POSTs (not the dry runs) are kept, parsed, and whose status answers are watched for previews.
async function loopPage(options) {
  const { context, page, problems } = await newPage(browser, { ...options, locale: 'en-US' });
  const jobs = [];
  const dryRuns = [];
  const status = { previews: 0 };
  await context.route((url) => url.pathname === '/api/variations', (route, request) => {
    if (request.method() === 'POST') (isDryRun(request) ? dryRuns : jobs).push(request.postDataBuffer());
    return route.continue();
  });
  page.on('response', async (response) => {
    if (!/\/api\/variations\/[^/]+$/.test(new URL(response.url()).pathname)) return;
    try {
      const view = await response.json();
      if (Array.isArray(view.previews) && view.previews.length) status.previews += 1;
    } catch {
      // not JSON: nothing to count
    }
  });
  await open(page, `${BASE}/api/ui`);
  // Whether a preview picture was ever in the panel while a job ran.
  await page.evaluate(() => {
    window.variaPreviewsShown = 0;
    new MutationObserver(() => {
      if (document.querySelector('#previews img')) window.variaPreviewsShown += 1;
    }).observe(document.getElementById('previews'), { childList: true, subtree: true });
  });
  return { context, page, problems, jobs, dryRuns, status };
}

function json(body) {
  return JSON.parse(body.toString());
}

async function press(page, selector, touch) {
  if (touch) await page.tap(selector);
  else await page.click(selector);
}

// Waits for the result of the job just sent, a new one (the one before had another id).
async function nextResult(page, previous) {
  await page.waitForFunction((before) => {
    const result = document.getElementById('result');
    const current = localStorage.getItem('varia.current.v1');
    return !result.hidden && result.dataset.status === 'succeeded' && current && current !== before;
  }, previous, { timeout: 30000 });
  return page.evaluate(() => localStorage.getItem('varia.current.v1'));
}

// The element's top in the upper half of the window, once the page's (smooth) scrolling has brought it there.
export async function inView(page, selector) {
  try {
    await page.waitForFunction((s) => {
      const top = document.querySelector(s).getBoundingClientRect().top;
      return top >= -1 && top < window.innerHeight / 2;
    }, selector, { timeout: 3000 });
  } catch {
    const top = await page.$eval(selector, (el) => el.getBoundingClientRect().top);
    assert.fail(`${selector} is not in view: its top is at ${top}px`);
  }
}

async function axeScan(page, include) {
  await page.evaluate(AXE);
  return page.evaluate(async (selectors) => {
    const result = await window.axe.run({ include: selectors.map((s) => [s]) }, {
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
    });
    return result.violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).slice(0, 4).join(', ')}`);
  }, include);
}

async function theLoop({ page, jobs, dryRuns, status }, touch, name) {
  // Drafts: two cheap pictures (quality low is the default), the cost said before the job starts.
  await page.setInputFiles('#file', IMAGE);
  await page.fill('#prompt', `as a pencil sketch for the ${name}`);
  await press(page, 'label[for="n-2"]', touch);
  assert.equal(await page.isChecked('#quality-low'), true, 'drafts first: quality low is the default');
  await page.waitForSelector('#estimate:not([hidden])', { timeout: 10000 });
  // Offline nothing is paid, and the estimate says so (with Azure: "2 pictures, draft quality: about $…").
  assert.match(await page.textContent('#estimate'), /^Before you start: draft quality, (free: no paid call|2 pictures, .*about \$)/);
  assert.ok(dryRuns.length >= 1, 'the estimate came from a dry run');

  await page.locator('#go').scrollIntoViewIfNeeded();
  await press(page, '#go', touch);
  await page.waitForSelector('#progress:not([hidden])', { timeout: 10000 });
  assert.match(await page.textContent('#progress-cost'), /^Estimated: .*draft quality/, "the 202's estimate");
  await inView(page, '#job');
  const drafts = await nextResult(page, null);
  await waitForImages(page, 2);
  assert.equal(field(jobs.at(-1), 'quality'), 'low');
  await page.waitForSelector('#next-cost:not([hidden])', { timeout: 10000 });
  assert.match(await page.textContent('#next-cost'), /^Vary: draft quality, .* · Refine: best quality, /);
  if (status.previews) assert.ok(await page.evaluate(() => window.variaPreviewsShown) > 0, 'the previews the API gave were shown');
  if (!touch) {
    // Download all: each draft, under its own name.
    const names = [];
    const saving = new Promise((resolve) => {
      page.on('download', (download) => {
        names.push(download.suggestedFilename());
        if (names.length === 2) resolve();
      });
    });
    await page.click('#download-all');
    await saving;
    assert.deepEqual(names.map((n) => n.replace(/-[0-9a-f]{8}-/, '-{job}-')).sort(),
      ['varia-as-a-pencil-sketch-for-{job}-1.png', 'varia-as-a-pencil-sketch-for-{job}-2.png']);
  }

  // Enlarge: a dialog, Esc closes it, focus goes back to the picture.
  const second = page.locator('#gallery .shot-after[data-index="1"]');
  await second.locator('.enlarge').focus();
  await page.keyboard.press('Enter');
  await page.waitForSelector('#viewer[open]');
  await page.waitForFunction(() => document.getElementById('viewer-after').naturalWidth > 0);
  await page.keyboard.press('Escape');
  await page.waitForFunction(() => !document.getElementById('viewer').open);
  assert.equal(await page.evaluate(() => document.activeElement.classList.contains('enlarge')), true, 'focus is back on the picture');

  // Vary (subtle) on the second draft: no picture sent, the parent named.
  await press(page, '#gallery .shot-after[data-index="1"] [data-action="vary-subtle"]', touch);
  const varied = await nextResult(page, drafts);
  await waitForImages(page, 2);
  const vary = json(jobs.at(-1));
  assert.deepEqual(vary.from, { job_id: drafts, index: 1 });
  assert.equal(vary.action, 'vary');
  assert.equal(vary.strength, 'subtle');
  assert.match(await page.textContent('#trail'), /This job #2.*picture 2 of job #1/);
  assert.match(await page.textContent('#result-prompt'), /Vary \(subtle\)/);

  // Refine the first variation: one picture at the best quality.
  await press(page, '#gallery .shot-after[data-index="0"] [data-action="refine"]', touch);
  const refined = await nextResult(page, varied);
  await waitForImages(page, 1);
  const refine = json(jobs.at(-1));
  assert.deepEqual(refine.from, { job_id: varied, index: 0 });
  assert.deepEqual([refine.action, refine.quality, refine.n], ['refine', 'high', 1]);
  assert.match(await page.textContent('#trail'), /This job #3.*picture 1 of job #2.*picture 2 of job #1/);
  // What was done and why, in words, folded away until opened.
  assert.equal(await page.getAttribute('#about', 'open'), null);
  await press(page, '#about summary', touch);
  assert.match(await page.textContent('#facts dd[data-fact="parent"]'), /Refine: picture 1 of job #2/);
  assert.match(await page.textContent('#facts dd[data-fact="pictures"]'), /Picture 1: made/);

  // "Save image as" on a result: the picture is shown from its own address, which names it (not "0").
  const shown = await page.getAttribute('#gallery img.variation', 'src');
  const disposition = (await page.request.get(new URL(shown, BASE).href)).headers()['content-disposition'];
  assert.match(disposition, /^inline; filename="varia-as-a-pencil-sketch[a-z-]*-[0-9a-f]{8}-1\.png"$/);
  // Download: the stored picture, under a name that says what it is.
  const picture = await downloaded(page, page.locator('#gallery a.download').first());
  assert.match(picture.name, /^varia-as-a-pencil-sketch[a-z-]*-[0-9a-f]{8}-1\.png$/);
  assert.deepEqual([...picture.bytes.subarray(0, 8)], PNG_SIGNATURE);
  // The history shows each job's result, not the picture that was sent: three jobs, three thumbnails of results.
  const thumbs = await page.$$eval('#history img.thumb', (imgs) => imgs.map((img) => img.dataset.src));
  assert.equal(thumbs.length, 3);
  assert.ok(thumbs.every((src) => src.endsWith('/images/0')), `thumbnails: ${thumbs}`);
  assert.deepEqual(await page.$$eval('#history .history-item', (items) => items.map((i) => i.dataset.job)), [refined, varied, drafts]);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow}px wider than the screen`);
}

describe('the draft-then-final loop', { concurrency: false }, () => {
  before(async () => {
    assert.ok(BASE && IMAGE, 'VARIA_URL and VARIA_IMAGE must be set (tests/test_browser.py does it)');
    browser = await launch();
  });

  after(async () => {
    await browser?.close();
  });

  test('drafts, vary, refine and download on a touch phone', { timeout: 120000 }, async () => {
    const loop = await loopPage(PHONE);
    await theLoop(loop, true, 'phone');
    await loop.page.screenshot({ path: join(ARTIFACTS, 'loop-phone.png'), fullPage: true });
    assert.deepEqual(loop.problems, []);
    await loop.context.close();
  });

  test('drafts, vary, refine and download on a desktop; the compare slider, remix, French and an axe scan', { timeout: 120000 }, async () => {
    const loop = await loopPage(DESKTOP);
    const { page } = loop;
    await theLoop(loop, false, 'desktop');
    await page.locator('#job').screenshot({ path: join(ARTIFACTS, 'loop-desktop.png') });

    // Before/after: the slider uncovers the source under the result.
    await page.click('#gallery .shot-after[data-index="0"] [data-action="compare"]');
    await page.waitForSelector('#viewer[open]');
    assert.equal(await page.inputValue('#compare-range'), '50');
    await page.focus('#compare-range');
    await page.keyboard.press('Home');
    assert.equal(await page.getAttribute('#compare-range', 'aria-valuetext'), '0% after, 100% before');
    assert.equal(await page.$eval('#compare', (el) => el.style.getPropertyValue('--cut')), '100%');
    assert.deepEqual(await axeScan(page, ['#viewer']), [], 'the viewer has no serious accessibility problem');
    await page.keyboard.press('Escape');
    assert.equal(await page.evaluate(() => document.activeElement.dataset.action), 'compare');

    // Remix asks for a new prompt, with its cost, and says so when there is none.
    await page.click('#gallery .shot-after[data-index="0"] [data-action="remix"]');
    await page.waitForSelector('#remix[open]');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'remix-prompt');
    await page.click('#remix-go');
    assert.equal(await page.isVisible('#remix-error'), true, 'no prompt: said next to the field');
    await page.fill('#remix-prompt', 'at night under the stars');
    await page.waitForFunction(() => document.getElementById('remix-cost').textContent.includes('Before you start'));
    assert.deepEqual(await axeScan(page, ['#remix']), [], 'the remix dialog has no serious accessibility problem');
    await page.keyboard.press('Escape');

    assert.deepEqual(await axeScan(page, ['#make', '#job', '.history', '.masthead']), [], 'no serious accessibility problem');

    // French, from the switch, remembered after a reload; the server's messages said by their code.
    await page.selectOption('#lang', 'fr');
    assert.equal(await page.getAttribute('html', 'lang'), 'fr');
    assert.equal(await page.textContent('#go-label'), 'Créer mes images');
    assert.equal(await page.textContent('#gallery [data-action="vary-subtle"]'), 'Varier (léger) image 1');
    assert.match(await page.textContent('#result-title'), /Voici votre nouvelle image/);
    await page.reload();
    await page.waitForSelector('html[data-ready="true"]');
    assert.equal(await page.inputValue('#lang'), 'fr');
    await page.waitForSelector('#result:not([hidden])[data-status="succeeded"]');
    assert.match(await page.textContent('#trail'), /Ce travail n° 3.*image 1 du travail n° 2/);
    assert.deepEqual(await axeScan(page, ['#make', '#job']), [], 'no serious accessibility problem in French');
    await page.screenshot({ path: join(ARTIFACTS, 'loop-french.png'), fullPage: true });
    assert.deepEqual(loop.problems, []);
    await loop.context.close();
  });
});
