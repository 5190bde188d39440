'use strict';
// The page `logoid serve` serves at /: identify photos, browse the catalog, add or remove bands.
// Names come from user catalogs: everything reaches the page through textContent and attributes
// (el/svg below), never innerHTML. Paths are relative so the page also works under a URL prefix.

const TOKEN_KEY = 'logoid.token';
const SVG_NS = 'http://www.w3.org/2000/svg';
const CHANNEL_WORDS = { global: 'picture', local: 'shape', text: 'name read' };
const PALETTE = ['#ffcc00', '#00e0ff', '#ff5cad', '#7cff6b', '#ff8a3d'];  // one outline colour per found logo
const PAGE_SIZE = 24;
const MAX_PARALLEL = 2;  // photos sent at once
const RUNNERS_UP = 4;
// Errors that another try will not mend (the photo itself is the problem).
const FINAL_ERRORS = ['not_image', 'unreadable_image', 'too_large', 'bad_parameter'];
// In the page a token is pasted, not sent as a header by hand: say where, instead of the server's hint.
const TOKEN_HINTS = {
  token_required: 'paste the server\'s token under “Add a band” → Access token',
  bad_token: 'check the token under “Add a band” → Access token: it must be the one the server was started with',
};

const state = {
  catalog: { kind: 'bands', q: '', offset: 0, request: 0 },
  queue: [], running: 0, urls: [], statsTimer: null,
};

// ---------- DOM helpers ----------

const $ = (sel, root = document) => root.querySelector(sel);

/** Sets attributes ('text' = textContent) and appends children, skipping null/undefined/false. */
function fill(node, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'text') node.textContent = v;
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c !== null && c !== undefined && c !== false) node.append(typeof c === 'number' ? String(c) : c);
  }
  return node;
}
const el = (tag, attrs, ...children) => fill(document.createElement(tag), attrs, children);
const svg = (tag, attrs, ...children) => fill(document.createElementNS(SVG_NS, tag), attrs, children);
const spinner = (words) =>
  el('p', { class: 'progress' }, el('span', { class: 'spinner', 'aria-hidden': 'true' }), words);

const fmtScore = (s) => (typeof s === 'number' ? s.toFixed(3) : '–');
const pct = (p) => `${Math.round(p * 100)} %`;
const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;
const imageUrl = (id, size) => `v1/images/${encodeURIComponent(id)}?size=${size}`;
const channelWords = (chs) => (chs || []).map((c) => CHANNEL_WORDS[c] || c).join(', ');
const nameOf = (x) => (x && typeof x === 'object' ? x.name || x.artist || x.title || '' : x || '');
const present = (v) => v !== null && v !== undefined && v !== '' && !(Array.isArray(v) && !v.length);

/** '#/bands/3' for 'band:3', '#/albums/2' for 'album:2', null otherwise. */
function entityHref(entity) {
  const m = /^(band|album):(\d+)$/.exec(entity || '');
  return m ? `#/${m[1]}s/${m[2]}` : null;
}

// ---------- API ----------

class ApiError extends Error {
  constructor(status, code, message, hint = null) {
    super(message);
    Object.assign(this, { status, code, hint });
  }
}

const getToken = () => localStorage.getItem(TOKEN_KEY) || '';

/** fetch + JSON; a non-2xx answer throws ApiError built from the server's {"error": {...}} body. */
async function api(path, { method = 'GET', body = null, auth = false } = {}) {
  const headers = { Accept: 'application/json' };
  if (auth && getToken()) headers.Authorization = `Bearer ${getToken()}`;
  let resp;
  try {
    resp = await fetch(path, { method, body, headers });
  } catch (e) {
    throw new ApiError(0, 'network', 'Could not reach the logoid server.', 'is `logoid serve` still running?');
  }
  let data = null;
  try { data = await resp.json(); } catch (e) { /* not JSON: handled below */ }
  if (!resp.ok) {
    const err = (data && data.error) || {};
    const message = err.message || `The server answered ${resp.status} ${resp.statusText}.`;
    throw new ApiError(resp.status, err.code || 'http_error', message, TOKEN_HINTS[err.code] || err.hint || null);
  }
  return data;
}

