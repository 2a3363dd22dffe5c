// The main path in Firefox (Debian's firefox-esr, driven over WebDriver
// BiDi by puppeteer-core: playwright cannot drive a stock Firefox). Set up
// through the API (a device for the test sshd, an Ed25519 key with it as
// main device, a group granting the administrator the key and the device);
// then in the browser: log in, the SSH keys report, Actions -> Start session
// with a key -> Start session, a command, a resize, exit; the key
// registration tabs and the password generator. No page errors.
//
// Screenshots 60-69 (t/e2e/screenshots/). What this file creates through the
// API it deletes again, so the other files see the stack as before.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import puppeteer from 'puppeteer-core';
import { env, keygen, screenshot, story } from './lib.mjs';

const FIREFOX = '/usr/bin/firefox-esr';
const WAIT = 20000;                     // each browser action
const origin = new URL(env.url).origin;

/* ---------- the API, with fetch and the administrator's cookie ---------- */
let cookie = '';
async function api(method, path, body) {
  const headers = { Origin: origin };
  if (cookie) headers.Cookie = cookie;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(env.url + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(WAIT),
  });
  const json = await res.json().catch(() => null);
  if (path === '/api/login' && res.ok) {
    const c = res.headers.getSetCookie().find(s => s.startsWith('segura_session='));
    cookie = c.split(';')[0];
  }
  return { status: res.status, body: json };
}
async function apiOk(method, path, body, want = [200, 201]) {
  const r = await api(method, path, body);
  assert.ok(want.includes(r.status), `${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/* ---------- Firefox ---------- */
let browser, page, profile, ffPids = [];
const problems = [];

// the processes of the browser we started: its pid and its descendants
function descendants(root) {
  const parent = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      parent.set(Number(d), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch { /* gone */ }
  }
  const out = [root];
  for (let i = 0; i < out.length; i++)
    for (const [p, pp] of parent) if (pp === out[i] && !out.includes(p)) out.push(p);
  return out;
}
const alive = pid => { try { process.kill(pid, 0); return true; } catch { return false; } };
const until = async (cond, ms) => {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise(r => setTimeout(r, 50)))
    if (cond()) return true;
  return cond();
};

before(async () => {
  profile = mkdtempSync(join(env.tmp, 'firefox-'));
  browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: FIREFOX,
    headless: true,
    userDataDir: profile,
    timeout: 60000,
    protocolTimeout: 60000,
  });
  page = (await browser.pages())[0] || await browser.newPage();
  // the first tab keeps Firefox's own window size (1366x682 headless)
  // whatever defaultViewport says: the size of the chromium tests
  await page.setViewport({ width: 1360, height: 860 });
  page.setDefaultTimeout(WAIT);
  page.setDefaultNavigationTimeout(WAIT);
  page.on('pageerror', e => problems.push(`pageerror: ${e.message}`));
  page.on('console', m => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  // a break of the pages' Content-Security-Policy is a problem here too
  await page.evaluateOnNewDocument(() => {
    document.addEventListener('securitypolicyviolation', e =>
      console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));
  });
});

after(async () => {
  // what the test made through the API goes, so the files after this one
  // see an administrator in no access group
  const undone = [];
  if (cookie) {
    for (const [what, id] of [['groups', groupId], ['keys', keyId], ['devices', deviceId]]) {
      if (!id) continue;
      const r = await api('DELETE', `/api/${what}/${id}`).catch(e => ({ status: e.message }));
      if (r.status !== 200) undone.push(`DELETE /api/${what}/${id}: ${r.status}`);
    }
    await api('POST', '/api/logout', {}).catch(() => {});
  }
  // Firefox and every process it started
  const pid = browser?.process()?.pid;
  if (pid) ffPids = descendants(pid);
  if (browser) {
    let timer;
    const closed = await Promise.race([
      browser.close().then(() => true, () => false),
      new Promise(r => { timer = setTimeout(() => r(false), 10000); }),
    ]);
    clearTimeout(timer);
    if (!closed) for (const p of ffPids) try { process.kill(p, 'SIGKILL'); } catch { /* gone */ }
  }
  if (!await until(() => !ffPids.some(alive), 10000))
    for (const p of ffPids.filter(alive)) try { process.kill(p, 'SIGKILL'); } catch { /* gone */ }
  const left = (await until(() => !ffPids.some(alive), 5000)) ? [] : ffPids.filter(alive);
  if (profile) rmSync(profile, { recursive: true, force: true });
  assert.deepEqual(left, [], 'no Firefox process is left');
  assert.deepEqual(undone, [], 'what the test made is gone');
});

const step = story(test, () => page);

/* ---------- finding things the way a user does ---------- */
// the form control whose <label> reads exactly `text`
async function byLabel(text) {
  const h = await page.waitForFunction(t => {
    const l = [...document.querySelectorAll('label')]
      .find(x => x.textContent.replace(/\s+/g, ' ').trim() === t);
    return l?.control || null;
  }, { timeout: WAIT }, text);
  return h.asElement();
}

// the first visible element matching `selector` whose accessible name
// (aria-label, else its text) is exactly `name`
async function byName(selector, name) {
  const h = await page.waitForFunction((sel, n) => [...document.querySelectorAll(sel)].find(e =>
    (e.getAttribute('aria-label') || e.textContent).replace(/\s+/g, ' ').trim() === n &&
    e.getClientRects().length > 0) || null, { timeout: WAIT }, selector, name);
  return h.asElement();
}

// a click that navigates: waits for the new page
async function clickAndWait(el) {
  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), el.click()]);
}

async function textOf(selector) {
  return page.$eval(selector, e => e.textContent.replace(/\s+/g, ' ').trim());
}
async function waitText(selector, re, timeout = WAIT) {
  await page.waitForFunction((sel, src) => {
    const e = document.querySelector(sel);
    return e && new RegExp(src).test(e.textContent);
  }, { timeout }, selector, re.source);
}

// the xterm.js screen (DOM renderer), one trimmed string per row
const rowsOnScreen = () => page.$$eval('.xterm-rows > div',
  rows => rows.map(r => r.textContent.replace(/\u00a0/g, ' ').trim()));
async function waitRow(pred, arg, timeout = WAIT) {
  await page.waitForFunction(new Function('arg', `
    const rows = [...document.querySelectorAll('.xterm-rows > div')]
      .map(r => r.textContent.replace(/\\u00a0/g, ' ').trim());
    return (${pred})(rows, arg);`), { timeout }, arg);
}

// `stty size` prints "rows cols" on the line after the marker
async function sttySize(marker) {
  await page.keyboard.type(`echo ${marker}; stty size`);
  await page.keyboard.press('Enter');
  await waitRow((rows, m) => { const i = rows.lastIndexOf(m); return i >= 0 && /^\d+ \d+$/.test(rows[i + 1] || ''); }, marker);
  const rows = await rowsOnScreen();
  const [r, c] = rows[rows.lastIndexOf(marker) + 1].split(' ').map(Number);
  return { rows: r, cols: c };
}

/* ---------- the story ---------- */
const key = keygen('ed25519', { authorize: true });
const names = { device: 'ff-sshd', key: 'ff-ed25519', group: 'ff-admins' };
let me, deviceId, keyId, groupId;

step('set up through the API: a device, a key, a group granting the administrator', async () => {
  const login = await api('POST', '/api/login', { username: env.admin, password: env.password });
  assert.equal(login.status, 200, JSON.stringify(login.body));
  assert.ok(cookie, 'a session cookie');
  me = await apiOk('GET', '/api/me');
  deviceId = (await apiOk('POST', '/api/devices', {
    name: names.device, address: '127.0.0.1', port: env.sshdPort,
    tags: ['firefox'], host_key: env.sshdHostKey,
  })).id;
  keyId = (await apiOk('POST', '/api/keys', {
    name: names.key, username: env.sshdUser, owner: 'firefox', tags: ['firefox'],
    private_key: key.priv, main_device: deviceId,
  })).id;
  groupId = (await apiOk('POST', '/api/groups', {
    name: names.group,
    permissions: { use_credentials: true, access_devices: true, remote_session: true },
    members: [me.id], keys: [keyId], devices: [deviceId],
  })).id;
});

step('Firefox: log in through the login page, the SSH keys report lists the key', async () => {
  assert.match(await browser.version(), /^firefox\//i);
  await page.goto(env.url + '/login.html');
  await (await byLabel('User name')).type(env.admin);
  await (await byLabel('Password')).type(env.password);
  await clickAndWait(await byName('button', 'Log in'));
  assert.match(page.url(), /\/keys\.html/);
  await waitText('#whoami', /Ada Admin/);
  const row = `#keys-body tr[data-key-id="${keyId}"]`;
  await page.waitForSelector(row);
  const cells = await page.$$eval(`${row} td`, tds => tds.map(td => td.textContent.replace(/\s+/g, ' ').trim()));
  assert.equal(cells[0], names.key);
  assert.equal(cells[1].replace(/ /g, ''), 'ssh-ed25519(256)' + key.fingerprint);
  assert.equal(cells[2], env.sshdUser);
  assert.equal(cells[6], names.device);
  assert.equal(cells[7], '1not checked');
  // the table is laid out as a table, not squeezed: every cell has a width
  const widths = await page.$$eval(`${row} td`, tds => tds.map(td => td.getBoundingClientRect().width));
  assert.ok(widths.every(w => w > 0), `cell widths ${widths}`);
  await screenshot(page, '60-firefox-keys');
});

