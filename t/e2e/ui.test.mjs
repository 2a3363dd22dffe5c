// The details of the screens: the key password helpers, the Devices modal,
// validation, editing (write-only secrets), deleting, a refused key in the
// terminal, a user who is not an administrator, a missing xterm.js.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { env, launch, login, keygen, apiCall, screenshot, story } from './lib.mjs';

let b, page;
before(async () => { b = await launch(); page = b.page; await login(page); });
after(async () => { await b?.close(); });
const step = story(test, () => page);

const devs = {};
let keyId;

async function newDevice(name, extra = {}) {
  const r = await apiCall(page, 'POST', '/api/devices', {
    name, address: '127.0.0.1', port: env.sshdPort, host_key: env.sshdHostKey, ...extra });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body.id;
}

step('the pages come with their security headers, and no other site may frame them', async () => {
  for (const path of ['/login.html', '/keys.html', '/terminal.html', '/js/terminal.js']) {
    const r = await page.request.get(env.url + path);
    assert.equal(r.status(), 200, path);
    const h = r.headers();
    const csp = h['content-security-policy'] || '';
    for (const d of ["default-src 'none'", "script-src 'self' 'wasm-unsafe-eval'", "connect-src 'self'", "frame-ancestors 'none'"]) {
      assert.ok(csp.split(/;\s*/).includes(d), `${path}: ${d} in ${csp}`);
    }
    // scripts from this origin only; 'wasm-unsafe-eval' (asciinema-player's
    // WebAssembly) is no eval of JavaScript and no inline script
    assert.ok(!/script-src[^;]*'unsafe-(?:inline|eval|hashes)'/.test(csp), 'no unsafe script source');
    assert.equal(h['x-frame-options'], 'DENY', path);
    assert.equal(h['x-content-type-options'], 'nosniff', path);
  }
  // npm's tree is not under the served root (make ui copies only the
  // browser files of xterm.js to html/vendor/)
  assert.equal((await page.request.get(env.url + '/node_modules/@xterm/xterm/package.json')).status(), 404);
  assert.equal((await page.request.get(env.url + '/vendor/xterm/xterm.js')).status(), 200);
  // a page of another origin that frames the console gets nothing; the
  // frame beside it, which holds a form of its own, shows that a form in
  // a frame is seen (setContent waits for both frames to load)
  const other = await b.context.newPage();
  try {
    await other.setContent(`<iframe name="console" src="${env.url}/login.html"></iframe>` +
                           '<iframe name="control" srcdoc="<form id=login-form></form>"></iframe>');
    assert.equal(await other.frame({ name: 'control' }).locator('#login-form').count(), 1, 'the control frame');
    assert.equal(await other.frame({ name: 'console' }).locator('#login-form').count(), 0, 'no login form in the frame');
  } finally {
    await other.close();
  }
});

step('required fields are checked before anything is sent', async () => {
  devs.a = await newDevice('ui-dev-a');
  devs.b = await newDevice('ui-dev-b', { tags: ['b'] });
  devs.c = await newDevice('ui-dev-c');
  await page.goto(env.url + '/key-edit.html');
  await page.getByRole('tab', { name: 'Review' }).click();
  await page.getByRole('button', { name: 'Save' }).click();
  await page.locator('#name-error').waitFor();
  assert.equal(await page.getByRole('tab', { name: /Information/ }).getAttribute('aria-selected'), 'true');
  assert.equal(await page.getByLabel('Key name').getAttribute('aria-invalid'), 'true');
  assert.equal(await page.locator('[role="tab"] .badge').count(), 2, 'Information and Key data are marked');
});