/** A readable error line (.error-message): the message, its hint, and the status and code. */
function errorLine(err) {
  const hint = err.hint && !err.message.includes(err.hint) ? ` (${err.hint})` : '';
  const code = err.status ? ` [${err.status} ${err.code}]` : '';
  return el('p', { class: 'error-message', role: 'alert' }, `${err.message}${hint}`,
    el('span', { class: 'muted', text: code }));
}

// ---------- Header: catalog size and write access ----------

async function loadStats() {
  clearTimeout(state.statsTimer);
  try {
    const s = await api('v1/stats');
    const c = s.catalog || {}, ix = s.index || {};
    const parts = [plural(c.bands ?? 0, 'band'), plural(c.albums ?? 0, 'album'), plural(c.images ?? 0, 'image')];
    if (ix.model) parts.push(`model ${ix.model}`);
    if (!s.ready) parts.push('warming up…');
    $('#stats').textContent = parts.join(' · ');
    $('#version').textContent = s.version ? `logoid ${s.version}` : '';
    // 'on' shows .write-ui; 'off' shows .readonly-only, which says how to enable writing.
    document.body.dataset.write = s.read_only ? 'off' : 'on';
    if (!s.ready) state.statsTimer = setTimeout(loadStats, 3000);
  } catch (err) {
    $('#stats').textContent = err.status === 503 ? 'server warming up…' : 'server unreachable — retrying';
    state.statsTimer = setTimeout(loadStats, 3000);
  }
}

// ---------- Identify: pick, drop, paste or photograph ----------

function setupIdentify() {
  for (const input of [$('#photo-input'), $('#camera-input')]) {
    input.addEventListener('change', () => {
      const files = [...input.files];
      input.value = '';  // so that the same photo can be picked again
      identifyFiles(files);
    });
  }
  const zone = $('#drop-zone');
  for (const type of ['dragenter', 'dragover']) {
    zone.addEventListener(type, (e) => { e.preventDefault(); zone.classList.add('dragging'); });
  }
  zone.addEventListener('dragleave', (e) => {
    if (!zone.contains(e.relatedTarget)) zone.classList.remove('dragging');
  });
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('dragging');
    identifyFiles([...e.dataTransfer.files]);
  });
  // A file dropped beside the zone must not make the browser leave the page to show it.
  window.addEventListener('dragover', (e) => e.preventDefault());
  window.addEventListener('drop', (e) => e.preventDefault());
  document.addEventListener('paste', (e) => {
    const files = [...(e.clipboardData?.files || [])].filter((f) => f.type.startsWith('image/'));
    if (files.length && !$('#view-identify').hidden) identifyFiles(files);
  });
  $('#clear-results').addEventListener('click', clearResults);
}

function identifyFiles(files) {
  if (!files.length) return;
  const jobs = files.map((file) => ({ file, card: workingCard(file) }));
  $('#results').prepend(...jobs.map((j) => j.card));  // the newest batch on top, in the order picked
  $('.results-bar').hidden = false;
  state.queue.push(...jobs);
  pump();
}

/** Sends queued photos, MAX_PARALLEL at a time. */
function pump() {
  while (state.running < MAX_PARALLEL && state.queue.length) {
    const job = state.queue.shift();
    state.running += 1;
    identifyOne(job).finally(() => { state.running -= 1; pump(); });
  }
}

/** A .result card in data-state=working: the photo and a spinner; data-status comes with the answer. */
function workingCard(file) {
  const url = URL.createObjectURL(file);
  state.urls.push(url);
  const img = el('img', { src: url, alt: `Your photo ${file.name}`, class: 'photo-img' });
  img.addEventListener('error', () => img.parentElement.classList.add('unreadable'));  // not a picture at all
  return el('article', { class: 'result', 'data-state': 'working', 'aria-busy': 'true' },
    el('div', { class: 'photo' }, img),
    el('div', { class: 'result-body' },
      el('h2', { class: 'file-name', text: file.name || 'photo' }),
      spinner('identifying…')));
}

