// Sending a job in headless Chromium: while the request that starts a job is in flight, no way of sending one
// (the button, Ctrl+Enter in the prompt, Try again / Make new pictures, the form's own submit) can start a second
// job, and all of them come back when the request ends, with an answer or an error. Playwright holds each
// POST /api/variations until the test lets it go, so "in flight" lasts exactly as long as the test needs. The
// page's dry runs (what a job would cost) are POSTs too; they pass through and are not counted.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { BASE, IMAGE, fillForm, isDryRun, launch, open, recordProblems, waitForImages } from './chromium.mjs';

let browser;
let context;
let page;
let problems;
const posts = []; // every POST that reached the network, in order
let held = null; // { release(answer) } while POSTs are held
let arrived = null; // resolves when the next POST reaches the network

function holdPosts() {
  let release;
  const gate = new Promise((resolve) => { release = resolve; });
  arrived = new Promise((resolve) => { held = { gate, release, arrivedAt: resolve }; });
  return {
    arrived,
    release(answer = 'continue') {
      held = null;
      release(answer);
    },
  };
}

// Job requests (the page sends them by XMLHttpRequest, for the upload's progress), counted in the page the moment
// they are sent (a key press or click runs its handler before playwright's press or click returns), so a second
// job cannot hide behind network timing.
function postsStartedInPage() {
  return page.evaluate(() => window.variaPosts);
}

// The page's picture of the job shown.
function shownPicture() {
  return page.getAttribute('#gallery img.variation', 'src');
}

describe('sending a job', { concurrency: false }, () => {
  before(async () => {
    assert.ok(BASE && IMAGE, 'VARIA_URL and VARIA_IMAGE must be set (tests/test_browser.py does it)');
    browser = await launch();
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await context.addInitScript(() => {
      window.variaPosts = 0;
      const send = XMLHttpRequest.prototype.send;
      XMLHttpRequest.prototype.send = function counted(body) {
        window.variaPosts += 1;
        return send.call(this, body);
      };
    });
    await context.route((url) => url.pathname === '/api/variations', async (route, request) => {
      if (request.method() !== 'POST' || isDryRun(request)) return route.continue();
      posts.push(request.postDataBuffer()?.includes('name="force"') ? 'force' : 'new');
      const hold = held;
      if (!hold) return route.continue();
      hold.arrivedAt();
      const answer = await hold.gate;
      if (answer === 'continue') return route.continue();
      return route.fulfill({ status: 503, contentType: 'application/json', body: JSON.stringify({ error: answer }) });
    });
    page = await context.newPage();
    problems = recordProblems(page);
    await open(page, `${BASE}/api/ui`);
  });

  after(async () => {
    await browser?.close();
  });

  async function assertLocked() {
    for (const id of ['go', 'retry', 'renew', 'file']) assert.equal(await page.isDisabled(`#${id}`), true, `#${id} is off while sending`);
    assert.equal(await page.getAttribute('#make', 'aria-busy'), 'true');
  }

  // The request has ended (an earlier job's result may be on show already, so that alone says nothing).
  async function sent() {
    await page.waitForSelector('#make[aria-busy="false"]');
  }

  async function assertUnlocked() {
    for (const id of ['go', 'retry', 'renew', 'file']) assert.equal(await page.isEnabled(`#${id}`), true, `#${id} is back`);
    assert.equal(await page.getAttribute('#make', 'aria-busy'), 'false');
  }

  test('Ctrl+Enter twice, a double click and a form submit while sending start one job', { timeout: 40000 }, async () => {
    await fillForm(page, 'as a sepia photograph from long ago', 1);
    const hold = holdPosts();
    await page.focus('#prompt');
    await page.keyboard.press('Control+Enter');
    await page.keyboard.press('Control+Enter');
    await hold.arrived;
    await assertLocked();
    await page.dblclick('#go', { force: true }); // force: a disabled button is clicked all the same
    await page.evaluate(() => document.getElementById('make').requestSubmit()); // Enter in a field does this
    // A picture dropped now does not replace the one being sent.
    await page.evaluate(() => {
      const dt = new DataTransfer();
      dt.items.add(new File([new Uint8Array([1, 2, 3])], 'other.png', { type: 'image/png' }));
      window.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, cancelable: true }));
    });
    assert.equal(await postsStartedInPage(), 1, 'a second job was sent while the first was in flight');
    assert.notEqual((await page.textContent('#drop .file-name')).trim(), 'other.png');

    hold.release();
    await page.waitForSelector('#result:not([hidden])[data-status="succeeded"]', { timeout: 30000 });
    await waitForImages(page, 1);
    await assertUnlocked();
    assert.equal(await postsStartedInPage(), 1);
    assert.deepEqual(posts, ['new']);
  });

  test('"Make new pictures" sends one forced job however often it is pressed; the new pictures replace the old', { timeout: 40000 }, async () => {
    await page.click('#go'); // exactly the same request: the page offers to make new ones
    await sent();
    await page.waitForSelector('#renew:not([hidden])');
    assert.match(await page.textContent('#renew'), /Make new pictures \(paid again\)/);
    const before = await postsStartedInPage();
    const oldPicture = await shownPicture();

    const hold = holdPosts();
    // Two presses as fast as a double click: the first one puts the page in its sending state at once.
    await page.evaluate(() => {
      const renew = document.getElementById('renew');
      renew.click();
      renew.click();
    });
    await hold.arrived;
    await assertLocked();
    assert.equal(await page.isVisible('#sending'), true, 'the panel shows the job being sent');
    assert.equal(await page.isVisible('#result'), false, 'not the job before');
    await page.evaluate(() => document.getElementById('renew').click());
    await page.focus('#prompt');
    await page.keyboard.press('Control+Enter');
    assert.equal(await postsStartedInPage(), before + 1, 'a second job was sent while the first was in flight');

    hold.release();
    await sent();
    await page.waitForSelector('#result:not([hidden])[data-status="succeeded"]', { timeout: 30000 });
    await assertUnlocked();
    assert.deepEqual(posts, ['new', 'new', 'force']);
    // The new job's pictures replace the old ones.
    await waitForImages(page, 1);
    assert.notEqual(await shownPicture(), oldPicture);
  });

  test('an error ends the sending too: everything comes back, and one press sends again', { timeout: 40000 }, async () => {
    await fillForm(page, 'as a cartoon with thick outlines', 1);
    const hold = holdPosts();
    await page.click('#go');
    await hold.arrived;
    await assertLocked();
    hold.release('Varia is busy right now.');
    await page.waitForSelector('#form-error:not([hidden])');
    assert.equal(await page.textContent('#form-error .form-message'), 'Varia is busy right now.');
    await assertUnlocked();

    await page.click('#go');
    await sent();
    await page.waitForSelector('#result:not([hidden])[data-status="succeeded"]', { timeout: 30000 });
    assert.deepEqual(posts.slice(3), ['new', 'new']);
    assert.deepEqual(problems, []);
  });
});