step('Set current password: the field, Generate and the eye toggle', async () => {
  await page.getByRole('tab', { name: /Key data/ }).click();
  const pw = page.getByLabel('Key password');
  assert.equal(await pw.isVisible(), false);
  await page.getByLabel('Set current password').check();
  await pw.waitFor();
  assert.equal(await pw.getAttribute('type'), 'password');
  const eye = page.getByRole('button', { name: 'Show password' });
  await eye.click();
  assert.equal(await pw.getAttribute('type'), 'text');
  assert.equal(await page.getByRole('button', { name: 'Hide password' }).getAttribute('aria-pressed'), 'true');
  await page.getByRole('button', { name: 'Hide password' }).click();
  assert.equal(await pw.getAttribute('type'), 'password');
  await page.getByRole('button', { name: 'Generate' }).click();
  const g = await pw.inputValue();
  assert.equal(g.length, 24);
  assert.equal(await pw.getAttribute('type'), 'text', 'a generated password is shown');
  await page.getByRole('button', { name: 'Generate' }).click();
  assert.notEqual(await pw.inputValue(), g);
  await screenshot(page, '20-passphrase');
});

step('a protected key: a wrong password is shown next to the field, the right one saves', async () => {
  const k = keygen('ed25519', { passphrase: 'right horse battery' });
  await page.getByRole('tab', { name: /Information/ }).click();
  await page.getByLabel('Key name').fill('ui-protected');
  await page.getByLabel('Tags', { exact: true }).fill('ui');
  await page.getByRole('tab', { name: /Key data/ }).click();
  await page.getByLabel('Username').fill(env.sshdUser);
  await page.getByLabel('Private Key', { exact: true }).fill(k.priv);
  await page.getByLabel('Key password').fill('wrong horse');

  // Devices: main a, then b and c from the Devices modal; c removed again
  await page.getByRole('tab', { name: 'Devices' }).click();
  await page.getByLabel('Main device').selectOption(String(devs.a));
  await page.getByRole('button', { name: 'Add', exact: true }).click();
  const modal = page.getByRole('dialog', { name: 'Devices' });
  await modal.waitFor();
  assert.equal(await modal.getByRole('checkbox', { name: /ui-dev-a/ }).count(), 0, 'the main device is not offered again');
  await screenshot(page, '21-devices-modal');
  await modal.getByRole('checkbox', { name: /ui-dev-b/ }).check();
  await modal.getByRole('checkbox', { name: /ui-dev-c/ }).check();
  await modal.getByRole('button', { name: 'Add' }).click();
  await modal.waitFor({ state: 'hidden' });
  await page.getByRole('button', { name: 'Remove ui-dev-c' }).click();
  assert.deepEqual(await page.locator('#assoc-body tr').evaluateAll(r => r.map(x => Number(x.dataset.deviceId))), [devs.a, devs.b]);

  await page.getByRole('tab', { name: 'Review' }).click();
  await page.locator('#summary').getByText('Set (write-only)').waitFor();
  await page.getByRole('button', { name: 'Save' }).click();
  await page.locator('#passphrase-error').filter({ hasText: 'The password does not open this key.' }).waitFor();
  assert.equal(await page.getByRole('tab', { name: /Key data/ }).getAttribute('aria-selected'), 'true');
  await screenshot(page, '22-passphrase-wrong');

  await page.getByLabel('Key password').fill('right horse battery');
  await page.getByRole('tab', { name: /Review/ }).click();
  await page.getByRole('button', { name: 'Save' }).click();
  await page.waitForURL(/keys\.html/);
  const row = page.locator('#keys-body tr', { hasText: 'ui-protected' });
  await row.waitFor();
  keyId = Number(await row.getAttribute('data-key-id'));
  const k2 = (await apiCall(page, 'GET', `/api/keys/${keyId}`)).body;
  assert.equal(k2.has_passphrase, true);
  assert.equal(k2.main_device, devs.a);
  assert.deepEqual([...k2.devices].sort(), [devs.a, devs.b].sort());
  assert.equal(k2.fingerprint, k.fingerprint);
});

