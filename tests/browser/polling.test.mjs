// Following a slow job in headless Chromium: the page polls the job's status soon after each new stage, then less
// and less often while the stage lasts, so a job whose images take minutes does not cost two requests a second.
// tests/test_browser.py makes the images of a job whose prompt is VARIA_SLOW_PROMPT take VARIA_SLOW_SECONDS, and
// every other stage about a second.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { fillForm, launch, openPage } from './chromium.mjs';

const SLOW_PROMPT = process.env.VARIA_SLOW_PROMPT;
const SLOW_MS = 1000 * Number(process.env.VARIA_SLOW_SECONDS || '0');

let browser;
let page;
let problems;

describe('polling a slow job', { concurrency: false }, () => {
  before(async () => {
    assert.ok(SLOW_PROMPT && SLOW_MS >= 10000, 'VARIA_SLOW_PROMPT and VARIA_SLOW_SECONDS (>= 10) must be set');
    browser = await launch();
    ({ page, problems } = await openPage(browser, { viewport: { width: 1280, height: 900 } }));
  });

  after(async () => {
    await browser?.close();
  });

  test('the page backs off while a stage lasts and polls soon again when the stage changes', { timeout: 60000 }, async (t) => {
    const polls = []; // { at, stage, status }: every status answer the page got, by the time it was asked
    page.on('response', async (response) => {
      const path = new URL(response.url()).pathname;
      if (response.request().method() !== 'GET' || !/^\/api\/variations\/[^/]+$/.test(path)) return;
      const at = Date.now();
      try {
        const view = await response.json();
        polls.push({ at, stage: view.stage, status: view.status });
      } catch {
        polls.push({ at, stage: null, status: null });
      }
    });

    await fillForm(page, SLOW_PROMPT, 1);
    await page.click('#go');
    await page.waitForSelector('#result:not([hidden])[data-status="succeeded"]', { timeout: SLOW_MS + 30000 });
    polls.sort((a, b) => a.at - b.at);

    const generating = polls.filter((p) => p.status === 'running' && p.stage === 'generating');
    const span = generating.at(-1).at - generating[0].at;
    const gaps = generating.slice(1).map((p, i) => p.at - generating[i].at);
    const described = `${generating.length} polls over ${span} ms of generating, gaps ${gaps}`;
    t.diagnostic(described);
    assert.ok(span >= SLOW_MS / 2, `the slow stage was seen for too short a time: ${described}`);
    // Polling at a steady 1 s would make 15 requests over 15 s, at 400 ms nearly 40; backing off makes about 9.
    assert.ok(generating.length <= (SLOW_MS / 1000) * 0.75, `the page polled too often: ${described}`);
    assert.ok(Math.max(...gaps) >= 3000, `the pause never grew: ${described}`);
    assert.ok(gaps[0] <= 1000, `the first polls of a new stage are not soon enough: ${described}`);
    for (let i = 1; i < gaps.length; i++) {
      assert.ok(gaps[i] >= gaps[i - 1] * 0.8, `the pause shrank while the stage lasted: ${described}`);
    }
    // The stages before it were short, and each was still seen: the pause starts small again at each change.
    const seen = polls.map((p) => p.stage).filter((stage, i, all) => stage && stage !== all[i - 1]);
    assert.ok(seen.includes('composing') && seen.includes('generating'), `stages seen: ${seen}`);
  });

  test('the page raised no errors', () => {
    assert.deepEqual(problems, []);
  });
});
