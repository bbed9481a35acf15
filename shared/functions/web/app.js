// Varia's web page: pick a picture, say how it should change, follow every job sent, show the results as a grid
// to enlarge, compare, vary, remix, refine and download. Plain DOM, no framework. Server text only ever goes in
// through textContent (no HTML string is parsed), and the page's Content-Security-Policy allows no inline script or
// style. Every text the page writes comes from the dictionaries of i18n.js.

import { chooseLanguage, has, language, setLanguage, t, tn, translatePage } from './i18n.js';

const API = new URL('../variations', import.meta.url).pathname; // /api/variations, whatever the route prefix
const CONFIG_URL = new URL('config.json', import.meta.url).pathname;
// In Azure the API needs a function key. The page takes it from its address (/api/ui#code=<key>: the fragment
// never reaches a server), or from the access-key field it shows when the API answers 401, keeps it in this tab
// only (sessionStorage) and sends it in the x-functions-key header, never in a URL: with a key, pictures and
// downloads are fetched with the header and shown from blob: URLs. Without one they are shown from their own
// address, so the server's Content-Disposition names a picture saved from the page.
const KEY_STORE = 'varia.key.v1';

const JOBS_KEY = 'varia.jobs.v1';
const CURRENT_KEY = 'varia.current.v1';
// The prompt, count, mode and output options being written, so a reload keeps them. Never the profile: it always
// starts as the server says (config.json), so one person's choice on a shared computer is not the next person's.
const DRAFT_KEY = 'varia.draft.v1';
const MAX_JOBS = 40;
const JOB_ID = /^(blob|http|cli)-[0-9a-f]{32}$/;
const FINISHED = new Set(['succeeded', 'refused', 'failed']);

const STAGES = ['preparing', 'captioning', 'composing', 'generating', 'saving'];

// The draft-then-final loop: drafts are cheap (quality low), a refined picture is one, at the best quality.
const DRAFT_QUALITY = 'low';
const FINAL_QUALITY = 'high';

const FALLBACK_CONFIG = {
  presets: {}, profiles: ['general', 'kids'], default_profile: 'general', enforced_profile: null,
  default_variations: 2, max_variations: 4, max_upload_mb: 20, codes: {}, custom_sizes: false,
};

// What to do next is chosen by the answer's `code`, from the table config.json carries (shared/core/codes.py),
// never by reading the message: messages are for people and change, codes are stable. The page says the advice in
// its own language when its dictionary has the code, else in the server's words. A code this page does not know
// (a newer server) gets the generic next step.
const GENERIC_WHO = 'later';
// Refusals by a safety check: in the kids' classroom, say why ideas are stricter there.
const SAFETY_CODES = new Set(['word_check', 'composer_refused', 'service_refused', 'moderation_refused']);
const REDRAW_CODE = 'minor_edit_refused'; // Azure does not edit photos of children: drawing a new scene works

function adviceFor(code) {
  const entry = code ? state.config.codes?.[code] : null;
  if (!entry || typeof entry.advice !== 'string') return { advice: t('advice_generic'), who: GENERIC_WHO, code: code || '' };
  return { ...entry, advice: t(`advice.${code}`, {}, entry.advice), code };
}

const $ = (id) => document.getElementById(id);
const state = {
  config: FALLBACK_CONFIG, file: null, previewUrl: null, current: null, repeated: new Set(),
  key: '', sending: null, // while a job is being sent: { xhr, values, cancelled }
  sentFiles: new Map(), // job id -> the picture this page sent for it (Try again and Draw a new scene send it again)
  watchers: new Map(), // job id -> { stop }: every running job is checked until it ends, shown or not
  views: new Map(), // job id -> the last status view, so the job shown can be drawn again in another language
};

// ---- small helpers -----------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'class') el.className = value;
    else if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function megabytes(bytes) {
  return bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${Math.max(1, Math.round(bytes / 1e3))} KB`;
}

function ago(time) {
  const relative = new Intl.RelativeTimeFormat(language(), { numeric: 'auto' });
  const seconds = Math.round((time - Date.now()) / 1000);
  if (seconds > -45) return t('just_now');
  const minutes = Math.round(seconds / 60);
  if (minutes > -60) return relative.format(minutes, 'minute');
  const hours = Math.round(minutes / 60);
  if (hours > -24) return relative.format(hours, 'hour');
  return relative.format(Math.round(hours / 24), 'day');
}

function usd(value) {
  return new Intl.NumberFormat(language(), { style: 'currency', currency: 'USD', maximumFractionDigits: 3 }).format(value);
}

function profileName(profile) {
  return profile === 'kids' ? t('profile_kids') : t('profile_general');
}

// ---- the function key: in a header, never in a URL ----------------------------------------------------

function setKey(key) {
  state.key = key || '';
  try {
    if (state.key) sessionStorage.setItem(KEY_STORE, state.key);
    else sessionStorage.removeItem(KEY_STORE);
  } catch {
    // Storage blocked: the key lasts as long as the page.
  }
}

// Reads the key from the address, then takes it out of the address bar and of this tab's history, so it is not
// in a link someone copies or bookmarks. A key put in `?code=` is taken too (the server has seen it already).
function takeKeyFromAddress() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const query = new URLSearchParams(location.search);
  const key = fragment.get('code') || query.get('code') || '';
  if (fragment.has('code') || query.has('code')) {
    fragment.delete('code');
    query.delete('code');
    const search = query.toString() ? `?${query}` : '';
    const hash = fragment.toString() ? `#${fragment}` : '';
    history.replaceState(history.state, '', location.pathname + search + hash);
  }
  return key;
}

function loadKey() {
  let stored = '';
  try {
    stored = sessionStorage.getItem(KEY_STORE) || '';
  } catch {
    stored = '';
  }
  setKey(takeKeyFromAddress() || stored);
}

function apiFetch(url, options = {}) {
  const headers = state.key ? { 'x-functions-key': state.key } : {};
  return fetch(url, { cache: 'no-store', ...options, headers: { ...headers, ...(options.headers || {}) } });
}

const KEY_REFUSED = (status) => status === 401 || status === 403;

function askForKey() {
  $('key-box').hidden = false;
  showFormError(state.key ? t('key_refused') : t('key_needed'), $('key'));
}

// ---- pictures and downloads ---------------------------------------------------------------------------
// Each element that shows or downloads a stored file says which one in data-src (an API path, no key in it).
// Without a key the element points at the path itself. With a key the file is fetched with the header: one object
// URL per path, shared by the elements showing it, revoked once no element in the page uses it.

const blobs = new Map(); // API path -> { promise, url }
let sweepQueued = false;

function blobUrl(path) {
  let entry = blobs.get(path);
  if (entry) return entry.promise;
  entry = { url: null };
  // A job's files never change (sending it again with force makes a new job), so the HTTP cache may keep them.
  entry.promise = apiFetch(path, { cache: 'default' }).then(async (response) => {
    if (!response.ok) throw new Error(`${path}: ${response.status}`);
    const blob = await response.blob();
    if (blobs.get(path) !== entry) throw new Error(`${path}: no longer shown`);
    entry.url = URL.createObjectURL(blob);
    return entry.url;
  });
  entry.promise.catch(() => {
    if (blobs.get(path) === entry) blobs.delete(path); // the next page that shows it tries again
  });
  blobs.set(path, entry);
  return entry.promise;
}

function sweepBlobs() {
  const used = new Set([...document.querySelectorAll('[data-src]')].map((el) => el.dataset.src));
  for (const [path, entry] of blobs) {
    if (used.has(path)) continue;
    blobs.delete(path);
    if (entry.url) URL.revokeObjectURL(entry.url);
  }
}

function scheduleSweep() {
  if (sweepQueued) return;
  sweepQueued = true;
  queueMicrotask(() => {
    sweepQueued = false;
    sweepBlobs();
  });
}

// Runs after the rendering in progress: the elements being built are in the page by then.
function afterRender(task) {
  queueMicrotask(task);
  scheduleSweep();
}

function stored(tag, path, attrs, ...children) {
  const el = h(tag, { ...attrs, 'data-src': path }, ...children);
  const attribute = tag === 'img' ? 'src' : 'href';
  if (!state.key) {
    el.setAttribute(attribute, path);
    return el;
  }
  afterRender(() => {
    if (!el.isConnected) return; // replaced before it was shown
    blobUrl(path).then(
      (url) => el.setAttribute(attribute, url),
      () => el.classList.add('broken'),
    );
  });
  return el;
}

function image(path, alt, cls) {
  const img = stored('img', path, { alt, class: cls, decoding: 'async' });
  img.addEventListener('error', () => img.classList.add('broken'), { once: true });
  return img;
}

function download(path, filename, attrs, ...children) {
  return stored('a', path, { ...attrs, download: filename }, ...children);
}

// A stored file as a File, to send again (a lost job's picture, after a reload).
async function storedFile(path, name) {
  const response = await apiFetch(path, { cache: 'default' });
  if (!response.ok) return null;
  const blob = await response.blob();
  return new File([blob], name, { type: blob.type || 'image/png' });
}

// ---- this browser's jobs (localStorage) ----------------------------------------------------------

function loadJobs() {
  try {
    const jobs = JSON.parse(localStorage.getItem(JOBS_KEY) || '[]');
    return Array.isArray(jobs) ? jobs.filter((j) => j && typeof j.id === 'string' && JOB_ID.test(j.id)) : [];
  } catch {
    return []; // unreadable or blocked storage: start with an empty list rather than a broken page
  }
}

function saveJobs(jobs) {
  try {
    localStorage.setItem(JOBS_KEY, JSON.stringify(jobs.slice(0, MAX_JOBS)));
  } catch {
    // Private mode or a full quota: the page still works, it just forgets on reload.
  }
}

function findJob(id) {
  return loadJobs().find((j) => j.id === id) || null;
}

