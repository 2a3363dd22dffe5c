// The terminal page as an operator uses it: UTF-8 both ways (also split
// across WebSocket frames), 256 colours and truecolor, copy and paste with
// the keyboard, Ctrl+C and Tab going to the shell, the tab title, a narrow
// window, and the banners for a wrong host key and an unreachable device.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { env, launch, login, keygen, apiCall, terminalLines, screenshot, story } from './lib.mjs';

let b, page;
before(async () => {
  b = await launch();
  page = b.page;
  await b.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: env.url });
  await login(page);
});
after(async () => { await b?.close(); });
const step = story(test, () => page);

const ids = {};

// --- helpers -----------------------------------------------------------------

async function newDevice(name, extra = {}) {
  const r = await apiCall(page, 'POST', '/api/devices', {
    name, address: '127.0.0.1', port: env.sshdPort, host_key: env.sshdHostKey, ...extra });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body.id;
}

// a TCP port nothing listens on: bound by us, then closed again
function closedPort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// waits until a row of the screen is exactly `text` (or matches a RegExp)
async function waitRow(text, timeout = 20000) {
  const src = text instanceof RegExp ? { re: text.source } : { eq: text };
  await page.waitForFunction(({ eq, re }) => [...document.querySelectorAll('.xterm-rows > div')]
    .map(r => r.textContent.replace(/\u00a0/g, ' ').trim())
    .some(t => (re ? new RegExp(re).test(t) : t === eq)), src, { timeout })
    .catch(async e => {
      e.message += `\nscreen:\n${(await terminalLines(page)).filter(Boolean).join('\n')}`;
      throw e;
    });
}

// the shell is at its prompt: the last non-empty row ends with # or $
async function waitPrompt() {
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('.xterm-rows > div')]
      .map(r => r.textContent.replace(/\u00a0/g, ' ').trimEnd()).filter(Boolean);
    return rows.length && /[#$] ?$/.test(rows[rows.length - 1]);
  }, null, { timeout: 20000 });
}

async function run(cmd) {
  await waitPrompt();
  await page.keyboard.type(cmd, { delay: 5 });
  await page.keyboard.press('Enter');
}

// the element of the screen showing `text` (the first row that is exactly
// it), and the bounding box of its characters from..to
async function textBox(text, from = 0, to = text.length) {
  return page.evaluate(({ text, from, to }) => {
    const row = [...document.querySelectorAll('.xterm-rows > div')]
      .find(r => r.textContent.replace(/\u00a0/g, ' ').trim() === text);
    if (!row) return null;
    // the characters may span several styled spans: walk the text nodes
    const walker = document.createTreeWalker(row, NodeFilter.SHOW_TEXT);
    const full = row.textContent.replace(/\u00a0/g, ' ');
    const start = full.indexOf(text) + from, end = full.indexOf(text) + to;
    const range = document.createRange();
    let pos = 0, n;
    while ((n = walker.nextNode())) {
      const len = n.textContent.length;
      if (start >= pos && start <= pos + len) range.setStart(n, start - pos);
      if (end >= pos && end <= pos + len) { range.setEnd(n, end - pos); break; }
      pos += len;
    }
    const r = range.getBoundingClientRect();
    return { x: r.x, y: r.y, width: r.width, height: r.height };
  }, { text, from, to });
}

// the selection's highlight is drawn (or not): selectionShown(true|false);
// xterm.js keeps empty boxes there, without a height or a width
const selectionShown = want => [...document.querySelectorAll('.xterm-selection div')]
  .some(d => d.offsetWidth > 0 && d.offsetHeight > 0) === want;

// the termbar's visible items, each with its box: none may overlap another
// nor leave the window
async function termbarLayout() {
  return page.evaluate(() => {
    const items = [...document.querySelectorAll('.termbar > *')]
      .filter(e => !e.hidden && e.getClientRects().length && !e.classList.contains('spacer'))
      .map(e => { const r = e.getBoundingClientRect(); return { id: e.id || e.className, x: r.x, y: r.y, r: r.right, b: r.bottom }; });
    return { items, width: window.innerWidth, bar: document.querySelector('.termbar').getBoundingClientRect().bottom,
             term: document.getElementById('terminal').getBoundingClientRect().top };
  });
}

