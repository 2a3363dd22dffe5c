// The Replay view (replay.html, asciinema-player): a recorded session
// opened from the Session audit plays, pauses, changes speed, shows its
// markers as chapters and downloads; replay.html?session=<id>&t=<s> opens
// at that time; and a large recording (REPLAY_MIB MiB of output printed
// through a real session, 200 by default) is never loaded whole: the
// player seeks to its middle in under a second, fetching one window.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { env, launch, login, keygen, apiCall, screenshot, story } from './lib.mjs';

const MIB = Number(process.env.SEGURA_E2E_REPLAY_MIB || (process.env.ASAN === '1' ? 40 : 200));
const LINE = 100;                      // bytes per printed line, with \r\n

let b, page;
before(async () => {
  b = await launch();
  page = b.page;
  await login(page);
});
after(async () => { await b?.close(); });
const step = story(test, () => page);

const ids = {};
const tag = process.pid.toString(36);  // names of this run

// a session run by a WebSocket of the page itself (no terminal drawn: the
// browser only counts what arrives), typing `command`; resolves with the
// session id and the bytes received once the shell has ended
async function session(command, cols = 100, rows = 30) {
  return page.evaluate(({ key, device, command, cols, rows }) => new Promise((resolve, reject) => {
    const ws = new WebSocket(`${location.origin.replace(/^http/, 'ws')}/session?key=${key}&device=${device}&cols=${cols}&rows=${rows}`);
    ws.binaryType = 'arraybuffer';
    let id = null, bytes = 0;
    ws.onmessage = e => {
      if (typeof e.data === 'string') {
        const m = JSON.parse(e.data);
        if (m.type === 'connected') {
          id = m.session;
          ws.send(new TextEncoder().encode(command + '\n'));
        }
        return;
      }
      bytes += e.data.byteLength;
    };
    ws.onclose = c => (id ? resolve({ id, bytes, code: c.code }) : reject(new Error(`closed ${c.code}`)));
    ws.onerror = () => {};
  }), { key: ids.key, device: ids.device, command, cols, rows });
}

// the recording is complete in the database (its row has ended)
async function recorded(id) {
  const deadline = Date.now() + 120000;
  for (;;) {
    const r = await apiCall(page, 'GET', `/api/sessions/${id}/recording?format=index`);
    if (r.status === 200 && !r.body.live) return r.body;
    if (Date.now() > deadline) throw new Error(`recording of ${id} not complete: ${JSON.stringify(r)}`);
    await page.waitForTimeout(250);
  }
}

// the text rows of the player's terminal
async function playerLines() {
  return page.$$eval('#replay-player .ap-line', ls => ls.map(l => l.textContent.replace(/\u00a0/g, ' ').trimEnd()));
}

async function waitScreen(re, timeout = 20000) {
  await page.waitForFunction(src => [...document.querySelectorAll('#replay-player .ap-line')]
    .some(l => new RegExp(src).test(l.textContent.replace(/\u00a0/g, ' '))), re.source, { timeout })
    .catch(async e => { e.message += `\nplayer:\n${(await playerLines()).filter(Boolean).join('\n')}`; throw e; });
}

step('set-up: a device, a deployed key and a group granting them', async () => {
  const key = keygen('ed25519', { authorize: true });
  const d = await apiCall(page, 'POST', '/api/devices', {
    name: `replay-sshd-${tag}`, address: '127.0.0.1', port: env.sshdPort, host_key: env.sshdHostKey });
  assert.equal(d.status, 201, JSON.stringify(d.body));
  ids.device = d.body.id;
  const k = await apiCall(page, 'POST', '/api/keys', {
    name: `replay-ed25519-${tag}`, username: env.sshdUser, private_key: key.priv,
    main_device: ids.device, devices: [ids.device] });
  assert.equal(k.status, 201, JSON.stringify(k.body));
  ids.key = k.body.id;
  const me = (await apiCall(page, 'GET', '/api/me')).body;
  const g = await apiCall(page, 'POST', '/api/groups', {
    name: `replay-operators-${tag}`, permissions: { use_credentials: true, access_devices: true, remote_session: true },
    members: [me.id], keys: [ids.key], devices: [ids.device] });
  assert.equal(g.status, 201, JSON.stringify(g.body));
});