async function identifyOne(job) {
  const form = new FormData();
  form.append('image', job.file, job.file.name || 'photo.jpg');
  form.append('all', 'true');
  form.append('k', '5');
  try {
    const answer = await api('v1/identify', { method: 'POST', body: form });
    if (answer.status === 'error') throw new ApiError(0, 'not_image', answer.error || 'The photo could not be read.');
    await showAnswer(job.card, answer);
  } catch (err) {
    showError(job, err instanceof ApiError ? err : new ApiError(0, 'page', `Could not show the answer: ${err}`));
  }
}

function finish(card, status) {
  card.dataset.status = status;
  card.dataset.state = 'done';
  card.removeAttribute('aria-busy');
  $('.progress', card)?.remove();
}

function showError(job, err) {
  const body = $('.result-body', job.card);
  body.append(errorLine(err));
  if (!FINAL_ERRORS.includes(err.code)) {  // a warming or unreachable server may answer a second try
    const retry = el('button', { type: 'button', class: 'button small', text: 'Try again' });
    retry.addEventListener('click', () => {
      const card = workingCard(job.file);
      job.card.replaceWith(card);
      state.queue.push({ file: job.file, card });
      pump();
    });
    body.append(retry);
  }
  finish(job.card, 'error');
}

async function showAnswer(card, a) {
  const best = (a.candidates || [])[0];
  const found = a.logos && a.logos.length ? a.logos : (a.accepted && best && best.polygon ? [best] : []);
  const layer = overlay(a, found);
  $('.photo', card).append(layer);
  fitLabels(layer, a.width || 1);
  const photo = await loadedPhoto($('.photo-img', card), a);
  const body = $('.result-body', card);
  body.append(...[verdictBlock(a, best), ...albumLines(a, best), readLine(a)].filter(Boolean));
  // Compare by eye: each logo found (or the best candidate) next to its reference image.
  const matches = found.length > 1 ? found : best ? [best] : [];
  body.append(el('div', { class: 'matches' }, matches.map((c) => candidateView(c, photo, 'match'))));
  if (matches.length === 1 && a.accepted) $('.matches .cand-info', body).hidden = true;  // the verdict says it
  body.append(runnersUp(a, photo));
  finish(card, a.status);
}

/** The verdict in plain words: sure / likely / unknown — best guess X. */
function verdictWords(a, best) {
  if (!a.accepted) return `unknown — best guess ${best ? best.name : 'no candidates'}`;
  const t = typeof a.threshold === 'number' ? a.threshold : 0;
  return a.score >= t + (1 - t) / 2 ? 'sure' : 'likely';
}

function verdictBlock(a, best) {
  const words = verdictWords(a, best);
  const name = a.accepted ? a.answer : 'unknown';
  const href = a.accepted ? entityHref(a.entity) : null;
  const seconds = a.timings && typeof a.timings.total === 'number' ? ` · ${a.timings.total.toFixed(1)} s` : '';
  return el('div', { class: 'verdict-block' },
    el('p', { class: 'answer-line' },
      el('span', { class: 'answer-name' }, href ? el('a', { href, text: name }) : name), ' ',
      el('span', { class: `verdict verdict-${a.accepted ? words : 'unknown'}`, text: words })),
    el('p', { class: 'score-line' }, `score ${fmtScore(a.score)}`,
      el('span', { class: 'muted', text: ` (needs ${fmtScore(a.threshold)})${seconds}` })),
    best && present(best.channels)
      ? el('p', { class: 'channels' }, a.accepted ? 'recognised by ' : 'best guess from ',
        el('strong', { text: channelWords(best.channels) }))
      : null);
}