step('filters: status, tag and search', async () => {
  await page.getByLabel('Tag').fill('ui');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.locator('#keys-count').filter({ hasText: /^1 SSH key$/ }).waitFor();
  await page.getByLabel('Tag').fill('');
  await page.getByLabel('Search').fill('PROTECT');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.locator('#keys-count').filter({ hasText: /^1 SSH key$/ }).waitFor();
  await page.getByLabel('Status').selectOption('inactive');
  await page.locator('#keys-empty').waitFor();
  await page.getByLabel('Status').selectOption('');
  await page.getByLabel('Search').fill('');
  await page.getByRole('button', { name: 'Filter' }).click();
});

step('editing keeps the stored private key and never shows it', async () => {
  const row = page.locator('#keys-body tr', { hasText: 'ui-protected' });
  await row.getByRole('button', { name: /Actions/ }).click();
  await page.getByRole('menuitem', { name: 'Edit' }).click();
  await page.waitForURL(/key-edit\.html\?id=/);
  // the form is drawn before the key is loaded into it
  await page.waitForFunction(() => document.getElementById('name').value === 'ui-protected');
  await page.getByRole('tab', { name: 'Key data' }).click();
  assert.equal(await page.getByLabel('Private Key', { exact: true }).inputValue(), '');
  assert.match(await page.locator('#private_key-hint').textContent(), /protected by a password/);
  assert.equal(await page.getByLabel('Set current password').isDisabled(), true);
  const html = await page.content();
  assert.ok(!html.includes('PRIVATE KEY-----\n'), 'no private key in the page');
  await page.getByRole('tab', { name: 'Information' }).click();
  await page.getByLabel('Key name').fill('ui-protected-2');
  await page.getByRole('tab', { name: 'Review' }).click();
  await page.locator('#summary').getByText('Unchanged (stored)').waitFor();
  await screenshot(page, '23-edit-review');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.waitForURL(/keys\.html/);
  await page.locator('#keys-body tr', { hasText: 'ui-protected-2' }).waitFor();
  assert.equal((await apiCall(page, 'GET', `/api/keys/${keyId}`)).body.has_passphrase, true);
});

step('a key that is not deployed: the terminal says so', async () => {
  const me = (await apiCall(page, 'GET', '/api/me')).body;
  const g = await apiCall(page, 'POST', '/api/groups', {
    name: 'ui-operators', permissions: { use_credentials: true, access_devices: true, remote_session: true },
    members: [me.id], keys: [keyId], devices: [devs.a, devs.b] });
  assert.equal(g.status, 201, JSON.stringify(g.body));
  await page.goto(env.url + `/remote-access.html?key=${keyId}`);
  await page.locator('#access-body tr', { hasText: 'ui-dev-a' }).getByRole('link', { name: /Start session/ }).click();
  await page.waitForURL(/terminal\.html/);
  await page.locator('#term-banner').filter({ hasText: 'The device refused the key — is the public key deployed?' })
    .waitFor({ timeout: 30000 });
  await page.locator('#term-state').filter({ hasText: 'Disconnected' }).waitFor();
  await page.getByRole('button', { name: 'Reconnect' }).waitFor();
  await screenshot(page, '24-terminal-auth-rejected');
});

step('a refused upgrade is explained in words', async () => {
  await page.goto(env.url + `/terminal.html?key=${keyId}&device=${devs.c}`);
  await page.locator('#term-banner').filter({ hasText: 'This device is not associated with the key.' }).waitFor();
});

step('without xterm.js the terminal page says what to do', async () => {
  await page.route('**/vendor/xterm/**', r => r.fulfill({ status: 404, body: 'not found' }));
  await page.goto(env.url + `/terminal.html?key=${keyId}&device=${devs.a}`);
  await page.locator('#term-banner').filter({ hasText: 'make ui' }).waitFor();
  await screenshot(page, '25-no-xterm');
  await page.unroute('**/vendor/xterm/**');
});

