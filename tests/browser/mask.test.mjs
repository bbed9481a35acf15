// Painting the part of the picture to change, in headless Chromium: with the mouse on a desktop, with a finger on a
// phone (touch events through the DevTools protocol, which Chromium turns into pointer events of type 'touch'), and
// with the keyboard alone (the rectangle fields). Each real job is checked through the public API only: the
// delivered picture (/images/0) is the prepared source (/images/source) outside the painted part, pixel for pixel
// (mean difference <= 2 per channel) and different inside it, and the manifest's source.mask_share is the share
// the page said it would change. The tools themselves (undo, eraser, clear, Draw a new scene, a refused mask) are
// checked on requests playwright answers itself, so they start no job.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { BASE, IMAGE, fillForm, isDryRun, launch, newPage, open } from './chromium.mjs';

const ARTIFACTS = process.env.VARIA_ARTIFACTS || 'test-artifacts';
const API = '/api/variations';
const DESKTOP = { viewport: { width: 1280, height: 900 } };
const PHONE = { viewport: { width: 390, height: 844 }, hasTouch: true, isMobile: true, deviceScaleFactor: 2 };
const PICTURE_WIDTH = 720; // tests/test_browser.py's scene: 720x480

let browser;

// A page in a fresh context, with its problems recorded and the body of every job POST it sends. The POSTs reach
// the server, unless `answer(reply)` says how playwright answers them instead ({ status, body }; null: the server).
async function pageIn(options) {
  const { context, page, problems } = await newPage(browser, options);
  const posts = [];
  let reply = null;
  await context.route((url) => url.pathname === API, (route, request) => {
    if (request.method() !== 'POST' || isDryRun(request)) return route.continue(); // a dry run starts nothing
    posts.push(request.postDataBuffer()?.toString('latin1') || '');
    if (!reply) return route.continue();
    return route.fulfill({ status: reply.status, contentType: 'application/json', body: JSON.stringify(reply.body) });
  });
  await open(page, `${BASE}/api/ui`);
  return { context, page, problems, posts, answer: (next) => { reply = next; } };
}

// Picks the picture and waits until its painting canvas has the picture's natural size.
async function choosePicture(page, prompt, n = 1) {
  await fillForm(page, prompt, n);
  await page.waitForFunction((width) => {
    const canvas = document.getElementById('region-canvas');
    return !document.getElementById('region').hidden && canvas.width === width;
  }, PICTURE_WIDTH);
}

// The share of the picture the page says is painted (0 to 1), and its sentence.
async function shown(page) {
  return {
    share: Number(await page.getAttribute('#region-share', 'data-share')),
    text: (await page.textContent('#region-share')).trim(),
  };
}

// The brush at its largest, set from the keyboard (End on the slider).
async function largestBrush(page) {
  await page.focus('#region-size');
  await page.keyboard.press('End');
  assert.equal(await page.textContent('#region-size-value'), await page.getAttribute('#region-size', 'max'));
  return Number(await page.getAttribute('#region-size', 'max'));
}

// Rows of strokes (in CSS pixels from the canvas's top left) over the left half, kept `margin` clear of the middle
// so that the brush, `brush` wide, never crosses it.
function leftHalfRows(box, brush, margin = 6) {
  const end = box.width / 2 - brush / 2 - margin;
  const rows = [];
  for (let y = 2; y < box.height; y += brush / 3) rows.push([[2, y], [end, y]]);
  rows.push([[2, box.height - 2], [end, box.height - 2]]);
  return rows;
}

async function paintWithMouse(page, rows) {
  await page.locator('#region-canvas').scrollIntoViewIfNeeded();
  const box = await page.locator('#region-canvas').boundingBox();
  for (const [[x0, y0], [x1, y1]] of rows) {
    await page.mouse.move(box.x + x0, box.y + y0);
    await page.mouse.down();
    await page.mouse.move(box.x + x1, box.y + y1, { steps: 8 });
    await page.mouse.up();
  }
}

// A finger's drag: touchStart, touchMove in steps, touchEnd, as a touch screen sends them.
async function paintWithFinger(cdp, box, rows) {
  for (const [[x0, y0], [x1, y1]] of rows) {
    const at = (t) => ({ x: box.x + x0 + (x1 - x0) * t, y: box.y + y0 + (y1 - y0) * t, radiusX: 4, radiusY: 4, force: 1 });
    await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: [at(0)] });
    for (let step = 1; step <= 8; step++) {
      await cdp.send('Input.dispatchTouchEvent', { type: 'touchMove', touchPoints: [at(step / 8)] });
    }
    await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
  }
}