/** Album answers: artist and year; the genre model's and the artist guess's opinions when present. */
function albumLines(a, best) {
  const lines = [];
  const meta = (best && best.meta) || {};
  if (meta.type === 'album') {
    const artist = nameOf(a.artist) || nameOf(meta.artist) || '';
    lines.push(el('p', { class: 'album-line' }, 'album', artist && ` by ${artist}`, meta.year && ` (${meta.year})`));
  }
  if (a.genre && a.genre.genre) {
    const p = typeof a.genre.probability === 'number' ? `, ${pct(a.genre.probability)}` : '';
    lines.push(el('p', { class: 'genre-line' }, 'genre: ', el('strong', { text: a.genre.genre }), p));
  }
  const g = a.artist_guess;
  if (g && nameOf(g.artist)) {
    lines.push(el('p', { class: 'artist-guess' }, g.accepted ? 'artist: ' : 'artist guess: ',
      el('strong', { text: nameOf(g.artist) }), ` (score ${fmtScore(g.score)})`));
  }
  return lines;
}

function readLine(a) {
  const read = (a.read || []).filter((r) => r.text);
  if (!read.length) return null;
  return el('p', { class: 'read-line' }, 'text read: ', read.map((r, i) => [
    i ? ', ' : '', el('q', { text: r.text }),
    typeof r.conf === 'number' ? el('span', { class: 'muted', text: ` ${pct(r.conf)}` }) : null]));
}

function runnersUp(a, photo) {
  const rest = (a.candidates || []).slice(1, 1 + RUNNERS_UP);
  return el('section', { class: 'runners-up' },
    el('h3', { text: rest.length ? 'Other candidates' : 'No other candidates' }),
    el('ol', { class: 'candidates' }, rest.map((c) => candidateView(c, photo, 'candidate'))));
}

/** One candidate: the photo region next to its reference image, its name (linked), score and channels. */
function candidateView(c, photo, cls) {
  const href = entityHref(c.entity);
  const ref = c.image_id != null
    ? el('img', { src: imageUrl(c.image_id, 160), alt: `Reference image of ${c.name}`, loading: 'lazy' })
    : el('span', { class: 'no-ref', text: 'no image' });
  return el(cls === 'candidate' ? 'li' : 'div', { class: `${cls} compare` },
    el('div', { class: 'pair' },
      el('figure', {}, regionView(c, photo), el('figcaption', { text: 'your photo' })),
      el('figure', {}, ref, el('figcaption', { text: 'catalog' }))),
    el('div', { class: 'cand-info' },
      el('span', { class: 'cand-name' }, href ? el('a', { href, text: c.name }) : c.name),
      el('span', { class: 'cand-score', text: `score ${fmtScore(c.score)}` }),
      present(c.channels) ? el('span', { class: 'cand-channels muted', text: channelWords(c.channels) }) : null));
}

function clearResults() {
  state.queue.length = 0;
  $('#results').replaceChildren();
  state.urls.forEach((u) => URL.revokeObjectURL(u));
  state.urls = [];
  $('.results-bar').hidden = true;
}

// ---------- The photo: overlay and crops ----------

/** Waits for the photo; returns it with the scale from the answer's pixel space to the decoded image. */
async function loadedPhoto(img, a) {
  try { await img.decode(); } catch (e) { return null; }
  const w = img.naturalWidth, h = img.naturalHeight;
  return { img, sx: w / (a.width || w), sy: h / (a.height || h) };
}

const points = (poly) => poly.map((p) => `${(+p[0]).toFixed(1)},${(+p[1]).toFixed(1)}`).join(' ');