step('a short session is recorded; the Session audit has its Replay link', async () => {
  // three screens a second apart, each with its own word (octal escapes:
  // the typed command line does not show the words)
  const s = await session(String.raw`printf '\122\105\120\114\101\131\055\117\116\105\n'; sleep 1; `
    + String.raw`printf '\122\105\120\114\101\131\055\124\127\117\n'; sleep 1; `
    + String.raw`printf '\122\105\120\114\101\131\055\124\110\122\105\105\n'; sleep 1; exit 3`);
  assert.equal(s.code, 1000);
  ids.short = s.id;
  const idx = await recorded(s.id);
  assert.ok(idx.duration >= 3000, `duration ${idx.duration}`);
  assert.deepEqual(idx.markers.map(m => m[1]), ['session started', 'exit 3', 'session ended: exit']);
  await page.goto(env.url + '/sessions.html');
  const link = page.locator(`a[href="replay.html?session=${s.id}"]`);
  await link.waitFor();
  assert.equal((await link.textContent()).trim(), 'Replay');
  await screenshot(page, '80-replay-session-audit');
  await link.click();
  await page.waitForURL(/\/replay\.html\?session=/);
  await page.waitForFunction(() => document.getElementById('main').dataset.state === 'ready');
});

step('the Replay view plays, pauses, changes speed; the markers are chapters', async () => {
  assert.equal(await page.locator('h1').textContent(), `Replay: ${env.admin}@replay-sshd-${tag}`);
  const chapters = (await page.locator('#replay-chapters li').allTextContents()).map(t => t.trim());
  assert.equal(chapters.length, 3, JSON.stringify(chapters));
  assert.match(chapters[0], /^0:00\s*session started$/);
  assert.match(chapters[1], /exit 3$/);
  assert.equal(await page.locator('.timeline .tick').count(), 3);
  assert.match(await page.locator('#replay-time').textContent(), /^0:00 \/ 0:0[3-9]$/);
  await page.locator('#replay-play').click();
  await waitScreen(/REPLAY-ONE/);
  await waitScreen(/REPLAY-TWO/);
  await page.locator('#replay-play').click();          // pause
  await page.waitForFunction(() => document.getElementById('main').dataset.playing === '0');
  const paused = Number(await page.locator('#main').getAttribute('data-position'));
  await page.waitForTimeout(600);
  assert.equal(Number(await page.locator('#main').getAttribute('data-position')), paused, 'paused: the position stays');
  await screenshot(page, '81-replay-paused');
  await page.locator('#replay-speed').selectOption('4');
  await page.locator('#replay-play').click();
  await waitScreen(/REPLAY-THREE/);
  await page.waitForFunction(() => document.getElementById('main').dataset.ended === '1', null, { timeout: 20000 });
  assert.match(await page.locator('#replay-play').textContent(), /Play/);
  await screenshot(page, '82-replay-ended');
  assert.ok((await playerLines()).some(l => /REPLAY-THREE/.test(l)), 'the end shows the last screen');
  // a chapter seeks: the start marker is the screen before anything was printed
  await page.locator('#replay-chapters button').first().click();
  await page.waitForFunction(() => Number(document.getElementById('main').dataset.position) < 500
    && ![...document.querySelectorAll('#replay-player .ap-line')].some(l => /REPLAY-/.test(l.textContent)));
  await screenshot(page, '82-replay-chapter-start');
  assert.deepEqual(b.problems.filter(p => !/status of 401/.test(p)), [], 'no page error, no CSP violation');
});

step('download: the whole .cast from the API, asciicast v2', async () => {
  const [dl] = await Promise.all([page.waitForEvent('download'), page.locator('#replay-download').click()]);
  assert.equal(dl.suggestedFilename(), `session-${ids.short}.cast`);
  const file = await dl.path();
  const { readFileSync } = await import('node:fs');
  const lines = readFileSync(file, 'utf8').trim().split('\n');
  const head = JSON.parse(lines[0]);
  assert.equal(head.version, 2);
  assert.equal(head.width, 100);
  const out = lines.slice(1).map(l => JSON.parse(l)).filter(e => e[1] === 'o').map(e => e[2]).join('');
  assert.match(out, /REPLAY-ONE[\s\S]*REPLAY-TWO[\s\S]*REPLAY-THREE/);
});

