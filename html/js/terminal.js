// The browser terminal: xterm.js on a WebSocket to /session.
// Binary frames carry terminal bytes both ways; text frames carry JSON
// events (connected, resumed, error, exit) from the server and resize and
// ack from us. A connection that drops is resumed with backoff, and a
// reloaded page re-attaches to the same shell (docs/protocol.md, Resume).
// With ?watch=<session id> the page watches someone else's session, read
// only (docs/protocol.md, "Watching a session"), with Lock and End.
import { get, post, idParam, confirmDialog } from './api.js';
import { reasonText } from './reasons.js';

const bannerEl = document.getElementById('term-banner');
const stateEl = document.getElementById('term-state');
const noteEl = document.getElementById('term-note');
const keysEl = document.getElementById('term-keys');
const reconnectBtn = document.getElementById('term-reconnect');
const disconnectBtn = document.getElementById('term-disconnect');
const noticeEl = document.getElementById('term-notice');
const lockBtn = document.getElementById('term-lock');
const endBtn = document.getElementById('term-end');
const keyId = idParam('key');
const deviceId = idParam('device');
const watchParam = new URLSearchParams(location.search).get('watch');
const watchId = watchParam && /^[0-9a-f-]{36}$/.test(watchParam) ? watchParam : null;

// a lasting notice above the terminal (watched, locked, whose session),
// apart from the error banner
const notices = new Map();
function notice(key, text) {
  if (text) notices.set(key, text); else notices.delete(key);
  noticeEl.textContent = [...notices.values()].join(' · ');
  noticeEl.hidden = notices.size === 0;
}

// the banner: our sentence, and in smaller print what the server said
// when that adds something (its error code, its own message)
function show(kind, text, detail = '') {
  bannerEl.className = 'banner ' + kind;
  bannerEl.replaceChildren(text);
  if (detail) {
    const small = document.createElement('small');
    small.className = 'detail';
    small.textContent = detail;
    bannerEl.append(' ', small);
  }
  bannerEl.hidden = !text;
}

function state(text, cls = '') {
  stateEl.textContent = text;
  stateEl.className = 'state ' + cls;
}

// a short-lived note next to the state ("Copied"): feedback for keys
// that otherwise do nothing visible
let noteTimer = 0;
function note(text) {
  noteEl.textContent = text;
  clearTimeout(noteTimer);
  noteTimer = setTimeout(() => { noteEl.textContent = ''; }, 2500);
}

// the close codes of the protocol (docs/protocol.md) with the error
// event's code for each, and what we tell the operator. Our wording wins
// over the server's message, which is terser.
const ERRORS = [
  [4001, 'device_unreachable', 'The device cannot be reached — is it running, and are its address and port right?'],
  [4002, 'connect_timeout', 'The device did not answer in time.'],
  [4003, 'host_key_mismatch', 'The device presented a host key other than the pinned one — the connection was refused for your safety. ' +
                              'If the device was reinstalled, an administrator must update its host key.'],
  [4004, 'host_key_unknown', 'The device has no pinned host key and the policy is strict — an administrator must pin its host key.'],
  [4005, 'auth_rejected', 'The device refused the key — is the public key deployed?'],
  [4006, 'key_unusable', 'The stored key cannot be used (it cannot be decrypted or read).'],
  [4007, 'shell_failed', 'The device refused to open a terminal.'],
  [4008, 'session_terminated', 'The connection to the device was lost.'],
  [4009, 'idle_timeout', 'The session was idle for too long and was closed.'],
  [4010, 'database_unavailable', 'The database is unavailable; try again in a moment.'],
  [4011, 'internal_error', 'The server met an internal error; its error log says more.'],
  [4012, 'bad_message', 'The server did not understand a message from this page.'],
  [4013, 'session_ended', 'An administrator ended this session.'],
  [4014, 'access_revoked', 'Your access to this device with this key was revoked, so the session was closed.'],
  [4020, 'read_only', 'This page only watches the session: it cannot type into it.'],
];
const BY_CLOSE = new Map(ERRORS.map(([close, code, text]) => [close, { code, text }]));
const BY_CODE = new Map(ERRORS.map(([close, code, text]) => [code, { close, text }]));
const CLOSE_TEXT = {
  1001: 'The server is shutting down; the session was closed.',
  1002: 'The session was closed because of a protocol error.',
  1007: 'The session was closed: the terminal sent data the server could not accept.',
  1009: 'The session was closed: a message was too large.',
  1011: 'The server met an internal error.',
};