/** <svg class="overlay"> in the photo's pixel space: every found logo outlined and named, text read dashed. */
function overlay(a, found) {
  const w = a.width || 1, h = a.height || 1;
  const fs = Math.max(12, Math.round(Math.max(w, h) / 22));
  const label = found.length ? `Found: ${found.map((c) => c.name).join(', ')}` : 'No logo outlined';
  const root = svg('svg', { class: 'overlay', viewBox: `0 0 ${w} ${h}`, preserveAspectRatio: 'none',
    role: 'img', 'aria-label': label });
  for (const r of a.read || []) {
    if (present(r.box)) root.append(svg('polygon', { class: 'read-box', points: points(r.box) }));
  }
  found.forEach((c, i) => {
    if (!present(c.polygon)) return;
    const g = svg('g', { class: 'found' });
    g.style.setProperty('--c', PALETTE[i % PALETTE.length]);
    const x = Math.max(0, Math.min(...c.polygon.map((p) => p[0])));
    const top = Math.min(...c.polygon.map((p) => p[1]));
    const y = top - fs * 0.4 > fs ? top - fs * 0.4 : top + fs * 1.1;  // above the outline, else inside its top
    g.append(svg('polygon', { class: 'outline', points: points(c.polygon) }),
      svg('text', { class: 'label', x: x.toFixed(1), y: y.toFixed(1), 'font-size': fs,
        'stroke-width': (fs / 5).toFixed(1) }, c.name));
    root.append(g);
  });
  return root;
}

/** Moves each label left so that it ends inside the photo, and shrinks one wider than the photo. */
function fitLabels(root, w) {
  for (const t of root.querySelectorAll('text.label')) {
    const fs = +t.getAttribute('font-size');
    let len = t.getComputedTextLength() || 0.62 * fs * t.textContent.length;  // 0 while the view is hidden
    if (len > w * 0.98) {
      t.setAttribute('font-size', ((fs * w * 0.98) / len).toFixed(1));
      len = w * 0.98;
    }
    t.setAttribute('x', Math.max(0, Math.min(+t.getAttribute('x'), w - len)).toFixed(1));
  }
}

/** The candidate's polygon bounding box cut out of the photo (a canvas), else the whole photo. */
function regionView(c, photo) {
  if (!photo) return el('span', { class: 'no-ref', text: 'photo' });
  const { img, sx, sy } = photo;
  const whole = () => el('img', { src: img.src, alt: 'Your photo', class: 'whole' });
  if (!present(c.polygon)) return whole();
  const xs = c.polygon.map((p) => p[0] * sx), ys = c.polygon.map((p) => p[1] * sy);
  const pad = 0.06 * Math.max(Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys));
  const x0 = Math.max(0, Math.min(...xs) - pad), x1 = Math.min(img.naturalWidth, Math.max(...xs) + pad);
  const y0 = Math.max(0, Math.min(...ys) - pad), y1 = Math.min(img.naturalHeight, Math.max(...ys) + pad);
  if (x1 - x0 < 2 || y1 - y0 < 2) return whole();
  const scale = 320 / Math.max(x1 - x0, y1 - y0);  // drawn at twice the displayed size, for sharp screens
  const canvas = el('canvas', { width: Math.round((x1 - x0) * scale), height: Math.round((y1 - y0) * scale),
    role: 'img', 'aria-label': `The part of your photo matched to ${c.name}` });
  canvas.getContext('2d').drawImage(img, x0, y0, x1 - x0, y1 - y0, 0, 0, canvas.width, canvas.height);
  return canvas;
}

// ---------- Catalog: search, paging ----------

function setupCatalog() {
  let timer = null;
  $('#catalog-search').addEventListener('input', (e) => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      Object.assign(state.catalog, { q: e.target.value.trim(), offset: 0 });
      loadCatalog();
    }, 250);
  });
  for (const b of document.querySelectorAll('.seg')) {
    b.addEventListener('click', () => {
      Object.assign(state.catalog, { kind: b.dataset.kind, offset: 0 });
      document.querySelectorAll('.seg').forEach((x) => x.setAttribute('aria-pressed', String(x === b)));
      loadCatalog();
    });
  }
  $('#page-prev').addEventListener('click', () => page(-1));
  $('#page-next').addEventListener('click', () => page(1));
}