step('replay.html?session=<id>&t=<seconds> opens at that time', async () => {
  await page.goto(env.url + `/replay.html?session=${ids.short}&t=2.5`);
  await page.waitForFunction(() => document.getElementById('main').dataset.state === 'ready');
  const pos = Number(await page.locator('#main').getAttribute('data-position'));
  assert.ok(pos >= 2400 && pos <= 2600, `position ${pos}`);
  await waitScreen(/REPLAY-THREE|REPLAY-TWO/);
  assert.match(await page.locator('#replay-time').textContent(), /^0:02 \//);
  await screenshot(page, '83-replay-at-t');
  // the keys: the left arrow goes 5 s back (to the start), Space plays and pauses
  await page.locator('h1').click();
  await page.keyboard.press('ArrowLeft');
  await page.waitForFunction(() => Number(document.getElementById('main').dataset.position) === 0);
  await page.keyboard.press(' ');
  await page.waitForFunction(() => document.getElementById('main').dataset.playing === '1');
  await page.keyboard.press(' ');
  await page.waitForFunction(() => document.getElementById('main').dataset.playing === '0');
});

step(`a ${MIB} MiB recording: seeking to the middle takes under 1 s and loads one window`, async () => {
  const lines = Math.floor(MIB * 1024 * 1024 / LINE);
  // numbered lines of LINE bytes with the \r\n the terminal adds
  const pad = 'x'.repeat(LINE - 2 - 11);
  const t0 = Date.now();
  const s = await session(`seq -f 'L%010.0f${pad}' 1 ${lines}; exit`, 120, 40);
  assert.equal(s.code, 1000);
  assert.ok(s.bytes >= lines * LINE, `${s.bytes} bytes received`);
  const idx = await recorded(s.id);
  const recordedIn = Date.now() - t0;
  assert.ok(idx.bytes >= lines * LINE, `${idx.bytes} event bytes recorded`);
  ids.big = s.id;
  // what the page fetches from here on
  const fetched = [];
  page.on('response', async r => {
    if (!r.url().includes(`/api/sessions/${s.id}/recording`)) return;
    const body = await r.body().catch(() => Buffer.alloc(0));
    fetched.push({ url: r.url(), bytes: body.length });
  });
  await page.goto(env.url + `/replay.html?session=${s.id}`);
  await page.waitForFunction(() => document.getElementById('main').dataset.state === 'ready', null, { timeout: 30000 });
  assert.equal(await page.locator('#main').getAttribute('data-windows'), '1', 'one window at the start');
  // a click in the middle of the timeline
  await page.locator('#replay-seek').scrollIntoViewIfNeeded();
  const box = await page.locator('#replay-seek').boundingBox();
  const started = performance.now();
  await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
  await page.waitForFunction(() => {
    const m = document.getElementById('main').dataset;
    return m.state === 'ready' && m.windows === '2';
  }, null, { timeout: 10000, polling: 'raf' });
  await waitScreen(/^L\d{10}x/, 10000);
  const took = performance.now() - started;
  const rows = (await playerLines()).filter(l => /^L\d{10}x/.test(l)).map(l => Number(l.slice(1, 11)));
  assert.ok(rows.length >= 30, `the screen is full of lines (${rows.length})`);
  for (let i = 1; i < rows.length; i++) assert.equal(rows[i], rows[i - 1] + 1, 'consecutive lines: the screen is whole');
  const middle = rows[rows.length - 1] / lines;
  assert.ok(middle > 0.2 && middle < 0.8, `the screen is from the middle (line ${rows[rows.length - 1]} of ${lines})`);
  const pos = Number(await page.locator('#main').getAttribute('data-position'));
  assert.ok(Math.abs(pos - idx.duration / 2) <= idx.duration * 0.02, `position ${pos} of ${idx.duration}`);
  await screenshot(page, '84-replay-big-middle');
  const split = await page.evaluate(() => [document.getElementById('main').dataset.fetchMs,
                                           document.getElementById('main').dataset.mountMs]);
  const windows = fetched.filter(f => /from=/.test(f.url));
  const total = fetched.reduce((n, f) => n + f.bytes, 0);
  console.log(`# replay: ${MIB} MiB recording (${idx.chunks.length} chunks, ${(idx.duration / 1000).toFixed(1)} s) `
    + `printed and recorded in ${(recordedIn / 1000).toFixed(1)} s; seek to the middle ${took.toFixed(0)} ms; `
    + `(fetching the window ${split[0]} ms, the player's seek ${split[1]} ms); `
    + `the page fetched ${fetched.length} responses, ${(total / 1048576).toFixed(1)} MiB in all`);
  assert.ok(took < 1000, `seeking to the middle took ${took.toFixed(0)} ms`);
  assert.equal(windows.length, 2, JSON.stringify(fetched.map(f => f.url)));
  assert.ok(total < 24 * 1048576, `the page fetched ${total} bytes, not the ${idx.bytes} of the recording`);
  // playing on past the window's end loads the next window and goes on
  const firstTo = Number(await page.locator('#main').getAttribute('data-to'));
  await page.locator('#replay-play').click();
  await page.waitForFunction(to => {
    const m = document.getElementById('main').dataset;
    return Number(m.windows) >= 3 && m.playing === '1' && Number(m.from) >= to;
  }, firstTo, { timeout: 20000 });
  await page.locator('#replay-play').click();
  await page.waitForFunction(() => document.getElementById('main').dataset.playing === '0');
  const after = (await playerLines()).filter(l => /^L\d{10}x/.test(l)).map(l => Number(l.slice(1, 11)));
  assert.ok(after.length && after[after.length - 1] > rows[rows.length - 1],
    `the next window went on (line ${after[after.length - 1]} after ${rows[rows.length - 1]})`);
  await screenshot(page, '85-replay-big-next-window');
  assert.deepEqual(b.problems.filter(p => !/status of 401/.test(p)), [], 'no page error, no CSP violation');
});