// why a watched session ended (end_reason, docs/protocol.md "Audit")
const ENDED = { client_closed: 'the user closed it', client_gone: 'the user\'s browser went away',
                idle_timeout: 'idle timeout', device_gone: 'the device connection was lost' };

// letters only, lower case: "refused the key: is" and "refused the key —
// is" say the same thing
const gist = s => String(s || '').toLowerCase().replace(/[^a-z0-9]+/g, '');

// the banner for an error event: our sentence, then the code and the
// server's message unless ours already says it
function errorBanner(m) {
  const known = BY_CODE.get(m.code);
  let text = known ? known.text : (m.message || 'The session failed.');
  if (m.code === 'session_ended' && m.note) text += ` Their message: “${m.note}”`;
  const extra = known && m.message && !gist(known.text).startsWith(gist(m.message)) ? m.message + ' · ' : '';
  const by = m.by ? `by ${m.by} · ` : '';
  return { text, detail: `${by}${extra}${m.code}${known ? ', close ' + known.close : ''}` };
}

if (!watchId && (!keyId || !deviceId)) {
  show('error', 'No key or device was chosen: start a session from the SSH Keys: Remote Access report.');
  state('Not connected', 'closed');
  disconnectBtn.hidden = true;
  await new Promise(() => {}); // nothing more to do on this page
}
document.getElementById('term-back').href = watchId ? 'sessions.html' : `remote-access.html?key=${keyId}`;
if (watchId) {
  document.getElementById('term-back').replaceChildren('Back', Object.assign(document.createElement('span'),
    { className: 'wide', textContent: ' to Session audit' }));
}

if (typeof window.Terminal !== 'function' || typeof window.FitAddon?.FitAddon !== 'function') {
  show('error', 'The terminal cannot start: its library (xterm.js) is missing on the server. ' +
       'An administrator must run "make ui" (it fills html/vendor/) in the installation.');
  state('Unavailable', 'closed');
  disconnectBtn.hidden = true;
  await new Promise(() => {}); // nothing more to do on this page
}

const term = new window.Terminal({
  cursorBlink: true,
  fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
  fontSize: 14,
  // at 1.0 the rows clip the underscore of common monospace fonts (an
  // "LC_ALL" reads "LC ALL")
  lineHeight: 1.15,
  scrollback: 5000,
  // the Unicode 11 width tables (below) are "proposed API" in xterm.js 5
  allowProposedApi: true,
  theme: { background: '#0b0f17', foreground: '#dfe6f3', cursor: '#8fb4ff',
           selectionBackground: '#3a5a96' },
  // a watcher sees, never types
  disableStdin: !!watchId,
});
const fit = new window.FitAddon.FitAddon();
term.loadAddon(fit);
// emoji and CJK take two cells with Unicode 11 tables, as on the device;
// xterm.js's default (Unicode 6) puts the cursor in the wrong place after
// them. Optional: without the addon the terminal still works.
if (typeof window.Unicode11Addon?.Unicode11Addon === 'function') {
  term.loadAddon(new window.Unicode11Addon.Unicode11Addon());
  term.unicode.activeVersion = '11';
}
// the screen as it is, for a reload to show it again while it resumes
const serializer = typeof window.SerializeAddon?.SerializeAddon === 'function'
  ? new window.SerializeAddon.SerializeAddon() : null;
if (serializer) term.loadAddon(serializer);
term.open(document.getElementById('terminal'));
fit.fit();