function page(dir) {
  state.catalog.offset = Math.max(0, state.catalog.offset + dir * PAGE_SIZE);
  loadCatalog();
}

async function loadCatalog() {
  const cat = state.catalog;
  const request = ++cat.request;  // a slower, older answer must not overwrite a newer one
  const params = new URLSearchParams({ q: cat.q, limit: PAGE_SIZE, offset: cat.offset });
  const list = $('#catalog-list');
  list.setAttribute('aria-busy', 'true');
  try {
    const data = await api(`v1/${cat.kind}?${params}`);
    if (request !== cat.request) return;
    list.replaceChildren(...data.items.map((it) => catalogTile(it, cat.kind)));
    showPaging(data, cat);
  } catch (err) {
    if (request !== cat.request) return;
    list.replaceChildren(el('li', {}, errorLine(err)));
    $('#catalog-count').textContent = '';
    $('.pager').hidden = true;
  } finally {
    if (request === cat.request) list.removeAttribute('aria-busy');
  }
}

function showPaging(data, cat) {
  const total = data.total;
  const last = Math.min(total, cat.offset + data.items.length);
  const matching = cat.q ? ` matching “${cat.q}”` : '';
  $('#catalog-count').textContent = total ? `${plural(total, cat.kind.slice(0, -1))}${matching}`
    : `No ${cat.kind}${cat.q ? matching : ' yet'}.`;
  $('#page-info').textContent = total ? `${cat.offset + 1}–${last} of ${total}` : '';
  $('#page-prev').disabled = cat.offset === 0;
  $('#page-next').disabled = cat.offset + PAGE_SIZE >= total;
  $('.pager').hidden = total <= PAGE_SIZE && cat.offset === 0;
}

/** A link tile: first image, name, and a line of details. */
function catalogTile(it, kind) {
  const ids = it.image_ids || (it.images || []).map((i) => i.id);
  const sub = kind === 'bands'
    ? [it.genre, it.country, it.n_images != null ? plural(it.n_images, 'image') : null]
    : [nameOf(it.artist), it.year, it.genre];
  return el('li', { class: 'tile' },
    el('a', { href: `#/${kind}/${it.id}` },
      present(ids) ? el('img', { src: imageUrl(ids[0], 160), alt: '', loading: 'lazy' })
        : el('span', { class: 'no-ref', text: 'no image' }),
      el('span', { class: 'tile-name', text: kind === 'bands' ? it.name : it.title }),
      el('span', { class: 'tile-sub muted', text: sub.filter(present).join(' · ') })));
}

// ---------- Band and album pages ----------

async function showEntity(kind, id) {
  const view = $('#view-entity');
  const hash = location.hash;
  view.replaceChildren(spinner('loading…'));
  let parts;
  try {
    const data = await api(`v1/${kind}/${id}`);
    parts = kind === 'bands' ? bandPage(data) : albumPage(data);
  } catch (err) {
    parts = [backLink(), el('h1', { tabindex: '-1', text: kind === 'bands' ? 'Band' : 'Album' }), errorLine(err)];
  }
  if (location.hash !== hash) return;  // the user went elsewhere meanwhile
  view.replaceChildren(...parts);
  $('h1', view).focus();
}

const backLink = () => el('p', {}, el('a', { href: '#/catalog', class: 'back', text: '← Catalog' }));

/** A definition list of the fields that have a value. */
function facts(rows) {
  return el('dl', { class: 'facts' }, rows.filter(([, v]) => present(v)).map(([label, v]) =>
    [el('dt', { text: label }), el('dd', {}, Array.isArray(v) ? v.join(' · ') : v)]));
}

function externalIds(ids) {
  if (!ids) return [];
  if (Array.isArray(ids)) return ids.map((x) => (typeof x === 'object' ? `${x.source}:${x.value}` : String(x)));
  return Object.entries(ids).map(([src, v]) => `${src}:${Array.isArray(v) ? v.join(', ') : v}`);
}