step('Firefox: Actions -> Start session with a key -> Start session: Connected, echo $((6*7))', async () => {
  await (await byName('button', `Actions for ${names.key}`)).click();
  const item = await byName(`#menu-${keyId} [role="menuitem"]`, 'Start session with a key');
  await screenshot(page, '62-firefox-actions-menu');
  await clickAndWait(item);
  assert.match(page.url(), new RegExp(`/remote-access\\.html\\?key=${keyId}$`));
  await waitText('#access-body', new RegExp(`${names.device}.*Allowed`));
  await screenshot(page, '63-firefox-remote-access');
  await clickAndWait(await byName('#access-body a', `Start session on ${names.device}`));
  assert.match(page.url(), new RegExp(`/terminal\\.html\\?key=${keyId}&device=${deviceId}$`));
  await waitText('#term-state', /^\s*Connected\s*$/, 30000);
  assert.match(await textOf('#term-title'), new RegExp(names.device));

  // the prompt, then the command
  await waitRow(rows => rows.some(r => /[#$>]$/.test(r)));
  await page.focus('.xterm-helper-textarea');
  await page.keyboard.type('echo $((6*7))');
  await page.keyboard.press('Enter');
  await waitRow(rows => rows.includes('42'));
  assert.ok((await rowsOnScreen()).some(r => r.endsWith('echo $((6*7))')), 'the command echoed as typed');
  await screenshot(page, '61-firefox-terminal');
});

step('Firefox: the terminal follows a smaller window; exit shows the exit banner', async () => {
  const before = await sttySize('ff-size-one');
  const drawn = () => page.$$eval('.xterm-rows > div', r => r.length);
  assert.equal(before.rows, await drawn(), `stty size ${before.rows} ${before.cols} matches the screen`);

  await page.setViewport({ width: 900, height: 600 });
  await page.waitForFunction(n => document.querySelectorAll('.xterm-rows > div').length < n,
                             { timeout: WAIT }, before.rows);
  const after = await sttySize('ff-size-two');
  assert.ok(after.rows < before.rows && after.cols < before.cols,
            `stty size follows: ${before.rows}x${before.cols} -> ${after.rows}x${after.cols}`);
  assert.equal(after.rows, await drawn(), 'and matches the screen again');
  await screenshot(page, '64-firefox-terminal-resized');

  await page.keyboard.type('exit');
  await page.keyboard.press('Enter');
  await waitText('#term-banner', /Session ended \(exit 0\)/);
  assert.equal(await textOf('#term-state'), 'Disconnected');
  await screenshot(page, '65-firefox-terminal-exit');
  await page.setViewport({ width: 1360, height: 860 });
});

step('Firefox: key registration: the tabs switch, Generate fills the key password', async () => {
  await page.goto(env.url + '/key-edit.html');
  await waitText('h1', /SSH Key registration/);
  const info = await byName('[role="tab"]', 'Information');
  assert.equal(await info.evaluate(e => e.getAttribute('aria-selected')), 'true');
  await screenshot(page, '66-firefox-key-edit');

  const tab = await byName('[role="tab"]', 'Key data');
  assert.equal(await tab.evaluate(e => e.getAttribute('aria-selected')), 'false');
  await tab.click();
  await page.waitForFunction(() => document.getElementById('tab-keydata').getAttribute('aria-selected') === 'true',
                             { timeout: WAIT });
  assert.equal(await info.evaluate(e => e.getAttribute('aria-selected')), 'false');
  assert.deepEqual(await page.$$eval('[role="tabpanel"]', ps => ps.filter(p => !p.hidden).map(p => p.id)),
                   ['panel-keydata']);

  const pw = await byLabel('Key password');
  assert.equal(await pw.evaluate(e => e.getClientRects().length), 0, 'hidden until ticked');
  await (await byLabel('Set current password')).click();
  await page.waitForSelector('#passphrase', { visible: true });
  await (await byName('button', 'Generate')).click();
  await page.waitForFunction(() => document.getElementById('passphrase').value.length >= 16, { timeout: WAIT });
  assert.equal(await pw.evaluate(e => e.type), 'text', 'the generated password is shown');
  assert.equal(await page.$eval('#toggle-passphrase', e => e.getAttribute('aria-pressed')), 'true');
  await screenshot(page, '67-firefox-key-data-generated');
});

step('Firefox: no page errors', async () => {
  assert.deepEqual(problems.filter(p => !/status of 4\d\d/.test(p)), []);
});