// the key and device names for the title; and, when the upgrade is
// refused, why (a WebSocket cannot read the HTTP answer)
let access = null;
async function loadAccess() {
  try {
    const data = await get(`/api/keys/${keyId}/devices`, { redirect: false });
    access = { key: data.key, device: data.items.find(d => d.id === deviceId) || null };
  } catch (e) {
    access = { error: e };
  }
  return access;
}
if (!watchId) loadAccess().then(a => {
  if (!a.key) return;
  const device = a.device ? `${a.device.name} (${a.device.address}:${a.device.port})` : `device #${deviceId}`;
  document.getElementById('term-title').textContent = `${a.key.name} → ${device}`;
  // the device first: it is what tells one terminal tab from another
  document.title = `${device} — ${a.key.name} — Segura`;
});

// --- copy and paste -------------------------------------------------------
// xterm.js sends Ctrl+C and Ctrl+V to the device as ^C and ^V. Ctrl+C stays
// an interrupt; Ctrl+Shift+C (and Ctrl+Insert) copy the selection, and
// Ctrl+V, Ctrl+Shift+V (and Shift+Insert) paste, as in desktop terminals.
// The browser's own copy and paste (menu, ⌘C/⌘V on a Mac) work as well:
// xterm.js answers the copy and paste events.

async function copySelection() {
  const text = term.getSelection();
  if (!text) { note('Nothing selected'); return; }
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // no async clipboard (a page not served over https): the copy command
    // fires a copy event, which xterm.js fills with the selection
    if (!document.execCommand('copy')) { note('Copy failed: the browser refused'); return; }
  }
  note(`Copied ${[...text].length} character${[...text].length === 1 ? '' : 's'}`);
}

// the paste keys let the browser paste (a paste event, which xterm.js
// turns into terminal input, bracketed when the shell asked for it); when
// a browser has no paste for that key, read the clipboard ourselves
let pasteSeen = false;
term.element.addEventListener('paste', () => { pasteSeen = true; }, true);
function pasteSoon() {
  pasteSeen = false;
  setTimeout(async () => {
    if (pasteSeen) return;
    try {
      const text = await navigator.clipboard.readText();
      if (text) term.paste(text);
    } catch {
      note('Paste failed: allow this page to read the clipboard, or use the browser\'s Paste');
    }
  }, 0);
}

// the key pressed, as a letter: the letter it types, or on a keyboard that
// types no Latin letter there (Cyrillic, Greek) the key's place
function keyName(ev) {
  if (/^[a-z]$/i.test(ev.key)) return ev.key.toLowerCase();
  if (/^Key[A-Z]$/.test(ev.code)) return ev.code.slice(3).toLowerCase();
  return ev.key;
}

term.attachCustomKeyEventHandler(ev => {
  const k = keyName(ev);
  const ctrl = ev.ctrlKey && !ev.altKey && !ev.metaKey;
  const copy = (ctrl && ev.shiftKey && k === 'c') || (ctrl && !ev.shiftKey && k === 'Insert');
  const paste = (ctrl && k === 'v') || (ev.shiftKey && !ev.ctrlKey && !ev.altKey && !ev.metaKey && k === 'Insert');
  if (!copy && !paste) return true;
  if (ev.type === 'keydown') {
    if (copy) {
      ev.preventDefault(); // not the browser's Ctrl+Shift+C (developer tools)
      copySelection();
    } else {
      pasteSoon();
    }
  }
  return false; // xterm.js neither sends it nor cancels the browser's paste
});

// on a Mac the browser's own keys copy and paste: say so first
if (/Mac|iPhone|iPad/.test(navigator.platform)) {
  keysEl.querySelector('dl').insertAdjacentHTML('afterbegin', '<dt>⌘C, ⌘V</dt><dd>Copy, paste</dd>');
}

// the key list closes with Escape or a click elsewhere, and gives the
// keyboard back to the terminal
function closeKeys(refocus) {
  if (!keysEl.open) return;
  keysEl.open = false;
  if (refocus) term.focus();
}
keysEl.addEventListener('keydown', ev => { if (ev.key === 'Escape') closeKeys(true); });
document.addEventListener('pointerdown', ev => { if (!keysEl.contains(ev.target)) closeKeys(false); });

// --- the session ----------------------------------------------------------

const enc = new TextEncoder();
let ws = null;
// end-to-end flow control (docs/protocol.md): output bytes rendered by
// xterm.js since "connected", and how many of them the server was told of
const ACK_EVERY = 32 * 1024;
let rendered = 0;
let acked = 0;
let opened = false;    // the WebSocket upgrade went through
let connected = false; // the shell opened
let exit = null; // the exit event, when the shell ended
let lastError = null;
let userClosed = false;