function gallery(images, alt) {
  if (!present(images)) return el('p', { class: 'muted', text: 'No images.' });
  return el('div', { class: 'gallery' }, images.map((im) => el('figure', {},
    el('a', { href: imageUrl(im.id, 1024) }, el('img', { src: imageUrl(im.id, 256), alt, loading: 'lazy' })),
    el('figcaption', { class: 'muted',
      text: [im.kind, im.scheme, im.width && `${im.width}×${im.height}`].filter(Boolean).join(' · ') }))));
}

function bandPage(b) {
  const albums = b.albums || [], images = b.images || [];
  return [
    backLink(),
    el('h1', { tabindex: '-1', text: b.name }),
    facts([['Genre', b.genre], ['Country', b.country], ['Location', b.location], ['Formed', b.formed_year],
      ['Status', b.status], ['Label', b.label], ['Themes', b.themes], ['Ids', externalIds(b.external_ids)],
      ['Also known as', b.aliases]]),
    el('h2', { text: `Reference logos (${images.length})` }),
    gallery(images, `Logo of ${b.name}`),
    el('h2', { text: `Albums (${albums.length})` }),
    albums.length ? el('ul', { class: 'tiles' }, albums.map((al) => catalogTile(al, 'albums')))
      : el('p', { class: 'muted', text: 'No albums in the catalog.' }),
    removeBox('bands', b.id, b.name, images.length),
  ];
}

function albumPage(al) {
  const artist = nameOf(al.artist), images = al.images || [];
  const artistLink = artist && al.artist_id != null
    ? el('a', { href: `#/bands/${al.artist_id}`, text: artist }) : artist;
  return [
    backLink(),
    el('h1', { tabindex: '-1', text: al.title }),
    facts([['Artist', artistLink], ['Year', al.year], ['Genre', al.genre]]),
    el('h2', { text: `Covers (${images.length})` }),
    gallery(images, `Cover of ${al.title}`),
    removeBox('albums', al.id, al.title, images.length),
  ];
}

/** The "Remove" button (write UI only): confirm, DELETE with the token, back to the catalog. */
function removeBox(kind, id, name, nImages) {
  const out = el('div', { class: 'form-result', 'aria-live': 'polite' });
  const what = kind === 'bands' ? 'band' : 'album';
  const button = el('button', { type: 'button', class: 'button danger', text: `Remove ${what}` });
  button.addEventListener('click', async () => {
    const also = kind === 'bands' ? ', its albums' : '';
    if (!confirm(`Remove the ${what} “${name}”${also} and ${plural(nImages, 'image')} from the catalog? `
      + 'This cannot be undone.')) return;
    button.disabled = true;
    try {
      await api(`v1/${kind}/${id}`, { method: 'DELETE', auth: true });
      flash(`Removed “${name}”.`);
      loadStats();
      location.hash = '#/catalog';
    } catch (err) {
      out.replaceChildren(errorLine(err));
      button.disabled = false;
    }
  });
  return el('div', { class: 'danger-zone write-ui' }, button, out);
}

/** A short message shown above the next view for a few seconds. */
function flash(message) {
  const note = el('p', { class: 'flash', role: 'status', text: message });
  $('#main').prepend(note);
  setTimeout(() => note.remove(), 5000);
}

// ---------- Write access: the token; adding a band or an album ----------

function setupWrite() {
  const input = $('#token-input');
  const status = () => {
    $('#token-status').textContent = getToken() ? 'Token saved in this browser.' : 'No token saved.';
  };
  const save = () => {
    const t = input.value.trim();
    if (t) localStorage.setItem(TOKEN_KEY, t); else localStorage.removeItem(TOKEN_KEY);
    status();
  };
  input.value = getToken();
  status();
  input.addEventListener('input', save);
  $('#token-form').addEventListener('submit', (e) => { e.preventDefault(); save(); });
  $('#token-clear').addEventListener('click', () => { input.value = ''; save(); });
  $('#add-band-form').addEventListener('submit', (e) => submitAdd(e, 'bands'));
  $('#add-album-form').addEventListener('submit', (e) => submitAdd(e, 'albums'));
}