// A job's number in this browser (#1, #2, ...): what the lineage trail calls it.
function nextNumber() {
  return loadJobs().reduce((most, j) => Math.max(most, j.num || 0), 0) + 1;
}

function updateJob(id, changes, { touch = true } = {}) {
  const jobs = loadJobs();
  const i = jobs.findIndex((j) => j.id === id);
  const job = { ...(i >= 0 ? jobs[i] : { id, at: Date.now(), num: nextNumber() }), ...changes };
  if (i >= 0 && !touch) jobs[i] = job; // a job checked in the background keeps its place
  else {
    if (i >= 0) jobs.splice(i, 1);
    jobs.unshift(job); // the job last touched comes first
  }
  saveJobs(jobs);
  renderHistory();
  return job;
}

function forgetJob(id) {
  saveJobs(loadJobs().filter((j) => j.id !== id));
  unwatch(id);
  if (state.current === id) {
    setCurrent(null);
    showWelcome();
  }
  renderHistory();
}

function setCurrent(id) {
  state.current = id;
  try {
    if (id) localStorage.setItem(CURRENT_KEY, id);
    else localStorage.removeItem(CURRENT_KEY);
  } catch {
    // see saveJobs
  }
}

// ---- the form ------------------------------------------------------------------------------------
// An error is shown next to what is wrong: the picture's field, the prompt, the painted part, the key; what
// belongs to no field goes above the button.

const FIELD_ERRORS = { image: 'file-error', prompt: 'prompt-error', mask: 'region-error' };

function showFieldError(which, message, focusTarget, advice = null) {
  const el = $(which);
  el.replaceChildren(...[
    h('span', { class: 'form-message' }, message),
    advice ? h('span', { class: 'form-advice', 'data-code': advice.code, 'data-who': advice.who }, ` ${advice.advice}`) : null,
  ].filter(Boolean));
  el.hidden = false;
  (focusTarget || el).focus();
  if (!focusTarget) el.scrollIntoView({ block: 'nearest' });
}

function showFormError(message, focusTarget, advice = null) {
  showFieldError('form-error', message, focusTarget, advice);
}

function clearFormError() {
  for (const id of ['form-error', 'file-error', 'prompt-error']) {
    $(id).hidden = true;
    $(id).replaceChildren();
  }
}

function setFile(file) {
  if (!file || state.sending) return; // the picture being sent stays the one shown
  clearFormError();
  if (file.type && !file.type.startsWith('image/')) {
    showFieldError('file-error', t('not_a_picture', { name: file.name }));
    return;
  }
  const limit = state.config.max_upload_mb * 1024 * 1024;
  if (file.size > limit) {
    showFieldError('file-error', t('too_big', { name: file.name, size: megabytes(file.size), mb: state.config.max_upload_mb }));
    return;
  }
  state.file = file;
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = URL.createObjectURL(file);
  const preview = $('preview');
  preview.src = state.previewUrl;
  preview.alt = t('picked_alt', { name: file.name || t('pasted') });
  preview.hidden = false;
  $('drop').classList.add('has-file');
  showFileName();
  resetRegion(state.previewUrl);
  scheduleEstimate();
}

function showFileName() {
  const file = state.file;
  if (!file) return;
  $('drop-body').replaceChildren(
    h('strong', { class: 'file-name' }, file.name || t('pasted')),
    h('span', {}, `${megabytes(file.size)} · `, h('span', { class: 'fake-link' }, t('change_picture'))),
  );
}

// ---- the part to change: a mask painted on the picture ---------------------------------------------
// What is painted is kept as a list of operations (strokes, rectangles, clears) drawn on a canvas the picture's
// shape, at its natural size up to REGION_MOST_PX on the longer side (the server scales a mask to the picture
// anyway). Undo drops the last operation and draws the rest again, so no copy of the pixels is kept per step.
// The canvas holds opaque paint and CSS makes it translucent; the mask sent is its negative: painted pixels
// transparent (change), the rest opaque (keep). Nothing painted, no mask: the whole picture may change.
const REGION_MOST_PX = 1536;
const REGION_PAINT = '#ff2d78';
const REGION_PAINTED = 128; // alpha from which a pixel counts as painted, as the server reads the mask
const region = { ops: [], stroke: null, ready: false, share: 0, token: 0 };

function regionContext() {
  return $('region-canvas').getContext('2d', { willReadFrequently: true });
}

function resetRegion(url) {
  const token = ++region.token;
  Object.assign(region, { ops: [], stroke: null, ready: false, share: 0 });
  clearRegionError();
  $('region').hidden = !url;
  measureRegion();
  if (!url) return;
  const picture = $('region-picture');
  picture.src = url;
  picture.decode().then(() => {
    if (token !== region.token) return; // another picture was chosen meanwhile
    const scale = Math.min(1, REGION_MOST_PX / Math.max(picture.naturalWidth, picture.naturalHeight));
    const canvas = $('region-canvas');
    canvas.width = Math.max(1, Math.round(picture.naturalWidth * scale));
    canvas.height = Math.max(1, Math.round(picture.naturalHeight * scale));
    region.ready = true;
    drawRegion();
  }, () => {
    if (token === region.token) $('region').hidden = true; // a picture the browser cannot show cannot be painted on
  });
}

function regionActive() {
  return region.ready && formValues().mode === 'edit' && !$('region').hidden;
}

function drawOp(ctx, op) {
  ctx.globalCompositeOperation = op.erase ? 'destination-out' : 'source-over';
  ctx.fillStyle = REGION_PAINT;
  ctx.strokeStyle = REGION_PAINT;
  if (op.kind === 'clear') {
    ctx.clearRect(0, 0, ctx.canvas.width, ctx.canvas.height);
  } else if (op.kind === 'rect') {
    ctx.fillRect(op.x, op.y, op.w, op.h);
  } else if (op.points.length === 1) {
    const [[x, y]] = op.points;
    ctx.beginPath();
    ctx.arc(x, y, op.width / 2, 0, 2 * Math.PI);
    ctx.fill();
  } else {
    ctx.lineWidth = op.width;
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    ctx.beginPath();
    ctx.moveTo(...op.points[0]);
    for (const point of op.points.slice(1)) ctx.lineTo(...point);
    ctx.stroke();
  }
  ctx.globalCompositeOperation = 'source-over';
}

function drawRegion() {
  const ctx = regionContext();
  ctx.clearRect(0, 0, ctx.canvas.width, ctx.canvas.height);
  for (const op of region.ops) drawOp(ctx, op);
  measureRegion();
}

// The share of the picture painted, as the server will count it, and what the page says about it.
function measureRegion() {
  let painted = 0;
  if (region.ready) {
    const ctx = regionContext();
    const { data } = ctx.getImageData(0, 0, ctx.canvas.width, ctx.canvas.height);
    for (let i = 3; i < data.length; i += 4) if (data[i] >= REGION_PAINTED) painted += 1;
    region.share = painted / (ctx.canvas.width * ctx.canvas.height);
  } else {
    region.share = 0;
  }
  const percent = Math.round(region.share * 100);
  const text = !painted ? t('region_none') : percent < 1 ? t('region_tiny') : t('region_share', { percent });
  if ($('region-share').textContent !== text) $('region-share').textContent = text; // announce changes only
  $('region-share').dataset.share = String(region.share);
  syncRegion();
}

function addRegionOp(op) {
  region.ops.push(op);
  clearRegionError();
  drawRegion();
}

function undoRegion() {
  if (!region.ops.length) return;
  region.ops.pop();
  clearRegionError();
  drawRegion();
}

function clearRegion() {
  if (region.share > 0) addRegionOp({ kind: 'clear' });
}

// Controls follow the mode (a part can be chosen in edit mode only) and what there is to undo or clear.
function syncRegion() {
  const off = formValues().mode !== 'edit';
  $('region-off').hidden = !off;
  $('region-controls').disabled = off;
  $('region-stage').classList.toggle('off', off);
  $('region-canvas').setAttribute('aria-disabled', String(off));
  $('region-undo').disabled = !region.ops.length;
  $('region-clear').disabled = region.share === 0;
}

// A point of a pointer event in the canvas's own pixels, however CSS scales the canvas on the screen.
function regionPoint(event) {
  const canvas = $('region-canvas');
  const box = canvas.getBoundingClientRect();
  return [(event.clientX - box.left) * (canvas.width / box.width), (event.clientY - box.top) * (canvas.height / box.height)];
}

function regionTool() {
  return document.querySelector('input[name="region-tool"]:checked')?.value || 'brush';
}

