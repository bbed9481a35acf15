// The function key in headless Chromium. In Azure every API route needs the key; here playwright stands in for the
// Functions host: it answers 401 to any /api/variations request without the right x-functions-key header, and
// records every request the page makes. The key must travel in that header only: never in a URL the page
// requests, shows, links to or keeps in its address, so it cannot reach a server log, the history or a copied link.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  BASE, IMAGE, N, PNG_SIGNATURE, downloaded, fillForm, isDryRun, launch, newPage, open, waitForImages,
} from './chromium.mjs';

const KEY = 'vk_9Qm2TzLr4wXa7Hs3NcPe_Bd6Yu8Gf1Jk-Zo5Wi0Vx=='; // the shape of a Functions key, base64-ish
const LEAKS = [KEY, encodeURIComponent(KEY), 'code='];

let browser;

// Every URL the page has in it: its address, every element's src, href, srcset (and the like), the image
// sources the browser chose, and every resource the page loaded as the page's own timing records list them.
function urlsInPage(page) {
  return page.evaluate(() => {
    const urls = [location.href, document.URL, document.referrer];
    for (const el of document.querySelectorAll('*')) {
      for (const name of ['src', 'href', 'srcset', 'action', 'formaction', 'poster', 'data', 'data-src']) {
        const value = el.getAttribute(name);
        if (value) urls.push(value);
      }
      if (el instanceof HTMLImageElement && el.currentSrc) urls.push(el.currentSrc);
    }
    urls.push(...performance.getEntriesByType('resource').map((entry) => entry.name));
    urls.push(...performance.getEntriesByType('navigation').map((entry) => entry.name));
    return urls;
  });
}

function assertNoKey(urls, where) {
  assert.ok(urls.length > 0, `no URLs recorded ${where}`);
  for (const url of urls) {
    for (const leak of LEAKS) assert.ok(!url.includes(leak), `${where}: ${url} contains ${leak === KEY ? 'the key' : leak}`);
  }
}

// A page (not opened yet) whose API needs the key, as in Azure; `requests` gets every request of its context, `api`
// every API call with the key header it carried.
async function keyedPage() {
  const { context, page, problems } = await newPage(browser, { viewport: { width: 1280, height: 900 } });
  const requests = [];
  const api = [];
  context.on('request', (request) => requests.push(request.url()));
  await context.route((url) => url.pathname.startsWith('/api/variations'), async (route, request) => {
    const key = (await request.allHeaders())['x-functions-key'];
    api.push({ method: request.method(), path: new URL(request.url()).pathname, key, dry: request.method() === 'POST' && isDryRun(request) });
    if (key !== KEY) return route.fulfill({ status: 401, body: '' }); // what the Functions host answers
    return route.continue();
  });
  return { context, page, problems, requests, api };
}

