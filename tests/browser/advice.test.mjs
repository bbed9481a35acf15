// The page's advice comes from the answer's code, never from its message. Playwright answers the job's POST and
// its status with the shapes the API gives (a job id, then a finished view with `code`, `message`, `partial`,
// `images[].code`), with messages written to mislead any page that reads prose: each says the opposite of
// what its code means. The advice expected is read from the page's own config.json (generated from
// shared/core/codes.py), and checked against the table's wording for the codes that matter most.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { BASE, IMAGE, field, fillForm, isDryRun, launch, newPage, open, waitForImages } from './chromium.mjs';

const API = '/api/variations';
const ARTIFACTS = process.env.VARIA_ARTIFACTS || 'test-artifacts';
const JOB_A = `http-${'a'.repeat(32)}`;
const JOB_B = `http-${'b'.repeat(32)}`;
const ESTIMATE = { paid_calls: { caption: 1, compose: 1, image: 1, moderation: 0 }, usd: 0.02, quality: 'low' };

let browser;
let codes; // config.json's table: code -> { advice, who }

// One page in a fresh context (no jobs remembered), whose POSTs start the jobs `jobs` lists in turn and whose
// status requests get `views[job]`. The multipart body of every POST is kept, to check what was sent.
async function pageWith(jobs, views, refusal = null) {
  const { context, page, problems } = await newPage(browser, { viewport: { width: 1280, height: 900 } });
  const posts = [];
  const queue = [...jobs];
  await context.route((url) => url.pathname === API, async (route, request) => {
    if (request.method() !== 'POST') return route.continue();
    if (isDryRun(request)) return route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify({ dry_run: true, estimate: ESTIMATE }) });
    posts.push(request.postDataBuffer());
    if (refusal) return route.fulfill({ status: refusal.status, contentType: 'application/json', body: JSON.stringify(refusal.body) });
    const jobId = queue.shift();
    return route.fulfill({
      status: 202,
      contentType: 'application/json',
      body: JSON.stringify({ job_id: jobId, status_url: `${API}/${jobId}`, created: true }),
    });
  });
  await context.route((url) => url.pathname.startsWith(`${API}/http-`), (route, request) => {
    const [, , , jobId, , which] = new URL(request.url()).pathname.split('/');
    if (which !== undefined) return route.fulfill({ status: 200, contentType: 'image/png', body: readFileSync(IMAGE) });
    return route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(views[jobId]) });
  });
  await context.addInitScript(() => {
    window.variaPictures = []; // sha256 of the 'image' part of each job the page sends (by XMLHttpRequest)
    const send = XMLHttpRequest.prototype.send;
    XMLHttpRequest.prototype.send = function hashed(body) {
      const image = body instanceof FormData ? body.get('image') : null;
      if (image) {
        window.variaPictures.push(image.arrayBuffer().then((bytes) => crypto.subtle.digest('SHA-256', bytes))
          .then((digest) => [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('')));
      }
      return send.call(this, body);
    };
  });
  await open(page, `${BASE}/api/ui`);
  return { page, posts, problems };
}

function finished(jobId, fields) {
  return {
    job_id: jobId, stage: 'done', done: 0, total: 1, prompt: 'as a watercolour', profile: 'general',
    caption: 'a scene', output_prompt: null, subtasks: null, providers: {}, partial: false,
    source_url: `${API}/${jobId}/images/source`, manifest_url: `${API}/${jobId}/images/manifest`, images: [],
    ...fields,
  };
}