function wireRegion() {
  const canvas = $('region-canvas');
  // One pointer paints at a time (a second finger is ignored); mouse, pen and touch alike.
  canvas.addEventListener('pointerdown', (event) => {
    if (!regionActive() || region.stroke || (event.pointerType === 'mouse' && event.button !== 0)) return;
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    const scale = canvas.width / canvas.getBoundingClientRect().width;
    region.stroke = {
      kind: 'stroke', erase: regionTool() === 'eraser', width: Number($('region-size').value) * scale,
      points: [regionPoint(event)], pointerId: event.pointerId,
    };
    drawOp(regionContext(), region.stroke);
  });
  canvas.addEventListener('pointermove', (event) => {
    const stroke = region.stroke;
    if (!stroke || event.pointerId !== stroke.pointerId) return;
    const ctx = regionContext();
    for (const each of event.getCoalescedEvents?.() || [event]) {
      const point = regionPoint(each);
      drawOp(ctx, { ...stroke, points: [stroke.points.at(-1), point] });
      stroke.points.push(point);
    }
  });
  const finish = (event) => {
    const stroke = region.stroke;
    if (!stroke || event.pointerId !== stroke.pointerId) return;
    region.stroke = null;
    delete stroke.pointerId;
    addRegionOp(stroke);
  };
  for (const type of ['pointerup', 'pointercancel', 'lostpointercapture']) canvas.addEventListener(type, finish);

  const size = $('region-size');
  size.addEventListener('input', () => {
    $('region-size-value').textContent = size.value;
  });
  $('region-undo').addEventListener('click', undoRegion);
  $('region-clear').addEventListener('click', clearRegion);
  $('region').addEventListener('keydown', (event) => {
    if (event.key.toLowerCase() === 'z' && (event.ctrlKey || event.metaKey) && !event.shiftKey
        && !(event.target instanceof HTMLInputElement && event.target.type === 'number')) {
      event.preventDefault();
      undoRegion();
    }
  });

  // The keyboard's way: a rectangle in percent of the picture, outlined on it while its fields have focus.
  const box = $('region-box');
  const fields = ['left', 'top', 'width', 'height'].map((name) => $(`region-${name}`));
  box.addEventListener('focusin', showRegionRect);
  box.addEventListener('input', showRegionRect);
  box.addEventListener('focusout', (event) => {
    if (!box.contains(event.relatedTarget)) $('region-rect').hidden = true;
  });
  for (const field of fields) {
    field.addEventListener('keydown', (event) => {
      if (event.key !== 'Enter') return;
      event.preventDefault(); // Enter marks the rectangle; it does not send the form
      markRegionRect(false);
    });
  }
  $('region-mark').addEventListener('click', () => markRegionRect(false));
  $('region-unmark').addEventListener('click', () => markRegionRect(true));
}

// The rectangle the fields say, in percent, kept inside the picture.
function regionRect() {
  const value = (name, low, high) => {
    const number = Math.round(Number($(`region-${name}`).value));
    return Math.min(high, Math.max(low, Number.isFinite(number) ? number : low));
  };
  const left = value('left', 0, 99);
  const top = value('top', 0, 99);
  return { left, top, width: value('width', 1, 100 - left), height: value('height', 1, 100 - top) };
}

function showRegionRect() {
  const rect = regionRect();
  const outline = $('region-rect');
  outline.style.left = `${rect.left}%`;
  outline.style.top = `${rect.top}%`;
  outline.style.width = `${rect.width}%`;
  outline.style.height = `${rect.height}%`;
  outline.hidden = !region.ready;
}

function markRegionRect(erase) {
  if (!regionActive()) return;
  const rect = regionRect();
  const { width, height } = $('region-canvas');
  const x = Math.round((rect.left / 100) * width);
  const y = Math.round((rect.top / 100) * height);
  addRegionOp({
    kind: 'rect', erase, x, y,
    w: Math.round(((rect.left + rect.width) / 100) * width) - x, h: Math.round(((rect.top + rect.height) / 100) * height) - y,
  });
}

// The mask for the server: painted = transparent (alpha 0, change), the rest opaque (keep). null: send none.
function regionMask() {
  if (!region.ready || region.share === 0) return Promise.resolve(null);
  const paint = $('region-canvas');
  const mask = document.createElement('canvas');
  mask.width = paint.width;
  mask.height = paint.height;
  const ctx = mask.getContext('2d');
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, mask.width, mask.height);
  ctx.globalCompositeOperation = 'destination-out';
  ctx.drawImage(paint, 0, 0);
  return new Promise((resolve) => mask.toBlob(resolve, 'image/png'));
}

function clearRegionError() {
  $('region-error').hidden = true;
  $('region-error').replaceChildren();
}


function presetLabel(name) {
  return t(`preset.${name}`, {}, name.replace(/[-_]+/g, ' ').replace(/^./, (c) => c.toUpperCase()));
}

function renderPresets() {
  const box = $('presets');
  box.replaceChildren();
  for (const [name, text] of Object.entries(state.config.presets)) {
    box.append(h('button', {
      type: 'button', class: 'preset', 'data-preset': name, 'aria-pressed': 'false', title: text,
      onclick: () => {
        $('prompt').value = text;
        syncPresets();
        saveDraft();
        clearFormError();
        scheduleEstimate();
      },
    }, h('span', { class: `swatch swatch-${name}`, 'aria-hidden': 'true' }), presetLabel(name)));
  }
  syncPresets();
}

function syncPresets() {
  const value = $('prompt').value.trim();
  for (const button of $('presets').querySelectorAll('button')) {
    button.setAttribute('aria-pressed', String(state.config.presets[button.dataset.preset] === value));
  }
}

function renderCounts() {
  const box = $('counts');
  const chosen = box.querySelector('input:checked')?.value;
  box.replaceChildren();
  for (let n = 1; n <= state.config.max_variations; n++) {
    box.append(
      h('input', { type: 'radio', name: 'n', id: `n-${n}`, value: n, checked: chosen ? String(n) === chosen : n === state.config.default_variations }),
      h('label', { for: `n-${n}`, class: 'count' }, String(n)),
    );
  }
}

// The profile the app enforces (VARIA_ENFORCED_PROFILE), or null when each job may choose.
function enforcedProfile() {
  const enforced = state.config.enforced_profile;
  return enforced === 'general' || enforced === 'kids' ? enforced : null;
}

function applyConfig() {
  $('max-mb').textContent = String(state.config.max_upload_mb);
  $('size-box').hidden = !state.config.custom_sizes; // an exact WxH: gpt-image-2 (or offline, cropped to it)
  const enforced = enforcedProfile();
  const chosen = enforced || state.config.default_profile;
  const profile = document.querySelector(`input[name="profile"][value="${chosen}"]`);
  if (profile) profile.checked = true;
  // An enforced profile is not a choice: the choice is hidden (and its buttons off), and the page says which is on.
  $('profile-choice').hidden = Boolean(enforced);
  for (const input of document.querySelectorAll('input[name="profile"]')) input.disabled = Boolean(enforced);
  $('profile-locked').hidden = !enforced;
  sayEnforced();
  renderPresets();
  renderCounts();
  syncProfile();
}

function sayEnforced() {
  const enforced = enforcedProfile();
  if (!enforced) return;
  $('profile-locked-title').textContent = t(enforced === 'kids' ? 'locked_kids_title' : 'locked_general_title');
  $('profile-locked-text').textContent = t(enforced === 'kids' ? 'locked_kids_text' : 'locked_general_text');
}

// Under the kids' profile, say up front that Azure does not edit photos of children, and offer Draw a new scene.
function syncProfile() {
  $('kids-photos').hidden = formValues().profile !== 'kids';
}

// JPEG: a compression setting, and no transparency.
function syncOutput() {
  const jpeg = formValues().format === 'jpeg';
  $('compression-box').hidden = !jpeg;
  $('compression-value').textContent = `${$('compression').value}%`;
  $('transparent').disabled = jpeg;
  if (jpeg) $('transparent').checked = false;
  $('transparent-hint').hidden = !jpeg;
}

const DRAFT_RADIOS = ['n', 'mode', 'quality', 'aspect', 'format'];

function saveDraft() {
  const { prompt, n, mode, quality, aspect, format, compression, background } = formValues();
  try {
    localStorage.setItem(DRAFT_KEY, JSON.stringify({ prompt, n, mode, quality, aspect, format, compression, background }));
  } catch {
    // see saveJobs
  }
}

function restoreDraft() {
  let draft;
  try {
    draft = JSON.parse(localStorage.getItem(DRAFT_KEY) || 'null');
  } catch {
    draft = null;
  }
  if (!draft || typeof draft !== 'object') return;
  if (typeof draft.prompt === 'string') $('prompt').value = draft.prompt.slice(0, 1000);
  // Not the profile, even from a draft saved before this rule: it comes from the server on every load.
  for (const name of DRAFT_RADIOS) {
    // Only a value the form offers (the limits may have changed since).
    const input = [...document.querySelectorAll(`input[name="${name}"]`)].find((i) => i.value === String(draft[name]));
    if (input) input.checked = true;
  }
  if (Number.isInteger(draft.compression)) $('compression').value = String(draft.compression);
  $('transparent').checked = draft.background === 'transparent';
  syncPresets();
}

function formValues() {
  const form = $('make');
  const radio = (name, fallback) => form.elements[name]?.value || fallback;
  const format = radio('format', 'png');
  return {
    prompt: $('prompt').value.trim(),
    profile: enforcedProfile() || radio('profile', '') || state.config.default_profile || 'general',
    n: Number(radio('n', state.config.default_variations)),
    mode: radio('mode', 'edit'),
    quality: radio('quality', DRAFT_QUALITY),
    aspect: radio('aspect', 'auto'),
    format,
    compression: format === 'jpeg' ? Number($('compression').value) : null,
    background: $('transparent').checked && format === 'png' ? 'transparent' : 'auto',
    size: !$('size-box').hidden && $('size').value.trim() ? $('size').value.trim().toLowerCase() : null,
  };
}

// The output options a job request carries (null ones left out).
function outputFields(values) {
  const out = {};
  for (const name of ['quality', 'aspect', 'size', 'format', 'compression', 'background']) {
    if (values[name] !== null && values[name] !== undefined) out[name] = values[name];
  }
  return out;
}

// ---- what a job will cost, asked before it starts (dry_run) -----------------------------------------

// `body`: a job's JSON (a lineage request) or its form (a picture, which the server needs to say what a new job costs).
async function dryRun(body) {
  if (!$('key-box').hidden && !state.key) return null; // the API has asked for a key nobody has typed yet
  let request;
  if (body instanceof FormData) {
    body.append('dry_run', 'true');
    request = { method: 'POST', body };
  } else {
    request = { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ ...body, dry_run: true }) };
  }
  try {
    const response = await apiFetch(API, request);
    if (KEY_REFUSED(response.status)) $('key-box').hidden = false; // the key is asked for before the job is sent
    if (!response.ok) return null;
    const answer = await response.json();
    return answer && typeof answer.estimate === 'object' ? answer.estimate : null;
  } catch {
    return null;
  }
}