// resume: the token of the session (connected, resumed), and the output
// bytes handed to xterm.js (queued) and rendered by it; after a drop the
// tab asks for what follows `queued`, after a reload for what follows
// what the saved screen shows (`rendered` when the page went away)
const RESUME_KEY = `segura-resume:${keyId}:${deviceId}`;
const RETRY_MS = [500, 1000, 2000, 4000, 8000];
const RETRY_FOR_MS = 60000;   // segura_resume_timeout's default
let resumeToken = null;
let queued = 0;
let retries = 0;
let retryUntil = 0;
let retryTimer = 0;

function saveForReload() {
  if (!resumeToken || exit || userClosed) return;
  try {
    sessionStorage.setItem(RESUME_KEY, JSON.stringify({
      token: resumeToken, received: rendered,
      screen: serializer ? serializer.serialize({ scrollback: 2000 }) : '',
    }));
  } catch { /* storage full or off: a reload opens a new session */ }
}

function forget() {
  resumeToken = null;
  try { sessionStorage.removeItem(RESUME_KEY); } catch { /* off */ }
}

window.addEventListener('pagehide', saveForReload);

function send(data) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(data);
}

if (!watchId) {
  term.onData(d => send(enc.encode(d)));
  term.onBinary(d => send(Uint8Array.from(d, c => c.charCodeAt(0) & 0xff)));
  term.onResize(({ cols, rows }) => send(JSON.stringify({ type: 'resize', cols, rows })));
}

// the terminal fills what the window leaves it (a banner shown or hidden
// changes that too): refit, and xterm.js tells the server (onResize)
let resizeTimer = 0;
const refit = () => {
  if (watchId) return; // a watcher's screen is the owner's size
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => { try { fit.fit(); } catch { /* hidden */ } }, 60);
};
window.addEventListener('resize', refit);
new ResizeObserver(refit).observe(document.getElementById('terminal'));

