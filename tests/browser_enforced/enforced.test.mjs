// The page under an enforced profile, and the page's profile on a shared computer, in headless Chromium.
// Two local servers (tests/test_browser_enforced.py): VARIA_ENFORCED_URL runs with VARIA_ENFORCED_PROFILE=kids,
// VARIA_KIDS_DEFAULT_URL with VARIA_DEFAULT_PROFILE=kids and nothing enforced. Each page starts with a draft
// another person left in this browser's localStorage, asking for the general profile.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { field, fillForm, isDryRun, launch, newPage, open } from '../browser/chromium.mjs';

const ENFORCED = process.env.VARIA_ENFORCED_URL;
const KIDS_DEFAULT = process.env.VARIA_KIDS_DEFAULT_URL;
const STALE_DRAFT = JSON.stringify({ prompt: 'with a bloody sword and a gun', profile: 'general', n: 1, mode: 'edit' });

let browser;

// A fresh browser profile whose localStorage holds the stale draft before the page's own script runs, and the
// multipart body of every POST the page sends.
async function pageWithStaleDraft(base) {
  const { context, page, problems } = await newPage(browser, { viewport: { width: 1280, height: 900 } });
  await context.addInitScript((draft) => {
    if (!sessionStorage.getItem('draft-planted')) { // planted once: a reload keeps what the page saved since
      localStorage.setItem('varia.draft.v1', draft);
      sessionStorage.setItem('draft-planted', 'yes');
    }
  }, STALE_DRAFT);
  const posts = [];
  await context.route((url) => url.pathname === '/api/variations', (route, request) => {
    if (request.method() === 'POST' && !isDryRun(request)) posts.push(request.postDataBuffer()); // not a dry run
    return route.continue();
  });
  await open(page, `${base}/api/ui`);
  return { page, problems, posts };
}

const checkedProfile = (page) => page.evaluate(() => document.querySelector('input[name="profile"]:checked')?.value);

describe('the profile on the page', { concurrency: false }, () => {
  before(async () => {
    assert.ok(ENFORCED && KIDS_DEFAULT, 'tests/test_browser_enforced.py sets VARIA_ENFORCED_URL and VARIA_KIDS_DEFAULT_URL');
    browser = await launch();
  });

  after(async () => {
    await browser?.close();
  });

  test('an enforced kids profile hides the choice, says the classroom profile is on, and is what every job runs under', { timeout: 40000 }, async () => {
    const { page, problems, posts } = await pageWithStaleDraft(ENFORCED);

    assert.equal(await page.isVisible('#profile-choice'), false, 'no profile choice to make');
    assert.equal(await page.isVisible('text=Everyone'), false);
    assert.equal(await page.isVisible('#profile-locked'), true);
    assert.equal(await page.textContent('#profile-locked-title'), 'The classroom profile is on');
    assert.equal(await checkedProfile(page), 'kids', 'the stale draft did not pick the profile');
    assert.equal(await page.inputValue('#prompt'), 'with a bloody sword and a gun', 'the draft still keeps the prompt');

    // Photos of children: explained by the mode choice, with Draw a new scene offered there.
    assert.equal(await page.isVisible('#kids-photos'), true);
    assert.match(await page.textContent('#kids-photos-text'), /Azure does not edit photos of children/);
    assert.equal(await page.isChecked('#mode-generate'), false);
    await page.click('#kids-redraw');
    assert.equal(await page.isChecked('#mode-generate'), true, 'the button chose Draw a new scene');
    await page.click('label[for="mode-edit"]');

    // Even a page script that ticks the hidden Everyone button cannot change what is sent.
    await page.evaluate(() => {
      const general = document.getElementById('profile-general');
      general.disabled = false;
      general.checked = true;
    });
    await fillForm(page, 'as a watercolour', 1);
    await page.click('#go');
    await page.waitForSelector('#result:not([hidden])[data-status="succeeded"]', { timeout: 20000 });
    assert.equal(posts.length, 1);
    assert.ok(['kids', null].includes(field(posts[0], 'profile')), `the POST carried profile=${field(posts[0], 'profile')}`);
    assert.match(await page.textContent('#result-prompt'), /Kids' classroom/);

    const jobId = await page.evaluate(() => localStorage.getItem('varia.current.v1'));
    const view = await (await fetch(`${ENFORCED}/api/variations/${jobId}`)).json();
    assert.equal(view.profile, 'kids');
    assert.equal(view.profile_enforced, true);
    assert.deepEqual(problems, []);
    await page.context().close();
  });

  test('without enforcement, a draft never overrides the server default on load; a choice lasts until a reload', { timeout: 40000 }, async () => {
    const { page, problems, posts } = await pageWithStaleDraft(KIDS_DEFAULT);

    assert.equal(await page.isVisible('#profile-choice'), true, 'the choice is offered');
    assert.equal(await page.isVisible('#profile-locked'), false, 'nothing is enforced');
    assert.equal(await checkedProfile(page), 'kids', "the server's default, not the draft's general");
    assert.equal(await page.isVisible('#kids-photos'), true);

    await page.click('label[for="profile-general"]');
    assert.equal(await checkedProfile(page), 'general');
    assert.equal(await page.isVisible('#kids-photos'), false, 'the photos-of-children note is for the kids profile');
    await page.fill('#prompt', 'as pop art');

    await page.reload();
    await page.waitForSelector('html[data-ready="true"]');
    assert.equal(await checkedProfile(page), 'kids', 'a reload starts from the server default again');
    assert.equal(await page.inputValue('#prompt'), 'as pop art', 'while the prompt is kept');

    await fillForm(page, 'as a watercolour', 1);
    await page.click('#go');
    await page.waitForSelector('#result:not([hidden])[data-status="succeeded"]', { timeout: 20000 });
    assert.equal(field(posts.at(-1), 'profile'), 'kids');
    assert.deepEqual(problems, []);
    await page.context().close();
  });
});