// What a job costs: its paid pictures and price, or that it is free (the offline painter pays for nothing).
function costText(estimate) {
  if (!estimate) return '';
  const calls = Object.values(estimate.paid_calls || {}).filter((n) => typeof n === 'number').reduce((a, b) => a + b, 0);
  const quality = t(`quality_name.${estimate.quality}`, {}, estimate.quality || '');
  if (!calls && !estimate.usd) return t('cost_free', { quality });
  const cost = typeof estimate.usd === 'number' ? usd(estimate.usd) : '?';
  return t('cost', { images: tn('pictures', estimate.paid_calls?.image ?? 0), cost, quality });
}

let estimateTimer = 0;
let estimateToken = 0;

// The form's cost, asked of the server with the picture and the options (nothing is stored or started).
function scheduleEstimate() {
  clearTimeout(estimateTimer);
  estimateTimer = setTimeout(async () => {
    const token = ++estimateToken;
    const values = formValues();
    if (!values.prompt || !state.file || state.sending) {
      $('estimate').hidden = true;
      return;
    }
    const estimate = await dryRun(jobForm(state.file, values));
    if (token !== estimateToken) return;
    $('estimate').textContent = estimate ? t('estimate_before', { cost: costText(estimate) }) : '';
    $('estimate').hidden = !estimate;
  }, 400);
}

// ---- sending a job --------------------------------------------------------------------------------
// The job's request goes by XMLHttpRequest, whose upload reports its progress; the panel shows "Sending…" the
// moment the button is pressed, with that job's own prompt, never the job shown before.

function post(body, headers, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', API);
    if (state.key) xhr.setRequestHeader('x-functions-key', state.key);
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    xhr.upload.addEventListener('progress', (event) => onProgress(event.loaded, event.lengthComputable ? event.total : 0));
    xhr.addEventListener('load', () => {
      let answer = {};
      try {
        answer = JSON.parse(xhr.responseText || '{}');
      } catch {
        answer = {};
      }
      resolve({ status: xhr.status, answer });
    });
    xhr.addEventListener('error', () => reject(new Error('unreachable')));
    xhr.addEventListener('abort', () => reject(new DOMException('cancelled', 'AbortError')));
    if (state.sending) state.sending.xhr = xhr;
    xhr.send(body);
  });
}

// While a job is being sent, every way to send one is off (the button, Ctrl+Enter, the result's actions) and the
// picture cannot be changed under it; all of it comes back when the answer (or an error) arrives.
function setSending(sending) {
  state.sending = sending;
  const busy = Boolean(sending);
  for (const id of ['go', 'retry', 'renew', 'redraw', 'file']) $(id).disabled = busy;
  for (const button of document.querySelectorAll('.act')) button.disabled = busy;
  $('make').setAttribute('aria-busy', String(busy));
  $('drop').classList.toggle('busy', busy);
  $('go-label').textContent = busy ? t('sending_button') : t('go');
}

// The job panel in view, whatever the screen: it is where the answer will show.
function bringJobIntoView() {
  const box = $('job').getBoundingClientRect();
  if (box.top < 0 || box.top > window.innerHeight * 0.5) {
    $('job').scrollIntoView({ behavior: matchMedia('(prefers-reduced-motion: reduce)').matches ? 'auto' : 'smooth', block: 'start' });
  }
}

function showSending(job) {
  showOnly('sending');
  $('sending-title').textContent = job.action && job.action !== 'new' ? t('sending_action') : t('sending_title');
  $('sending-prompt').replaceChildren(...promptLine(job));
  $('upload').value = 0;
  $('upload').removeAttribute('value'); // indeterminate until the first progress event
  $('upload-line').textContent = '';
  $('announce').textContent = $('sending-title').textContent;
  bringJobIntoView();
}

function showUpload(loaded, total) {
  if (!total) return;
  const percent = Math.round((100 * loaded) / total);
  $('upload').value = percent;
  $('upload-line').textContent = loaded >= total ? t('upload_done') : t('upload_progress', { percent, size: megabytes(total) });
}

// Sends one job: `job` is what the page records about it (prompt, options, parent...), `build()` makes what goes
// out ({ body, headers }, or null after saying why it cannot). The page is in its sending state from the first
// moment, before the body is built, so a second press finds it busy. Answers the job id, or null when it did not
// start (the error is shown where it belongs).
async function sendJob(job, build) {
  if (state.sending) return null;
  clearFormError();
  clearRegionError();
  const before = state.current;
  setSending({ xhr: null, job });
  state.current = null; // nothing shown is the job before: its checks go on, out of sight
  showSending(job);
  try {
    const built = await build();
    if (!built) {
      back(before);
      return null;
    }
    let reply;
    try {
      reply = await post(built.body, built.headers || {}, showUpload);
    } catch (error) {
      back(before);
      if (error.name !== 'AbortError') showFormError(t('unreachable'));
      return null;
    }
    const { status, answer } = reply;
    if (KEY_REFUSED(status)) {
      back(before);
      askForKey();
      return null;
    }
    if (status !== 202 || !JOB_ID.test(answer.job_id || '')) {
      back(before);
      showRequestError(status, answer);
      return null;
    }
    $('key-box').hidden = true;
    if (answer.created === false) state.repeated.add(answer.job_id);
    else state.repeated.delete(answer.job_id);
    updateJob(answer.job_id, { ...job, estimate: answer.estimate || null, at: Date.now(), status: 'running' });
    openJob(answer.job_id, true);
    return answer.job_id;
  } finally {
    setSending(null);
  }
}

// Back to the job shown before a send that did not start one.
function back(before) {
  if (before && findJob(before)) openJob(before);
  else showWelcome();
}

// A request refused before any job: its sentence (in the page's language when the code is known) next to the
// field it is about, then the next step for its code.
function showRequestError(status, answer) {
  const advice = adviceFor(answer.code);
  const message = serverMessage(answer.code, answer.error) || t('http_error', { status });
  if (answer.code === 'mask_invalid' && !$('region').hidden) {
    return showFieldError('region-error', message, null, advice);
  }
  const field = (answer.fields || []).map((f) => FIELD_ERRORS[f.field]).find(Boolean)
    || { invalid_image: 'file-error', not_an_image: 'file-error', upload_too_large: 'file-error', image_too_large: 'file-error' }[answer.code];
  if (field && field !== 'region-error') return showFieldError(field, message, null, advice);
  return showFormError(message, null, advice);
}

async function submitJob() {
  if (state.sending) return;
  clearFormError();
  const values = formValues();
  if (!state.file) return showFieldError('file-error', t('need_picture'), $('file'));
  if (!values.prompt) return showFieldError('prompt-error', t('need_prompt'), $('prompt'));
  const typed = $('key').value.trim();
  if (!$('key-box').hidden && typed) setKey(typed);
  const file = state.file;
  const job = { ...values, region: null, action: 'new' };
  const id = await sendJob(job, async () => {
    // A part painted on this picture is sent with an edit only: a new scene has no pixels to keep.
    const mask = values.mode === 'edit' ? await regionMask() : null;
    job.region = mask ? region.share : null;
    return { body: jobForm(file, job, { mask }) };
  });
  if (id) state.sentFiles.set(id, file);
}

// A picture and a job's options as a form; `force` asks for new pictures even when the same were made before.
function jobForm(file, job, { mask = null, force = false } = {}) {
  const body = new FormData();
  body.append('image', file, file.name || 'picture.png');
  for (const name of ['prompt', 'profile', 'n', 'mode']) body.append(name, String(job[name]));
  for (const [name, value] of Object.entries(outputFields(job))) body.append(name, String(value));
  if (mask) body.append('mask', mask, 'mask.png');
  if (force) body.append('force', 'true');
  return body;
}

// The picture a job was made from: the one this page sent, else the one the server kept (after a reload).
async function pictureOf(job) {
  const file = state.sentFiles.get(job.id);
  if (file) return file;
  return storedFile(`${API}/${encodeURIComponent(job.id)}/images/source`, `varia-${job.id.slice(-8)}-source.png`);
}

// Sends a finished or lost job again. `force`: new pictures (paid again); without it the same request, whose job
// finds the pictures already stored.
async function sendAgain(force) {
  const job = state.current ? findJob(state.current) : null;
  if (!job || state.sending) return;
  if (job.parent && job.action && job.action !== 'new') {
    return sendLineage(job.parent, job.action, { strength: job.strength, prompt: job.action === 'remix' ? job.prompt : undefined, force });
  }
  const values = { prompt: job.prompt, profile: job.profile, n: job.n, mode: job.mode || 'edit', ...outputFields(job), region: null, action: 'new' };
  let file = null;
  const id = await sendJob(values, async () => {
    file = await pictureOf(job);
    if (!file) showFieldError('file-error', t('no_picture_left'), null, { advice: t('pick_again'), code: '', who: 'user' });
    return file ? { body: jobForm(file, values, { force }) } : null;
  });
  if (id) state.sentFiles.set(id, file);
}

// "Draw a new scene": the same picture and prompt, sent again in generate mode (no photo is edited). The form shows
// the mode it sends, so the choice is visible and kept in the draft.
let redrawing = false;

async function redraw() {
  const job = state.current ? findJob(state.current) : null;
  if (state.sending || redrawing || !job) return;
  redrawing = true;
  const file = await pictureOf(job).finally(() => { redrawing = false; });
  if (!file) return;
  if (file !== state.file) setFile(file);
  if (job.prompt) $('prompt').value = job.prompt;
  for (const [name, value] of [['profile', job.profile], ['n', job.n]]) {
    const input = document.querySelector(`input[name="${name}"][value="${value}"]`);
    if (input && !input.disabled) input.checked = true;
  }
  $('mode-generate').checked = true;
  syncPresets();
  syncProfile();
  syncRegion();
  saveDraft();
  submitJob();
}