describe("the page's advice comes from the code", { concurrency: false }, () => {
  before(async () => {
    assert.ok(BASE && IMAGE, 'VARIA_URL and VARIA_IMAGE must be set (tests/test_browser.py does it)');
    browser = await launch();
    codes = (await (await fetch(`${BASE}/api/ui/config.json`)).json()).codes;
    // The table the page gets is the one shared/core/codes.py declares (spot checks of its wording).
    assert.match(codes.resource_blocked.advice, /admin must check the resource in the Azure portal/);
    assert.equal(codes.resource_blocked.who, 'admin');
    assert.match(codes.minor_edit_refused.advice, /Draw a new scene/);
    assert.equal(codes.quota_exhausted.who, 'later');
  });

  after(async () => {
    await browser?.close();
  });

  test('a failed job whose message says "try again" shows the advice of its code, resource_blocked', { timeout: 30000 }, async () => {
    const message = 'Something hiccuped; just try again in a moment, the picture is damaged and too large.';
    const { page, problems } = await pageWith([JOB_A], {
      [JOB_A]: finished(JOB_A, { status: 'failed', code: 'resource_blocked', message, images: [] }),
    });
    await fillForm(page, 'as a watercolour', 1);
    await page.click('#go');
    await page.waitForSelector('#result:not([hidden])[data-status="failed"]', { timeout: 15000 });
    assert.equal(await page.textContent('#notice-text'), message, 'the message is shown as it is');
    const help = await page.textContent('#notice-help');
    assert.ok(help.includes(codes.resource_blocked.advice), `the code's advice is shown: ${help}`);
    assert.doesNotMatch(help, /another picture|press Try again/i, 'nothing was picked from the message');
    assert.equal(await page.getAttribute('#notice-help', 'data-codes'), 'resource_blocked');
    assert.equal(await page.isVisible('#retry'), false, 'an admin must act: sending it again cannot help');
    assert.equal(await page.isVisible('#redraw'), false);
    assert.doesNotMatch(await page.textContent('#downloads'), /null|undefined/, 'a job with no providers shows no stray text');
    assert.deepEqual(problems, []);
    await page.context().close();
  });

  test('a code time cures offers Try again, even when its message blames the picture', { timeout: 30000 }, async () => {
    const message = 'The image is not an image: damaged, truncated, too large.';
    const { page } = await pageWith([JOB_A], {
      [JOB_A]: finished(JOB_A, { status: 'failed', code: 'quota_exhausted', message }),
    });
    await fillForm(page, 'as a watercolour', 1);
    await page.click('#go');
    await page.waitForSelector('#result:not([hidden])[data-status="failed"]', { timeout: 15000 });
    const help = await page.textContent('#notice-help');
    assert.ok(help.includes(codes.quota_exhausted.advice), help);
    assert.equal(await page.isVisible('#retry'), true, 'the rate limit passes: Try again is offered');
    await page.context().close();
  });

  test('an unknown code gets the generic next step', { timeout: 30000 }, async () => {
    const { page } = await pageWith([JOB_A], {
      [JOB_A]: finished(JOB_A, { status: 'failed', code: 'a_code_from_a_newer_server', message: 'Change the prompt.' }),
    });
    await fillForm(page, 'as a watercolour', 1);
    await page.click('#go');
    await page.waitForSelector('#result:not([hidden])[data-status="failed"]', { timeout: 15000 });
    assert.match(await page.textContent('#notice-help'), /Try again in a moment/);
    assert.equal(await page.isVisible('#retry'), true);
    await page.context().close();
  });

  test('minor_edit_refused offers "Draw a new scene", which sends the same picture and prompt with mode=generate', { timeout: 30000 }, async () => {
    const prompt = 'put a party hat on my daughter';
    const { page, posts, problems } = await pageWith([JOB_A, JOB_B], {
      [JOB_A]: finished(JOB_A, {
        status: 'refused', code: 'minor_edit_refused', prompt,
        message: 'The photo editing service refused to edit this photo of a child; try again later.',
      }),
      [JOB_B]: finished(JOB_B, {
        status: 'succeeded', code: null, message: null, prompt, done: 1,
        images: [{ index: 0, status: 'succeeded', reason: null, code: null, url: `${API}/${JOB_B}/images/0` }],
      }),
    });
    await fillForm(page, prompt, 1);
    await page.click('label[for="profile-kids"]');
    await page.click('#go');
    await page.waitForSelector('#result:not([hidden])[data-status="refused"]', { timeout: 15000 });
    assert.ok((await page.textContent('#notice-help')).includes(codes.minor_edit_refused.advice));
    assert.equal(await page.isVisible('#retry'), false);
    assert.equal(await page.isVisible('#redraw'), true, 'the Draw a new scene button is offered');
    assert.equal((await page.textContent('#redraw')).trim(), 'Draw a new scene');
    await page.locator('#job').screenshot({ path: join(ARTIFACTS, 'minor-edit-refused.png') });
    assert.equal(posts.length, 1);
    assert.equal(field(posts[0], 'mode'), 'edit');

    await page.click('#redraw');
    await page.waitForSelector('#result:not([hidden])[data-status="succeeded"]', { timeout: 15000 });
    assert.equal(posts.length, 2, 'one more job was sent');
    assert.equal(field(posts[1], 'mode'), 'generate');
    assert.equal(field(posts[1], 'prompt'), prompt);
    assert.equal(field(posts[1], 'profile'), 'kids');
    assert.equal(field(posts[1], 'n'), '1');
    // The network layer does not show file parts: the page's own request says which picture each POST carried.
    const pictures = await page.evaluate(() => Promise.all(window.variaPictures));
    const expected = createHash('sha256').update(readFileSync(IMAGE)).digest('hex');
    assert.deepEqual(pictures, [expected, expected], 'the same picture is sent again');
    assert.equal(await page.isChecked('#mode-generate'), true, 'the form shows the mode that was sent');
    await waitForImages(page, 1);
    assert.deepEqual(problems, []);
    await page.context().close();
  });

  test('a partial job shows the delivered picture, and for the refused one the advice of its code', { timeout: 30000 }, async () => {
    const reason = 'The service had a temporary problem; please try again in a moment.';
    const { page, problems } = await pageWith([JOB_A], {
      [JOB_A]: finished(JOB_A, {
        status: 'succeeded', code: 'service_refused', message: null, partial: true, done: 1, total: 2,
        images: [
          { index: 0, status: 'succeeded', reason: null, code: null, url: `${API}/${JOB_A}/images/0` },
          { index: 1, status: 'refused', reason, code: 'service_refused', url: null },
        ],
      }),
    });
    await fillForm(page, 'as a watercolour', 2);
    await page.click('#go');
    await page.waitForSelector('#result:not([hidden])[data-status="succeeded"]', { timeout: 15000 });
    assert.match(await page.textContent('#result-title'), /made 1 of 2/);
    assert.equal(await page.locator('#gallery img.variation').count(), 1, 'the delivered picture is shown');
    const missing = page.locator('#gallery .shot-missing');
    assert.equal(await missing.count(), 1);
    assert.match(await missing.textContent(), /Not allowed/);
    assert.equal(await missing.locator('.missing-advice').textContent(), codes.service_refused.advice);
    assert.equal(await missing.locator('.missing-advice').getAttribute('data-code'), 'service_refused');
    await page.locator('#job').screenshot({ path: join(ARTIFACTS, 'partial.png') });
    assert.ok((await page.textContent('#notice-help')).includes(codes.service_refused.advice));
    assert.ok((await page.textContent('#notice-text')).includes(`Picture 2: ${reason}`));
    assert.equal(await page.isVisible('#retry'), false, 'a refusal is not cured by sending it again');
    assert.deepEqual(problems, []);
    await page.context().close();
  });

  test('a refused request shows its sentence and the advice of its code', { timeout: 30000 }, async () => {
    const error = 'Something went wrong; try again in a moment.';
    const { page, problems } = await pageWith([], {}, { status: 507, body: { error, code: 'storage_full' } });
    await fillForm(page, 'as a watercolour', 1);
    await page.click('#go');
    await page.waitForSelector('#form-error:not([hidden])');
    assert.equal(await page.textContent('#form-error .form-message'), error);
    assert.equal((await page.textContent('#form-error .form-advice')).trim(), codes.storage_full.advice);
    assert.equal(await page.getAttribute('#form-error .form-advice', 'data-who'), 'admin');
    assert.equal(await page.isVisible('#result'), false);
    assert.deepEqual(problems.filter((p) => !p.includes('507')), []);
    await page.context().close();
  });
});