function assertTidy({ items, width, bar, term }) {
  for (const a of items) {
    assert.ok(a.x >= 0 && a.r <= width + 0.5, `${a.id} inside the window (${a.x}..${a.r} of ${width})`);
    for (const c of items) {
      if (a === c) continue;
      const overlap = a.x < c.r - 0.5 && c.x < a.r - 0.5 && a.y < c.b - 0.5 && c.y < a.b - 0.5;
      assert.ok(!overlap, `${a.id} and ${c.id} overlap`);
    }
  }
  assert.ok(term >= bar - 0.5, 'the terminal starts below the termbar');
}

// --- the story -------------------------------------------------------------------

step('set-up: a device, a deployed key and a group granting them', async () => {
  const key = keygen('ed25519', { authorize: true });
  ids.device = await newDevice('term-sshd');
  // a device whose pinned host key is another one
  ids.wrongKey = await newDevice('term-rekeyed', { host_key: keygen('ed25519').pub });
  ids.closed = await newDevice('term-down', { port: await closedPort() });
  const k = await apiCall(page, 'POST', '/api/keys', {
    name: 'term-ed25519', username: env.sshdUser, private_key: key.priv,
    main_device: ids.device, devices: [ids.device, ids.wrongKey, ids.closed] });
  assert.equal(k.status, 201, JSON.stringify(k.body));
  ids.key = k.body.id;
  const me = (await apiCall(page, 'GET', '/api/me')).body;
  const g = await apiCall(page, 'POST', '/api/groups', {
    name: 'term-operators', permissions: { use_credentials: true, access_devices: true, remote_session: true },
    members: [me.id], keys: [ids.key], devices: [ids.device, ids.wrongKey, ids.closed] });
  assert.equal(g.status, 201, JSON.stringify(g.body));
  ids.group = g.body.id;
  ids.me = me.id;
});

step('the terminal connects, takes the focus and the tab title names the device', async () => {
  await page.goto(env.url + `/terminal.html?key=${ids.key}&device=${ids.device}`);
  await page.locator('#term-state').filter({ hasText: 'Connected' }).waitFor({ timeout: 30000 });
  await page.waitForFunction(() => document.title.startsWith('term-sshd (127.0.0.1:'));
  assert.match(await page.title(), /^term-sshd \(127\.0\.0\.1:\d+\) — term-ed25519 — Segura$/);
  assert.match(await page.locator('#term-title').textContent(), /^term-ed25519 → term-sshd \(127\.0\.0\.1:\d+\)$/);
  await waitPrompt();
  // typing goes to the terminal without a click
  assert.ok(await page.evaluate(() => document.activeElement?.classList.contains('xterm-helper-textarea')),
    'the terminal has the focus');
});

step('UTF-8: output, output split across frames, input, wide characters', async () => {
  await run(String.raw`printf 'caf\303\251 \342\234\223 \344\275\240\345\245\275\n'`);
  await waitRow('café ✓ 你好');

  // the bytes of one ✓ in two WebSocket frames: the device sends the
  // first two, waits, then the last
  await run(String.raw`printf 'split \342\234'; sleep 0.4; printf '\223 done\n'`);
  await waitRow('split ✓ done');

  // typed: the shell reads UTF-8 (the relay sends LANG=C.UTF-8)
  await run('echo typed-é✓');
  await waitRow('typed-é✓');

  // an emoji and a CJK character take two cells each (Unicode 11 widths,
  // as the device counts them): the bars line up
  await run(String.raw`printf '\360\237\230\200\344\275\240|\nabcd|\n'`);
  await waitRow('abcd|');
  const wide = await textBox('😀你|', 3, 4);
  const narrow = await textBox('abcd|', 4, 5);
  assert.ok(wide && narrow, 'both rows are on the screen');
  assert.ok(Math.abs(wide.x - narrow.x) < 2, `the bars line up (${wide.x} vs ${narrow.x})`);
  await screenshot(page, '40-terminal-utf8');
});