// ---- iterating on a result: vary, remix, refine ----------------------------------------------------------
// A job made from a variation of an earlier one: no picture is sent, the server takes the stored variation.

function lineageBody(from, action, { strength, prompt, n, quality, force } = {}) {
  const parent = findJob(from.job_id) || {};
  const values = formValues();
  const body = {
    from: { job_id: from.job_id, index: from.index }, action,
    n: n ?? (action === 'refine' ? 1 : parent.n || values.n),
    quality: quality ?? (action === 'refine' ? FINAL_QUALITY : DRAFT_QUALITY),
    aspect: parent.aspect || values.aspect, format: parent.format || values.format,
    background: parent.background || values.background,
  };
  if (body.format === 'jpeg') body.compression = parent.compression ?? values.compression ?? 20;
  if (action === 'vary') body.strength = strength || 'subtle';
  if (prompt) body.prompt = prompt;
  const profile = enforcedProfile() || parent.profile;
  if (profile) body.profile = profile;
  if (force) body.force = true;
  return body;
}

async function sendLineage(from, action, options = {}) {
  const body = lineageBody(from, action, options);
  const parent = findJob(from.job_id) || {};
  const job = {
    prompt: body.prompt || parent.prompt || '', profile: body.profile || parent.profile, n: body.n, mode: parent.mode,
    parent: from, action, strength: body.strength || null, ...outputFields(body),
  };
  return sendJob(job, async () => ({ body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } }));
}

// ---- the enlarged picture, with the before/after slider ---------------------------------------------------

let viewerOpener = null;

function openViewer(view, item, compare) {
  const k = item.index + 1;
  viewerOpener = document.activeElement;
  $('viewer-title').textContent = t('picture_n', { k });
  const after = $('viewer-after');
  const before = $('viewer-before');
  for (const [img, path, alt] of [[after, item.url, altFor(view, item)], [before, view.source_url, t('your_picture')]]) {
    img.alt = alt;
    img.dataset.src = path || '';
    if (!path) img.removeAttribute('src');
    else if (!state.key) img.src = path;
    else blobUrl(path).then((url) => { if (img.dataset.src === path) img.src = url; }, () => img.classList.add('broken'));
  }
  const canCompare = Boolean(view.source_url);
  $('compare-control').hidden = !canCompare;
  before.hidden = !canCompare;
  $('compare-range').value = compare && canCompare ? '50' : '100';
  syncCompare();
  $('viewer').showModal();
  (compare ? $('compare-range') : $('viewer-close')).focus();
}

function syncCompare() {
  const value = Number($('compare-range').value);
  $('compare').style.setProperty('--cut', `${100 - value}%`);
  $('compare').classList.toggle('whole', value === 100);
  $('compare-range').setAttribute('aria-valuetext', t('compare_value', { after: value, before: 100 - value }));
}

function closeDialog(dialog) {
  if (dialog.open) dialog.close();
}

// Focus goes back to what opened the dialog (the picture or the action pressed).
function restoreFocus() {
  const opener = viewerOpener;
  viewerOpener = null;
  if (opener && opener.isConnected) opener.focus();
}

// ---- remix: a new prompt for one result ----------------------------------------------------------------

let remixFrom = null;

async function openRemix(from) {
  remixFrom = from;
  viewerOpener = document.activeElement;
  $('remix-error').hidden = true;
  $('remix-prompt').value = '';
  $('remix-cost').textContent = '';
  $('remix-title').textContent = t('remix_title_n', { k: from.index + 1 });
  $('remix').showModal();
  $('remix-prompt').focus();
}

async function estimateRemix() {
  if (!remixFrom) return;
  const prompt = $('remix-prompt').value.trim() || t('remix_sample');
  const estimate = await dryRun(lineageBody(remixFrom, 'remix', { prompt }));
  $('remix-cost').textContent = estimate ? t('estimate_before', { cost: costText(estimate) }) : '';
}

async function sendRemix(event) {
  event.preventDefault();
  const prompt = $('remix-prompt').value.trim();
  if (!prompt) {
    $('remix-error').textContent = t('need_remix_prompt');
    $('remix-error').hidden = false;
    $('remix-prompt').focus();
    return;
  }
  const from = remixFrom;
  closeDialog($('remix'));
  await sendLineage(from, 'remix', { prompt });
}

// ---- following jobs ----------------------------------------------------------------------------------
// Every running job this browser knows is checked until it ends, whether it is shown or not, after a reload too;
// the panel shows only the current one. "Stop waiting" stops the page checking a job (the server has no cancel).

function showOnly(which) {
  for (const id of ['welcome', 'sending', 'progress', 'result']) $(id).hidden = which !== id;
}

function showWelcome() {
  showOnly('welcome');
}

function openJob(id, scroll = false) {
  setCurrent(id);
  renderHistory();
  const job = findJob(id) || { id };
  const view = state.views.get(id);
  if (view && view.status !== 'running') showResult(job, view);
  else if (!FINISHED.has(job.status) || view) showProgress(job, view || { stage: 'queued', done: 0, total: job.n || 0 });
  // A finished job keeps the current view until its result arrives (no flash of progress).
  if (scroll) bringJobIntoView();
  watch(id, true);
}

function unwatch(id) {
  const watcher = state.watchers.get(id);
  if (watcher) watcher.stopped = true;
  state.watchers.delete(id);
}

// Cancels the job on the server: its steps still to run make no paid call; the page follows it to its end.
async function cancelJob() {
  const id = state.current;
  if (!id) return;
  $('cancel-job').disabled = true;
  $('status-line').textContent = t('cancelling');
  try {
    const response = await apiFetch(`${API}/${encodeURIComponent(id)}/cancel`, { method: 'POST' });
    if (KEY_REFUSED(response.status)) askForKey();
    // 409 job_finished: it ended meanwhile, and its result is on the way.
  } catch {
    $('status-line').textContent = t('unreachable_polling');
    $('cancel-job').disabled = false;
  }
}

function stopWaiting() {
  const id = state.current;
  if (!id) return;
  unwatch(id);
  updateJob(id, { status: 'stopped' }, { touch: false });
  setCurrent(null);
  showWelcome();
  $('announce').textContent = t('stopped_announce');
  $('go').focus();
}

// Polling a job: soon after each new stage, then less and less often while it stays there (an image model at its
// quota can take minutes), so a long job costs a status request every 10 s, not two a second. Never sooner than a
// Retry-After the server sends.
const POLL = { firstMs: 500, growth: 1.3, mostMs: 10000, retryAfterMostMs: 60000 };

// The pause a Retry-After header asks for (seconds, or an HTTP date), in ms; 0 when there is none.
function retryAfterMs(response) {
  const value = response.headers.get('Retry-After');
  if (!value) return 0;
  const seconds = Number(value);
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(value) - Date.now();
  return Number.isFinite(ms) ? Math.min(Math.max(0, ms), POLL.retryAfterMostMs) : 0;
}

// Checks a job until it ends. `once`: a finished job is asked once for its result (and not again while shown).
function watch(id, once = false) {
  if (state.watchers.has(id)) return;
  const job = findJob(id);
  if (!once && job && FINISHED.has(job.status)) return;
  const watcher = { stopped: false };
  state.watchers.set(id, watcher);
  follow(id, watcher).finally(() => {
    if (state.watchers.get(id) === watcher) state.watchers.delete(id);
  });
}

async function follow(id, watcher) {
  let failures = 0;
  let stage = null;
  let next = POLL.firstMs; // the pause after this poll while the stage stays the same
  const shown = () => !watcher.stopped && state.current === id;
  while (!watcher.stopped) {
    let view = null;
    let asked = 0;
    try {
      const response = await apiFetch(`${API}/${encodeURIComponent(id)}`);
      asked = retryAfterMs(response);
      if (KEY_REFUSED(response.status)) {
        $('key-box').hidden = false; // polling goes on, and picks up the key once it is typed
        throw new Error('key');
      }
      if (response.status === 404) {
        if (watcher.stopped) return;
        updateJob(id, { status: 'lost' }, { touch: false });
        state.views.delete(id);
        if (shown()) showLost(id);
        return;
      }
      view = await response.json();
      if (!response.ok) throw new Error(view.error || String(response.status));
      failures = 0;
    } catch {
      failures += 1;
      view = null;
      if (shown() && !$('progress').hidden) {
        $('status-line').textContent = $('key-box').hidden ? t('unreachable_polling') : t('key_polling');
      }
    }
    if (watcher.stopped) return;
    if (view) {
      state.views.set(id, view);
      const job = findJob(id) || { id };
      if (view.status === 'running') {
        if (job.status !== 'running') updateJob(id, { status: 'running' }, { touch: false });
        if (shown()) showProgress(job, view);
      } else {
        recordResult(job, view);
        if (shown()) showResult(findJob(id) || job, view);
        return;
      }
      if (view.stage !== stage) {
        stage = view.stage;
        next = POLL.firstMs;
      }
    }
    let pause = Math.min(5000, 1000 * failures);
    if (!failures) {
      pause = next;
      next = Math.min(POLL.mostMs, next * POLL.growth);
    }
    await sleep(Math.max(pause, asked));
  }
}

// What the history keeps of a finished job: its status, a result to show as its thumbnail, its lineage.
function recordResult(job, view) {
  const first = (view.images || []).find((i) => i.status === 'succeeded' && i.url);
  return updateJob(job.id, {
    status: view.status, thumb_url: first ? first.url : null, source_url: view.source_url || null,
    prompt: job.prompt || view.prompt, profile: job.profile || view.profile, n: job.n || view.total,
    parent: view.parent || job.parent || null, action: view.action || job.action || 'new',
    strength: view.strength || job.strength || null, ...(view.output ? outputFields(view.output) : {}),
  }, { touch: false });
}