/** The form as the API's multipart body: ids and aliases repeated, empty fields and file inputs left out. */
function formBody(form) {
  const fd = new FormData();
  for (const [key, value] of new FormData(form)) {
    if (value instanceof File) {
      if (value.name && value.size) fd.append(key, value, value.name);
      continue;
    }
    const v = value.trim();
    if (key === 'ids') v.split(/[\s,;]+/).filter(Boolean).forEach((x) => fd.append('ids', x));
    else if (key === 'aliases') v.split('\n').map((x) => x.trim()).filter(Boolean).forEach((x) => fd.append(key, x));
    else if (v) fd.append(key, v);
  }
  return fd;
}

async function submitAdd(e, kind) {
  e.preventDefault();
  const form = e.target;
  const out = $('.form-result', form);
  const button = $('button[type=submit]', form);
  button.disabled = true;
  out.replaceChildren(spinner('adding and indexing…'));
  try {
    const res = await api(`v1/${kind}`, { method: 'POST', body: formBody(form), auth: true });
    out.replaceChildren(...addSummary(res, kind));
    form.reset();
    loadStats();
  } catch (err) {
    out.replaceChildren(errorLine(err));
  } finally {
    button.disabled = false;
  }
}

/** What POST /v1/bands|albums answered, in words (created/updated, images stored, skipped), then the JSON. */
function addSummary(res, kind) {
  const id = kind === 'bands' ? res.band : (res.album ?? res.id);
  const name = res.name || res.title || '';
  const skipped = res.skipped || [];
  return [
    el('p', { class: 'ok-message' }, `${res.created === false ? 'Updated' : 'Created'} ${kind.slice(0, -1)} `,
      id != null ? el('a', { href: `#/${kind}/${id}`, text: name || `#${id}` }) : name,
      `: ${plural((res.images || []).length, 'image')} stored`,
      res.vectors_added != null && `, ${res.vectors_added} vectors added`,
      res.indexed === false && ' (not indexed yet: run `logoid build-index`)', '.'),
    skipped.length ? el('p', { class: 'skipped' }, `Skipped ${plural(skipped.length, 'file')}:`) : null,
    skipped.length ? el('ul', { class: 'skipped' }, skipped.map((s) =>
      el('li', {}, el('strong', { text: s.path }), `: ${s.reason}`))) : null,
    el('details', {}, el('summary', { text: 'JSON' }), el('pre', { text: JSON.stringify(res, null, 2) })),
  ].filter(Boolean);
}

// ---------- Routing: #/, #/catalog, #/bands/{id}, #/albums/{id}, #/add ----------

const VIEWS = ['identify', 'catalog', 'entity', 'add'];

function show(view, navId) {
  for (const v of VIEWS) $(`#view-${v}`).hidden = v !== view;
  for (const a of document.querySelectorAll('.site-nav a')) {
    if (a.id === navId) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function route(moveFocus) {
  const hash = location.hash || '#/';
  const m = /^#\/(bands|albums)\/(\d+)$/.exec(hash);
  if (m) {
    show('entity', 'nav-catalog');
    showEntity(m[1], m[2]);
    return;
  }
  if (hash === '#/catalog') {
    show('catalog', 'nav-catalog');
    loadCatalog();
  } else if (hash === '#/add') {
    show('add', 'nav-add');
  } else {
    show('identify', 'nav-identify');
  }
  if (moveFocus) $('.view:not([hidden]) h1').focus();
}

document.addEventListener('DOMContentLoaded', () => {
  setupIdentify();
  setupCatalog();
  setupWrite();
  window.addEventListener('hashchange', () => route(true));
  route(false);
  loadStats();
});