step('256 colours and truecolor', async () => {
  await run(String.raw`printf '\033[38;5;196mRED196\033[0m \033[48;5;21mBG21\033[0m \033[38;2;1;2;3mRGB123\033[0m \033[38;2;255;170;0mORANGE\033[0m \033[1;4mBOLD\033[0m\n'`);
  await waitRow('RED196 BG21 RGB123 ORANGE BOLD');
  const spans = await page.evaluate(() => {
    const row = [...document.querySelectorAll('.xterm-rows > div')]
      .find(r => r.textContent.replace(/\u00a0/g, ' ').trim() === 'RED196 BG21 RGB123 ORANGE BOLD');
    return [...row.querySelectorAll('span')].map(s => ({
      text: s.textContent, cls: s.className, color: s.style.color, computed: getComputedStyle(s).color }));
  });
  const span = t => spans.find(s => s.text.includes(t));
  assert.ok(span('RED196').cls.split(' ').includes('xterm-fg-196'), JSON.stringify(span('RED196')));
  assert.ok(span('BG21').cls.split(' ').includes('xterm-bg-21'), JSON.stringify(span('BG21')));
  assert.equal(span('RGB123').color, 'rgb(1, 2, 3)');
  assert.equal(span('ORANGE').color, 'rgb(255, 170, 0)');
  assert.ok(/xterm-bold/.test(span('BOLD').cls) && /xterm-underline/.test(span('BOLD').cls), JSON.stringify(span('BOLD')));
  // the 256-colour palette is there: 196 is pure red
  assert.equal(span('RED196').computed, 'rgb(255, 0, 0)');
  await screenshot(page, '41-terminal-colours');
});