function stageText(name, view) {
  if (!STAGES.includes(name)) return t('stage_working'); // a stage this page does not know yet
  if (name === 'generating' && view.total) return t('stage_generating_n', { done: view.done, total: view.total });
  return t(`stage.${name}`);
}

function percent(view) {
  const stage = view.stage || 'queued';
  if (stage === 'queued') return 3;
  if (stage === 'done') return 100;
  if (stage === 'generating') return 45 + Math.round((45 * (view.done || 0)) / Math.max(1, view.total || 1));
  return { preparing: 10, captioning: 22, composing: 35, saving: 95 }[stage] || 5;
}

function showProgress(job, view) {
  if ($('progress').hidden || $('progress').dataset.job !== job.id) $('cancel-job').disabled = false;
  $('progress').dataset.job = job.id;
  showOnly('progress');
  const stage = view.stage || 'queued';
  const box = $('progress');
  box.dataset.stage = stage;
  $('progress-title').textContent = job.action && job.action !== 'new' ? t(`working_${job.action}`, {}, t('progress_title')) : t('progress_title');
  $('progress-prompt').replaceChildren(...promptLine(job));
  renderTrail($('progress-trail'), job);
  $('progress-cost').textContent = job.estimate ? t('estimate_started', { cost: costText(job.estimate) }) : '';
  $('progress-cost').hidden = !job.estimate;
  const value = percent(view);
  $('bar').setAttribute('aria-valuenow', String(value));
  $('bar-fill').style.setProperty('--value', `${value}%`);
  const current = stage === 'queued' ? -1 : STAGES.indexOf(stage);
  $('stages').replaceChildren(...STAGES.map((name, i) => {
    const status = i < current ? 'done' : i === current ? 'active' : 'todo';
    return h('li', { class: `stage stage-${status}`, 'data-stage': name, 'aria-current': status === 'active' ? 'step' : null },
      h('span', { class: 'stage-dot', 'aria-hidden': 'true' }),
      h('span', { class: 'stage-label' }, stageText(name, view)),
      status === 'done' ? h('span', { class: 'visually-hidden' }, ` ${t('done_mark')}`) : null);
  }));
  renderPreviews(view);
  const line = stage === 'queued' ? t('waiting_painter') : `${stageText(stage, view)}…`;
  if ($('status-line').textContent !== line) $('status-line').textContent = line; // announce changes only
}

// Live previews while the pictures are drawn: a coarse picture first, the final one replaces it.
function renderPreviews(view) {
  const previews = Array.isArray(view.previews) ? view.previews.filter((p) => p && p.url) : [];
  const box = $('previews');
  const shownUrls = [...box.querySelectorAll('img')].map((img) => img.dataset.src).join(' ');
  if (shownUrls !== previews.map((p) => p.url).join(' ')) {
    box.replaceChildren(...previews.map((p) => h('figure', { class: 'tile preview-tile' },
      image(p.url, t('preview_alt', { k: p.index + 1 }), 'preview'),
      h('figcaption', {}, h('span', { class: 'tag' }, t('preview_tag', { k: p.index + 1 }))))));
    scheduleSweep();
  }
  box.hidden = previews.length === 0;
}

function actionName(job) {
  if (!job.action || job.action === 'new') return null;
  if (job.action === 'vary') return t(job.strength === 'strong' ? 'act_vary_strong' : 'act_vary_subtle');
  return t(`act_${job.action}`);
}

function promptLine(job) {
  const parts = [];
  if (job.prompt) parts.push(h('q', {}, job.prompt));
  const meta = [actionName(job), job.profile ? profileName(job.profile) : null, job.n ? tn('pictures', job.n) : null,
    job.mode && (!job.action || job.action === 'new') ? t(job.mode === 'generate' ? 'meta_new_scene' : 'meta_keeps') : null,
    job.quality ? t(`quality_name.${job.quality}`, {}, job.quality) : null,
    job.region ? t('meta_region', { percent: Math.max(1, Math.round(job.region * 100)) }) : null].filter(Boolean);
  if (meta.length) parts.push(h('span', { class: 'job-meta' }, meta.join(' · ')));
  return parts;
}

// The lineage trail: this job ← picture k of job #m ← ...: each earlier job a button that opens it.
function renderTrail(nav, job) {
  const links = [];
  let from = job.parent;
  const seen = new Set([job.id]);
  while (from && from.job_id && !seen.has(from.job_id) && links.length < 8) {
    seen.add(from.job_id);
    const parent = findJob(from.job_id);
    const label = t('trail_step', { k: from.index + 1, num: parent?.num ?? '?' });
    const target = from.job_id;
    links.push(h('span', { class: 'trail-arrow', 'aria-hidden': 'true' }, '←'),
      parent ? h('button', { type: 'button', class: 'trail-link', onclick: () => openJob(target, true) }, label)
        : h('span', { class: 'trail-link' }, label));
    from = parent?.parent;
  }
  nav.replaceChildren(...(links.length ? [h('span', { class: 'trail-here' }, t('trail_here', { num: job.num ?? '' })), ...links] : []));
  nav.hidden = links.length === 0;
}

// A server message in the page's language when its code is known, the server's own words otherwise. A refusal of
// a word keeps the word the person wrote, as the server quoted it.
function serverMessage(code, message, profile = null) {
  const plain = plainMessage(message);
  if (!code) return plain;
  const quoted = quotedWord(plain);
  const audience = t(profile === 'kids' ? 'audience_kids' : 'audience_general');
  if (quoted !== null && has(`message_quoted.${code}`)) return t(`message_quoted.${code}`, { word: quoted, audience });
  return t(`message.${code}`, {}, plain);
}

// The word a refusal quotes ('…' or "…" in the server's sentence), or null when it quotes none.
function quotedWord(text) {
  for (const mark of ["'", '"', '«']) {
    const start = text.indexOf(mark);
    const close = mark === '«' ? '»' : mark;
    const end = start >= 0 ? text.indexOf(close, start + 1) : -1;
    if (end > start + 1) return text.slice(start + 1, end).trim();
  }
  return null;
}

// Uploads are stored under their sha256; that name means nothing to the person who sent the picture.
// And "force=true" is API talk: the page's buttons are how a person sends it again.
function plainMessage(message) {
  return (message || '').replace(/^[0-9a-f]{64}\.[a-z0-9]+:\s*/i, '').replace(/;\s*send the image again with force=true/, '');
}

// `codes`: the codes the advice was picked for (data-codes, so a test or a script can tell which); `retry`: offer
// Try again; `renew`: offer new pictures (paid again); `redraw`: offer "Draw a new scene".
function showNotice(kind, title, text, help, codes = [], { retry = false, renew = false, redraw = false } = {}) {
  const notice = $('notice');
  notice.className = `notice notice-${kind}`;
  notice.hidden = false;
  $('notice-title').textContent = title;
  $('notice-text').textContent = text || '';
  $('notice-help').textContent = help || '';
  $('notice-help').dataset.codes = codes.join(' ');
  $('retry').hidden = !retry;
  $('renew').hidden = !renew;
  $('redraw').hidden = !redraw;
}

// The help line for a set of codes: each distinct next step once, in order.
function adviceText(advices) {
  const steps = [...new Set(advices.map((a) => a.advice))];
  return steps.length ? t('what_to_do', { steps: steps.join(' ') }) : '';
}

// One line of what was done and why; `name` (data-fact) says which, in any language.
function fact(name, term, ...value) {
  return [h('dt', { 'data-fact': name }, term), h('dd', { 'data-fact': name }, ...value)];
}

function plan(subtasks) {
  if (!subtasks) return null;
  const chips = [];
  if (subtasks.style) chips.push(h('li', { class: 'chip chip-style' }, t('plan_style', { v: subtasks.style })));
  for (const item of subtasks.add || []) chips.push(h('li', { class: 'chip chip-add' }, t('plan_add', { v: item })));
  for (const item of subtasks.remove || []) chips.push(h('li', { class: 'chip chip-remove' }, t('plan_remove', { v: item })));
  if (subtasks.background) chips.push(h('li', { class: 'chip chip-bg' }, t('plan_bg', { v: subtasks.background })));
  return chips.length ? h('ul', { class: 'chips', id: 'subtasks' }, chips) : null;
}

function altFor(view, item) {
  const k = item.index + 1;
  return view.caption ? t('result_alt', { k, caption: view.caption, style: view.subtasks?.style || t('as_asked') }) : t('picture_n', { k });
}

// The name a saved picture gets: the server's, else one that says which job and which picture.
function fileName(job, item) {
  if (item.filename) return item.filename;
  const words = (job.prompt || 'varia').toLowerCase().normalize('NFKD').replace(/[^\p{L}\p{N}]+/gu, '-').replace(/^-|-$/g, '').slice(0, 40);
  return `varia-${words || 'picture'}-${job.id.slice(-6)}-${item.index + 1}.png`;
}

const PROVIDER_NAMES = {
  'azure-ai-vision': 'Azure AI Vision', 'azure-openai-chat': 'Azure OpenAI', 'azure-openai-gpt-image': 'GPT-image',
};

// The services that made a job: 'lineage' (a step taken over from the parent job) is none.
function makers(providers) {
  return Object.values(providers || {}).filter((name) => name !== 'lineage');
}

function offlineOnly(providers) {
  const names = makers(providers);
  return names.length > 0 && names.every((name) => name === 'offline');
}

function madeWith(providers) {
  const names = makers(providers);
  if (!names.length) return null;
  return offlineOnly(providers) ? t('made_offline')
    : t('made_with', { names: [...new Set(names.map((name) => PROVIDER_NAMES[name] || name))].join(', ') });
}

