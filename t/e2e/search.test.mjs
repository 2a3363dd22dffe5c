// Searching recordings from the Session audit: a session prints a word
// (in colour, through printf's octal escapes so that the typed command
// does not hold it), the administrator searches for it in the search box,
// and the hit shows its line with the word marked and links to the replay
// at the hit's time. Screenshots 80-81.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { env, launch, login, keygen, apiCall, screenshot, story } from './lib.mjs';

let b, page;
before(async () => {
  b = await launch();
  page = b.page;
  await login(page);
});
after(async () => { await b?.close(); });
const step = story(test, () => page);

const ids = {};
const word = 'Walrus' + Math.random().toString(36).slice(2, 10).replace(/[0-9]/g, 'x');
const octal = s => [...s].map(c => '\\' + c.charCodeAt(0).toString(8).padStart(3, '0')).join('');

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

step('set-up: a device, a deployed key and a group granting them', async () => {
  const key = keygen('ed25519', { authorize: true });
  const d = await apiCall(page, 'POST', '/api/devices', {
    name: 'search-sshd', address: '127.0.0.1', port: env.sshdPort, host_key: env.sshdHostKey });
  assert.equal(d.status, 201, JSON.stringify(d.body));
  ids.device = d.body.id;
  const k = await apiCall(page, 'POST', '/api/keys', {
    name: 'search-ed25519', username: env.sshdUser, private_key: key.priv,
    main_device: ids.device, devices: [ids.device] });
  assert.equal(k.status, 201, JSON.stringify(k.body));
  ids.key = k.body.id;
  const me = (await apiCall(page, 'GET', '/api/me')).body;
  const g = await apiCall(page, 'POST', '/api/groups', {
    name: 'search-operators', permissions: { use_credentials: true, access_devices: true, remote_session: true },
    members: [me.id], keys: [ids.key], devices: [ids.device] });
  assert.equal(g.status, 201, JSON.stringify(g.body));
});

step('a session prints the word in colour, then exits', async () => {
  await page.goto(env.url + `/terminal.html?key=${ids.key}&device=${ids.device}`);
  await page.locator('.xterm-rows').waitFor({ timeout: 20000 });
  await run(`printf 'found: \\033[1;32m${octal(word)}\\033[0m here\\n'`);
  await page.waitForFunction(w => document.querySelector('.xterm-rows').textContent.includes(w), word,
                             { timeout: 20000 });
  await run('exit');
  await page.locator('#term-banner').filter({ hasText: 'Session ended' }).waitFor({ timeout: 20000 });
  // the recording's last chunk goes through the outbox: wait until it is found
  const deadline = Date.now() + 20000;
  for (;;) {
    const r = await apiCall(page, 'GET', '/api/sessions?q=' + encodeURIComponent(word));
    assert.equal(r.status, 200, JSON.stringify(r.body));
    if (r.body.items.length) { ids.session = r.body.items[0].id; break; }
    assert.ok(Date.now() < deadline, 'the recording is searchable within 20 s');
    await new Promise(res => setTimeout(res, 250));
  }
});

step('the Session audit searches it and links the hit to the replay', async () => {
  await page.goto(env.url + '/sessions.html');
  const box = page.getByLabel('Search recordings');
  await box.fill(word.toLowerCase());
  await screenshot(page, '80-search-box');
  await page.getByRole('button', { name: 'Search' }).click();
  const hit = page.locator('#rec-results a.hit').first();
  await hit.waitFor({ timeout: 20000 });
  const href = await hit.getAttribute('href');
  const m = /^replay\.html\?session=([0-9a-f-]{36})&t=([0-9.]+)$/.exec(href);
  assert.ok(m, `the hit links to the replay at its time: ${href}`);
  assert.equal(m[1], ids.session);
  assert.ok(Number(m[2]) > 0, 'at a time after the start');
  assert.equal(await hit.locator('code').textContent(), `found: ${word} here`, 'the line, without colours');
  assert.equal(await hit.locator('mark').textContent(), word, 'the word is marked as printed');
  await screenshot(page, '81-search-hits');
  // the hit opens the player at the hit's time, showing the line
  const at = Number(m[2]) * 1000;
  await hit.click();
  await page.waitForURL(/\/replay\.html\?session=/);
  await page.waitForFunction(() => document.getElementById('main').dataset.state === 'ready');
  const pos = Number(await page.locator('#main').getAttribute('data-position'));
  assert.ok(Math.abs(pos - at) <= 1000, `the player is at the hit's time (${pos} ms, hit at ${at} ms)`);
  // the hit's line is on the player's screen there
  await page.waitForFunction(w => [...document.querySelectorAll('#replay-player .ap-line')]
    .some(l => l.textContent.replace(/\u00a0/g, ' ').includes(`found: ${w} here`)), word, { timeout: 20000 });
  await screenshot(page, '81b-search-hit-replayed');
  await page.goto(env.url + '/sessions.html');
  // a word never printed: nothing found
  await box.fill('neverprinted' + word.toLowerCase());
  await page.getByRole('button', { name: 'Search' }).click();
  await page.locator('#rec-none').waitFor({ timeout: 20000 });
});
