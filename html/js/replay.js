// The Replay view: a recorded session played with asciinema-player
// (vendored by make ui, the global AsciinemaPlayer). replay.html?session=<id>
// [&t=<seconds>] opens it (at that time). The whole session's timeline, its
// duration and markers (the chapters), comes from the index
// (GET /api/sessions/{id}/recording?format=index); the player gets one window
// of the recording at a time (?from=&to=, about WINDOW_BYTES of events from
// a little before the position), so a long recording never loads whole into
// the tab: seeking outside the window loads the window there, playing past
// its end loads the next one. Download is the whole .cast from the API.
import { get, h, banner, errorText, param, ApiError } from './api.js';
import { mountShell } from './shell.js';

const WINDOW_BYTES = 1024 * 1024;
const BACK_CHUNKS = 1;
const SPEEDS = [0.5, 1, 2, 4, 8];

await mountShell('sessions');
const main = document.getElementById('main');
main.classList.add('replay');
const msg = h('div', { hidden: true });
const title = h('h1', {}, 'Replay');
const status = h('p', { class: 'status', id: 'replay-status', role: 'status', 'aria-live': 'polite' });
const screen = h('div', { class: 'player', id: 'replay-player', 'aria-label': 'Recorded terminal' });
const playBtn = h('button', { type: 'button', id: 'replay-play', class: 'primary', disabled: true }, 'Play');
const time = h('span', { class: 'time mono', id: 'replay-time' }, '0:00 / 0:00');
const seek = h('input', { type: 'range', id: 'replay-seek', min: 0, max: 0, step: 1, value: 0,
                          'aria-label': 'Position in the recording', disabled: true });
const ticks = h('div', { class: 'ticks' });
const speedSel = h('select', { id: 'replay-speed', 'aria-label': 'Speed' },
  SPEEDS.map(s => h('option', { value: s, selected: s === 1 }, `${s}×`)));
const download = h('a', { class: 'button', id: 'replay-download' }, 'Download .cast');
const chapters = h('ol', { class: 'chapters', id: 'replay-chapters' });

main.replaceChildren(
  h('p', { class: 'breadcrumb' }, 'Sessions › ', h('a', { href: 'sessions.html' }, 'Session audit'), ' › Replay'),
  h('div', { class: 'pagehead' }, title, h('span', { class: 'spacer' }), download),
  msg,
  screen,
  h('div', { class: 'controls' }, playBtn, time, h('div', { class: 'timeline' }, ticks, seek),
    h('label', {}, 'Speed ', speedSel)),
  status,
  h('section', { class: 'panel pad' }, h('h2', {}, 'Chapters'), chapters));

const id = param('session') || '';
const at = Number(param('t'));

let index = null;      // the whole session
let win = null;        // { from, to (null: the end), data }
let player = null;
let playing = false;
let speed = 1;
let loads = 0;         // windows fetched (the browser test reads it)

