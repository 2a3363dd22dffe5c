// The browser terminal: xterm.js on a WebSocket to /session.
// Binary frames carry terminal bytes both ways; text frames carry JSON
// events (connected, error, exit) from the server and resize from us.
import { get, idParam } from './api.js';
import { reasonText } from './reasons.js';

const bannerEl = document.getElementById('term-banner');
const stateEl = document.getElementById('term-state');
const reconnectBtn = document.getElementById('term-reconnect');
const disconnectBtn = document.getElementById('term-disconnect');
const keyId = idParam('key');
const deviceId = idParam('device');

function show(kind, text) {
  bannerEl.className = 'banner ' + kind;
  bannerEl.textContent = text;
  bannerEl.hidden = !text;
}

function state(text, cls = '') {
  stateEl.textContent = text;
  stateEl.className = 'state ' + cls;
}

// the messages for the close codes of the protocol (4000-4999: our errors)
const CLOSE_TEXT = {
  1001: 'The server is shutting down; the session was closed.',
  1002: 'The session was closed because of a protocol error.',
  1007: 'The session was closed: the terminal sent data the server could not accept.',
  1009: 'The session was closed: a message was too large.',
  1011: 'The server met an internal error.',
  4001: 'The device cannot be reached.',
  4002: 'The device did not answer in time.',
  4003: 'The device presented a host key other than the pinned one: the connection was refused for your safety.',
  4004: 'The device has no pinned host key and the policy is strict.',
  4005: 'The device refused the key: is the public key deployed?',
  4006: 'The stored key cannot be used.',
  4007: 'The device refused to open a terminal.',
  4008: 'The connection to the device was lost.',
  4009: 'The session was idle for too long.',
  4010: 'The database is unavailable; try again in a moment.',
  4011: 'Internal error.',
  4012: 'The terminal sent a message the server did not understand.',
};

if (!keyId || !deviceId) {
  show('error', 'No key or device was chosen: start a session from the SSH Keys: Remote Access report.');
  state('Not connected', 'closed');
  disconnectBtn.hidden = true;
  await new Promise(() => {}); // nothing more to do on this page
}
document.getElementById('term-back').href = `remote-access.html?key=${keyId}`;

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
  scrollback: 5000,
  theme: { background: '#0b0f17', foreground: '#dfe6f3', cursor: '#8fb4ff' },
});
const fit = new window.FitAddon.FitAddon();
term.loadAddon(fit);
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
loadAccess().then(a => {
  if (a.key) {
    const t = `${a.key.name} → ${a.device ? a.device.name + ' (' + a.device.address + ':' + a.device.port + ')' : 'device #' + deviceId}`;
    document.getElementById('term-title').textContent = t;
    document.title = `${t} — Segura terminal`;
  }
});

const enc = new TextEncoder();
let ws = null;
let opened = false;
let exitStatus = null;
let lastError = null;
let userClosed = false;

function send(data) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(data);
}

term.onData(d => send(enc.encode(d)));
term.onBinary(d => send(Uint8Array.from(d, c => c.charCodeAt(0) & 0xff)));
term.onResize(({ cols, rows }) => send(JSON.stringify({ type: 'resize', cols, rows })));

// the terminal fills what the window leaves it (a banner shown or hidden
// changes that too): refit, and xterm.js tells the server (onResize)
let resizeTimer = 0;
const refit = () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => { try { fit.fit(); } catch { /* hidden */ } }, 60);
};
window.addEventListener('resize', refit);
new ResizeObserver(refit).observe(document.getElementById('terminal'));

function connect() {
  opened = false; exitStatus = null; lastError = null; userClosed = false;
  show('', '');
  state('Connecting…');
  reconnectBtn.hidden = true;
  disconnectBtn.hidden = false;
  fit.fit();
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const q = new URLSearchParams({ key: keyId, device: deviceId, cols: term.cols, rows: term.rows });
  ws = new WebSocket(`${proto}//${location.host}/session?${q}`);
  ws.binaryType = 'arraybuffer';

  ws.addEventListener('open', () => {
    opened = true;
    state('Authenticating…');
  });

  ws.addEventListener('message', ev => {
    if (typeof ev.data !== 'string') {
      term.write(new Uint8Array(ev.data));
      return;
    }
    let m;
    try { m = JSON.parse(ev.data); } catch { return; }
    if (m.type === 'connected') {
      state('Connected', 'connected');
      term.focus();
      // the size may have changed while connecting
      fit.fit();
      send(JSON.stringify({ type: 'resize', cols: term.cols, rows: term.rows }));
    } else if (m.type === 'error') {
      lastError = m;
      show('error', `${m.message || CLOSE_TEXT[4011]} (${m.code})`);
    } else if (m.type === 'exit') {
      exitStatus = m.status;
    }
  });

  ws.addEventListener('close', async ev => {
    state('Disconnected', 'closed');
    disconnectBtn.hidden = true;
    reconnectBtn.hidden = false;
    let text, kind = 'error';
    if (userClosed) {
      text = 'You disconnected the session.'; kind = 'info';
    } else if (!opened) {
      text = await whyRefused();
    } else if (ev.code === 1000) {
      kind = 'info';
      text = exitStatus !== null ? `Session ended (exit ${exitStatus})` : 'Session ended';
    } else if (lastError) {
      text = `${lastError.message || CLOSE_TEXT[ev.code] || 'The session failed.'}`;
    } else if (CLOSE_TEXT[ev.code]) {
      text = CLOSE_TEXT[ev.code];
    } else if (ev.code === 1006) {
      text = 'The connection to the server was lost.';
    } else {
      text = `The session was closed (code ${ev.code}${ev.reason ? ': ' + ev.reason : ''}).`;
    }
    show(kind, text);
    term.write(`\r\n\x1b[${kind === 'info' ? '2' : '31'}m[${text}]\x1b[0m\r\n`);
  });
}

// the upgrade was refused: ask the API why, in words
async function whyRefused() {
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
reconnectBtn.addEventListener('click', () => { term.reset(); connect(); });

connect();
