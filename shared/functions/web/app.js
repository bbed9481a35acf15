// Varia's web page: pick a picture, say how it should change, follow the job, show the results.
// Plain DOM, no framework. Server text only ever goes in through textContent (no HTML string is parsed), and the
// page's Content-Security-Policy allows no inline script or style.

const API = new URL('../variations', import.meta.url).pathname; // /api/variations, whatever the route prefix
const CONFIG_URL = new URL('config.json', import.meta.url).pathname;
// In Azure the API needs a function key. The page takes it from its address (/api/ui#code=<key>: the fragment
// never reaches a server), or from the access-key field it shows when the API answers 401, keeps it in this tab
// only (sessionStorage) and sends it in the x-functions-key header, never in a URL: pictures and downloads are
// fetched with the header and shown from blob: URLs.
const KEY_STORE = 'varia.key.v1';

const JOBS_KEY = 'varia.jobs.v1';
const CURRENT_KEY = 'varia.current.v1';
// The prompt, count and mode being written, so a reload keeps them. Never the profile: it always starts as the
// server says (config.json), so one person's choice on a shared computer is not the next person's.
const DRAFT_KEY = 'varia.draft.v1';
const MAX_JOBS = 40;
const JOB_ID = /^(blob|http|cli)-[0-9a-f]{32}$/;

const STAGES = [
  ['preparing', 'Getting your picture ready'],
  ['captioning', 'Looking at your picture'],
  ['composing', 'Checking the idea and writing the recipe'],
  ['generating', 'Painting the new pictures'],
  ['saving', 'Saving everything'],
];
const STAGE_INDEX = Object.fromEntries(STAGES.map(([name], i) => [name, i]));

const PRESET_LABELS = {
  watercolor: 'Watercolour',
  sketch: 'Pencil sketch',
  sepia: 'Old photo',
  'black-and-white': 'Black & white',
  'pop-art': 'Pop art',
  'pixel-art': 'Pixel art',
  'oil-paint': 'Oil paint',
  neon: 'Neon',
  cartoon: 'Cartoon',
  vintage: 'Postcard',
};

const FALLBACK_CONFIG = {
  presets: {}, profiles: ['general', 'kids'], default_profile: 'general', enforced_profile: null,
  default_variations: 2, max_variations: 4, max_upload_mb: 20, codes: {},
};

// What to do next is chosen by the answer's `code`, from the table config.json carries (shared/core/codes.py),
// never by reading the message: messages are for people and change, codes are stable. A code this page does
// not know (a newer server) gets the generic next step.
const GENERIC_ADVICE = {
  advice: 'Try again in a moment. If it keeps failing, ask whoever runs Varia to look at its console.',
  who: 'later',
};
// Refusals by a safety check: in the kids' classroom, say why ideas are stricter there.
const SAFETY_CODES = new Set(['word_check', 'composer_refused', 'service_refused', 'moderation_refused']);
const REDRAW_CODE = 'minor_edit_refused'; // Azure does not edit photos of children: drawing a new scene works

function adviceFor(code) {
  const entry = code ? state.config.codes?.[code] : null;
  return entry && typeof entry.advice === 'string' ? { ...entry, code } : { ...GENERIC_ADVICE, code: code || '' };
}

const $ = (id) => document.getElementById(id);
const state = {
  config: FALLBACK_CONFIG, file: null, previewUrl: null, current: null, pollToken: 0, repeated: new Set(),
  key: '', sending: false,
  sentFiles: new Map(), // job id -> the picture this page sent for it, so "Draw a new scene" can send it again
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
  showFormError(state.key
    ? 'Varia did not accept this access key. Check it, or ask whoever runs Varia for the right one.'
    : 'This Varia needs an access key. Type it below, or ask whoever runs Varia for it.', $('key'));
}