step('an administrator adds a user on the Users page', async () => {
  await page.goto(env.url + '/users.html');
  await page.getByRole('button', { name: 'Add' }).click();
  const d = page.getByRole('dialog', { name: 'Add user' });
  await d.getByLabel('User name').fill('uma');
  await d.getByLabel('Display name').fill('Uma User');
  await d.getByLabel('Password').fill('short');
  await d.getByRole('button', { name: 'Save' }).click();
  await d.locator('#f-password-error').waitFor();
  await screenshot(page, '26-user-invalid');
  await d.getByLabel('Password').fill('uma-password-1');
  await d.getByRole('button', { name: 'Save' }).click();
  await page.locator('#items-body tr', { hasText: 'uma' }).waitFor();
  // in the group that grants the key but only device b
  const users = (await apiCall(page, 'GET', '/api/users')).body.items;
  const uma = users.find(u => u.username === 'uma');
  const g = await apiCall(page, 'POST', '/api/groups', {
    name: 'ui-uma', permissions: { use_credentials: true, access_devices: true, remote_session: true },
    members: [uma.id], keys: [keyId], devices: [devs.b] });
  assert.equal(g.status, 201);
  // device a is hers to see (a group without remote sessions grants it),
  // not to use: the Remote Access report shows it with the reason; a
  // device granted to none of her groups would not be shown at all
  const v = await apiCall(page, 'POST', '/api/groups', {
    name: 'ui-uma-view', permissions: { use_credentials: true, access_devices: true, remote_session: false },
    members: [uma.id], devices: [devs.a] });
  assert.equal(v.status, 201);
});

step('a user who is not an administrator: no Add, no Edit, the reasons in words', async () => {
  const u = await launch();
  try {
    await login(u.page, 'uma', 'uma-password-1');
    const p = u.page;
    await p.locator('#whoami').filter({ hasText: 'Uma User' }).waitFor();
    assert.equal(await p.getByRole('link', { name: 'Add' }).isVisible(), false);
    assert.equal(await p.getByRole('link', { name: 'Users' }).count(), 0, 'no administration menu');
    const row = p.locator('#keys-body tr', { hasText: 'ui-protected-2' });
    await row.getByRole('button', { name: /Actions/ }).click();
    assert.deepEqual(await p.getByRole('menuitem').allTextContents(), ['Start session with a key']);
    await p.getByRole('menuitem', { name: 'Start session with a key' }).click();
    await p.waitForURL(/remote-access/);
    await p.locator('#access-body tr', { hasText: 'ui-dev-a' })
      .getByText('None of your access groups grants this device.').waitFor();
    await p.locator('#access-body tr', { hasText: 'ui-dev-b' }).getByRole('link', { name: /Start session/ }).waitFor();
    await screenshot(p, '27-user-remote-access');
    await p.goto(env.url + '/users.html');
    await p.getByText('This page is for administrators.').waitFor();
  } finally {
    await u.close();
  }
});

step('the Devices page: a host key that does not parse is shown next to its field', async () => {
  await page.goto(env.url + '/devices.html');
  await page.getByRole('button', { name: 'Add' }).click();
  const d = page.getByRole('dialog', { name: 'Add device' });
  await d.getByLabel('Device name').fill('ui-dev-page');
  await d.getByLabel('Address').fill('127.0.0.1');
  await d.getByLabel('Port').fill(String(env.sshdPort));
  await d.getByLabel('Tags').fill('lab, page');
  await d.getByLabel('Host key').fill('ssh-ed25519 not-base64!');
  await d.getByRole('button', { name: 'Save' }).click();
  await d.locator('#f-host_key-error').waitFor();
  assert.equal(await d.getByLabel('Host key').getAttribute('aria-invalid'), 'true');
  await screenshot(page, '28-device-invalid');
  await d.getByLabel('Host key').fill(env.sshdHostKey);
  await d.getByRole('button', { name: 'Save' }).click();
  const row = page.locator('#items-body tr', { hasText: 'ui-dev-page' });
  await row.waitFor();
  assert.match(await row.textContent(), /SHA256:/);
  await row.getByRole('button', { name: 'Edit ui-dev-page' }).click();
  await page.getByRole('dialog', { name: 'Edit device: ui-dev-page' }).getByLabel('Status').selectOption('inactive');
  await page.getByRole('button', { name: 'Save' }).click();
  await row.getByText('Inactive').waitFor();
  await screenshot(page, '29-devices');
});