function connect(resume = false) {
  opened = false; connected = false; exit = null; lastError = null; userClosed = false;
  if (!resume) show('', '');
  state(resume ? 'Reconnecting…' : 'Connecting…');
  reconnectBtn.hidden = true;
  disconnectBtn.hidden = false;
  fit.fit();
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const q = watchId ? new URLSearchParams({ watch: watchId })
                    : new URLSearchParams({ key: keyId, device: deviceId, cols: term.cols, rows: term.rows });
  if (resume) {
    q.set('resume', resumeToken);
    q.set('received', String(queued));
  }
  ws = new WebSocket(`${proto}//${location.host}/session?${q}`);
  ws.binaryType = 'arraybuffer';

  ws.addEventListener('open', () => {
    opened = true;
    state('Connecting to the device…');
  });

  ws.addEventListener('message', ev => {
    if (typeof ev.data !== 'string') {
      // bytes, not text: xterm.js keeps a UTF-8 sequence split across
      // two frames until its end arrives. What it has rendered is
      // acknowledged, so that the server holds the device while the
      // terminal is behind and an interrupt takes effect at once
      const bytes = new Uint8Array(ev.data);
      queued += bytes.length;
      term.write(bytes, () => {
        rendered += bytes.length;
        if (rendered - acked >= ACK_EVERY) {
          acked = rendered;
          send(JSON.stringify({ type: 'ack', bytes: rendered }));
        }
      });
      return;
    }
    let m;
    try { m = JSON.parse(ev.data); } catch { return; }
    if (m.type === 'watching') {
      // a watcher: the owner's screen, then acknowledgements as the owner
      connected = true;
      rendered = 0; acked = 0;
      send(JSON.stringify({ type: 'ack', bytes: 0 }));
      term.resize(m.cols, m.rows);
      state('Watching', 'connected');
      notice('whose', `Watching the session of ${m.user} on ${m.device} (read only)`);
      document.getElementById('term-title').textContent = `${m.user} → ${m.device}`;
      document.title = `Watching ${m.user} on ${m.device} — Segura`;
      setLocked(!!m.locked);
      lockBtn.hidden = false;
      endBtn.hidden = false;
    } else if (m.type === 'resize') {
      term.resize(m.cols, m.rows);
    } else if (m.type === 'skipped') {
      note(`Fell behind: ${m.bytes} bytes skipped`);
    } else if (m.type === 'watched') {
      notice('watched', m.watchers > 0
        ? `You are being watched (${m.watchers} watcher${m.watchers === 1 ? '' : 's'}; ${m.left ? m.by + ' left' : 'latest: ' + m.by})`
        : '');
    } else if (m.type === 'locked' && watchId) {
      setLocked(m.locked, m.by);
    } else if (m.type === 'locked') {
      notice('locked', m.locked ? `Input locked by ${m.by}: what you type is not sent` : '');
      if (!m.locked) note(`Input unlocked by ${m.by}`);
    } else if (m.type === 'ended') {
      exit = exit || { status: null, reason: m.reason };
    } else if (m.type === 'connected' || m.type === 'resumed') {
      connected = true;
      if (m.type === 'connected') {
        // the output is counted from here, across resumes too; this
        // first ack turns flow control on before any output arrives
        rendered = 0; acked = 0; queued = 0;
        show('', '');
        state('Connected', 'connected');
      } else {
        // what was missed follows; the server counts from `received`
        acked = rendered = queued;
        show('info', m.lost
          ? `Reconnected to the same session; ${m.lost} bytes of output could not be kept.`
          : 'Reconnected to the same session.', m.missed ? `${m.missed} bytes missed meanwhile` : '');
        state('Connected', 'connected');
      }
      resumeToken = m.resume || null;
      retries = 0;
      send(JSON.stringify({ type: 'ack', bytes: rendered }));
      term.focus();
      // the size may have changed while connecting
      fit.fit();
      send(JSON.stringify({ type: 'resize', cols: term.cols, rows: term.rows }));
    } else if (m.type === 'error' && m.code === 'bad_message') {
      // not fatal: the session goes on
      const b = errorBanner(m);
      show('warn', b.text, b.detail);
    } else if (m.type === 'error') {
      lastError = m;
      const b = errorBanner(m);
      show('error', b.text, b.detail);
    } else if (m.type === 'exit') {
      exit = { ...m, reason: exit?.reason };
    }
  });

  ws.addEventListener('close', async ev => {
    // dropped, or the server went away mid-session: the shell waits for
    // us (segura_resume_timeout); try again with backoff while it may
    if (!userClosed && resumeToken && !exit && !lastError && (connected || resume)
        && ev.code !== 1000 && ev.code !== 1001 && ev.code < 4000) {
      if (!retries) retryUntil = Date.now() + RETRY_FOR_MS;
      if (Date.now() < retryUntil) {
        const wait = RETRY_MS[Math.min(retries, RETRY_MS.length - 1)];
        retries++;
        state('Reconnecting…');
        show('warn', `The connection was lost; reconnecting (attempt ${retries})…`,
             `next try in ${(wait / 1000).toFixed(1)} s`);
        clearTimeout(retryTimer);
        retryTimer = setTimeout(() => connect(true), wait);
        return;
      }
    }
    if (resume && !opened) {
      // the shell is gone (ended, timed out) or elsewhere: a new one
      // starts with the Reconnect button
      forget();
      state('Disconnected', 'closed');
      disconnectBtn.hidden = true;
      reconnectBtn.hidden = false;
      show('error', 'The session could not be resumed: it has ended or it is no longer available.');
      return;
    }
    forget();
    state('Disconnected', 'closed');
    lockBtn.hidden = true;
    endBtn.hidden = true;
    notice('watched', '');
    disconnectBtn.hidden = true;
    reconnectBtn.hidden = false;
    let text, detail = '', kind = 'error';
    if (userClosed) {
      text = 'You disconnected the session.'; kind = 'info';
    } else if (!opened) {
      text = await whyRefused();
    } else if (ev.code === 1000) {
      kind = 'info';
      text = !exit ? 'Session ended'
        : exit.reason && exit.reason !== 'exit' ? `Session ended (${ENDED[exit.reason] || exit.reason})`
        : exit.status === null ? 'Session ended (killed by a signal)'
        : `Session ended (exit ${exit.status})`;
    } else if (lastError) {
      ({ text, detail } = errorBanner(lastError));
    } else if (BY_CLOSE.has(ev.code)) {
      ({ text, detail } = errorBanner({ code: BY_CLOSE.get(ev.code).code }));
    } else if (CLOSE_TEXT[ev.code]) {
      text = CLOSE_TEXT[ev.code];
      detail = `close ${ev.code}`;
    } else if (ev.code === 1006) {
      text = 'The connection to the server was lost.';
    } else {
      text = `The session was closed (code ${ev.code}${ev.reason ? ': ' + ev.reason : ''}).`;
    }
    show(kind, text, detail);
    // after a session, a line in the scrollback marks where it ended (the
    // banner alone would leave the last output ambiguous)
    if (connected) {
      const nl = term.buffer.active.cursorX ? '\r\n' : '';
      term.write(`${nl}\x1b[${kind === 'info' ? '2' : '31'}m[${text}]\x1b[0m\r\n`);
    }
  });
}

