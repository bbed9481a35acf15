// The page's job states in headless Chromium, each a bug the page once had: what the panel shows while a job is
// sent, every running job checked (after a reload too), an error next to what is wrong, Try again on a lost job
// without force, Stop waiting and Cancel sending, previews while a job runs, an offline result that could not do
// what was asked, and a refusal in French, Spanish and Russian that quotes the person's own word. Jobs run on the
// local server where the state needs a real one; playwright answers the API where the state is hard to make (a
// lost job, a job that never ends).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';

import { BASE, IMAGE, field, fillForm, isDryRun, launch, newPage, open, openPage, waitForImages } from './chromium.mjs';

const API = '/api/variations';
const SLOW_PROMPT = process.env.VARIA_SLOW_PROMPT;
const SLOW_MS = 1000 * Number(process.env.VARIA_SLOW_SECONDS || '0');
const JOB_X = `http-${'c'.repeat(32)}`;
const DESKTOP = { viewport: { width: 1440, height: 900 }, locale: 'en-US' };

let browser;

// Job POSTs (dry runs aside) playwright holds until the test lets them go.
function holdJobs(context) {
  const posts = [];
  let gate = null;
  context.route((url) => url.pathname === API, async (route, request) => {
    if (request.method() !== 'POST' || isDryRun(request)) return route.continue();
    posts.push(request.postDataBuffer());
    if (gate) await gate.promise;
    return route.continue().catch(() => null); // a request the page cancelled meanwhile is gone
  });
  return {
    posts,
    hold() {
      let release;
      gate = { promise: new Promise((resolve) => { release = resolve; }) };
      return () => {
        gate = null;
        release();
      };
    },
  };
}

// Status requests the page made for a job, counted as they leave.
function countPolls(page, id) {
  const times = [];
  page.on('request', (request) => {
    if (request.method() === 'GET' && new URL(request.url()).pathname === `${API}/${id}`) times.push(Date.now());
  });
  return times;
}

// A page whose API is played by playwright: POSTs start JOB_X (the bodies are kept), its status is `view()`.
async function mocked(view, options = DESKTOP) {
  const { context, page, problems } = await newPage(browser, options);
  const posts = [];
  await context.route((url) => url.pathname === API, (route, request) => {
    if (request.method() !== 'POST') return route.continue();
    if (isDryRun(request)) {
      return route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify({ dry_run: true, estimate: { paid_calls: {}, usd: 0, quality: 'low' } }) });
    }
    posts.push(request.postDataBuffer());
    return route.fulfill({ status: 202, contentType: 'application/json', body: JSON.stringify({ job_id: JOB_X, status_url: `${API}/${JOB_X}`, created: true }) });
  });
  await context.route((url) => url.pathname.startsWith(`${API}/${JOB_X}`), (route, request) => {
    const path = new URL(request.url()).pathname;
    if (path.includes('/images/')) return route.fulfill({ status: 200, contentType: 'image/png', body: readFileSync(IMAGE) });
    const answer = view();
    return route.fulfill({ status: answer.status || 200, contentType: 'application/json', body: JSON.stringify(answer.body) });
  });
  await open(page, `${BASE}/api/ui`);
  return { context, page, problems, posts };
}

async function until(condition, ms, message) {
  const end = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > end) assert.fail(message);
    await new Promise((resolve) => { setTimeout(resolve, 100); });
  }
}