describe('the function key', { concurrency: false }, () => {
  before(async () => {
    assert.ok(BASE && IMAGE, 'VARIA_URL and VARIA_IMAGE must be set (tests/test_browser.py does it)');
    browser = await launch();
  });

  after(async () => {
    await browser?.close();
  });

  test('a whole job with the key: the key is only ever in the x-functions-key header', { timeout: 60000 }, async () => {
    const { context, page, problems, requests, api } = await keyedPage();
    await open(page, `${BASE}/api/ui#code=${encodeURIComponent(KEY)}`);
    assert.equal(page.url(), `${BASE}/api/ui`, 'the key is taken out of the address bar');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('varia.key.v1')), KEY, 'this tab keeps the key');

    await fillForm(page, 'as a pop art poster with bold dots');
    await page.click('#go');
    await page.waitForSelector('#result:not([hidden])[data-status="succeeded"]', { timeout: 30000 });
    await waitForImages(page, N);

    // The downloads are the stored files: the picture's bytes are the PNG the API serves.
    const picture = await downloaded(page, page.locator('#gallery a.download').first());
    assert.match(picture.name, /^varia-as-a-pop-art[a-z-]*-[0-9a-f]{8}-1\.png$/);
    assert.deepEqual([...picture.bytes.subarray(0, 8)], PNG_SIGNATURE);
    const path = api.find((call) => call.path.endsWith('/images/0')).path;
    const served = Buffer.from(await (await fetch(`${BASE}${path}`, { headers: { 'x-functions-key': KEY } })).arrayBuffer());
    assert.ok(picture.bytes.equals(served), 'the downloaded picture is the stored one');
    const manifest = JSON.parse((await downloaded(page, page.locator('#downloads a[download]').last())).bytes.toString());
    assert.equal(manifest.status, 'succeeded');
    assert.equal(manifest.variations.length, N);

    // A reload keeps the key (this tab), so the result and the history's thumbnail load again.
    await page.reload();
    await page.waitForSelector('html[data-ready="true"]');
    await page.waitForSelector('#result:not([hidden])[data-status="succeeded"]', { timeout: 10000 });
    await waitForImages(page, N);
    await page.waitForFunction(() => {
      const thumb = document.querySelector('#history img.thumb');
      return thumb && thumb.complete && thumb.naturalWidth > 0;
    });

    assertNoKey(await urlsInPage(page), 'in the page');
    assertNoKey(requests, 'in a request');
    await page.waitForFunction(() => [...document.querySelectorAll('#result a[download], #result img')]
      .every((el) => (el.href || el.src || '').startsWith('blob:')));
    const links = await page.$$eval('#result a[download], #result img', (els) => els.map((el) => el.href || el.src));
    // With a key every picture and download is fetched with the header and shown from an object URL: the source, N
    // results, N downloads, the source's and the manifest's.
    assert.ok(links.length >= 2 * N + 3 && links.every((url) => url.startsWith('blob:')), `not all blob: URLs: ${links}`);
    const storedText = await page.evaluate(() => JSON.stringify({ ...localStorage }));
    assert.ok(!storedText.includes(KEY), 'the key is not in localStorage');

    // Every API call carried the key in the header, and the page made every kind of call.
    assert.deepEqual(api.filter((call) => call.key !== KEY), [], 'an API request went without the key');
    const kinds = new Set(api.map((call) => `${call.method} ${call.path.replace(/http-[0-9a-f]{32}/, '{id}')}`));
    for (const kind of ['POST /api/variations', 'GET /api/variations/{id}', 'GET /api/variations/{id}/images/source',
      'GET /api/variations/{id}/images/0', 'GET /api/variations/{id}/images/manifest']) {
      assert.ok(kinds.has(kind), `the page never made ${kind}: ${[...kinds]}`);
    }
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('without the key the page asks for it, then sends it in the header', { timeout: 60000 }, async () => {
    const { context, page, problems, requests, api } = await keyedPage();
    await open(page, `${BASE}/api/ui`);
    assert.equal(await page.isVisible('#key-box'), false, 'no key field until the API asks for a key');

    await fillForm(page, 'as a neon sign glowing at night', 1);
    await page.click('#go');
    await page.waitForSelector('#key-box:not([hidden])');
    assert.match(await page.textContent('#form-error'), /needs an access key/);
    assert.equal(await page.isEnabled('#go'), true, 'the button comes back after the refusal');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'key');

    await page.fill('#key', KEY);
    const typedAt = api.length;
    await page.click('#go');
    await page.waitForSelector('#result:not([hidden])[data-status="succeeded"]', { timeout: 30000 });
    await waitForImages(page, 1);
    assert.equal(await page.isVisible('#key-box'), false);
    assert.equal(await page.evaluate(() => sessionStorage.getItem('varia.key.v1')), KEY);

    assert.deepEqual(api.filter((call) => call.method === 'POST' && !call.dry).map((call) => call.key), [undefined, KEY]);
    assert.ok(api.slice(typedAt).every((call) => call.key === KEY), 'every call after the key was typed carried it');
    assertNoKey(await urlsInPage(page), 'in the page');
    assertNoKey(requests, 'in a request');
    assert.deepEqual(problems, []);
    await context.close();
  });
});