function showResult(job, view) {
  showOnly('result');
  const status = view.status;
  $('result').dataset.status = status;
  const images = view.images || [];
  const made = images.filter((i) => i.status === 'succeeded' && i.url);
  const record = findJob(job.id) || job;
  $('result-prompt').replaceChildren(...promptLine(record));
  renderTrail($('trail'), record);
  $('notice').hidden = true;

  const hasPicture = Boolean(state.sentFiles.has(job.id) || view.source_url);
  const missing = images.filter((i) => i.status !== 'succeeded');
  const partial = view.partial === true || (status === 'succeeded' && missing.length > 0);
  // Time may cure it (or nobody knows why): sending the same request again is worth offering.
  const worthRetrying = (advices) => advices.some((a) => a.who === 'later');
  const canRedraw = hasPicture && (!record.action || record.action === 'new');
  const note = status === 'succeeded' ? plainMessage(view.message) : '';
  if (view.code === 'cancelled') {
    // Cancelled by its sender: nothing went wrong, and new pictures are one press away.
    $('result-title').textContent = t('title_cancelled');
    showNotice('info', t('what_happened'), serverMessage(view.code, view.message), t('cancelled_help'), [view.code],
      { renew: hasPicture || Boolean(record.parent) });
  } else if (status === 'succeeded' && !partial && note) {
    // The job ended, but not as asked (the offline painter could not draw it): the headline says so.
    $('result-title').textContent = offlineOnly(view.providers) ? t('title_offline_short') : t('title_not_all');
    showNotice('partial', t('title_why'), serverMessage(view.code, view.message), adviceText(view.code ? [adviceFor(view.code)] : []),
      view.code ? [view.code] : []);
  } else if (status === 'succeeded' && !partial) {
    $('result-title').textContent = made.length === 1 ? t('title_one') : t('title_many');
  } else if (partial) {
    $('result-title').textContent = t('title_partial', { made: made.length, total: images.length });
    const advices = missing.map((i) => adviceFor(i.code));
    const reasons = missing.map((i) => t('picture_reason', { k: i.index + 1, reason: serverMessage(i.code, i.reason, record.profile) || t('not_made') }));
    showNotice('partial', t('some_missing'), reasons.join(' '), `${t('keep_these')} ${adviceText(advices)}`,
      advices.map((a) => a.code), {
        retry: worthRetrying(advices) && hasPicture,
        redraw: canRedraw && advices.some((a) => a.code === REDRAW_CODE),
      });
  } else {
    const refused = status === 'refused';
    $('result-title').textContent = refused ? t('title_refused') : t('title_failed');
    const advice = adviceFor(view.code);
    const kids = refused && record.profile === 'kids' && SAFETY_CODES.has(advice.code) ? `${t('kids_stricter')} ` : '';
    const message = serverMessage(view.code, view.message, record.profile) || t(refused ? 'refused_default' : 'failed_default');
    showNotice(refused ? 'refused' : 'failed', t(refused ? 'why_not' : 'what_happened'), message,
      `${kids}${adviceText([advice])}${worthRetrying([advice]) && !hasPicture ? ` ${t('pick_again')}` : ''}`,
      [advice.code], { retry: worthRetrying([advice]) && hasPicture, redraw: canRedraw && advice.code === REDRAW_CODE });
  }
  if (state.repeated.has(job.id) && status !== 'refused') {
    showNotice('info', t('repeated_title'), t('repeated_text'), '', [], { renew: hasPicture || Boolean(record.parent) });
  }

  // The result replaces the progress list: tell screen readers what happened.
  $('announce').textContent = [$('result-title').textContent, $('notice').hidden ? '' : $('notice-text').textContent]
    .filter(Boolean).join('. ');

  renderGallery(record, view, images);
  renderDownloads(record, view, made);
  renderAbout(record, view, images);
  askNextCost(record, made);
}

function renderGallery(job, view, images) {
  const gallery = $('gallery');
  const source = view.source_url
    ? h('figure', { class: 'tile tile-source' },
      image(view.source_url, view.caption ? t('your_picture_is', { caption: view.caption }) : t('your_picture'), 'source'),
      h('figcaption', {}, h('span', { class: 'tag' }, t('before'))))
    : null;
  const tiles = images.map((item) => {
    const k = item.index + 1;
    if (item.status !== 'succeeded' || !item.url) {
      return h('figure', { class: 'tile shot-missing', 'data-index': item.index },
        h('div', { class: 'missing' }, t(item.status === 'refused' ? 'not_allowed' : 'not_made'),
          h('small', {}, serverMessage(item.code, item.reason, job.profile)),
          h('small', { class: 'missing-advice', 'data-code': item.code || '' }, adviceFor(item.code).advice)),
        h('figcaption', {}, h('span', { class: 'tag' }, t('picture_n', { k }))));
    }
    const from = { job_id: job.id, index: item.index };
    const name = fileName(job, item);
    const act = (label, onclick, extra = {}) => h('button', { type: 'button', class: 'act', onclick, ...extra }, label,
      h('span', { class: 'visually-hidden' }, ` ${t('of_picture', { k })}`));
    return h('figure', { class: 'tile shot-after', 'data-index': item.index },
      h('button', { type: 'button', class: 'enlarge', 'aria-label': t('enlarge_n', { k }), onclick: () => openViewer(view, item, false) },
        image(item.url, altFor(view, item), 'variation')),
      h('figcaption', {},
        h('span', { class: 'tag tag-after' }, t('picture_n', { k })),
        h('div', { class: 'actions' },
          act(t('act_vary_subtle'), () => sendLineage(from, 'vary', { strength: 'subtle' }), { 'data-action': 'vary-subtle' }),
          act(t('act_vary_strong'), () => sendLineage(from, 'vary', { strength: 'strong' }), { 'data-action': 'vary-strong' }),
          act(t('act_remix'), () => openRemix(from), { 'data-action': 'remix', 'aria-haspopup': 'dialog' }),
          act(t('act_refine'), () => sendLineage(from, 'refine'), { 'data-action': 'refine' }),
          view.source_url ? act(t('act_compare'), () => openViewer(view, item, true), { 'data-action': 'compare', 'aria-haspopup': 'dialog' }) : null,
          download(item.download_url || item.url, name, { class: 'download act-link', 'data-action': 'download' },
            t('download'), h('span', { class: 'visually-hidden' }, ` ${t('of_picture', { k })}`)))));
  });
  gallery.replaceChildren(...[source, ...tiles].filter(Boolean));
  gallery.hidden = images.length === 0;
  gallery.dataset.count = String(images.length);
  if (state.sending) for (const button of gallery.querySelectorAll('.act')) button.disabled = true;
}

function renderDownloads(job, view, made) {
  const parts = [];
  // Run again from the history with no picture to pick: the stored source (or the parent's result) is sent.
  if (view.status === 'succeeded' && $('renew').hidden) {
    parts.push(h('button', { type: 'button', class: 'ghost act', id: 'rerun', onclick: () => sendAgain(true) }, t('rerun')));
  }
  if (made.length > 1) {
    parts.push(h('button', { type: 'button', class: 'ghost', id: 'download-all', onclick: () => downloadAll(job, made) }, t('download_all', { n: made.length })));
  }
  const links = [];
  if (view.source_url) links.push(download(view.source_url, `varia-${job.id.slice(-8)}-source.png`, {}, t('link_source')));
  if (view.manifest_url) links.push(download(view.manifest_url, `varia-${job.id.slice(-8)}-manifest.json`, {}, t('link_manifest')));
  if (links.length) parts.push(h('p', { class: 'download-links' }, `${t('download_also')} `, ...links.flatMap((a, i) => (i ? [' · ', a] : [a]))));
  const providers = madeWith(view.providers);
  if (providers) parts.push(h('p', { class: 'providers' }, providers));
  $('downloads').replaceChildren(...parts);
}

// Every picture of the job, one download each (the browser may ask once to allow several).
async function downloadAll(job, made) {
  for (const item of made) {
    const link = download(item.download_url || item.url, fileName(job, item), { hidden: true });
    document.body.append(link);
    if (state.key) await blobUrl(item.download_url || item.url).then((url) => link.setAttribute('href', url), () => null);
    link.click();
    link.remove();
    await sleep(250);
  }
  scheduleSweep();
}

// What was done and why, in words: the manifest without its JSON.
function renderAbout(job, view, images) {
  const facts = [];
  const prompt = view.prompt || job.prompt;
  if (prompt) facts.push(...fact('prompt', t('fact_prompt'), prompt));
  if (view.caption) facts.push(...fact('caption', t('fact_caption'), view.caption));
  if (view.output_prompt) facts.push(...fact('output_prompt', t('fact_output'), view.output_prompt));
  const chips = plan(view.subtasks);
  if (chips) facts.push(...fact('plan', t('fact_plan'), chips));
  const parent = view.parent || job.parent;
  if (parent) {
    const num = findJob(parent.job_id)?.num;
    facts.push(...fact('parent', t('fact_parent'), t('fact_parent_text', {
      action: actionName({ action: view.action || job.action, strength: view.strength || job.strength }) || '',
      k: parent.index + 1, num: num ?? parent.job_id.slice(-8),
    })));
  }
  const output = view.output || {};
  const outputs = [output.quality ? t(`quality_name.${output.quality}`, {}, output.quality) : null,
    output.aspect ? t(`aspect_name.${output.aspect}`, {}, output.aspect) : null,
    output.format ? output.format.toUpperCase() + (output.format === 'jpeg' && output.compression != null ? ` (${output.compression}%)` : '') : null,
    output.background === 'transparent' ? t('transparent') : null].filter(Boolean);
  if (outputs.length) facts.push(...fact('output', t('fact_output_options'), outputs.join(' · ')));
  if (view.paid_calls) {
    // Each kind of call as a count, or as {attempted, delivered, rejected}: the attempts are what is billed.
    const calls = Object.entries(view.paid_calls)
      .map(([kind, count]) => [kind, typeof count === 'number' ? count : count?.attempted])
      .filter(([, count]) => typeof count === 'number')
      .map(([kind, count]) => `${t(`call.${kind}`, {}, kind)}: ${count}`);
    const cost = typeof view.estimated_cost_usd === 'number' ? ` · ${t('fact_cost', { cost: usd(view.estimated_cost_usd) })}` : '';
    facts.push(...fact('paid', t('fact_paid'), `${calls.join(', ') || '0'}${cost}`));
  }
  if (images.length) {
    facts.push(...fact('pictures', t('fact_pictures'), h('ul', { class: 'picture-status' }, images.map((item) => h('li', { 'data-index': item.index },
      `${t('picture_n', { k: item.index + 1 })}: ${t(`status.${item.status}`, {}, item.status)}`,
      item.reason ? ` (${serverMessage(item.code, item.reason, job.profile)})` : '')))));
  }
  const providers = madeWith(view.providers);
  if (providers) facts.push(...fact('providers', t('fact_made_with'), providers));
  $('facts').replaceChildren(...facts);
  $('about').hidden = facts.length === 0;
}