step('every form control of every page has a name', async () => {
  for (const p of ['keys.html', 'key-edit.html', 'devices.html', 'groups.html', 'users.html', 'sessions.html']) {
    await page.goto(env.url + '/' + p);
    await page.locator('#sidenav a').first().waitFor();
    await page.waitForLoadState('networkidle');
    const unnamed = await page.$$eval('input:not([type=hidden]), select, textarea, button', els => els
      .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
      .map(e => e.outerHTML.slice(0, 80)));
    assert.deepEqual(unnamed, [], p);
  }
});

step('names that look like markup are shown as text on every screen', async () => {
  const evil = '<img src=x onerror="window.__owned=1">';
  const dev = await newDevice(`dev ${evil}`, { tags: ['<b>t</b>'], description: evil });
  const k = keygen('ed25519');
  const key = await apiCall(page, 'POST', '/api/keys', {
    name: `key ${evil}`, owner: evil, username: 'root', tags: ['<i>x</i>'], private_key: k.priv, main_device: dev });
  assert.equal(key.status, 201, JSON.stringify(key.body));
  const g = await apiCall(page, 'POST', '/api/groups', {
    name: `group ${evil}`, permissions: { use_credentials: true, access_devices: true, remote_session: true },
    members: [], keys: [key.body.id], devices: [dev] });
  assert.equal(g.status, 201, JSON.stringify(g.body));
  for (const [path, shown] of [['keys.html', `key ${evil}`], ['devices.html', `dev ${evil}`],
                               ['groups.html', `group ${evil}`], [`remote-access.html?key=${key.body.id}`, `dev ${evil}`],
                               [`key-edit.html?id=${key.body.id}`, null]]) {
    await page.goto(env.url + '/' + path);
    await page.waitForLoadState('networkidle');
    if (shown) await page.getByText(shown, { exact: true }).first().waitFor();
    assert.equal(await page.locator('main img, main b, main i').count(), 0, `${path}: no element from a name`);
    assert.equal(await page.evaluate(() => window.__owned), undefined, `${path}: nothing ran`);
    await screenshot(page, `28b-markup-${path.replace(/\.html.*/, '')}`);
  }
  // the edit form holds the name as typed (it fills in once the key is read)
  await page.waitForFunction(v => document.getElementById('name').value === v, `key ${evil}`);
  // the next steps expect the keys they made; this one goes
  assert.equal((await apiCall(page, 'DELETE', `/api/keys/${key.body.id}`)).status, 200);
  assert.equal((await apiCall(page, 'DELETE', `/api/groups/${g.body.id}`)).status, 200);
  assert.equal((await apiCall(page, 'DELETE', `/api/devices/${dev}`)).status, 200);
});

step('deleting a key asks first', async () => {
  await page.goto(env.url + '/keys.html');
  const row = page.locator('#keys-body tr', { hasText: 'ui-protected-2' });
  await row.getByRole('button', { name: /Actions/ }).click();
  await page.getByRole('menuitem', { name: 'Delete' }).click();
  const d = page.getByRole('dialog', { name: 'Delete SSH key' });
  await d.getByRole('button', { name: 'Cancel' }).click();
  await row.waitFor();
  await row.getByRole('button', { name: /Actions/ }).click();
  await page.getByRole('menuitem', { name: 'Delete' }).click();
  await d.getByRole('button', { name: 'Delete' }).click();
  await page.getByText('The SSH key "ui-protected-2" was deleted.').waitFor();
  // the notice may come before the report is drawn again
  await row.waitFor({ state: 'detached', timeout: 10000 });
  assert.equal(await row.count(), 0);
  // refusals the steps provoked on purpose are not problems
  assert.deepEqual(b.problems.filter(p => !/status of (401|403|404|422)|Unexpected response code: 403/.test(p)), []);
});