async function submitAndWait(page) {
  await page.click('#go');
  await page.waitForSelector('#result:not([hidden])[data-status="succeeded"]', { timeout: 30000 });
  return page.evaluate(() => localStorage.getItem('varia.current.v1'));
}

// Through the public API: the manifest, and the first delivered picture against the prepared source, as the mean
// absolute difference per channel over the right half and over the left half (less 20 px by the middle).
async function delivered(page, jobId) {
  return page.evaluate(async (job) => {
    const get = async (name) => {
      const response = await fetch(`${job}/images/${name}`, { cache: 'no-store' });
      if (!response.ok) throw new Error(`${name}: ${response.status}`);
      return response;
    };
    const pixels = async (name) => {
      const bitmap = await createImageBitmap(await (await get(name)).blob());
      const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
      const ctx = canvas.getContext('2d');
      ctx.drawImage(bitmap, 0, 0);
      return { width: bitmap.width, height: bitmap.height, data: ctx.getImageData(0, 0, bitmap.width, bitmap.height).data };
    };
    const [source, made] = await Promise.all([pixels('source'), pixels('0')]);
    const difference = (x0, x1) => {
      const sums = [0, 0, 0];
      for (let y = 0; y < source.height; y++) {
        for (let x = x0; x < x1; x++) {
          const i = 4 * (y * source.width + x);
          for (let c = 0; c < 3; c++) sums[c] += Math.abs(source.data[i + c] - made.data[i + c]);
        }
      }
      return sums.map((sum) => sum / ((x1 - x0) * source.height));
    };
    const middle = Math.floor(source.width / 2);
    const sameSize = made.width === source.width && made.height === source.height;
    return {
      sameSize,
      right: sameSize ? difference(middle, source.width) : null,
      left: sameSize ? difference(0, middle - 20) : null,
      manifest: await (await get('manifest')).json(),
    };
  }, `${API}/${jobId}`);
}

function assertKeptRightChangedLeft(result, post) {
  assert.match(post, /name="mask"; filename="mask\.png"\r\nContent-Type: image\/png/, 'the POST carried no mask');
  assert.ok(result.sameSize, 'the delivered picture does not have the source\'s size');
  for (const channel of result.right) assert.ok(channel <= 2, `the right half changed: ${result.right}`);
  const left = result.left.reduce((a, b) => a + b) / 3;
  assert.ok(left > 10, `the painted left half did not change: ${result.left}`);
  assert.equal(result.manifest.source.mask.name, `${result.manifest.job_id}/mask.png`);
  assert.ok(result.manifest.request.mask, 'the manifest has no mask as sent');
}