// Before an action on a result, what it would cost: one dry run for Vary and one for Refine, on the first picture.
let nextCostToken = 0;
async function askNextCost(job, made) {
  const token = ++nextCostToken;
  $('next-cost').hidden = true;
  if (!made.length) return;
  const from = { job_id: job.id, index: made[0].index };
  const [vary, refine] = await Promise.all([dryRun(lineageBody(from, 'vary', { strength: 'subtle' })), dryRun(lineageBody(from, 'refine'))]);
  if (token !== nextCostToken || (!vary && !refine)) return;
  $('next-cost').textContent = [vary ? `${t('act_vary')}: ${costText(vary)}` : null, refine ? `${t('act_refine')}: ${costText(refine)}` : null]
    .filter(Boolean).join(' · ');
  $('next-cost').hidden = false;
}

function showLost(id) {
  const job = findJob(id) || { id };
  showOnly('result');
  $('result').dataset.status = 'lost';
  $('result-title').textContent = t('lost_title');
  $('announce').textContent = t('lost_title');
  $('result-prompt').replaceChildren(...promptLine(job));
  renderTrail($('trail'), job);
  // Sent again from the picture this page still has, else from the one the server kept (or the parent's result).
  showNotice('failed', t('what_happened'), t('lost_text'), t('lost_help'), [], { retry: true, renew: true });
  $('facts').replaceChildren();
  $('about').hidden = true;
  $('gallery').replaceChildren();
  $('downloads').replaceChildren();
  $('next-cost').hidden = true;
  scheduleSweep();
}

// ---- history ---------------------------------------------------------------------------------------

const BADGES = {
  running: 'running', succeeded: 'ok', refused: 'refused', failed: 'failed', lost: 'failed', stopped: 'stopped',
};

function renderHistory() {
  const jobs = loadJobs();
  $('history-empty').hidden = jobs.length > 0;
  $('history').replaceChildren(...jobs.map((job) => {
    const status = BADGES[job.status] ? job.status : 'running';
    // A result, not the person's own picture: four different results look different.
    const thumb = job.thumb_url
      ? image(job.thumb_url, '', 'thumb')
      : h('span', { class: 'thumb thumb-empty', 'aria-hidden': 'true' });
    return h('li', { class: 'history-item', 'aria-current': job.id === state.current ? 'true' : null, 'data-job': job.id, 'data-status': status },
      h('button', { type: 'button', class: 'history-open', onclick: () => openJob(job.id, true) },
        thumb,
        h('span', { class: 'history-text' },
          h('span', { class: 'history-prompt' }, job.prompt || job.id),
          h('span', { class: 'history-meta' },
            [job.num ? `#${job.num}` : null, actionName(job), job.profile ? profileName(job.profile) : null,
              job.n ? tn('pictures', job.n) : null, job.at ? ago(job.at) : null].filter(Boolean).join(' · '))),
        h('span', { class: `badge badge-${BADGES[status]}` }, t(`badge.${status}`))),
      h('button', { type: 'button', class: 'history-forget', title: t('forget_title'),
        'aria-label': t('forget', { prompt: job.prompt || job.id }), onclick: () => forgetJob(job.id) }, '×'));
  }));
  scheduleSweep(); // a forgotten job's thumbnail lets its object URL go
}

// ---- language --------------------------------------------------------------------------------------

function applyLanguage(code) {
  setLanguage(code, true);
  translatePage(document);
  $('lang').value = language();
  sayEnforced();
  renderPresets();
  showFileName();
  measureRegion();
  setSending(state.sending);
  syncOutput();
  renderHistory();
  const id = state.current;
  if (id) {
    const job = findJob(id) || { id };
    const view = state.views.get(id);
    if (view && view.status === 'running') showProgress(job, view);
    else if (view) showResult(job, view);
    else if (job.status === 'lost') showLost(id);
  }
  scheduleEstimate();
}

// ---- wiring --------------------------------------------------------------------------------------

function wireDrop() {
  const drop = $('drop');
  let depth = 0; // dragenter/dragleave fire for every child element; count them
  const hasFiles = (event) => Array.from(event.dataTransfer?.types || []).includes('Files');
  window.addEventListener('dragenter', (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    depth += 1;
    drop.classList.add('dragging');
  });
  window.addEventListener('dragover', (event) => {
    if (hasFiles(event)) event.preventDefault(); // lets the drop happen instead of opening the file
  });
  window.addEventListener('dragleave', () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) drop.classList.remove('dragging');
  });
  window.addEventListener('drop', (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    depth = 0;
    drop.classList.remove('dragging');
    setFile(event.dataTransfer.files[0]);
  });
  document.addEventListener('paste', (event) => {
    const file = Array.from(event.clipboardData?.files || []).find((f) => f.type.startsWith('image/'));
    if (file) setFile(file);
  });
  $('file').addEventListener('change', (event) => setFile(event.target.files[0]));
}

function wireDialogs() {
  $('viewer-close').addEventListener('click', () => closeDialog($('viewer')));
  $('compare-range').addEventListener('input', syncCompare);
  // A click on the backdrop (outside the dialog's box) closes it too.
  $('viewer').addEventListener('click', (event) => {
    if (event.target === $('viewer')) closeDialog($('viewer'));
  });
  $('viewer').addEventListener('close', restoreFocus);
  $('remix').addEventListener('close', restoreFocus);
  $('remix-cancel').addEventListener('click', () => closeDialog($('remix')));
  $('remix-form').addEventListener('submit', sendRemix);
  let remixTimer = 0;
  $('remix-prompt').addEventListener('input', () => {
    clearTimeout(remixTimer);
    remixTimer = setTimeout(estimateRemix, 400);
  });
}

async function loadConfig() {
  try {
    const response = await fetch(CONFIG_URL, { cache: 'no-store' });
    if (response.ok) state.config = { ...FALLBACK_CONFIG, ...(await response.json()) };
  } catch {
    // The form still works with the defaults; the server enforces the real limits anyway.
  }
  applyConfig();
}

async function start() {
  loadKey();
  setLanguage(chooseLanguage());
  translatePage(document);
  $('lang').value = language();
  $('lang').addEventListener('change', () => applyLanguage($('lang').value));
  wireDrop();
  wireRegion();
  wireDialogs();
  $('key').addEventListener('change', () => setKey($('key').value.trim()));
  $('make').addEventListener('submit', (event) => {
    event.preventDefault();
    submitJob();
  });
  $('prompt').addEventListener('input', () => {
    syncPresets();
    if ($('prompt').value.trim()) $('prompt-error').hidden = true;
  });
  $('prompt').addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      submitJob();
    }
  });
  $('retry').addEventListener('click', () => {
    // A lost job is sent as it was: the same job id, whose pictures already stored are not paid again. A job that
    // ended (failed) exists, so only a new one (force) runs it again.
    const lost = $('result').dataset.status === 'lost';
    sendAgain(!lost);
  });
  $('renew').addEventListener('click', () => sendAgain(true));
  $('redraw').addEventListener('click', redraw);
  $('stop').addEventListener('click', stopWaiting);
  $('cancel-job').addEventListener('click', cancelJob);
  $('cancel-send').addEventListener('click', () => {
    if (state.sending) state.sending.xhr?.abort();
  });
  $('kids-redraw').addEventListener('click', () => {
    $('mode-generate').checked = true;
    syncRegion();
    saveDraft();
    $('mode-generate').focus();
  });
  for (const input of document.querySelectorAll('input[name="profile"]')) input.addEventListener('change', syncProfile);
  for (const input of document.querySelectorAll('input[name="mode"]')) input.addEventListener('change', syncRegion);
  for (const input of document.querySelectorAll('input[name="format"]')) input.addEventListener('change', syncOutput);
  $('compression').addEventListener('input', syncOutput);
  const again = () => {
    $('make').scrollIntoView({ behavior: 'smooth', block: 'start' });
    $('prompt').focus({ preventScroll: true });
    $('prompt').select();
  };
  $('again').addEventListener('click', again);
  $('again-bottom').addEventListener('click', again);
  await loadConfig();
  restoreDraft();
  syncRegion();
  syncOutput();
  $('make').addEventListener('input', saveDraft);
  $('make').addEventListener('change', saveDraft);
  $('make').addEventListener('change', scheduleEstimate);
  $('prompt').addEventListener('input', scheduleEstimate);
  renderHistory();
  // Every job still running when the page was left is checked again, shown or not.
  for (const job of loadJobs()) if (job.status === 'running') watch(job.id);
  let current = null;
  try {
    current = localStorage.getItem(CURRENT_KEY);
  } catch {
    current = null;
  }
  if (current && JOB_ID.test(current)) openJob(current);
  else showWelcome();
  scheduleEstimate();
  document.documentElement.dataset.ready = 'true'; // lets the browser tests know the page is wired
}

start();