describe("the page's job states", { concurrency: false }, () => {
  before(async () => {
    assert.ok(BASE && IMAGE, 'VARIA_URL and VARIA_IMAGE must be set (tests/test_browser.py does it)');
    browser = await launch();
  });

  after(async () => {
    await browser?.close();
  });

  test('no picture, no prompt, a field the server refused: each said next to its field', { timeout: 30000 }, async () => {
    const { context, page, problems } = await openPage(browser, DESKTOP);
    await page.click('#go');
    assert.equal(await page.isVisible('#file-error'), true, 'a visible message next to the picture field');
    assert.equal(await page.textContent('#file-error'), 'First pick a picture (step 1).');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'file');
    assert.equal(await page.isVisible('#form-error'), false);
    // The message is in view where the field is (not only for a screen reader).
    const box = await page.locator('#file-error').boundingBox();
    assert.ok(box.height > 10 && box.y >= 0 && box.y < 900, `the message is on screen: ${JSON.stringify(box)}`);

    await page.setInputFiles('#file', IMAGE);
    assert.equal(await page.isVisible('#file-error'), false, 'a picture takes the message away');
    await page.click('#go');
    assert.equal(await page.isVisible('#prompt-error'), true);
    assert.equal(await page.evaluate(() => document.activeElement.id), 'prompt');

    await context.route((url) => url.pathname === API, (route, request) => {
      if (request.method() !== 'POST' || isDryRun(request)) return route.continue();
      const problem = "'prompt' is too long: at most 1000 characters.";
      return route.fulfill({ status: 400, contentType: 'application/json', body: JSON.stringify({ error: problem, code: 'invalid_request', fields: [{ field: 'prompt', problem }] }) });
    });
    await page.fill('#prompt', 'as a watercolour');
    await page.click('#go');
    await page.waitForSelector('#prompt-error:not([hidden])');
    assert.match(await page.textContent('#prompt-error'), /too long/);
    assert.equal(await page.isVisible('#form-error'), false, 'the field error is beside the prompt, not above the button');
    assert.deepEqual(problems.filter((p) => !p.includes('400')), []);
    await context.close();
  });

  test("while job B is sent the panel shows B's sending, not A; Cancel sending stops it", { timeout: 60000 }, async () => {
    const { context, page, problems } = await newPage(browser, DESKTOP);
    const jobs = holdJobs(context);
    await open(page, `${BASE}/api/ui`);
    await fillForm(page, 'as an old photo with warm sepia tones', 1);
    await page.click('#go');
    await page.waitForSelector('#result:not([hidden])[data-status="succeeded"]', { timeout: 30000 });
    await waitForImages(page, 1);

    await page.fill('#prompt', 'as a neon sign glowing at night');
    const release = jobs.hold();
    await page.click('#go');
    // At once, before any answer: the panel is B's, with the upload's progress.
    assert.equal(await page.isVisible('#sending'), true, 'the "Sending…" state shows as soon as the button is pressed');
    assert.equal(await page.textContent('#sending-title'), 'Sending your picture…');
    assert.match(await page.textContent('#sending-prompt'), /neon sign/);
    assert.equal(await page.isVisible('#upload'), true, 'the upload progress is shown');
    for (const id of ['result', 'progress', 'welcome']) assert.equal(await page.isVisible(`#${id}`), false, `#${id} is hidden`);
    assert.doesNotMatch(await page.innerText('#job'), /sepia/, "nothing of job A's title, prompt or pictures");
    assert.equal(await page.isVisible('#gallery img'), false);

    // Cancel sending: the request is dropped, A is shown again, nothing was started.
    await page.click('#cancel-send');
    await page.waitForSelector('#make[aria-busy="false"]');
    await page.waitForSelector('#result:not([hidden])[data-status="succeeded"]');
    assert.match(await page.textContent('#result-prompt'), /sepia/);
    release();
    assert.equal(await page.locator('#history .history-item').count(), 1, 'the cancelled job is not in the list');

    // Sent for real this time: B's result replaces A's.
    await page.click('#go');
    await page.waitForFunction(() => /neon/.test(document.getElementById('result-prompt').textContent)
      && document.getElementById('result').dataset.status === 'succeeded');
    assert.equal(jobs.posts.length, 3);
    assert.deepEqual(problems, []);
    await context.close();
  });

  test("the upload's progress is reported, and a file the server refuses is said next to the picture field", { timeout: 30000 }, async () => {
    const { context, page, problems } = await openPage(browser, DESKTOP);
    await page.evaluate(() => {
      window.uploadLines = [];
      const line = document.getElementById('upload-line');
      new MutationObserver(() => window.uploadLines.push(line.textContent))
        .observe(line, { childList: true, characterData: true, subtree: true });
    });
    // 15 MB that call themselves a PNG: the page lets them go (the server is the judge of what is a picture).
    await page.setInputFiles('#file', { name: 'big.png', mimeType: 'image/png', buffer: Buffer.alloc(15e6, 7) });
    await page.fill('#prompt', 'as a watercolour');
    await page.click('#go');
    await page.waitForSelector('#file-error:not([hidden])', { timeout: 20000 });
    const lines = await page.evaluate(() => window.uploadLines);
    assert.ok(lines.length > 0 && /^Sent/.test(lines.at(-1)), `the upload's progress was shown: ${lines}`);
    assert.match(await page.textContent('#file-error .form-message'), /Not an image/);
    assert.equal(await page.isVisible('#form-error'), false);
    assert.equal(await page.isVisible('#welcome'), true, 'no job: the panel is as it was');
    assert.deepEqual(problems.filter((p) => !p.includes('400')), []);
    await context.close();
  });

  test('starting job B does not stop checking job A, and a reload checks every running job', { timeout: SLOW_MS + 60000 }, async () => {
    assert.ok(SLOW_PROMPT && SLOW_MS >= 10000, 'VARIA_SLOW_PROMPT and VARIA_SLOW_SECONDS must be set');
    const { context, page, problems } = await openPage(browser, DESKTOP);
    await fillForm(page, SLOW_PROMPT, 2); // two pictures: not the polling test's job (one picture)
    await page.click('#go');
    await page.waitForSelector('#progress:not([hidden])[data-stage="generating"]', { timeout: 20000 });
    const slowJob = await page.evaluate(() => localStorage.getItem('varia.current.v1'));
    const polls = countPolls(page, slowJob);

    await page.fill('#prompt', 'as a cartoon with thick outlines');
    await page.click('label[for="n-1"]');
    await page.click('#go');
    await page.waitForFunction(() => /cartoon/.test(document.getElementById('result-prompt').textContent)
      && document.getElementById('result').dataset.status === 'succeeded', null, { timeout: 30000 });
    const afterB = polls.length;
    await until(() => polls.length > afterB, 12000, 'job A was not checked after B started');
    assert.equal(await page.getAttribute(`#history [data-job="${slowJob}"]`, 'data-status'), 'running');

    await page.reload();
    await page.waitForSelector('html[data-ready="true"]');
    const reloadedAt = Date.now();
    await page.waitForSelector('#result:not([hidden])[data-status="succeeded"]');
    assert.match(await page.textContent('#result-prompt'), /cartoon/, 'job B is the one shown');
    await page.waitForSelector(`#history [data-job="${slowJob}"][data-status="succeeded"]`, { timeout: SLOW_MS + 20000 });
    assert.ok(polls.some((at) => at > reloadedAt), 'after the reload, job A was checked again');
    assert.match(await page.textContent('#result-prompt'), /cartoon/, 'job A finishing does not take the panel');
    // The finished job's thumbnail is its first result.
    assert.match(await page.getAttribute(`#history [data-job="${slowJob}"] img.thumb`, 'data-src'), /\/images\/0$/);
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('a job from the history runs again with no picture to pick: its stored source is sent', { timeout: 40000 }, async () => {
    const { context, page, problems } = await newPage(browser, DESKTOP);
    const jobs = holdJobs(context);
    await open(page, `${BASE}/api/ui`);
    await fillForm(page, 'as a pixel art scene from an old game', 1);
    await page.click('#go');
    await page.waitForSelector('#result:not([hidden])[data-status="succeeded"]', { timeout: 30000 });
    const first = await page.evaluate(() => localStorage.getItem('varia.current.v1'));
    await page.reload(); // the page no longer has the picture that was picked
    await page.waitForSelector('html[data-ready="true"]');
    await page.click(`#history [data-job="${first}"] .history-open`);
    await page.waitForSelector('#result:not([hidden])[data-status="succeeded"] #rerun');
    await page.click('#rerun');
    await page.waitForFunction((before) => {
      const current = localStorage.getItem('varia.current.v1');
      return current !== before && document.getElementById('result').dataset.status === 'succeeded';
    }, first, { timeout: 30000 });
    assert.equal(jobs.posts.length, 2);
    assert.equal(field(jobs.posts[1], 'force'), 'true');
    assert.equal(field(jobs.posts[1], 'prompt'), 'as a pixel art scene from an old game');
    assert.ok(jobs.posts[1].includes(`filename="varia-${first.slice(-8)}-source.png"`), 'the stored source was sent');
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('the output options: a square JPEG at the compression chosen; no transparency with JPEG', { timeout: 40000 }, async () => {
    const { context, page, problems } = await newPage(browser, DESKTOP);
    const jobs = holdJobs(context);
    await open(page, `${BASE}/api/ui`);
    await fillForm(page, 'as a postcard with faded colours', 1);
    assert.equal(await page.isVisible('#compression-box'), false, 'no compression for a PNG');
    await page.click('label[for="transparent"]');
    await page.click('label[for="format-jpeg"]');
    assert.equal(await page.isVisible('#compression-box'), true);
    assert.equal(await page.isDisabled('#transparent'), true, 'a JPEG has no transparency');
    assert.equal(await page.isChecked('#transparent'), false);
    assert.equal(await page.isVisible('#transparent-hint'), true);
    await page.click('label[for="aspect-square"]');
    await page.fill('#compression', '60'); // a range input takes fill
    assert.equal(await page.textContent('#compression-value'), '60%');
    await page.click('#go');
    await page.waitForSelector('#result:not([hidden])[data-status="succeeded"]', { timeout: 30000 });
    const sent = jobs.posts.at(-1);
    assert.deepEqual(['format', 'compression', 'aspect', 'background', 'quality'].map((name) => field(sent, name)),
      ['jpeg', '60', 'square', 'auto', 'low']);
    assert.match(await page.getAttribute('#gallery a.download', 'download'), /\.jpg$/);
    await page.click('#about summary');
    assert.match(await page.textContent('#facts dd[data-fact="output"]'), /square · JPEG \(60%\)/);
    await page.waitForFunction(() => document.querySelector('#gallery img.variation').naturalWidth > 0);
    const { width, height } = await page.$eval('#gallery img.variation', (img) => ({ width: img.naturalWidth, height: img.naturalHeight }));
    assert.equal(width, height, 'a square picture');
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('an exact size: sent as the form field size, and the picture comes back in that shape', { timeout: 40000 }, async () => {
    const { context, page, problems } = await newPage(browser, DESKTOP);
    const jobs = holdJobs(context);
    await open(page, `${BASE}/api/ui`);
    await fillForm(page, 'as a postcard with faded colours', 1);
    assert.equal(await page.isVisible('#size'), true, 'offline, the painter crops to any size the rules allow');
    await page.fill('#size', '768x1024');
    await page.click('#go');
    await page.waitForSelector('#result:not([hidden])[data-status="succeeded"]', { timeout: 30000 });
    assert.equal(field(jobs.posts.at(-1), 'size'), '768x1024');
    await page.waitForFunction(() => document.querySelector('#gallery img.variation').naturalWidth > 0);
    const { width, height } = await page.$eval('#gallery img.variation', (img) => ({ width: img.naturalWidth, height: img.naturalHeight }));
    assert.ok(Math.abs(width / height - 0.75) < 0.02, `a 3:4 picture, not ${width}x${height}`);
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('Try again on a lost job sends the same request without force; "Make new pictures" asks for new ones', { timeout: 30000 }, async () => {
    const lost = { status: 404, body: { error: `No job ${JOB_X}`, code: 'job_not_found' } };
    const { context, page, problems, posts } = await mocked(() => lost);
    await fillForm(page, 'as a watercolour', 2);
    await page.click('#go');
    await page.waitForSelector('#result:not([hidden])[data-status="lost"]');
    assert.equal(await page.textContent('#retry'), 'Try again');
    assert.match(await page.textContent('#notice-help'), /pictures already made are kept, not paid again/);
    await page.click('#retry');
    await page.waitForSelector('#result:not([hidden])[data-status="lost"]');
    assert.equal(posts.length, 2);
    assert.equal(field(posts[1], 'force'), null, 'Try again sends no force: the same job, whose stored pictures are reused');
    assert.equal(field(posts[1], 'prompt'), 'as a watercolour');
    assert.equal(field(posts[1], 'n'), '2');

    await page.click('#renew');
    await page.waitForSelector('#result:not([hidden])[data-status="lost"]');
    assert.equal(field(posts[2], 'force'), 'true', 'new pictures, asked for with a clearly labelled button');

    // After a reload the page no longer has the picture: Try again sends the one the server kept.
    await page.reload();
    await page.waitForSelector('html[data-ready="true"]');
    await page.waitForSelector('#result:not([hidden])[data-status="lost"]');
    await page.click('#retry');
    await until(() => posts.length === 4, 10000, 'Try again sent nothing after the reload');
    await page.waitForSelector('#result:not([hidden])[data-status="lost"]');
    assert.equal(field(posts[3], 'force'), null);
    assert.ok(posts[3].includes('filename="varia-cccccccc-source.png"'), 'the stored source was sent');
    assert.deepEqual(problems.filter((p) => !p.includes('404')), []);
    await context.close();
  });

  test('a running job shows its previews; Stop waiting stops checking it', { timeout: 30000 }, async () => {
    const running = {
      body: {
        job_id: JOB_X, status: 'running', stage: 'generating', done: 0, total: 2, message: null,
        previews: [{ index: 0, url: `${API}/${JOB_X}/images/preview-0` }],
      },
    };
    const { context, page, problems } = await mocked(() => running);
    const polls = countPolls(page, JOB_X);
    await fillForm(page, 'as a watercolour', 2);
    await page.click('#go');
    await page.waitForSelector('#previews img.preview');
    await page.waitForFunction(() => document.querySelector('#previews img').naturalWidth > 0);
    assert.equal(await page.textContent('#previews .tag'), 'Preview 1');
    assert.equal(await page.textContent('#stop'), 'Stop waiting');
    await page.click('#stop');
    const stoppedAt = polls.length;
    assert.equal(await page.isVisible('#welcome'), true);
    assert.equal(await page.textContent(`#history [data-job="${JOB_X}"] .badge`), 'Not followed');
    await new Promise((resolve) => { setTimeout(resolve, 2500); });
    assert.equal(polls.length, stoppedAt, 'no status request after Stop waiting');
    // Opening it again follows it again.
    await page.click(`#history [data-job="${JOB_X}"] .history-open`);
    await page.waitForSelector('#progress:not([hidden])');
    assert.ok(polls.length > stoppedAt);
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('Cancel this job asks the server to cancel it; the result says so and offers new pictures', { timeout: 30000 }, async () => {
    let cancelled = false;
    const running = { body: { job_id: JOB_X, status: 'running', stage: 'captioning', done: 0, total: 1, message: null } };
    const ended = {
      body: {
        job_id: JOB_X, status: 'failed', stage: 'done', code: 'cancelled', partial: false, done: 0, total: 1,
        message: 'The job was cancelled at captioning: no paid call was made after that.', prompt: 'as a watercolour',
        profile: 'general', providers: {}, source_url: `${API}/${JOB_X}/images/source`, images: [],
      },
    };
    const { context, page, problems, posts } = await mocked(() => (cancelled ? ended : running));
    const cancels = [];
    await context.route((url) => url.pathname === `${API}/${JOB_X}/cancel`, (route, request) => {
      cancels.push(request.method());
      cancelled = true;
      return route.fulfill({ status: 202, contentType: 'application/json', body: JSON.stringify({ job_id: JOB_X, cancelling: true }) });
    });
    await fillForm(page, 'as a watercolour', 1);
    await page.click('#go');
    await page.waitForSelector('#progress:not([hidden])');
    await page.click('#cancel-job');
    await page.waitForSelector('#result:not([hidden])[data-status="failed"]');
    assert.deepEqual(cancels, ['POST']);
    assert.equal(await page.textContent('#result-title'), 'You cancelled this job');
    assert.equal(await page.isVisible('#renew'), true);
    assert.equal(await page.isVisible('#retry'), false);
    await page.click('#renew');
    await until(() => posts.length === 2, 5000, 'Make new pictures sent nothing');
    assert.equal(field(posts[1], 'force'), 'true');
    assert.deepEqual(problems, []);
    await context.close();
  });

  test("the offline painter's limits are the headline, not \"Here is your new picture!\"", { timeout: 30000 }, async () => {
    const { context, page, problems } = await openPage(browser, DESKTOP);
    await fillForm(page, 'put a party hat on the dog', 1); // the offline painter adds nothing to a picture
    await page.click('#go');
    await page.waitForSelector('#result:not([hidden])[data-status="succeeded"]', { timeout: 30000 });
    assert.equal(await page.textContent('#result-title'), "Varia's offline painter could not do all you asked");
    assert.match(await page.textContent('#notice-text'), /offline painter/, "the server's sentence says what it could not do");
    assert.equal(await page.getAttribute('#notice-help', 'data-codes'), 'offline_limited');
    assert.match(await page.getAttribute('#gallery a.download', 'download'), /^varia-put-a-party-hat[a-z-]*-[0-9a-f]{8}-1\.png$/);
    assert.match(await page.textContent('#facts dd[data-fact="paid"]'), /pictures: 0/);
    await page.selectOption('#lang', 'fr');
    assert.equal(await page.textContent('#result-title'), 'Le peintre hors ligne de Varia n’a pas pu tout faire');
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('a refusal in French, Spanish and Russian quotes the word the person wrote', { timeout: 30000 }, async () => {
    const { context, page, problems } = await openPage(browser, { ...DESKTOP, locale: 'fr-FR' });
    assert.equal(await page.inputValue('#lang'), 'fr', "the browser's language is the page's");
    assert.equal(await page.textContent('#make-title'), 'Créer de nouvelles images');
    await fillForm(page, 'avec une épée sanglante et du bloody', 1);
    await page.click('label[for="profile-kids"]');
    await page.click('#go');
    await page.waitForSelector('#result:not([hidden])[data-status="refused"]', { timeout: 20000 });
    assert.equal(await page.textContent('#result-title'), 'Varia ne peut pas faire celle-ci');
    const french = await page.textContent('#notice-text');
    assert.match(french, /^Cette demande contient « [^»]+ », ce qui n’est pas permis pour les enfants\.$/);
    const word = french.match(/« ([^»]+) »/)[1];
    assert.ok('avec une épée sanglante et du bloody'.toLowerCase().includes(word.toLowerCase()), `the person's own word: ${word}`);
    assert.match(await page.textContent('#notice-help'), /Que faire : Changez la demande\./);
    await page.selectOption('#lang', 'es');
    assert.equal(await page.textContent('#notice-text'), `Esta petición menciona «${word}», que no está permitido para niños.`);
    await page.selectOption('#lang', 'ru');
    assert.equal(await page.textContent('#notice-text'), `В запросе есть «${word}», а это не разрешено для детей.`);
    assert.equal(await page.textContent(`#history .badge`), 'Не разрешено');
    assert.deepEqual(problems, []);
    await context.close();
  });
});