function fmt(ms) {
  const s = Math.floor(Math.max(0, ms) / 1000);
  const hh = Math.floor(s / 3600), mm = Math.floor(s / 60) % 60, ss = String(s % 60).padStart(2, '0');
  return hh ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

function position() {
  if (!win || !player) return 0;
  const t = player.getCurrentTime();
  return win.from + (typeof t === 'number' && isFinite(t) ? t * 1000 : 0);
}

function showPosition(ms = position()) {
  time.textContent = `${fmt(ms)} / ${fmt(index.duration)}`;
  if (document.activeElement !== seek) seek.value = String(Math.round(ms));
  main.dataset.position = String(Math.round(ms));
}

function setPlaying(p) {
  playing = p;
  playBtn.textContent = p ? 'Pause' : 'Play';
  main.dataset.playing = p ? '1' : '0';
}

setInterval(() => { if (index && player) showPosition(); }, 200);

// the window for position t: from a couple of chunks before the chunk
// holding t, WINDOW_BYTES of events on; to is where the next chunk starts
function windowAt(t) {
  const ch = index.chunks;            // [seq, t_first, t_last, event bytes]
  if (!ch.length) return { from: 0, to: null };
  let lo = 0, hi = ch.length - 1;
  while (lo < hi) {                   // the first chunk that ends at or after t
    const m = (lo + hi) >> 1;
    if (ch[m][2] >= t) hi = m; else lo = m + 1;
  }
  const j = Math.max(0, lo - BACK_CHUNKS);
  const from = Math.max(0, Math.min(t, ch[j][1]));
  let k = j, bytes = 0;
  while (k < ch.length && (bytes < WINDOW_BYTES || ch[k][1] <= t)) bytes += ch[k++][3];
  const to = k >= ch.length ? null : Math.max(ch[k][1], from + 1);
  return { from, to };
}

function inWindow(t) {
  return win && t >= win.from && (win.to === null || t < win.to);
}

async function load(t, play) {
  const started = performance.now();
  const w = windowAt(t);
  main.dataset.state = 'loading';
  status.textContent = `Loading ${fmt(w.from)} to ${w.to === null ? 'the end' : fmt(w.to)}…`;
  const q = `from=${w.from}` + (w.to === null ? '' : `&to=${w.to}`);
  const res = await fetch(`/api/sessions/${encodeURIComponent(id)}/recording?${q}`,
                          { credentials: 'same-origin' });
  if (!res.ok) {
    let body = null;
    try { body = await res.json(); } catch { /* not JSON */ }
    throw new ApiError(res.status, body);
  }
  w.data = await res.text();
  const fetched = performance.now();
  loads++;
  main.dataset.windows = String(loads);
  main.dataset.from = String(w.from);
  main.dataset.to = w.to === null ? '' : String(w.to);
  win = w;
  try {
    const head = JSON.parse(w.data.slice(0, w.data.indexOf('\n')));
    if (head.title) title.textContent = `Replay: ${head.title}`;
  } catch { /* the player says what is wrong */ }
  await mount(t - w.from, play);
  // how long the last window took: fetching it, and the player's seek
  main.dataset.fetchMs = String(Math.round(fetched - started));
  main.dataset.mountMs = String(Math.round(performance.now() - fetched));
}

// a player on the current window, at offset ms into it
async function mount(offset, play) {
  atWindowEnd = false;
  if (player) player.dispose();
  screen.replaceChildren();
  const markers = index.markers
    .filter(([ms]) => inWindow(ms))
    .map(([ms, label]) => [(ms - win.from) / 1000, label]);
  player = AsciinemaPlayer.create({ data: win.data }, screen, {
    autoPlay: false, preload: true, controls: false, fit: 'both', speed, markers,
    terminalFontSize: '13px',
  });
  player.addEventListener('play', () => setPlaying(true));
  player.addEventListener('playing', () => setPlaying(true));
  player.addEventListener('pause', () => { setPlaying(false); showPosition(); });
  player.addEventListener('ended', onEnded);
  await player.seek(Math.max(0, offset) / 1000);
  main.dataset.state = 'ready';
  status.textContent = index.live ? 'Live session: this is what is recorded so far.' : '';
  showPosition(win.from + Math.max(0, offset));
  if (play) await player.play();
  else setPlaying(false);
}

// the player is at the end of its window: the next window if it was
// playing (a seek between the window's last event and its end also ends it)
let atWindowEnd = false;
async function onEnded() {
  if (win && win.to !== null) {
    if (!playing) { atWindowEnd = true; return; }
    try { await load(win.to, true); } catch (e) { fail(e); }
    return;
  }
  setPlaying(false);
  showPosition(index.duration);
  main.dataset.ended = '1';
}

async function seekTo(t) {
  t = Math.max(0, Math.min(index.duration, Math.round(t)));
  main.dataset.ended = '';
  try {
    if (inWindow(t)) {
      atWindowEnd = false;
      await player.seek((t - win.from) / 1000);
      showPosition(t);
    } else {
      await load(t, playing);
    }
  } catch (e) { fail(e); }
}

function fail(e) {
  main.dataset.state = 'error';
  banner(msg, 'error', e instanceof ApiError && e.status === 404
    ? 'There is no recording of this session (it was not recorded), or you may not see it.'
    : errorText(e));
}

playBtn.addEventListener('click', async () => {
  if (!player) return;
  if (playing) { await player.pause(); return; }
  if (main.dataset.ended === '1') { main.dataset.ended = ''; await seekTo(0); }
  if (atWindowEnd && win.to !== null) {
    try { await load(win.to, true); } catch (e) { fail(e); }
    return;
  }
  await player.play();
});
// Space plays and pauses, the arrows go 5 s back and on, unless a control
// or the player (which has its own keys) has the focus
document.addEventListener('keydown', e => {
  if (!player || e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.target instanceof Element && e.target.closest('input, select, textarea, button, a, #replay-player')) return;
  if (e.key === ' ') { e.preventDefault(); playBtn.click(); }
  else if (e.key === 'ArrowLeft') { e.preventDefault(); seekTo(position() - 5000); }
  else if (e.key === 'ArrowRight') { e.preventDefault(); seekTo(position() + 5000); }
});
seek.addEventListener('input', () => { time.textContent = `${fmt(Number(seek.value))} / ${fmt(index.duration)}`; });
seek.addEventListener('change', () => seekTo(Number(seek.value)));
speedSel.addEventListener('change', async () => {
  speed = Number(speedSel.value);
  if (!win) return;
  const wasPlaying = playing;
  await mount(position() - win.from, wasPlaying);
});

if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id)) {
  banner(msg, 'error', 'No session was given: open a replay from the Session audit.');
} else {
  download.setAttribute('href', `/api/sessions/${id}/recording`);
  download.setAttribute('download', `session-${id}.cast`);
  try {
    index = await get(`/api/sessions/${id}/recording?format=index`);
    seek.max = String(index.duration);
    for (const [ms, label] of index.markers) {
      const go = () => seekTo(ms);
      chapters.append(h('li', {}, h('button', { type: 'button', onclick: go },
        h('span', { class: 'at' }, fmt(ms)), label)));
      const pct = index.duration ? (100 * ms / index.duration) : 0;
      const tick = h('button', { type: 'button', class: 'tick', title: `${fmt(ms)} ${label}`,
        'aria-label': `Chapter at ${fmt(ms)}: ${label}`, onclick: go });
      tick.style.left = `${pct}%`;           // no style attribute (docs/ui.md)
      ticks.append(tick);
    }
    if (!index.markers.length) chapters.append(h('li', { class: 'muted' }, 'No markers.'));
    const start = isFinite(at) && at > 0 ? Math.min(at * 1000, index.duration) : 0;
    await load(start, false);
    playBtn.disabled = false;
    seek.disabled = false;
  } catch (e) { fail(e); }
}