describe('painting the part of the picture to change', { concurrency: false }, () => {
  before(async () => {
    assert.ok(BASE && IMAGE, 'VARIA_URL and VARIA_IMAGE must be set (tests/test_browser.py does it)');
    browser = await launch();
  });

  after(async () => {
    await browser?.close();
  });

  test('desktop: the left half painted with the mouse changes, the right half is kept pixel for pixel', { timeout: 60000 }, async () => {
    const { context, page, problems, posts } = await pageIn(DESKTOP);
    await choosePicture(page, 'as a neon sign glowing at night');
    assert.deepEqual(await shown(page), { share: 0, text: 'Nothing painted: the whole picture can change.' });
    // The canvas is shown smaller than the picture, so CSS pixels are not the canvas's: the mapping is checked.
    const box = await page.locator('#region-canvas').boundingBox();
    assert.ok(box.width < PICTURE_WIDTH - 100, `the canvas is not scaled down (${box.width} px wide)`);

    const brush = await largestBrush(page);
    await paintWithMouse(page, leftHalfRows(box, brush));
    const { share, text } = await shown(page);
    assert.ok(share > 0.42 && share < 0.5, `the left half painted is ${share} of the picture`);
    assert.equal(text, `Changing ${Math.round(share * 100)}% of the picture.`);
    await page.locator('#region').screenshot({ path: join(ARTIFACTS, 'region-desktop.png') });

    const jobId = await submitAndWait(page);
    const result = await delivered(page, jobId);
    assertKeptRightChangedLeft(result, posts.at(-1));
    assert.ok(Math.abs(result.manifest.source.mask_share - share) < 0.01,
      `the server counted ${result.manifest.source.mask_share}, the page said ${share}`);
    assert.match(await page.textContent('#result-prompt'), new RegExp(`changes ${Math.round(share * 100)}% of it`));
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('phone: painted with a finger (pointer events of type touch), the page does not scroll', { timeout: 60000 }, async () => {
    const { context, page, problems, posts } = await pageIn(PHONE);
    await choosePicture(page, 'as pop art with bold dots');
    assert.equal(await page.$eval('#region-canvas', (c) => getComputedStyle(c).touchAction), 'none');
    await page.evaluate(() => {
      window.pointerTypes = new Set();
      document.getElementById('region-canvas')
        .addEventListener('pointerdown', (event) => window.pointerTypes.add(event.pointerType));
    });
    const brush = await largestBrush(page);
    await page.locator('#region-canvas').scrollIntoViewIfNeeded();
    const box = await page.locator('#region-canvas').boundingBox();
    assert.ok(box.x >= 0 && box.x + box.width <= 390, 'the canvas does not fit the phone\'s width');
    const scrolled = await page.evaluate(() => window.scrollY);
    await paintWithFinger(await context.newCDPSession(page), box, leftHalfRows(box, brush));

    assert.deepEqual(await page.evaluate(() => [...window.pointerTypes]), ['touch']);
    assert.equal(await page.evaluate(() => window.scrollY), scrolled, 'painting scrolled the page');
    const { share } = await shown(page);
    assert.ok(share > 0.42 && share < 0.5, `the left half painted is ${share} of the picture`);
    await page.screenshot({ path: join(ARTIFACTS, 'region-phone.png') });

    const jobId = await submitAndWait(page);
    const result = await delivered(page, jobId);
    assertKeptRightChangedLeft(result, posts.at(-1));
    assert.ok(Math.abs(result.manifest.source.mask_share - share) < 0.01);
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('keyboard: a rectangle set with Tab, digits and Enter reaches the server', { timeout: 60000 }, async () => {
    const { context, page, problems, posts } = await pageIn(DESKTOP);
    await choosePicture(page, 'as a blueprint drawing');
    // From the brush size, Tab reaches the rectangle's fields, in order, each with a visible focus.
    await page.focus('#region-size');
    const order = [];
    for (let i = 0; i < 8 && order.at(-1) !== 'region-height'; i++) {
      await page.keyboard.press('Tab');
      order.push(await page.evaluate(() => document.activeElement.id));
    }
    assert.deepEqual(order.slice(-4), ['region-left', 'region-top', 'region-width', 'region-height']);
    const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    assert.notEqual(outline, 'none', 'the focused field shows no focus');
    assert.equal(await page.isVisible('#region-rect'), true, 'the rectangle is not outlined while its fields have focus');

    // Left 10, top 20, width 40, height 50 (in percent): 20% of the picture. Enter marks it, it sends nothing.
    await page.keyboard.press('Shift+Tab');
    await page.keyboard.press('Shift+Tab');
    await page.keyboard.press('Shift+Tab');
    for (const value of ['10', '20', '40']) {
      await page.keyboard.press('Control+A');
      await page.keyboard.type(value);
      await page.keyboard.press('Tab');
    }
    await page.keyboard.press('Control+A');
    await page.keyboard.type('49');
    await page.keyboard.press('ArrowUp'); // 50
    await page.keyboard.press('Enter');
    assert.equal(posts.length, 0, 'Enter in a rectangle field sent the form');
    const { share, text } = await shown(page);
    assert.ok(Math.abs(share - 0.2) < 0.005, `the rectangle marks ${share} of the picture`);
    assert.equal(text, 'Changing 20% of the picture.');
    assert.equal(await page.getAttribute('#region-undo', 'disabled'), null);

    // On to the prompt (past Mark and Unmark) and send with Ctrl+Enter.
    for (let i = 0; i < 8 && (await page.evaluate(() => document.activeElement.id)) !== 'prompt'; i++) {
      await page.keyboard.press('Tab');
    }
    assert.equal(await page.evaluate(() => document.activeElement.id), 'prompt');
    await page.keyboard.press('Control+Enter');
    await page.waitForSelector('#result:not([hidden])[data-status="succeeded"]', { timeout: 30000 });
    const jobId = await page.evaluate(() => localStorage.getItem('varia.current.v1'));
    const { manifest } = await delivered(page, jobId);
    assert.match(posts.at(-1), /name="mask"; filename="mask\.png"/);
    assert.ok(Math.abs(manifest.source.mask_share - 0.2) < 0.01, `the server counted ${manifest.source.mask_share}`);
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('undo, eraser and clear; nothing painted or Draw a new scene sends no mask; a refused mask is shown by the tools', { timeout: 60000 }, async () => {
    const { context, page, problems, posts, answer } = await pageIn(DESKTOP);
    // Every POST is answered here: these checks start no job.
    const busy = { status: 503, body: { error: 'Varia is busy right now.', code: 'server_error' } };
    answer(busy);
    await choosePicture(page, 'as a soft watercolour');
    const box = await page.locator('#region-canvas').boundingBox();
    assert.equal(await page.isDisabled('#region-undo'), true);
    assert.equal(await page.isDisabled('#region-clear'), true);

    // Two strokes, then undo: the share drops back to the first stroke's.
    await paintWithMouse(page, [[[10, 20], [box.width - 10, 20]]]);
    const one = (await shown(page)).share;
    await paintWithMouse(page, [[[10, box.height - 30], [box.width - 10, box.height - 30]]]);
    const two = (await shown(page)).share;
    assert.ok(one > 0 && two > one * 1.5, `two strokes: ${one} then ${two}`);
    await page.click('#region-undo');
    assert.ok(Math.abs((await shown(page)).share - one) < 0.002, 'undo did not take the second stroke away');
    // Ctrl+Z in the tools undoes too; then the first stroke again, and the eraser over it.
    await page.focus('#region-size');
    await page.keyboard.press('Control+Z');
    assert.deepEqual(await shown(page), { share: 0, text: 'Nothing painted: the whole picture can change.' });
    await paintWithMouse(page, [[[10, 20], [box.width - 10, 20]]]);
    await page.click('label[for="region-eraser"]');
    await largestBrush(page);
    await paintWithMouse(page, [[[5, 20], [box.width / 2, 20]]]);
    const erased = (await shown(page)).share;
    assert.ok(erased > 0 && erased < one * 0.7, `the eraser left ${erased} of ${one}`);

    // Clear takes everything away; undo brings it back.
    await page.click('#region-clear');
    assert.equal((await shown(page)).share, 0);
    assert.equal(await page.isDisabled('#region-clear'), true);
    await page.click('#region-undo');
    assert.equal((await shown(page)).share, erased);

    // A mask the server refuses: its message and advice beside the tools, with focus; the form's own error stays off.
    answer({
      status: 400,
      body: {
        error: 'The mask has no transparent pixels at this picture\'s size, so it marks nothing to change.',
        code: 'mask_invalid', fields: [{ field: 'mask', problem: 'no transparent pixels' }],
      },
    });
    await page.click('#go');
    await page.waitForSelector('#region-error:not([hidden])');
    assert.match(await page.textContent('#region-error .form-message'), /no transparent pixels/);
    assert.equal(await page.getAttribute('#region-error .form-advice', 'data-code'), 'mask_invalid');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'region-error');
    assert.equal(await page.isHidden('#form-error'), true);
    assert.match(posts.at(-1), /name="mask"/);
    await paintWithMouse(page, [[[10, 60], [40, 60]]]);
    assert.equal(await page.isHidden('#region-error'), true, 'painting again did not take the error away');

    // Draw a new scene: the tools are off with a note, painting does nothing, and no mask is sent.
    answer(busy);
    const before = (await shown(page)).share;
    await page.click('label[for="mode-generate"]');
    assert.equal(await page.isVisible('#region-off'), true);
    assert.equal(await page.isDisabled('#region-undo'), true);
    assert.equal(await page.isDisabled('#region-left'), true);
    await paintWithMouse(page, [[[10, 120], [box.width - 10, 120]]]);
    assert.equal((await shown(page)).share, before);
    await page.click('#go');
    await page.waitForSelector('#form-error:not([hidden])');
    assert.doesNotMatch(posts.at(-1), /name="mask"/);
    assert.match(posts.at(-1), /name="mode"\r\n\r\ngenerate/);

    // Back to Keep my picture with everything cleared: nothing painted, no mask.
    await page.click('label[for="mode-edit"]');
    assert.equal(await page.isHidden('#region-off'), true);
    await page.click('#region-clear');
    await page.click('#go'); // the form's error is taken away at once, and comes back with the answer
    await page.waitForSelector('#form-error:not([hidden])');
    assert.equal(posts.length, 3);
    assert.doesNotMatch(posts.at(-1), /name="mask"/);
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('every tool has a name a screen reader says, and the canvas too', { timeout: 30000 }, async () => {
    const { context, page, problems } = await pageIn(DESKTOP);
    assert.equal(await page.isHidden('#region'), true, 'the tools show before there is a picture');
    await choosePicture(page, 'as an oil painting');
    const named = [
      ['img', 'Your picture: paint on it the part to change'], ['radio', 'Brush'], ['radio', 'Eraser'],
      ['slider', 'Brush size'], ['button', 'Undo'], ['button', 'Clear'], ['spinbutton', 'Left (%)'],
      ['spinbutton', 'Top (%)'], ['spinbutton', 'Width (%)'], ['spinbutton', 'Height (%)'],
      ['button', 'Mark this rectangle'], ['button', 'Unmark it'],
    ];
    for (const [role, name] of named) {
      assert.equal(await page.getByRole(role, { name, exact: true }).count(), 1, `no ${role} named "${name}"`);
    }
    assert.deepEqual(problems, []);
    await context.close();
  });
});