step('copy: double-click a word, Ctrl+Shift+C puts it on the clipboard', async () => {
  await page.evaluate(() => navigator.clipboard.writeText('nothing yet'));
  await run('echo copy-me-$((6*7))');
  await waitRow('copy-me-42');
  const box = await textBox('copy-me-42');
  await page.mouse.dblclick(box.x + box.width / 2, box.y + box.height / 2);
  await page.waitForFunction(selectionShown, true, { timeout: 5000 });
  await page.keyboard.press('Control+Shift+C');
  await page.waitForFunction(async () => (await navigator.clipboard.readText()) === 'copy-me-42', null, { timeout: 5000 })
    .catch(async e => { e.message += `\nclipboard: ${await page.evaluate(() => navigator.clipboard.readText())}`; throw e; });
  await page.locator('#term-note').filter({ hasText: 'Copied 10 characters' }).waitFor();
  await screenshot(page, '42-terminal-copied');
  // the copy key sent nothing to the shell: the prompt line is still empty
  const last = (await terminalLines(page)).filter(Boolean).pop();
  assert.match(last, /[#$]$/, `nothing typed after the copy: "${last}"`);
});

step('paste: Ctrl+Shift+V and Ctrl+V send the clipboard to the shell', async () => {
  // a click on the screen clears the selection (and keeps the focus there)
  const screen = await page.locator('.xterm-screen').boundingBox();
  await page.mouse.click(screen.x + screen.width - 20, screen.y + screen.height - 10);
  await page.waitForFunction(selectionShown, false, { timeout: 5000 });
  await page.evaluate(() => navigator.clipboard.writeText('echo pasted-$((40+2))'));
  await waitPrompt();
  await page.keyboard.press('Control+Shift+V');
  await page.keyboard.press('Enter');
  await waitRow('pasted-42');

  await page.evaluate(() => navigator.clipboard.writeText('echo pasted-again-$((7*6))'));
  await waitPrompt();
  await page.keyboard.press('Control+V');
  await page.keyboard.press('Enter');
  await waitRow('pasted-again-42');
  // once only: no doubled text on the command line
  assert.ok(!(await terminalLines(page)).some(l => l.includes('echo pasted-again-$((7*6))echo')), 'pasted once');
  await screenshot(page, '43-terminal-pasted');
});

step('Ctrl+C interrupts the command; Tab completes in the shell', async () => {
  await run('sleep 60; echo not-interrupted');
  await page.keyboard.press('Control+C');
  await run('echo interrupted-$((1+1))');
  await waitRow('interrupted-2', 10000);
  assert.ok(!(await terminalLines(page)).includes('not-interrupted'));

  // bash completes "ech" to "echo": Tab went to the shell, the focus stayed
  await waitPrompt();
  await page.keyboard.type('ech', { delay: 5 });
  await page.keyboard.press('Tab');
  await page.keyboard.type(' tab-$((2+3))', { delay: 5 });
  await page.keyboard.press('Enter');
  await waitRow('tab-5');
  assert.ok(await page.evaluate(() => document.activeElement?.classList.contains('xterm-helper-textarea')));
});

step('a flood does not drown the tab: Ctrl+C during seq brings the prompt back', async () => {
  // the page acknowledges what xterm.js rendered: the server holds the
  // device while the tab is behind, so the interrupt is not queued behind
  // megabytes of output (the time is reported; make bench has the goal)
  await run('seq 1 200000000; echo flood-not-interrupted');
  await waitRow(/^\d{5,}$/, 20000);
  const t0 = Date.now();
  await page.keyboard.press('Control+C');
  await run('echo flood-interrupted-$((2+2))');
  await waitRow('flood-interrupted-4', 20000);
  const ms = Date.now() - t0;
  console.log(`# Ctrl+C during seq: prompt and answer back in ${ms} ms`);
  assert.ok(!(await terminalLines(page)).includes('flood-not-interrupted'));
  const heap = await page.evaluate(() => performance.memory ? performance.memory.usedJSHeapSize : 0);
  if (heap) {
    console.log(`# JS heap after the flood: ${(heap / 1048576).toFixed(1)} MiB`);
    assert.ok(heap < 100 * 1048576, `the tab's JS heap stays under 100 MiB (${heap} bytes)`);
  }
  await run('clear');
});

step('a reload re-attaches to the same shell, with the screen as it was', async () => {
  await run('echo pid-$$ before-$((6*7))');
  await waitRow(/^pid-\d+ before-42$/);
  const before = (await terminalLines(page)).find(l => /^pid-\d+ before-42$/.test(l.trim())).trim();
  const pid = before.split(' ')[0];
  await page.reload();
  await page.locator('#term-state').filter({ hasText: 'Connected' }).waitFor({ timeout: 30000 });
  await page.locator('#term-banner').filter({ hasText: 'Reconnected to the same session' }).waitFor();
  // the screen came back from the tab's own copy, then the shell resumed
  assert.ok((await terminalLines(page)).some(l => l.trim() === before), 'what was on the screen is there');
  await run('echo $$-after-$((6*7))');
  await waitRow(`${pid.slice(4)}-after-42`);
  await screenshot(page, '44b-terminal-reloaded');
  await run('clear');
});

step('the termbar: the key list, and a narrow window without overlaps', async () => {
  await page.getByText('Keys', { exact: true }).click();
  await page.locator('#term-keys dl').getByText('Ctrl+Shift+C').waitFor();
  await screenshot(page, '44-terminal-keys');
  await page.keyboard.press('Escape');
  await page.locator('#term-keys dl').waitFor({ state: 'hidden' });
  assert.ok(await page.evaluate(() => document.activeElement?.classList.contains('xterm-helper-textarea')),
    'Escape gives the keyboard back to the terminal');

  // from the top of the page the keyboard reaches the termbar's controls
  // in order, then the terminal (where Tab belongs to the shell)
  await page.locator('.termbar .brand').click(); // the starting point of Tab
  const order = [];
  for (let i = 0; i < 4; i++) {
    await page.keyboard.press('Tab');
    order.push(await page.evaluate(() => {
      const e = document.activeElement;
      if (e.classList.contains('xterm-helper-textarea')) return 'terminal';
      return e.closest('.termbar') ? e.textContent.trim() : `${e.tagName}#${e.id}`;
    }));
  }
  assert.deepEqual(order, ['Keys', 'Back to Remote Access', 'Disconnect', 'terminal']);

  assertTidy(await termbarLayout());
  await page.setViewportSize({ width: 420, height: 700 });
  await page.waitForFunction(() => document.querySelector('.xterm-rows').getBoundingClientRect().width < 420);
  assertTidy(await termbarLayout());
  // the shell learns the new size
  await run('stty size');
  await waitRow(/^\d+ \d+$/);
  const [, cols] = (await terminalLines(page)).map(l => l.trim()).filter(l => /^\d+ \d+$/.test(l)).pop().split(' ').map(Number);
  assert.ok(cols < 55, `stty size after the narrow window: ${cols} columns`);
  await page.getByRole('link', { name: 'Back', exact: true }).waitFor();
  await screenshot(page, '45-terminal-narrow');
  // the key list fits the narrow window too
  await page.getByText('Keys', { exact: true }).click();
  const dl = await page.locator('#term-keys dl').boundingBox();
  assert.ok(dl.x >= 0 && dl.x + dl.width <= 420, `the key list inside the window: ${JSON.stringify(dl)}`);
  await screenshot(page, '45b-terminal-narrow-keys');
  await page.keyboard.press('Escape');
  await page.locator('#term-keys dl').waitFor({ state: 'hidden' });

  await run('exit 3');
  await page.locator('#term-banner').filter({ hasText: 'Session ended (exit 3)' }).waitFor({ timeout: 20000 });
  assertTidy(await termbarLayout());
  await screenshot(page, '46-terminal-narrow-ended');
  await page.setViewportSize({ width: 1360, height: 860 });
});

step('Reconnect opens a new session; Disconnect ends it', async () => {
  await page.getByRole('button', { name: 'Reconnect' }).click();
  await page.locator('#term-state').filter({ hasText: 'Connected' }).waitFor({ timeout: 30000 });
  assert.equal(await page.locator('#term-banner').isVisible(), false, 'no banner while connected');
  await run('echo again-$((3*3))');
  await waitRow('again-9');
  await page.getByRole('button', { name: 'Disconnect' }).click();
  await page.locator('#term-banner').filter({ hasText: 'You disconnected the session.' }).waitFor();
  assert.equal(await page.locator('#term-banner').getAttribute('class'), 'banner info');
  await page.getByRole('button', { name: 'Reconnect' }).waitFor();
});

step('an administrator ends the session on the Session audit page: the terminal says so', async () => {
  await page.getByRole('button', { name: 'Reconnect' }).click();
  await page.locator('#term-state').filter({ hasText: 'Connected' }).waitFor({ timeout: 30000 });
  await waitPrompt();

  // the audit page, in a second tab of the same login
  const audit = await b.context.newPage();
  try {
    await audit.goto(env.url + '/sessions.html');
    const live = audit.locator('#sessions-body tr', { hasText: 'Live' }).filter({ hasText: 'term-sshd' });
    await live.waitFor();
    await live.getByRole('button', { name: /^End the session of / }).click();
    const d = audit.getByRole('dialog', { name: 'End session' });
    await screenshot(audit, '49a-sessions-end-confirm');
    await d.getByRole('button', { name: 'End session' }).click();
    await audit.getByText(/is being ended\./).waitFor();
  } finally {
    await audit.close();
  }
  await page.locator('#term-banner').filter({ hasText: 'An administrator ended this session.' }).waitFor({ timeout: 20000 });
  await page.locator('#term-state').filter({ hasText: 'Disconnected' }).waitFor();
  await screenshot(page, '49b-terminal-ended-by-admin');
});

step('a revoked grant closes the live session: the terminal says so', async () => {
  await page.getByRole('button', { name: 'Reconnect' }).click();
  await page.locator('#term-state').filter({ hasText: 'Connected' }).waitFor({ timeout: 30000 });
  await waitPrompt();
  const { name, description, permissions, keys, devices } = (await apiCall(page, 'GET', `/api/groups/${ids.group}`)).body;
  const g = { name, description, permissions, keys, devices };
  const without = await apiCall(page, 'PUT', `/api/groups/${ids.group}`, { ...g, members: [] });
  assert.equal(without.status, 200, JSON.stringify(without.body));
  await page.locator('#term-banner').filter({ hasText: 'Your access to this device with this key was revoked' })
    .waitFor({ timeout: 20000 });
  // the grant back, for the steps that follow
  const back = await apiCall(page, 'PUT', `/api/groups/${ids.group}`, { ...g, members: [ids.me] });
  assert.equal(back.status, 200, JSON.stringify(back.body));
});

step('a device presenting another host key: the mismatch banner', async () => {
  await page.goto(env.url + `/terminal.html?key=${ids.key}&device=${ids.wrongKey}`);
  const banner = page.locator('#term-banner');
  await banner.filter({ hasText: 'The device presented a host key other than the pinned one' }).waitFor({ timeout: 30000 });
  await page.locator('#term-state').filter({ hasText: 'Disconnected' }).waitFor();
  await banner.locator('.detail').filter({ hasText: 'host_key_mismatch' }).waitFor();
  assert.equal(await banner.getAttribute('class'), 'banner error');
  await page.getByRole('button', { name: 'Reconnect' }).waitFor();
  assert.equal(await page.getByRole('button', { name: 'Disconnect' }).isVisible(), false);
  await screenshot(page, '47-terminal-host-key-mismatch');
});

step('a device on a closed port: the unreachable banner', async () => {
  await page.goto(env.url + `/terminal.html?key=${ids.key}&device=${ids.closed}`);
  const banner = page.locator('#term-banner');
  await banner.filter({ hasText: 'The device cannot be reached' }).waitFor({ timeout: 30000 });
  await banner.locator('.detail').filter({ hasText: 'device_unreachable' }).waitFor();
  await page.locator('#term-state').filter({ hasText: 'Disconnected' }).waitFor();
  await screenshot(page, '48-terminal-unreachable');
  assert.deepEqual(b.problems.filter(p => !/status of 4\d\d/.test(p)), []);
});