// the upgrade was refused: ask the API why, in words
async function whyRefused() {
  if (watchId) {
    return 'The session cannot be watched: it has ended, it does not exist, or you may not watch sessions.';
  }
  const a = await loadAccess();
  if (a.error) {
    if (a.error.status === 401) return 'You are not logged in (or your login expired). Log in again and retry.';
    if (a.error.status === 404) return 'This SSH key does not exist or is not available to you.';
    if (a.error.status === 503) return 'The database is unavailable; try again in a moment.';
    if (a.error.status === 0) return 'The server cannot be reached.';
    return a.error.message;
  }
  if (!a.device) return 'This device is not associated with the key.';
  if (!a.device.can_start) return 'You may not start this session: ' + reasonText(a.device.reason);
  return 'The server refused to open the session.';
}

disconnectBtn.addEventListener('click', () => {
  userClosed = true;
  if (ws) ws.close(1000);
});
reconnectBtn.addEventListener('click', () => { forget(); term.reset(); connect(); term.focus(); });

// a watcher moderates: lock the owner's input, end the session with a word
let locked = false;
function setLocked(v, by = '') {
  locked = v;
  lockBtn.textContent = v ? 'Unlock input' : 'Lock input';
  notice('locked', v ? `The user's input is locked${by ? ' by ' + by : ''}` : '');
}
lockBtn.addEventListener('click', async () => {
  lockBtn.disabled = true;
  try {
    const r = await post(`/api/sessions/${watchId}/lock`, { locked: !locked });
    setLocked(!!r.locked);
  } catch (e) {
    show('error', 'The lock failed: ' + (e.message || e.code));
  } finally { lockBtn.disabled = false; }
});
endBtn.addEventListener('click', async () => {
  const input = Object.assign(document.createElement('input'),
    { type: 'text', maxLength: 500, id: 'end-message', placeholder: 'Optional' });
  const label = Object.assign(document.createElement('label'), { htmlFor: 'end-message', textContent: 'Message for the user: ' });
  const body = document.createElement('div');
  body.append('End this session? The terminal of its user closes at once.', document.createElement('br'), label, input);
  const ok = await confirmDialog('End session', body, 'End session');
  if (!ok) return;
  const message = input.value.replace(/[\x00-\x1f\x7f]/g, ' ').trim();
  endBtn.disabled = true;
  try {
    await post(`/api/sessions/${watchId}/end`, message ? { message } : {});
  } catch (e) {
    show('error', 'Ending failed: ' + (e.message || e.code));
  } finally { endBtn.disabled = false; }
});


// a reload of this tab re-attaches to its shell: the saved screen first
let reload = null;
try { reload = JSON.parse(sessionStorage.getItem(RESUME_KEY) || 'null'); } catch { reload = null; }
sessionStorage.removeItem(RESUME_KEY);
if (!watchId && reload && reload.token) {
  resumeToken = reload.token;
  queued = rendered = acked = Number(reload.received) || 0;
  if (reload.screen) term.write(reload.screen);
  connect(true);
} else {
  connect();
}