// ---- pictures and downloads: fetched with the key, shown from blob: URLs ------------------------------
// Each element that shows or downloads a stored file says which one in data-src (an API path, no key in it).
// One object URL per path, shared by the elements showing it; revoked once no element in the page uses it.

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
  afterRender(() => {
    if (!el.isConnected) return; // replaced before it was shown
    blobUrl(path).then(
      (url) => el.setAttribute(attribute, url),
      () => el.classList.add('broken'),
    );
  });
  return el;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function megabytes(bytes) {
  return bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${Math.max(1, Math.round(bytes / 1e3))} KB`;
}

const relative = new Intl.RelativeTimeFormat('en', { numeric: 'auto' });
function ago(time) {
  const seconds = Math.round((time - Date.now()) / 1000);
  if (seconds > -45) return 'just now';
  const minutes = Math.round(seconds / 60);
  if (minutes > -60) return relative.format(minutes, 'minute');
  const hours = Math.round(minutes / 60);
  if (hours > -24) return relative.format(hours, 'hour');
  return relative.format(Math.round(hours / 24), 'day');
}

function profileName(profile) {
  return profile === 'kids' ? "Kids' classroom" : 'Everyone';
}

function pictures(n) {
  return `${n} picture${n === 1 ? '' : 's'}`;
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

function updateJob(id, changes) {
  const jobs = loadJobs();
  const i = jobs.findIndex((j) => j.id === id);
  const job = { ...(i >= 0 ? jobs[i] : { id, at: Date.now() }), ...changes };
  if (i >= 0) jobs.splice(i, 1);
  jobs.unshift(job); // the job last touched comes first
  saveJobs(jobs);
  renderHistory();
  return job;
}

function forgetJob(id) {
  saveJobs(loadJobs().filter((j) => j.id !== id));
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

function showFormError(message, focusTarget, advice = null) {
  const el = $('form-error');
  el.replaceChildren(
    h('span', { class: 'form-message' }, message),
    advice ? h('span', { class: 'form-advice', 'data-code': advice.code, 'data-who': advice.who }, ` ${advice.advice}`) : null,
  );
  el.hidden = false;
  (focusTarget || el).focus();
}

function clearFormError() {
  $('form-error').hidden = true;
  $('form-error').replaceChildren();
}

function setFile(file) {
  if (!file || state.sending) return; // the picture being sent stays the one shown
  clearFormError();
  if (file.type && !file.type.startsWith('image/')) {
    showFormError(`"${file.name}" is not a picture. Choose a JPEG, PNG, GIF or WEBP image.`);
    return;
  }
  const limit = state.config.max_upload_mb * 1024 * 1024;
  if (file.size > limit) {
    showFormError(`"${file.name}" is ${megabytes(file.size)}; pictures can be up to ${state.config.max_upload_mb} MB.`);
    return;
  }
  state.file = file;
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = URL.createObjectURL(file);
  const preview = $('preview');
  preview.src = state.previewUrl;
  preview.alt = `The picture you picked: ${file.name || 'pasted picture'}`;
  preview.hidden = false;
  $('drop').classList.add('has-file');
  $('drop-body').replaceChildren(
    h('strong', { class: 'file-name' }, file.name || 'Pasted picture'),
    h('span', {}, `${megabytes(file.size)} · `, h('span', { class: 'fake-link' }, 'change picture')),
  );
  resetRegion(state.previewUrl);
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
  const text = !painted ? 'Nothing painted: the whole picture can change.'
    : percent < 1 ? 'Changing less than 1% of the picture.' : `Changing ${percent}% of the picture.`;
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

function showRegionError(message, advice) {
  const el = $('region-error');
  el.replaceChildren(
    h('span', { class: 'form-message' }, message),
    h('span', { class: 'form-advice', 'data-code': advice.code, 'data-who': advice.who }, ` ${advice.advice}`),
  );
  el.hidden = false;
  el.focus();
}

function clearRegionError() {
  $('region-error').hidden = true;
  $('region-error').replaceChildren();
}

function renderPresets() {
  const box = $('presets');
  box.replaceChildren();
  for (const [name, text] of Object.entries(state.config.presets)) {
    const label = PRESET_LABELS[name] || name.replace(/[-_]+/g, ' ').replace(/^./, (c) => c.toUpperCase());
    box.append(h('button', {
      type: 'button', class: 'preset', 'data-preset': name, 'aria-pressed': 'false', title: text,
      onclick: () => {
        $('prompt').value = text;
        syncPresets();
        saveDraft();
        clearFormError();
      },
    }, h('span', { class: `swatch swatch-${name}`, 'aria-hidden': 'true' }), label));
  }
}

function syncPresets() {
  const value = $('prompt').value.trim();
  for (const button of $('presets').querySelectorAll('button')) {
    button.setAttribute('aria-pressed', String(state.config.presets[button.dataset.preset] === value));
  }
}

function renderCounts() {
  const box = $('counts');
  box.replaceChildren();
  for (let n = 1; n <= state.config.max_variations; n++) {
    box.append(
      h('input', { type: 'radio', name: 'n', id: `n-${n}`, value: n, checked: n === state.config.default_variations }),
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
  const enforced = enforcedProfile();
  const chosen = enforced || state.config.default_profile;
  const profile = document.querySelector(`input[name="profile"][value="${chosen}"]`);
  if (profile) profile.checked = true;
  // An enforced profile is not a choice: the choice is hidden (and its buttons off), and the page says which is on.
  $('profile-choice').hidden = Boolean(enforced);
  for (const input of document.querySelectorAll('input[name="profile"]')) input.disabled = Boolean(enforced);
  $('profile-locked').hidden = !enforced;
  if (enforced) {
    $('profile-locked-title').textContent = enforced === 'kids'
      ? 'The classroom profile is on' : 'The general profile is on';
    $('profile-locked-text').textContent = enforced === 'kids'
      ? "Whoever runs Varia has set it for a kids' classroom: every picture is checked to be right for children."
      : 'Whoever runs Varia has set it: every picture is checked to be safe for work.';
  }
  renderPresets();
  renderCounts();
  syncProfile();
}

// Under the kids' profile, say up front that Azure does not edit photos of children, and offer Draw a new scene.
function syncProfile() {
  $('kids-photos').hidden = formValues().profile !== 'kids';
}

function saveDraft() {
  const { prompt, n, mode } = formValues();
  try {
    localStorage.setItem(DRAFT_KEY, JSON.stringify({ prompt, n, mode }));
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
  for (const name of ['n', 'mode']) {
    // Only a value the form offers (the limits may have changed since).
    const input = [...document.querySelectorAll(`input[name="${name}"]`)].find((i) => i.value === String(draft[name]));
    if (input) input.checked = true;
  }
  syncPresets();
}

function formValues() {
  const form = $('make');
  return {
    prompt: $('prompt').value.trim(),
    profile: enforcedProfile() || form.elements.profile.value || state.config.default_profile || 'general',
    n: Number(form.elements.n.value || state.config.default_variations),
    mode: form.elements.mode.value || 'edit',
  };
}

// While a job is being sent, every way to send one is off (the button, Ctrl+Enter, Try again / Make new ones)
// and the picture cannot be changed under it; all of it comes back when the answer (or an error) arrives.
function setSending(sending) {
  state.sending = sending;
  for (const id of ['go', 'retry', 'redraw', 'file']) $(id).disabled = sending;
  $('make').setAttribute('aria-busy', String(sending));
  $('drop').classList.toggle('busy', sending);
  $('go-label').textContent = sending ? 'Sending your picture…' : 'Make my pictures';
}

async function submitJob(force = false) {
  if (state.sending) return;
  clearFormError();
  const values = formValues();
  if (!state.file) return showFormError('First pick a picture (step 1).', $('file'));
  if (!values.prompt) return showFormError('Say how the picture should change, or press one of the ideas.', $('prompt'));
  const typed = $('key').value.trim();
  if (!$('key-box').hidden && typed) setKey(typed);

  const body = new FormData();
  const file = state.file;
  body.append('image', file, file.name || 'picture.png');
  for (const [name, value] of Object.entries(values)) body.append(name, String(value));
  if (force) body.append('force', 'true');

  setSending(true);
  clearRegionError();
  try {
    // A part painted on this picture is sent with an edit only: a new scene has no pixels to keep.
    const mask = values.mode === 'edit' ? await regionMask() : null;
    if (mask) body.append('mask', mask, 'mask.png');
    const share = mask ? region.share : null;
    let response;
    try {
      response = await apiFetch(API, { method: 'POST', body });
    } catch {
      return showFormError("Varia can't be reached. Check that the server is still running, then try again.");
    }
    if (KEY_REFUSED(response.status)) return askForKey();
    const answer = await response.json().catch(() => ({}));
    if (answer.code === 'mask_invalid' && !$('region').hidden) {
      return showRegionError(answer.error || 'Varia could not use the part painted.', adviceFor(answer.code));
    }
    if (response.status !== 202 || !JOB_ID.test(answer.job_id || '')) {
      // The refusal's own sentence, then the next step for its code.
      return showFormError(answer.error || `Varia answered with an error (${response.status}).`, null,
        adviceFor(answer.code));
    }
    $('key-box').hidden = true;
    state.sentFiles.set(answer.job_id, file);
    if (answer.created === false) state.repeated.add(answer.job_id);
    else state.repeated.delete(answer.job_id);
    updateJob(answer.job_id, { ...values, region: share, at: Date.now(), status: 'running' });
    openJob(answer.job_id, true);
  } finally {
    setSending(false);
  }
}

// "Draw a new scene": the same picture and prompt, sent again in generate mode (no photo is edited). The form shows
// the mode it sends, so the choice is visible and kept in the draft.
function redraw() {
  const job = state.current ? findJob(state.current) : null;
  const file = job ? state.sentFiles.get(job.id) : null;
  if (state.sending || !file) return;
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
  submitJob(false);
}

// ---- following a job -----------------------------------------------------------------------------

function showOnly(which) {
  $('welcome').hidden = which !== 'welcome';
  $('progress').hidden = which !== 'progress';
  $('result').hidden = which !== 'result';
}

function showWelcome() {
  state.pollToken++;
  showOnly('welcome');
}

function openJob(id, scroll = false) {
  setCurrent(id);
  renderHistory();
  const job = findJob(id) || { id };
  // A finished job keeps the current view until its result arrives (no flash of progress).
  if (!['succeeded', 'refused', 'failed'].includes(job.status)) showProgress(job, { stage: 'queued', done: 0, total: job.n || 0 });
  if (scroll && window.matchMedia('(max-width: 860px)').matches) {
    $('job').scrollIntoView({ behavior: 'smooth', block: 'start' });
  }
  follow(id);
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

async function follow(id) {
  const token = ++state.pollToken;
  let failures = 0;
  let stage = null;
  let next = POLL.firstMs; // the pause after this poll while the stage stays the same
  while (token === state.pollToken) {
    let view = null;
    let asked = 0;
    try {
      const response = await apiFetch(`${API}/${encodeURIComponent(id)}`);
      asked = retryAfterMs(response);
      if (KEY_REFUSED(response.status)) {
        $('key-box').hidden = false; // polling goes on, and picks up the key once it is typed
        throw new Error('Varia needs its access key: type it in the form.');
      }
      if (response.status === 404) {
        if (token === state.pollToken) showLost(id);
        return;
      }
      view = await response.json();
      if (!response.ok) throw new Error(view.error || String(response.status));
      failures = 0;
    } catch {
      failures += 1;
      view = null;
      if (token === state.pollToken && !$('progress').hidden) {
        $('status-line').textContent = $('key-box').hidden
          ? "Can't reach Varia right now. Trying again…"
          : 'Varia needs its access key: type it in the form above. Trying again…';
      }
    }
    if (token !== state.pollToken) return;
    if (view) {
      const job = findJob(id) || { id };
      if (view.status === 'running') {
        showProgress(job, view);
      } else {
        showResult(job, view);
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

function stageText(name, view) {
  const entry = STAGES[STAGE_INDEX[name]];
  if (!entry) return 'Working'; // a stage this page does not know yet
  const label = entry[1];
  if (name === 'generating' && view.total) return `${label}: ${view.done} of ${view.total} ready`;
  return label;
}

function percent(view) {
  const stage = view.stage || 'queued';
  if (stage === 'queued') return 3;
  if (stage === 'done') return 100;
  if (stage === 'generating') return 45 + Math.round((45 * (view.done || 0)) / Math.max(1, view.total || 1));
  return { preparing: 10, captioning: 22, composing: 35, saving: 95 }[stage] || 5;
}

function showProgress(job, view) {
  showOnly('progress');
  const stage = view.stage || 'queued';
  const box = $('progress');
  box.dataset.stage = stage;
  $('progress-prompt').replaceChildren(...promptLine(job));
  const value = percent(view);
  $('bar').setAttribute('aria-valuenow', String(value));
  $('bar-fill').style.setProperty('--value', `${value}%`);
  const current = stage === 'queued' ? -1 : STAGE_INDEX[stage] ?? -1;
  $('stages').replaceChildren(...STAGES.map(([name], i) => {
    const status = i < current ? 'done' : i === current ? 'active' : 'todo';
    return h('li', { class: `stage stage-${status}`, 'data-stage': name, 'aria-current': status === 'active' ? 'step' : null },
      h('span', { class: 'stage-dot', 'aria-hidden': 'true' }),
      h('span', { class: 'stage-label' }, stageText(name, view)),
      status === 'done' ? h('span', { class: 'visually-hidden' }, ' (done)') : null);
  }));
  const line = stage === 'queued' ? 'Waiting for a free painter…' : `${stageText(stage, view)}…`;
  if ($('status-line').textContent !== line) $('status-line').textContent = line; // announce changes only
}

function promptLine(job) {
  const parts = [];
  if (job.prompt) parts.push(h('q', {}, job.prompt));
  const meta = [job.profile ? profileName(job.profile) : null, job.n ? pictures(job.n) : null,
    job.mode ? (job.mode === 'generate' ? 'new scene' : 'keeps the picture') : null,
    job.region ? `changes ${Math.max(1, Math.round(job.region * 100))}% of it` : null].filter(Boolean);
  if (meta.length) parts.push(h('span', { class: 'job-meta' }, meta.join(' · ')));
  return parts;
}

// Uploads are stored under their sha256; that name means nothing to the person who sent the picture.
// And "force=true" is API talk: the page's Try again button is how a person sends it again.
function plainMessage(message) {
  return (message || '').replace(/^[0-9a-f]{64}\.[a-z0-9]+:\s*/i, '').replace(/;\s*send the image again with force=true/, '');
}

// `codes`: the codes the advice was picked for (data-codes, so a test or a script can tell which); `redraw`: offer
// "Draw a new scene" (the same picture and prompt, in generate mode).
function showNotice(kind, title, text, help, retry, { codes = [], redraw = false } = {}) {
  const notice = $('notice');
  notice.className = `notice notice-${kind}`;
  notice.hidden = false;
  $('notice-title').textContent = title;
  $('notice-text').textContent = text || '';
  $('notice-help').textContent = help || '';
  $('notice-help').dataset.codes = codes.join(' ');
  $('retry').hidden = !retry;
  $('retry').textContent = retry || 'Try again';
  $('redraw').hidden = !redraw;
}

// The help line for a set of codes: each distinct next step once, in order.
function adviceText(advices) {
  const steps = [...new Set(advices.map((a) => a.advice))];
  return steps.length ? `What to do: ${steps.join(' ')}` : '';
}

function fact(term, ...value) {
  return [h('dt', {}, term), h('dd', {}, ...value)];
}

function plan(subtasks) {
  if (!subtasks) return null;
  const chips = [];
  if (subtasks.style) chips.push(h('li', { class: 'chip chip-style' }, `Style: ${subtasks.style}`));
  for (const item of subtasks.add || []) chips.push(h('li', { class: 'chip chip-add' }, `Add: ${item}`));
  for (const item of subtasks.remove || []) chips.push(h('li', { class: 'chip chip-remove' }, `Remove: ${item}`));
  if (subtasks.background) chips.push(h('li', { class: 'chip chip-bg' }, `Background: ${subtasks.background}`));
  return chips.length ? h('ul', { class: 'chips', id: 'subtasks' }, chips) : null;
}

function image(path, alt, cls) {
  const img = stored('img', path, { alt, class: cls, decoding: 'async' });
  img.addEventListener('error', () => img.classList.add('broken'), { once: true });
  return img;
}

function download(path, filename, attrs, ...children) {
  return stored('a', path, { ...attrs, download: filename }, ...children);
}

function showResult(job, view) {
  showOnly('result');
  const status = view.status;
  const result = $('result');
  result.dataset.status = status;
  const caption = view.caption || '';
  const images = view.images || [];
  const made = images.filter((i) => i.status === 'succeeded');
  const stored = updateJob(job.id, {
    status, caption, source_url: view.source_url || null,
    prompt: job.prompt || view.prompt, profile: job.profile || view.profile, n: job.n || view.total,
  });
  $('result-prompt').replaceChildren(...promptLine(stored));
  $('notice').hidden = true;

  const canRetry = Boolean(state.file);
  const missing = images.filter((i) => i.status !== 'succeeded');
  const partial = view.partial === true || (status === 'succeeded' && missing.length > 0);
  // Time may cure it (or nobody knows why): sending the same picture again is worth offering.
  const worthRetrying = (advices) => advices.some((a) => a.who === 'later');
  const noFileYet = ' To send it again, pick the picture again above.';
  const canRedraw = state.sentFiles.has(job.id); // the picture sent for this job, kept while the page is open
  if (status === 'succeeded' && !partial) {
    $('result-title').textContent = made.length === 1 ? 'Here is your new picture!' : 'Here are your new pictures!';
  } else if (partial) {
    $('result-title').textContent = `Varia made ${made.length} of ${images.length} pictures`;
    const advices = missing.map((i) => adviceFor(i.code));
    const reasons = missing.map((i) => `Picture ${i.index + 1}: ${i.reason || 'not made.'}`);
    const retry = worthRetrying(advices);
    showNotice('partial', 'Some pictures could not be made.', reasons.join(' '),
      `You can keep these. ${adviceText(advices)}${retry && !canRetry ? noFileYet : ''}`,
      retry && canRetry ? 'Try again' : null,
      { codes: advices.map((a) => a.code), redraw: canRedraw && advices.some((a) => a.code === REDRAW_CODE) });
  } else {
    const refused = status === 'refused';
    $('result-title').textContent = refused ? "Varia can't make this one" : 'Something went wrong';
    const advice = adviceFor(view.code);
    const kids = refused && stored.profile === 'kids' && SAFETY_CODES.has(advice.code)
      ? "This is the kids' classroom, so some words and ideas are not allowed. " : '';
    const message = plainMessage(view.message)
      || (refused ? 'The idea did not pass the safety check.' : 'The job stopped before it finished.');
    const retry = worthRetrying([advice]);
    showNotice(refused ? 'refused' : 'failed', refused ? 'Why not?' : 'What happened', message,
      `${kids}${adviceText([advice])}${retry && !canRetry ? noFileYet : ''}`,
      retry && canRetry ? 'Try again' : null,
      { codes: [advice.code], redraw: canRedraw && advice.code === REDRAW_CODE });
  }
  if (state.repeated.has(job.id) && status !== 'refused') {
    showNotice('info', 'You asked for exactly this before', 'So here are the same pictures again, at no cost.',
      '', canRetry ? 'Make new ones' : null);
  }

  // The result replaces the progress list: tell screen readers what happened.
  $('announce').textContent = [$('result-title').textContent, $('notice').hidden ? '' : $('notice-text').textContent]
    .filter(Boolean).join('. ');

  const facts = [];
  if (caption) facts.push(...fact('What Varia sees', caption));
  if (view.output_prompt) facts.push(...fact('What Varia asked the painter for', view.output_prompt));
  const chips = plan(view.subtasks);
  if (chips) facts.push(...fact('The plan', chips));
  $('facts').replaceChildren(...facts);
  $('facts').hidden = facts.length === 0;

  const gallery = $('gallery');
  gallery.replaceChildren(...images.map((item) => {
    const k = item.index + 1;
    const before = h('figure', { class: 'shot shot-before' },
      view.source_url ? image(view.source_url, caption ? `Your picture: ${caption}` : 'Your picture', 'source') : null,
      h('figcaption', {}, h('span', { class: 'tag' }, 'Before')));
    let after;
    if (item.status === 'succeeded' && item.url) {
      after = h('figure', { class: 'shot shot-after' },
        image(item.url, caption ? `Picture ${k}: ${caption}, ${view.subtasks?.style || 'changed as you asked'}` : `Picture ${k}`, 'variation'),
        h('figcaption', {}, h('span', { class: 'tag tag-after' }, `After · ${k}`),
          download(item.url, `varia-${job.id.slice(-8)}-${k}.png`, { class: 'download' },
            'Download', h('span', { class: 'visually-hidden' }, ` picture ${k}`))));
    } else {
      after = h('figure', { class: 'shot shot-missing' },
        h('div', { class: 'missing' }, item.status === 'refused' ? 'Not allowed' : 'Not made', h('small', {}, item.reason || ''),
          h('small', { class: 'missing-advice', 'data-code': item.code || '' }, adviceFor(item.code).advice)),
        h('figcaption', {}, h('span', { class: 'tag' }, `Picture ${k}`)));
    }
    return h('div', { class: 'pair' }, before, after);
  }));
  gallery.hidden = images.length === 0;

  const links = [];
  if (view.source_url) links.push(download(view.source_url, `varia-${job.id.slice(-8)}-source.png`, {}, 'your picture'));
  if (view.manifest_url) links.push(download(view.manifest_url, `varia-${job.id.slice(-8)}-manifest.json`, {}, 'the manifest (what was done and why)'));
  $('downloads').replaceChildren(
    ...(links.length ? ['Download ', ...links.flatMap((a, i) => (i ? [' · ', a] : [a]))] : []),
    ...[madeWith(view.providers)].filter(Boolean), // no providers (a job stopped before any step): nothing
  );
}

const PROVIDER_NAMES = {
  'azure-ai-vision': 'Azure AI Vision', 'azure-openai-chat': 'Azure OpenAI', 'azure-openai-gpt-image': 'GPT-image',
};

function madeWith(providers) {
  const names = Object.values(providers || {});
  if (!names.length) return null;
  const text = names.every((name) => name === 'offline')
    ? "Made on this computer by Varia's offline painter: no AI service was called."
    : `Made with ${[...new Set(names.map((name) => PROVIDER_NAMES[name] || name))].join(', ')}.`;
  return h('span', { class: 'providers' }, text);
}

function showLost(id) {
  const job = findJob(id) || { id };
  showOnly('result');
  $('result').dataset.status = 'lost';
  updateJob(id, { status: 'lost' });
  $('result-title').textContent = 'This job is no longer here';
  $('announce').textContent = 'This job is no longer here.';
  $('result-prompt').replaceChildren(...promptLine(job));
  showNotice('failed', 'What happened', 'Varia does not know this job any more: the server probably restarted before it finished.',
    state.file ? 'Press Try again to send the picture once more.' : 'Pick the picture again above and press Make my pictures.',
    state.file ? 'Try again' : null);
  $('facts').replaceChildren();
  $('gallery').replaceChildren();
  $('downloads').replaceChildren();
  scheduleSweep();
}

// ---- history ---------------------------------------------------------------------------------------

const BADGES = {
  running: ['Working…', 'running'], succeeded: ['Done', 'ok'], refused: ['Not allowed', 'refused'],
  failed: ['Failed', 'failed'], lost: ['Lost', 'failed'],
};

function renderHistory() {
  const jobs = loadJobs();
  $('history-empty').hidden = jobs.length > 0;
  $('history').replaceChildren(...jobs.map((job) => {
    const [badge, kind] = BADGES[job.status] || BADGES.running;
    const thumb = job.source_url
      ? image(job.source_url, '', 'thumb')
      : h('span', { class: 'thumb thumb-empty', 'aria-hidden': 'true' });
    return h('li', { class: 'history-item', 'aria-current': job.id === state.current ? 'true' : null, 'data-job': job.id },
      h('button', { type: 'button', class: 'history-open', onclick: () => openJob(job.id, true) },
        thumb,
        h('span', { class: 'history-text' },
          h('span', { class: 'history-prompt' }, job.prompt || job.id),
          h('span', { class: 'history-meta' },
            [job.profile ? profileName(job.profile) : null, job.n ? pictures(job.n) : null, job.at ? ago(job.at) : null]
              .filter(Boolean).join(' · '))),
        h('span', { class: `badge badge-${kind}` }, badge)),
      h('button', { type: 'button', class: 'history-forget', title: 'Forget this job in this browser',
        'aria-label': `Forget "${job.prompt || job.id}"`, onclick: () => forgetJob(job.id) }, '×'));
  }));
  scheduleSweep(); // a forgotten job's thumbnail lets its object URL go
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
  wireDrop();
  wireRegion();
  $('key').addEventListener('change', () => setKey($('key').value.trim()));
  $('make').addEventListener('submit', (event) => {
    event.preventDefault();
    submitJob(false);
  });
  $('prompt').addEventListener('input', syncPresets);
  $('prompt').addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      submitJob(false);
    }
  });
  $('retry').addEventListener('click', () => submitJob(true));
  $('redraw').addEventListener('click', redraw);
  $('kids-redraw').addEventListener('click', () => {
    $('mode-generate').checked = true;
    syncRegion();
    saveDraft();
    $('mode-generate').focus();
  });
  for (const input of document.querySelectorAll('input[name="profile"]')) input.addEventListener('change', syncProfile);
  for (const input of document.querySelectorAll('input[name="mode"]')) input.addEventListener('change', syncRegion);
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
  $('make').addEventListener('input', saveDraft);
  $('make').addEventListener('change', saveDraft);
  renderHistory();
  let current = null;
  try {
    current = localStorage.getItem(CURRENT_KEY);
  } catch {
    current = null;
  }
  if (current && JOB_ID.test(current)) openJob(current);
  else showWelcome();
  document.documentElement.dataset.ready = 'true'; // lets the browser tests know the page is wired
}

start();
